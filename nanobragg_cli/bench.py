"""``nanobragg bench``: time the real command line end to end, beside nanoBragg.c.

Every run is a fresh process (``python -m nanobragg_cli <flags>``, or the C binary named by
``NB_C_BIN``) started in a temporary folder that holds an ``inputs`` link to the golden corpus'
inputs; a run's wall time is process start to exit (its image files written), its peak RSS is
that one child's ``ru_maxrss`` from ``os.wait4``. The work of a benchmark (sub-pixel evaluations)
comes from our own config resolution, so throughput follows the flags, not a hard-coded table.

Without ``NB_C_BIN`` the C figures shown are those recorded in ../shared/docs/benchmarks.md,
labelled as such: they were not measured in this run. The benchmark set and its data model
live in :mod:`nanobragg_cli.bench_model`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
import shlex
import subprocess
import sys
import tempfile
import time

import click

from .bench_model import (  # noqa: F401  (the data model, importable from here too)
    FLOAT_OUT, INT_OUT, OUTPUT_FLAGS, RECORDED_C, RECORDED_C_SOURCE, SCHEMA, SERIES_OUTPUT_FLAGS,
    Benchmark, Runner, RunResult, RunnerResult, Work, _golden_dir, make_workdir, resolve_work,
    select, series_frames, standard_set, supervisor_args, tiny_set)
from .errors import FlagError, NanoBraggError


# -----------------------------------------------------------------------------------------------
# series: ours in one process, nanoBragg.c as a loop


def series_commands(bench: Benchmark, runner: "Runner", workdir: Path) -> tuple:
    """(command, [(output name, expected size or None)]) of ``runner`` on series ``bench``:
    ours in one process (--frames), C as a shell loop with one process per frame."""
    frames = series_frames(bench.args, bench.frames, workdir)
    expect = []
    for f in frames:
        out = dict(f.outputs)
        expect += [(out["-floatfile"], "float"), (out["-intfile"], None)]
    if runner.key != "c":
        cmd = [*runner.prefix, *bench.args, *SERIES_OUTPUT_FLAGS, "--frames", str(bench.frames),
               *runner.suffix]
        if runner.processes:
            cmd = [sys.executable, "-I", "-S", "-c", _RANKS_LAUNCHER, str(runner.processes), *cmd]
        return cmd, expect
    script = workdir / "c_loop.sh"
    lines = ["set -e"] + [shlex.join([*runner.prefix, *f.argv]) + " > /dev/null"
                          for f in frames]
    script.write_text("\n".join(lines) + "\n")
    return ["sh", str(script.name)], expect


# -----------------------------------------------------------------------------------------------
# running


SERVER_ENV = "NANOBRAGG_SERVER"

# W processes of one series, rank r given --rank r --world-size W, waited for together (the
# timed command of a multi-process runner; exit: the first non-zero exit of a rank)
_RANKS_LAUNCHER = """import subprocess, sys
w, cmd = int(sys.argv[1]), sys.argv[2:]
procs = [subprocess.Popen(cmd + ["--rank", str(r), "--world-size", str(w)]) for r in range(w)]
codes = [p.wait() for p in procs]
sys.exit(next((c for c in codes if c), 0))
"""


def ours_runner(dtype: str, device: str, threads: int, extra: list,
                server_env: dict | None = None) -> Runner:
    """Our CLI as a fresh process: cold (any NANOBRAGG_SERVER of the caller removed) unless
    ``server_env`` holds the warm-start server's variables."""
    env = {k: v for k, v in os.environ.items() if k != SERVER_ENV}
    env.update(server_env or {}, OMP_NUM_THREADS=str(threads))
    label = f"ours {dtype}" + ("" if device == "cpu" else f" {device}")
    return Runner(key=f"py-{dtype}", label=label + (" (warm server)" if server_env else ""),
                  prefix=[sys.executable, "-m", "nanobragg_cli"],
                  suffix=["--threads", str(threads), "--dtype", dtype, "--device", device, *extra],
                  env=env)


@contextlib.contextmanager
def warm_server(folder: Path, threads: int, log=None):
    """The warm-start server (NANOBRAGG_SERVER=1) in a private runtime folder: started by an
    untimed tiny run, waited for, yielded as the runners' extra environment, stopped at the end."""
    runtime = folder / "run"
    runtime.mkdir(mode=0o700)
    env = {SERVER_ENV: "1", "XDG_RUNTIME_DIR": str(runtime), "NANOBRAGG_SERVER_IDLE": "900"}
    probe = ours_runner("float64", "cpu", threads, [], env)
    tiny = tiny_set()["T1"]
    warm = folder / "warmup"
    warm.mkdir()
    cmd = [*probe.prefix, *tiny.args, *OUTPUT_FLAGS, *probe.suffix]
    first = run_once(cmd, warm, probe.env, 4 * 64 * 64)
    if first.error:
        raise NanoBraggError(f"--server: the warm-up run failed ({first.error})")
    deadline = time.monotonic() + 120
    while not any(runtime.glob("nanobragg-*/server-*.sock")):
        if time.monotonic() > deadline:
            raise NanoBraggError("--server: no warm-start server came up within 120 s")
        time.sleep(0.2)
    second = run_once(cmd, warm, probe.env, 4 * 64 * 64)
    if log:
        log(f"warm server up: tiny run {first.wall_s:.2f} s cold, {second.wall_s:.2f} s warm")
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-c", "from nanobragg_cli import server; server.stop()"],
                       env=probe.env, capture_output=True, timeout=60)


