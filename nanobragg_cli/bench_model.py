"""The benchmark set of ``nanobragg bench`` and its data model: the benchmarks (B1..B4 and the
tiny T1/T2), the work each asks for (sub-pixel evaluations, from our own config resolution), the
runners and their results, and the folder a run starts in. No click command here:
:mod:`nanobragg_cli.bench` runs and reports, :mod:`nanobragg_cli.bench_report` lays results out,
:mod:`nanobragg_cli.bench_profile` profiles one run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import json
from pathlib import Path
import statistics

import click

from .errors import FlagError, NanoBraggError

SCHEMA = "nanobragg-bench/1"
OUTPUT_FLAGS = ("-floatfile", "f.bin", "-intfile", "i.img", "-nopgm", "-nonoise", "-noprogress")
FLOAT_OUT, INT_OUT = "f.bin", "i.img"

_B1 = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 "
       "-detpixels 1024 -pixel 0.1")
_B3 = ("-cell 100 100 100 90 90 90 -default_F 100 -N 10 -lambda 1 -distance 100 "
       "-detpixels_x 2463 -detpixels_y 2527 -pixel 0.1 -oversample 1")
_MOSAIC_PHI = "-mosaic 0.5 -mosaic_domains 10 -phisteps 5 -osc 0.5"
_SERIES_S1 = "-osc 0.1 -phisteps 2"
_SERIES_S2 = "-osc 0.1 -phisteps 10"
SERIES_OUTPUT_FLAGS = ("-floatfile", "f_###.bin", "-intfile", "i_###.img", "-nopgm", "-nonoise",
                       "-noprogress")
_TINY = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 "
         "-detpixels 64 -pixel 0.1")

# nanoBragg.c timings recorded in ../shared/docs/benchmarks.md (upstream nanoBragg.c, gcc -O3
# -fopenmp, 2-core x86-64 development machine, median of 3 runs; supervisor: range of 2 runs).
# Shown, clearly labelled, only when no C binary is timed in the same run.
RECORDED_C_SOURCE = "recorded elsewhere (../shared/docs/benchmarks.md), not this run"
RECORDED_C = {
    # id: {threads: (low, high) wall seconds}, peak RSS MB
    "B1": ({2: (0.63, 0.63), 1: (1.18, 1.18)}, 8.7),
    "B2": ({2: (22.1, 22.1), 1: (31.4, 31.4)}, 8.9),
    "B3": ({2: (1.33, 1.33), 1: (2.40, 2.40)}, 39.0),
    "B4": ({2: (8.6, 8.9), 1: (13.5, 15.6)}, 41.0),
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: nanoBragg.c flags without output flags (paths relative to its folder).
    ``frames`` > 0: a rotation series of that many frames (ours: one ``--frames`` process; C: a
    shell loop, one process per frame, with each frame's own command line)."""
    id: str
    title: str
    args: tuple
    frames: int = 0


@dataclass
class Work:
    """What a benchmark asks for, from our config resolution (sub-pixel evaluations)."""
    pixels: int
    oversample: int
    sources: int
    mosaic_domains: int
    phi_steps: int
    thick_steps: int
    shape_slow_fast: tuple
    frames: int = 1

    @property
    def evals_per_pixel(self) -> int:
        return (self.oversample ** 2 * self.sources * self.mosaic_domains * self.phi_steps
                * self.thick_steps)

    @property
    def evaluations(self) -> int:
        return self.pixels * self.evals_per_pixel * self.frames


@dataclass
class Runner:
    """A program under test: ``key`` names its column ("py-float64", "c")."""
    key: str
    label: str
    prefix: list          # argv before the nanoBragg flags
    suffix: list          # argv after them (our tool options)
    env: dict
    processes: int = 0    # > 0: series only, that many processes of 1 thread (--rank/--world-size)


@dataclass
class RunResult:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    error: str | None = None
    loadavg_1m: float | None = None     # machine load just before the run (noise indicator)


@dataclass
class RunnerResult:
    command: list
    runs: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.error is None for r in self.runs)

    @property
    def median_s(self) -> float | None:
        return statistics.median(r.wall_s for r in self.runs) if self.ok else None

    @property
    def peak_rss_mb(self) -> float | None:
        return max(r.peak_rss_mb for r in self.runs) if self.ok else None


# -----------------------------------------------------------------------------------------------
# the benchmark set


def _golden_dir() -> Path:
    from .golden import default_golden_dir
    return default_golden_dir()


def supervisor_args(golden: Path) -> tuple:
    """The supervisor command's flags, as the golden corpus ran them."""
    meta = golden / "cases" / "supervisor" / "meta.json"
    try:
        return tuple(json.loads(meta.read_text())["args"])
    except (OSError, ValueError, KeyError) as err:
        raise NanoBraggError(f"B4 needs the golden corpus' supervisor case: cannot read {meta} "
                             f"({err}); set NB_GOLDEN_DIR or leave B4 out (--set B1,B2,B3)")


