"""The torch.distributed process group of a multi-rank run, when the launcher provides one.

torchrun sets ``MASTER_ADDR``/``MASTER_PORT`` beside ``RANK``/``WORLD_SIZE``: then the ranks form
a group (gloo for the small CPU messages; ``cpu:gloo,cuda:nccl`` when rendering on CUDA) and use
it for two things only: rank 0's seeds are every rank's (so a time-seeded run agrees on its
noise), and rank 0 waits at a barrier for the others before merging the manifest parts. Slurm and
MPI runs have no group (nothing here talks to another process then); their parts are merged by
the last rank to finish, or by ``nanobragg batch --merge``.
"""

from __future__ import annotations

import datetime
import os

# a rank may finish hours before another (uneven shares after a resume): wait long
BARRIER_TIMEOUT = datetime.timedelta(hours=48)


class RankGroup:
    """A formed process group: :meth:`broadcast` (rank 0's ints to all), :meth:`barrier`."""

    def __init__(self, dist, own: bool):
        self.dist = dist
        self.own = own

    def broadcast(self, values: list) -> list:
        """Rank 0's ``values`` (ints; None allowed) on every rank."""
        import torch
        flags = [0 if v is None else 1 for v in values]
        t = torch.tensor([int(v or 0) for v in values] + flags, dtype=torch.int64)
        self.dist.broadcast(t, src=0)
        n = len(values)
        return [int(t[k]) if int(t[n + k]) else None for k in range(n)]

    def barrier(self) -> None:
        self.dist.barrier()

    def close(self) -> None:
        if self.own and self.dist.is_initialized():
            self.dist.destroy_process_group()


def form(ranks, device: str) -> RankGroup | None:
    """The group of a torchrun run of several ranks, else None (Slurm, MPI, one process)."""
    if not ranks.multi or ranks.source != "torchrun":
        return None
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        return None
    import torch.distributed as dist
    if not dist.is_available():
        return None
    if dist.is_initialized():
        return RankGroup(dist, own=False)
    backend = "cpu:gloo,cuda:nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=ranks.rank,
                            world_size=ranks.world, timeout=BARRIER_TIMEOUT)
    return RankGroup(dist, own=True)