def processes_runner(dtype: str, device: str, processes: int, extra: list) -> Runner:
    """Our CLI as ``processes`` processes of one thread each sharing a series' frames
    (``--rank r --world-size W``, frames r, r+W, ...): beside one process of W threads."""
    one = ours_runner(dtype, device, 1, extra)
    return Runner(key=f"py-{dtype}-{processes}proc",
                  label=f"ours {dtype}, {processes} processes x 1 thread",
                  prefix=one.prefix, suffix=one.suffix, env=one.env, processes=processes)


def c_runner(c_bin: str, threads: int) -> Runner:
    path = Path(c_bin).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise FlagError(f"NB_C_BIN={c_bin}: not an executable file")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return Runner(key="c", label="nanoBragg.c", prefix=[str(path.resolve())], suffix=[], env=env)


# A child's ru_maxrss counts the memory of the process it was forked from (Linux keeps the
# pre-exec high-water mark), so the harness, with torch loaded, would inflate every figure. The
# program is therefore started by a small launcher that forks it and reports its wait4 usage:
# GNU time when present (floor ~1 MB), else this Python snippet run with -I -S (floor ~8 MB).
_PY_LAUNCHER = """import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write("%d\\n" % usage.ru_maxrss)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def rss_launcher() -> tuple:
    """(argv prefix taking the report file next, method name) of the launcher in use."""
    gnu_time = "/usr/bin/time"
    if os.access(gnu_time, os.X_OK):
        probe = subprocess.run([gnu_time, "-f", "%M", "-o", os.devnull, "true"],
                               capture_output=True)
        if probe.returncode == 0:
            return [gnu_time, "-f", "%M", "-o"], "GNU time %M"
    return [sys.executable, "-I", "-S", "-c", _PY_LAUNCHER], "python wait4 launcher (floor ~8 MB)"


def _read_rss_kb(path: Path) -> float | None:
    try:
        lines = path.read_text().split()
        return float(lines[-1])
    except (OSError, ValueError, IndexError):
        return None


def run_once(cmd: list, cwd: Path, env: dict, expect_float_bytes: int,
             timeout: float | None = None, launcher: list | None = None,
             expect: list | None = None) -> RunResult:
    """Run ``cmd`` in ``cwd``: wall time from start to exit, and the program's own peak RSS.

    ``expect``: [(file name, "float" or None)] the run must write (default: f.bin and i.img);
    "float" files must hold ``expect_float_bytes``. They are removed first, so a run that writes
    nothing cannot pass."""
    launcher = launcher or rss_launcher()[0]
    expect = expect or [(FLOAT_OUT, "float"), (INT_OUT, None)]
    for name, _ in expect:
        with contextlib.suppress(FileNotFoundError):
            (cwd / name).unlink()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rss_file = cwd / ".rss_kb"
    with contextlib.suppress(FileNotFoundError):
        rss_file.unlink()
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*launcher, str(rss_file), *cmd], cwd=cwd, env=env, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)          # the launcher and the program it started
            rc = proc.wait()
            timed_out = True
        wall = time.perf_counter() - t0
    rss_kb = _read_rss_kb(rss_file)
    error = None
    if timed_out:
        error = f"timed out after {timeout:g} s"
    elif rc != 0:
        tail = (cwd / "stderr.txt").read_text(errors="replace").strip().splitlines()
        tail = [ln for ln in tail if not ln.startswith("Command exited with")]
        error = f"exit {rc}" + (f": {tail[-1][:200]}" if tail else "")
    elif rss_kb is None:
        error = "the launcher reported no peak RSS"
    else:
        for name, kind in expect:
            path = cwd / name
            size = path.stat().st_size if path.exists() else None
            if size is None:
                error = f"exit 0 but no {name}"
                break
            if kind == "float" and size != expect_float_bytes:
                error = f"exit 0 but {name} has {size} bytes (expected {expect_float_bytes})"
                break
    return RunResult(wall_s=wall, peak_rss_mb=(rss_kb or 0.0) / 1024.0, returncode=rc,
                     error=error, loadavg_1m=load)


def _read_float(path: Path, shape: tuple):
    import numpy as np
    try:
        return np.fromfile(path, dtype="<f4").reshape(shape)
    except (OSError, ValueError):
        return None


def max_rel_diff(ours, ref) -> float | None:
    """max |ours - ref| / max |ref| over the image, None when undefined."""
    import numpy as np
    if ours is None or ref is None or ours.shape != ref.shape:
        return None
    scale = float(np.max(np.abs(ref)))
    if not np.isfinite(scale) or scale == 0.0:
        return None
    d = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))) / scale
    return d if np.isfinite(d) else None


def run_benchmark(bench: Benchmark, work: Work, workdir: Path, runners: list, repeats: int,
                  timeout: float | None = None, log=None, launcher: list | None = None) -> dict:
    """Time every runner ``repeats`` times on ``bench``, interleaved (ours, C, ours, C, ...) so
    that a noisy neighbour hurts both alike. Returns {runner key: RunnerResult} plus, when a "c"
    runner ran, each other runner's max relative image difference from C."""
    expect = 4 * work.shape_slow_fast[0] * work.shape_slow_fast[1]
    commands, files, last_float = {}, {}, {}
    runners = [r for r in runners if bench.frames or not r.processes]
    for r in runners:
        if bench.frames:
            commands[r.key], files[r.key] = series_commands(bench, r, workdir)
            last_float[r.key] = [n for n, kind in files[r.key] if kind == "float"][-1]
        else:
            commands[r.key] = [*r.prefix, *bench.args, *OUTPUT_FLAGS, *r.suffix]
            files[r.key], last_float[r.key] = None, FLOAT_OUT
    results = {r.key: RunnerResult(command=commands[r.key]) for r in runners}
    images, series = {}, {}
    for i in range(repeats):
        for r in runners:
            res = results[r.key]
            if res.runs and res.runs[-1].error:
                continue
            run = run_once(res.command, workdir, r.env, expect, timeout, launcher,
                           files[r.key])
            if bench.frames and r.key != "c" and run.error is None:
                series[r.key] = series_note(workdir / "stdout.txt", bench.frames)
            res.runs.append(run)
            if log:
                log(f"{bench.id} {r.label} run {i + 1}/{repeats}: "
                    + (f"{run.wall_s:.2f} s, {run.peak_rss_mb:.0f} MB" if run.error is None
                       else f"FAILED ({run.error})"))
            if i == repeats - 1 and run.error is None:
                images[r.key] = _read_float(workdir / last_float[r.key], work.shape_slow_fast)
    diffs = {}
    if "c" in images:
        diffs = {k: max_rel_diff(img, images["c"]) for k, img in images.items() if k != "c"}
    out = {"results": results, "diff_vs_c": diffs}
    if bench.frames:
        out["series"] = series
    return out


