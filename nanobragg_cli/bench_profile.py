"""``nanobragg bench --profile ID``: where one benchmark's time goes, for whoever speeds it up.

Three views of the same command:

* import cost, from a fresh ``python -X importtime`` that imports what a simulation imports,
  attributed per top-level package (self times, so the packages add up to the total);
* phases of one in-process run of the real CLI path (``cli.simulate_main``) under cProfile,
  read off the cumulative times of the functions that do each job: config, setup (scene),
  render (and the kernel inside it), outputs (stats, bytes, atomic writes);
* optionally torch.profiler's operator table for a second in-process run.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
from pathlib import Path
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time

from .bench_model import OUTPUT_FLAGS, Benchmark, make_workdir

# modules a simulation run imports (cli.simulate_main and run_simulation import them lazily)
SIMULATION_MODULES = ("nanobragg_cli.cli", "nanobragg_cli.simulate", "nanobragg_cli.scene",
                      "nanobragg_cli.render", "nanobragg_cli.outputs", "nanobragg_cli.trace",
                      "nanobragg_cli.progress", "nanobragg_cli.io.atomic")

# (phase, file name, functions): the summed cumulative time of those functions is the phase's
# time (alternatives for code that moves; none of them calls another)
PHASES = (
    ("config (flags -> Config)", "simulate.py", ("prepare",)),
    ("setup (build_scene)", "scene.py", ("build_scene",)),
    ("render (render.render)", "render.py", ("render",)),
    ("  kernel.render_chunk, all threads", "kernel.py", ("render_chunk",)),
    ("outputs: image statistics", "outputs.py", ("image_stats",)),
    ("outputs: noise image", "rng.py", ("noise_image",)),
    ("outputs: file bytes", "simulate.py", ("output_files",)),
    ("outputs: atomic writes", "atomic.py", ("commit_outputs",)),
    ("whole run (cli.simulate_main)", "cli.py", ("simulate_main",)),
)

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def parse_importtime(text: str) -> list:
    """``-X importtime`` stderr -> [(module, self µs, cumulative µs, depth)]."""
    rows = []
    for line in text.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            rows.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2))
    return rows


def import_times(modules=SIMULATION_MODULES, env=None) -> dict:
    """Fresh-interpreter import cost of ``modules``: wall seconds of the whole import, seconds
    of self time per top-level package, and torch's cumulative time (all it pulls in)."""
    code = ("import time, importlib; t = time.perf_counter()\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(time.perf_counter() - t)")
    t_start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    interpreter_s = time.perf_counter() - t_start
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    rows = parse_importtime(proc.stderr)
    per_package = {}
    for name, self_us, _, _ in rows:
        top = name.split(".")[0]
        per_package[top] = per_package.get(top, 0) + self_us
    torch_cum = max((cum for name, _, cum, _ in rows if name == "torch"), default=0)
    return {
        "interpreter_start_s": interpreter_s,
        "import_wall_s": float(proc.stdout.strip().splitlines()[-1]),
        "self_s_by_package": {k: v / 1e6 for k, v in
                              sorted(per_package.items(), key=lambda kv: -kv[1])},
        "torch_cumulative_s": torch_cum / 1e6,
        "nanobragg_cli_self_s": per_package.get("nanobragg_cli", 0) / 1e6,
    }


def phase_times(stats: pstats.Stats) -> list:
    """[(phase, seconds or None, calls)] from a cProfile run of ``cli.simulate_main``."""
    found = {}
    for (filename, _, func), (_, ncalls, _, cumtime, _) in stats.stats.items():
        for phase, fname, fns in PHASES:
            if func in fns and Path(filename).name == fname and "nanobragg_cli" in filename:
                prev = found.get(phase)
                found[phase] = (cumtime + (prev[0] if prev else 0.0),
                                ncalls + (prev[1] if prev else 0))
    return [(phase, *found.get(phase, (None, 0))) for phase, _, _ in PHASES]


def _argv(bench: Benchmark, threads: int, dtype: str, device: str, extra: list) -> list:
    return [*bench.args, *OUTPUT_FLAGS, "--threads", str(threads), "--dtype", dtype,
            "--device", device, *extra]


