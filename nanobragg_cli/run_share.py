"""One process's share of a series or shot list split over several processes (scale-out).

:class:`Share` ties :mod:`nanobragg_cli.ranks` (which rank, which device),
:mod:`nanobragg_cli.rank_group` (torchrun's process group, if any) and
:mod:`nanobragg_cli.manifest_parts` (the manifest part of this rank, the merge) together for
``series_run.series_main`` and ``batch.batch_main``. A one-process run goes through the same
calls and they do nothing new: its manifest is ``--manifest`` itself.

Seeds: the bytes of frame i depend on (run seed, i) only. A run without ``-seed`` takes the time
seed; several processes must agree on it, so with a process group every rank uses rank 0's, and
without one (Slurm, MPI) a multi-rank run that would need a time seed is an error asking for
``-seed`` (or a ``--resume`` of a manifest that records the seed).
"""

from __future__ import annotations

from dataclasses import replace
import socket

from .errors import FlagError
from .ranks import detect, part_path, pick_device


class Share:
    """This process's place in the run and what follows from it (``tool``: ToolOptions)."""

    def __init__(self, tool, kind: str):
        self.kind = kind
        self.tool = tool
        self.ranks = detect(tool)
        self.device = tool.device
        if tool.device == "cuda":
            import torch
            self.device = pick_device(tool.device, self.ranks, torch.cuda.device_count())
        self.host = socket.gethostname()
        self.group = None
        if self.ranks.multi and tool.hdf5:
            raise FlagError(f"--hdf5 {tool.hdf5}: one file holds the whole series, written by one "
                            "process: not with several ranks (write float files, or run one)")

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world(self) -> int:
        return self.ranks.world

    def start(self) -> None:
        """Say what was detected (one stderr line) and form the process group, if any."""
        import sys
        from . import rank_group
        if self.ranks.source != "none":
            print(f"nanobragg: {self.ranks.line(self.device)}", file=sys.stderr, flush=True)
        self.group = rank_group.form(self.ranks, self.device)

    def render_tool(self):
        """The ToolOptions the frames render with (the device of this rank); the run's own
        ``tool`` keeps deciding the command lines and the configuration key."""
        return replace(self.tool, device=self.device)

    def agree_seeds(self, seeds: dict, time_seeded: list) -> dict:
        """{"noise_seed", "misset_seed"} every rank uses: rank 0's with a process group.
        ``time_seeded``: the flags ([-seed, -misset_seed]) whose value comes from the clock."""
        if self.group is not None:
            noise, misset = self.group.broadcast([seeds.get("noise_seed"),
                                                  seeds.get("misset_seed")])
            return {**seeds, "noise_seed": noise, "misset_seed": misset}
        if self.ranks.multi and time_seeded:
            flag = time_seeded[0]
            raise FlagError(f"{flag}: a run split over {self.world} processes needs {flag} "
                            f"(without it each process would take its own time seed; under "
                            f"{self.ranks.source} there is no process group to share one)")
        return seeds

    def manifest_path(self, manifest: str | None) -> str | None:
        """The manifest this process writes: ``--manifest`` itself, or its part."""
        if not manifest or not self.ranks.multi:
            return manifest
        return part_path(manifest, self.rank, self.world)

    def head(self) -> dict:
        """The manifest fields this rank adds: ``ranks``, ``status``."""
        return {"ranks": self.ranks.record(self.device), "status": "running"}

    def where(self) -> dict:
        """The fields of each frame record that say where it was rendered."""
        return {"rank": self.rank, "host": self.host, "device": self.device}

    def finish(self, manifest: str | None, written: list) -> None:
        """After this rank's last frame: with a group, every rank meets at a barrier and rank 0
        merges the parts; without one, the last rank to finish merges them."""
        from .manifest_parts import merge
        try:
            if self.group is not None:
                self.group.barrier()
            if manifest and self.ranks.multi:
                if self.group is not None and self.rank == 0:
                    merge(manifest, self.world)
                elif self.group is None:
                    merge(manifest, self.world, only_if_finished=True)
                if self.rank == 0 and manifest not in written:
                    written.append(manifest)
        finally:
            self.close()

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None