def series_note(stdout: Path, frames: int) -> dict | None:
    """Our series run's own account: {"frames", "setup_s", "per_frame_s"} from its summary line
    (``series: N frames rendered in T s (set-up S s, F s per frame)``)."""
    import re
    try:
        text = stdout.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"series: (\d+) frames rendered in ([\d.]+) s \(set-up ([\d.]+) s, "
                  r"([\d.e+-]+) s per frame\)", text)
    if not m:
        return None
    return {"frames": int(m.group(1)), "in_process_s": float(m.group(2)),
            "setup_s": float(m.group(3)), "per_frame_s": float(m.group(4))}


def _default_threads() -> int:
    import torch
    return torch.get_num_threads()


def run_suite(benchmarks: list, *, threads: int, repeats: int, dtypes: list, device: str,
              extra: list, c_bin: str | None, golden: Path, timeout: float | None = None,
              log=None, server: bool = False) -> dict:
    """Resolve, run and report ``benchmarks`` (the machinery behind the command)."""
    from .bench_report import build_report, machine_info
    c = c_runner(c_bin, threads) if c_bin else None
    launcher, rss_method = rss_launcher()
    settings = {"threads": threads, "repeats": repeats, "dtypes": dtypes, "device": device,
                "extra": extra, "c_bin": c_bin, "timeout_s": timeout, "server": server,
                "golden_dir": str(golden), "rss_method": rss_method}
    machine = machine_info(device, c_bin)
    entries = []
    with tempfile.TemporaryDirectory(prefix="nanobragg-bench-") as tmp, \
            (warm_server(Path(tmp), threads, log) if server
             else contextlib.nullcontext()) as server_env:
        runners = [ours_runner(dt, device, threads, extra, server_env) for dt in dtypes]
        if threads > 1 and any(b.frames for b in benchmarks):   # series: W processes too
            runners.append(processes_runner(dtypes[0], device, threads, extra))
        runners += [c] if c else []
        for bench in benchmarks:
            workdir = make_workdir(Path(tmp), bench, golden)
            work = resolve_work(bench.args, workdir, bench.frames)
            if log:
                log(f"{bench.id}: {work.evaluations / 1e6:.3g} M sub-pixel evaluations")
            outcome = run_benchmark(bench, work, workdir, runners, repeats, timeout, log, launcher)
            entries.append((bench, work, outcome))
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return build_report(settings, machine, entries)


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--set", "ids", default=None, metavar="IDS",
              help="Comma-separated benchmark ids (default: B1,B2,B3,B4).")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True,
              help="Runs per program and benchmark; the median is reported.")
