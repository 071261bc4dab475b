"""Which share of a series or shot list this process renders: its rank among the processes a
launcher started (torchrun, Slurm ``srun``, ``mpirun``), read from the environment the launcher
sets, or given by ``--rank R --world-size W``.

Frame i (0-based) of a run belongs to rank i mod W (frames r, r + W, r + 2W, ...: no padding, no
frame twice); :func:`nanobragg_cli.series.frames_to_render` applies it. No torch import here: the
process group (:mod:`nanobragg_cli.rank_group`) and the device count are asked for by callers.

Detection order (the first source whose rank and size are both set wins):

1. ``--rank R --world-size W`` (tool options: tests, odd launchers);
2. torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``;
3. Open MPI ``mpirun``: ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
   ``OMPI_COMM_WORLD_LOCAL_RANK``;
4. MPICH / Intel MPI (Hydra, PMI): ``PMI_RANK``, ``PMI_SIZE``, local rank ``MPI_LOCALRANKID``;
5. Slurm ``srun``: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (else ``SLURM_NTASKS``),
   ``SLURM_LOCALID``.

The per-process launchers come before Slurm because an ``mpirun`` or ``torchrun`` started inside
a Slurm job inherits the job's ``SLURM_*`` values, which then describe the job step, not the
process. Without any of them the run is one process (rank 0 of 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import socket

from .errors import FlagError

# (source, rank variable, size variables (first set wins), local rank variables)
SOURCES = (
    ("torchrun", "RANK", ("WORLD_SIZE",), ("LOCAL_RANK",)),
    ("Open MPI", "OMPI_COMM_WORLD_RANK", ("OMPI_COMM_WORLD_SIZE",),
     ("OMPI_COMM_WORLD_LOCAL_RANK",)),
    ("PMI", "PMI_RANK", ("PMI_SIZE",), ("MPI_LOCALRANKID", "PMI_LOCAL_RANK")),
    ("Slurm", "SLURM_PROCID", ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), ("SLURM_LOCALID",)),
)
ORDER = ("--rank/--world-size", *(s[0] for s in SOURCES))


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` in 0..world-1, ``local_rank`` on its node
    (picks the GPU), ``source``: where they came from ("none": a single process),
    ``variables``: {name: value} read from the environment."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    source: str = "none"
    variables: dict = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return self.world > 1

    def record(self, device: str) -> dict:
        """The manifest's ``ranks`` entry."""
        return {"rank": self.rank, "world_size": self.world, "local_rank": self.local_rank,
                "source": self.source, "variables": dict(self.variables),
                "detection_order": list(ORDER), "host": socket.gethostname(), "device": device}

    def line(self, device: str) -> str:
        """The one stderr line saying what was detected."""
        got = ", ".join(f"{k}={v}" for k, v in self.variables.items())
        return (f"ranks: rank {self.rank} of {self.world} (local {self.local_rank}) from "
                f"{self.source}{f' ({got})' if got else ''}, device {device}; "
                f"checked in order: {', '.join(ORDER)}")


def _int(name: str, text: str, lowest: int) -> int:
    t = text.strip()
    if not t.lstrip("+").isdigit() or int(t) < lowest:
        raise FlagError(f"{name}={text!r}: expected an integer of at least {lowest} "
                        "(set by the launcher; or give --rank R --world-size W)")
    return int(t)


def _checked(rank: int, world: int, what: str) -> None:
    if rank >= world:
        raise FlagError(f"{what}: rank {rank} is not below the world size {world}")


def detect(tool, environ=None) -> Ranks:
    """The Ranks of this process: ``tool.rank``/``tool.world_size`` if given, else the first
    launcher of :data:`SOURCES` whose variables are set in ``environ`` (default os.environ)."""
    env = os.environ if environ is None else environ
    if tool.rank is not None or tool.world_size is not None:
        if tool.rank is None or tool.world_size is None:
            raise FlagError("--rank/--world-size: give both (--rank R --world-size W)")
        _checked(tool.rank, tool.world_size, "--rank")
        return Ranks(tool.rank, tool.world_size, tool.rank, "--rank/--world-size", {})
    for source, rank_var, size_vars, local_vars in SOURCES:
        size_var = next((v for v in size_vars if env.get(v, "") != ""), None)
        if env.get(rank_var, "") == "" or size_var is None:
            continue
        rank = _int(rank_var, env[rank_var], 0)
        world = _int(size_var, env[size_var], 1)
        _checked(rank, world, f"{rank_var}={rank} ({source})")
        variables = {rank_var: env[rank_var], size_var: env[size_var]}
        local = rank
        local_var = next((v for v in local_vars if env.get(v, "") != ""), None)
        if local_var is not None:
            local = _int(local_var, env[local_var], 0)
            variables[local_var] = env[local_var]
        return Ranks(rank, world, local, source, variables)
    return Ranks()


def pick_device(device: str, ranks: Ranks, device_count: int) -> str:
    """``--device cuda`` of rank with local rank L: ``cuda:(L mod device_count)``; any other
    device (cpu, an explicit cuda:N) as given."""
    if device != "cuda" or device_count < 1:
        return device
    return f"cuda:{ranks.local_rank % device_count}"


def part_path(manifest: str, rank: int, world: int) -> str:
    """The manifest part of one rank: ``sweep.json`` -> ``sweep.rank3-of-8.json``."""
    stem, ext = os.path.splitext(manifest)
    return f"{stem}.rank{rank}-of-{world}{ext}"


def part_paths(manifest: str, world: int) -> list:
    """The part paths of every rank of a run of ``world`` processes, in rank order."""
    return [part_path(manifest, r, world) for r in range(world)]


def existing_parts(manifest: str) -> list:
    """Every part file beside ``manifest``, of any world size (what --resume reads back)."""
    import glob
    stem, ext = os.path.splitext(manifest)
    pattern = f"{glob.escape(stem)}.rank*-of-*{glob.escape(ext)}"
    return sorted(glob.glob(pattern))


def launcher_variables() -> list:
    """Every environment variable :func:`detect` reads."""
    return [v for _, rank, sizes, locals_ in SOURCES for v in (rank, *sizes, *locals_)]