def profile_benchmark(bench: Benchmark, *, golden: Path, threads: int, dtype: str, device: str,
                      extra: list, torch_profiler: bool = False, top: int = 25,
                      out=None) -> dict:
    """Print (to ``out``, default stdout) and return the three views for ``bench``."""
    out = out or sys.stdout
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    imports = import_times(env=env)
    print(f"== {bench.id}: {' '.join(bench.args)}", file=out)
    print(f"   threads {threads}, dtype {dtype}, device {device}"
          + (f", extra {' '.join(extra)}" if extra else ""), file=out)
    print("\n-- import (fresh interpreter, python -X importtime)", file=out)
    if "error" in imports:
        print(f"   failed: {imports['error']}", file=out)
    else:
        print(f"   interpreter start (python -c pass): {imports['interpreter_start_s']:.3f} s",
              file=out)
        print(f"   importing what a run imports:        {imports['import_wall_s']:.3f} s "
              f"(torch and all it pulls in: {imports['torch_cumulative_s']:.3f} s)", file=out)
        for pkg, s in list(imports["self_s_by_package"].items())[:8]:
            print(f"     {pkg:<24} {s:8.3f} s self", file=out)

    import importlib
    for m in SIMULATION_MODULES:
        importlib.import_module(m)
    from .cli import simulate_main

    argv = _argv(bench, threads, dtype, device, extra)
    result = {"imports": imports}
    with tempfile.TemporaryDirectory(prefix="nanobragg-profile-") as tmp:
        workdir = make_workdir(Path(tmp), bench, golden)
        with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
            with ThreadProfiles() as profs:
                t0 = time.perf_counter()
                rc = simulate_main(list(argv))
                wall = time.perf_counter() - t0
        stats = profs.stats()
        phases = phase_times(stats)
        print(f"\n-- one in-process run under cProfile (modules already imported): {wall:.2f} s, "
              f"exit {rc}; {profs.threads} Python thread(s) profiled (worker threads' times "
              "add up: a phase run on two threads counts twice)", file=out)
        for phase, secs, calls in phases:
            shown = "—" if secs is None else f"{secs:8.3f} s"
            print(f"   {phase:<34} {shown}" + (f"  ({calls} calls)" if calls > 1 else ""),
                  file=out)
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("tottime").print_stats(top)
        print(f"\n-- top {top} functions by own time", file=out)
        print(_trim_pstats(buf.getvalue()), file=out)
        result.update(wall_s=wall, phases=phases)
        if torch_profiler:
            result["torch_table"] = _torch_profile(argv, workdir, device, out)
    return result


class _Snapshot:
    """A running profiler's statistics so far, in the shape pstats.Stats loads."""
    def __init__(self, prof: cProfile.Profile):
        prof.snapshot_stats()
        self.stats = prof.stats

    def create_stats(self):
        pass


class ThreadProfiles:
    """cProfile of the calling thread and of every Python thread started meanwhile (the renderer
    runs chunks in a thread pool); ``stats()`` merges them."""

    def __init__(self):
        self._profiles = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_):
        prof = cProfile.Profile()
        with self._lock:
            self._profiles.append(prof)
        prof.enable()               # replaces this hook for the rest of the thread

    def __enter__(self):
        main = cProfile.Profile()
        self._profiles.append(main)
        threading.setprofile(self._start_in_thread)
        main.enable()
        self._main = main
        return self

    def __exit__(self, *exc):
        self._main.disable()
        threading.setprofile(None)
        return False

    @property
    def threads(self) -> int:
        return len(self._profiles)

    def stats(self) -> pstats.Stats:
        with self._lock:
            snaps = [_Snapshot(p) for p in self._profiles]
        stats = pstats.Stats(snaps[0])
        for snap in snaps[1:]:
            stats.add(snap)
        return stats


def _trim_pstats(text: str) -> str:
    """Drop pstats' preamble (file name, blank lines) and shorten site-packages paths."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    return "\n".join(re.sub(r"\S*/site-packages/", "", ln) for ln in lines[start:])


def _torch_profile(argv: list, workdir: Path, device: str, out) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from .cli import simulate_main
    acts = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        acts.append(ProfilerActivity.CUDA)
    with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
        with profile(activities=acts) as prof:
            simulate_main(list(argv))
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=25)
    print(f"\n-- torch.profiler operators (second in-process run, torch {torch.__version__})",
          file=out)
    print(table, file=out)
    return table