def standard_set(golden: Path) -> dict:
    """B1..B4 by id. B4 is read from the corpus only when asked for (see :func:`select`)."""
    return {
        "B1": Benchmark("B1", "1024² cubic cell, auto oversample", tuple(_B1.split())),
        "B2": Benchmark("B2", "B1 + 10 mosaic domains × 5 φ steps",
                        tuple(f"{_B1} {_MOSAIC_PHI}".split())),
        "B3": Benchmark("B3", "2463×2527, N=10, oversample 1", tuple(_B3.split())),
        "B4": None,
        "S1": Benchmark("S1", "series: 100 frames of B1, -osc 0.1 -phisteps 2",
                        tuple(f"{_B1} {_SERIES_S1}".split()), frames=100),
        "S2": None,
    }


# the benchmarks a bare `nanobragg bench` runs (the series ones are asked for by name)
DEFAULT_SET = ("B1", "B2", "B3", "B4")


def tiny_set() -> dict:
    """Seconds-long stand-ins for the machinery's tests."""
    return {
        "T1": Benchmark("T1", "64² cubic cell, auto oversample", tuple(_TINY.split())),
        "T2": Benchmark("T2", "T1 + 2 mosaic domains × 2 φ steps",
                        tuple(f"{_TINY} -mosaic 0.5 -mosaic_domains 2 -phisteps 2 -osc 0.5"
                              .split())),
        "T3": Benchmark("T3", "series: 3 frames of T1, -osc 0.1 -phisteps 2",
                        tuple(f"{_TINY} {_SERIES_S1}".split()), frames=3),
    }


def select(ids: str | None, tiny: bool, golden: Path) -> list:
    """The benchmarks named in ``ids`` ("B1,B3"), or the whole set."""
    table = tiny_set() if tiny else standard_set(golden)
    default = [x for x in table if x in DEFAULT_SET] if not tiny else list(table)
    wanted = default if not ids else [x.strip().upper() for x in ids.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in table]
    if unknown or not wanted:
        raise FlagError(f"--set: unknown benchmark {', '.join(unknown) or '(none)'} "
                        f"(choose from {', '.join(table)})")
    out = []
    for bid in dict.fromkeys(wanted):
        if bid == "B4" and not ids and not (golden / "cases" / "supervisor").is_dir():
            click.echo(f"nanobragg bench: note: B4 left out: no golden corpus at {golden} "
                       "(set NB_GOLDEN_DIR)", err=True)
            continue
        if bid == "B4":
            out.append(Benchmark("B4", "supervisor command (golden case), 2463×2527, 10 φ",
                                 supervisor_args(golden)))
        elif bid == "S2":
            out.append(Benchmark("S2", "series: 10 frames of the supervisor command, "
                                 "-osc 0.1 -phisteps 10",
                                 supervisor_args(golden) + tuple(_SERIES_S2.split()), frames=10))
        else:
            out.append(table[bid])
    return out


def make_workdir(root: Path, bench: Benchmark, golden: Path) -> Path:
    """A fresh folder for ``bench`` with ``inputs`` -> the corpus inputs (relative -hkl etc.)."""
    work = root / bench.id
    work.mkdir(parents=True, exist_ok=True)
    inputs = golden / "inputs"
    if inputs.is_dir():
        (work / "inputs").symlink_to(inputs.resolve(), target_is_directory=True)
    return work


def resolve_work(args: tuple, workdir: Path, frames: int = 0) -> Work:
    """Resolve ``args`` with our own config code (CPU, float64) and count the work."""
    from .chunks import rendered_pixels
    from .scene import build_scene
    from .simulate import prepare
    with contextlib.chdir(workdir):
        cfg = prepare(list(args) + list(OUTPUT_FLAGS))
        scene = build_scene(cfg, messages=[])
        pixels = int(rendered_pixels(scene).numel())
    return Work(pixels=pixels, oversample=scene.oversample, sources=scene.n_src,
                mosaic_domains=scene.n_mos, phi_steps=scene.n_phi, thick_steps=scene.thicksteps,
                shape_slow_fast=(scene.spixels, scene.fpixels), frames=max(1, frames))


def series_frames(args: tuple, frames: int, workdir: Path) -> list:
    """The frames of a series benchmark (our own plan: each frame's single-image flags)."""
    from .series import SeriesOptions, plan_series, series_templates
    from .simulate import prepare, split_tool_options
    nb, tool = split_tool_options(list(args) + list(SERIES_OUTPUT_FLAGS))
    with contextlib.chdir(workdir):
        cfg = prepare(nb)
    return plan_series(nb, cfg, SeriesOptions(frames=frames), series_templates(nb, tool))