@click.option("--dtype", "dtypes", type=click.Choice(["float64", "float32"]), multiple=True,
              help="Our dtypes to time (repeatable); float64 (the default mode) is always timed, "
                   "--dtype float32 adds a float32 row.")
@click.option("--device", default="cpu", show_default=True,
              help="Our --device (cpu, cuda, cuda:N); nanoBragg.c always runs on the CPU.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for both programs (ours: --threads, C: OMP_NUM_THREADS). "
                   "Default: torch's thread count.")
@click.option("--extra", default="", metavar="OPTS",
              help='Extra tool options for our command, e.g. --extra "--max-memory 1G".')
@click.option("--c-bin", envvar="NB_C_BIN", default=None, metavar="PATH",
              help="nanoBragg.c binary to time side by side (default: $NB_C_BIN).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the full results as JSON to this file.")
@click.option("--markdown", is_flag=True, default=False,
              help="Print the table as Markdown (for docs/performance.md) instead of a rich table.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Kill a run after this many seconds and report it as failed.")
@click.option("--server", is_flag=True, default=False,
              help="Run ours through the warm-start server (NANOBRAGG_SERVER=1), started before "
                   "timing; without it every run is a cold process.")
@click.option("--profile", "profile_id", default=None, metavar="ID",
              help="Instead of timing, run benchmark ID once in this process under cProfile and "
                   "print where the time goes (import, config, setup, kernel, outputs).")
@click.option("--torch-profiler", is_flag=True, default=False,
              help="With --profile: also print torch.profiler's operator table.")
@click.option("--tiny", is_flag=True, default=False, hidden=True,
              help="Use the seconds-long T1/T2 set (tests of the harness itself).")
def bench_command(ids, repeats, dtypes, device, threads, extra, c_bin, json_path, markdown,
                  timeout, server, profile_id, torch_profiler, tiny):
    """Time nanobragg end to end (fresh process per run) on a fixed benchmark set, beside
    nanoBragg.c when NB_C_BIN names its binary.

    \b
    B1  -cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100
        -detpixels 1024 -pixel 0.1                        (C auto-selects oversample 2)
    B2  B1 + -mosaic 0.5 -mosaic_domains 10 -phisteps 5 -osc 0.5
    B3  2463x2527 detector, -N 10, -oversample 1
    B4  the supervisor command of the golden corpus (needs it: NB_GOLDEN_DIR)
    All with -floatfile f.bin -intfile i.img -nopgm -nonoise -noprogress.
    Series (only when named, e.g. --set S1,S2): ours = one --frames process, C = a shell loop
    with one process per frame (each frame's own -phi), same frames and threads:
    S1  100 frames of B1 with -osc 0.1 -phisteps 2
    S2  10 frames of the supervisor command with -osc 0.1 -phisteps 10
    With --threads N > 1 a series is also timed as N processes x 1 thread (--rank/--world-size,
    frames shared round-robin) beside the one process of N threads.
    """
    try:
        extra_args = shlex.split(extra)
    except ValueError as err:
        raise FlagError(f"--extra: cannot split {extra!r} ({err})") from None
    golden = _golden_dir()
    threads = threads or _default_threads()
    dtype_list = list(dict.fromkeys(["float64", *dtypes]))
    if profile_id:
        from .bench_profile import profile_benchmark
        bench = select(profile_id, tiny, golden)
        if len(bench) != 1:
            raise FlagError("--profile: name exactly one benchmark, e.g. --profile B1")
        profile_benchmark(bench[0], golden=golden, threads=threads, dtype=dtype_list[-1],
                          device=device, extra=extra_args, torch_profiler=torch_profiler)
        return
    benchmarks = select(ids, tiny, golden)
    report = run_suite(benchmarks, threads=threads, repeats=repeats, dtypes=dtype_list,
                       device=device, extra=extra_args, c_bin=c_bin, golden=golden,
                       timeout=timeout, log=_log, server=server)
    if json_path:
        from .io.atomic import atomic_write_bytes
        atomic_write_bytes(json_path, (json.dumps(report, indent=1, allow_nan=False)
                                       + "\n").encode(), fsync=False)
    if markdown:
        from .bench_report import to_markdown
        click.echo(to_markdown(report), nl=False)
    else:
        from .bench_report import print_table
        print_table(report)
