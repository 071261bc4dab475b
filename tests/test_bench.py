"""The benchmark harness (``nanobragg bench``) on seconds-long stand-ins: no real benchmark runs
here. nanoBragg.c is played by small fake programs that write the files it would write."""

import json
import os
from pathlib import Path
import sys
import time

import pytest

from conftest import GOLDEN, needs_golden
from nanobragg_cli import bench, bench_report
from nanobragg_cli.bench_profile import parse_importtime, phase_times
from nanobragg_cli.cli import main

BALLAST_MB = 64


def fake_c(tmp_path: Path, name="fake_nanoBragg", *, sleep=0.25, exit_code=0,
           write=True, ballast_mb=BALLAST_MB) -> str:
    """A stand-in for nanoBragg.c: checks OMP_NUM_THREADS came through, holds ``ballast_mb`` of
    touched memory, sleeps, and writes -floatfile (1.0 everywhere) and -intfile."""
    script = tmp_path / name
    script.write_text(f"""#!{sys.executable}
import array, os, sys, time
args = sys.argv[1:]
if os.environ.get("OMP_NUM_THREADS") != os.environ.get("EXPECT_THREADS", "1"):
    sys.exit(3)
ballast = bytearray({ballast_mb} * 2 ** 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
time.sleep({sleep})
if {write!r}:
    n = int(args[args.index("-detpixels") + 1])
    with open(args[args.index("-floatfile") + 1], "wb") as fh:
        fh.write(array.array("f", [1.0] * (n * n)).tobytes())
    with open(args[args.index("-intfile") + 1], "wb") as fh:
        fh.write(bytes(512 + 2 * n * n))
print("writing fake images")
sys.exit({exit_code})
""")
    script.chmod(0o755)
    return str(script)


def test_tiny_set_side_by_side_with_c(tmp_path, monkeypatch, capsys):
    """`nanobragg bench` with NB_C_BIN: our real CLI and the fake C both run, the JSON holds
    both columns with per-run times and peak RSS of each program itself, and the ratio."""
    monkeypatch.setenv("NB_C_BIN", fake_c(tmp_path))
    out_json = tmp_path / "bench.json"
    rc = main(["bench", "--tiny", "--set", "T1", "--repeats", "1", "--threads", "1",
               "--json", str(out_json), "--markdown"])
    assert rc == 0
    md = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["schema"] == "nanobragg-bench/1"
    assert report["settings"]["threads"] == 1 and report["settings"]["repeats"] == 1
    for key in ("cpu", "cpus_usable", "torch", "python", "c_bin"):
        assert key in report["machine"]
    (b,) = report["benchmarks"]
    assert b["id"] == "T1" and b["outputs"] == list(bench.OUTPUT_FLAGS)
    # nanoBragg.c auto-selects ceil(3 * 500 A / (1 A * 100 mm / 0.1 mm)) = 2-fold oversampling
    assert b["work"]["oversample"] == 2
    assert b["work"]["evaluations"] == 64 * 64 * 4
    assert set(b["runs"]) == {"py-float64", "c"}
    py, c = b["runs"]["py-float64"], b["runs"]["c"]
    assert py["ok"] and c["ok"], (py["errors"], c["errors"])
    assert py["command"][1:3] == ["-m", "nanobragg_cli"] and "--threads" in py["command"]
    assert c["command"][0] == os.environ["NB_C_BIN"]
    assert len(py["wall_s"]) == len(c["wall_s"]) == 1
    assert c["median_s"] >= 0.25                       # the fake sleeps that long
    # the child's own peak: its ballast, not the harness' (torch-sized) memory at fork time
    assert BALLAST_MB <= c["max_peak_rss_mb"] < BALLAST_MB + 60
    assert py["max_peak_rss_mb"] > 20                  # a Python process with torch loaded
    assert b["ratios"]["py-float64/c"] == pytest.approx(py["median_s"] / c["median_s"])
    assert b["ratio_basis"] == "c (this run)" and b["c_recorded"] is None
    assert c["evals_per_s"] == pytest.approx(64 * 64 * 4 / c["median_s"], rel=1e-3)
    assert isinstance(b["max_rel_diff_vs_c"]["py-float64"], float)
    rows = [ln for ln in md.splitlines() if ln.startswith("| T1 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["ours float64", "nanoBragg.c"]
    assert "†" not in md


def test_recorded_c_figures_are_labelled_when_no_binary():
    """Without a C binary, B1 at 2 threads shows benchmarks.md's figure, marked not this run."""
    work = bench.Work(pixels=1024 * 1024, oversample=2, sources=1, mosaic_domains=1,
                      phi_steps=1, thick_steps=1, shape_slow_fast=(1024, 1024))
    res = bench.RunnerResult(command=["x"], runs=[bench.RunResult(1.26, 400.0, 0)])
    b1 = bench.Benchmark("B1", "t", ("-N", "5"))
    settings = {"threads": 2, "repeats": 1, "device": "cpu", "extra": [], "rss_method": "m"}
    report = bench_report.build_report(settings, {}, [(b1, work, {"results": {"py-float64": res}})])
    (b,) = report["benchmarks"]
    assert b["c_recorded"]["wall_s"] == 0.63 and b["ratio_basis"] == "c_recorded"
    assert b["ratios"]["py-float64/c"] == pytest.approx(2.0)
    md = bench_report.to_markdown(report)
    assert "| B1 | nanoBragg.c † | 0.63 |" in md
    assert "recorded elsewhere" in md and "not this run" in md
    settings["threads"] = 3                            # nothing recorded at 3 threads
    report = bench_report.build_report(settings, {}, [(b1, work, {"results": {"py-float64": res}})])
    assert report["benchmarks"][0]["c_recorded"] is None
    assert report["benchmarks"][0]["ratios"]["py-float64/c"] is None


def _runner(script, threads=1):
    return bench.c_runner(script, threads)


TINY = bench.tiny_set()["T1"]
TINY_WORK = bench.Work(pixels=4096, oversample=2, sources=1, mosaic_domains=1, phi_steps=1,
                       thick_steps=1, shape_slow_fast=(64, 64))


def test_failed_and_silent_runs_are_reported_not_timed(tmp_path):
    """A run that exits non-zero, or exits 0 without its images, is an error, not a time."""
    bad = fake_c(tmp_path, "bad", sleep=0, exit_code=7)
    silent = fake_c(tmp_path, "silent", sleep=0, write=False)
    for script, expect in ((bad, "exit 7"), (silent, "exit 0 but no f.bin")):
        work = tmp_path / (Path(script).name + "_work")
        work.mkdir(parents=True)
        out = bench.run_benchmark(TINY, TINY_WORK, work, [_runner(script)], repeats=3)
        res = out["results"]["c"]
        assert not res.ok and res.median_s is None
        assert len(res.runs) == 1 and res.runs[0].error.startswith(expect)


def test_timeout_kills_the_program_and_its_children(tmp_path):
    slow = fake_c(tmp_path, "slow", sleep=30)
    t0 = time.perf_counter()
    run = bench.run_once([slow, *TINY.args, *bench.OUTPUT_FLAGS], tmp_path,
                         dict(os.environ, OMP_NUM_THREADS="1"), 4 * 64 * 64, timeout=1.0)
    assert time.perf_counter() - t0 < 10
    assert run.error == "timed out after 1 s"


def test_python_launcher_measures_the_programs_own_peak(tmp_path):
    """The fallback launcher (no GNU time) also reports the program's RSS, not the harness'."""
    script = fake_c(tmp_path, sleep=0)
    launcher = [sys.executable, "-I", "-S", "-c", bench._PY_LAUNCHER]
    run = bench.run_once([script, *TINY.args, *bench.OUTPUT_FLAGS], tmp_path,
                         dict(os.environ, OMP_NUM_THREADS="1"), 4 * 64 * 64, launcher=launcher)
    assert run.error is None
    assert BALLAST_MB <= run.peak_rss_mb < BALLAST_MB + 60


def test_work_follows_nanobragg_rules(tmp_path):
    """Sub-pixel evaluations from our config resolution, as nanoBragg.c counts them: B1 auto
    oversample 2, B2 × 10 mosaic domains × 5 φ steps, B3 oversample 1 on 2463×2527."""
    sets = bench.standard_set(GOLDEN)
    w1 = bench.resolve_work(sets["B1"].args, tmp_path)
    w2 = bench.resolve_work(sets["B2"].args, tmp_path)
    w3 = bench.resolve_work(sets["B3"].args, tmp_path)
    assert w1.evaluations == 1024 * 1024 * 4
    assert (w2.mosaic_domains, w2.phi_steps, w2.evaluations) == (10, 5, 1024 * 1024 * 4 * 50)
    assert (w3.oversample, w3.shape_slow_fast, w3.evaluations) == (1, (2527, 2463), 2463 * 2527)


@needs_golden
def test_supervisor_benchmark_reads_the_corpus(tmp_path):
    (b4,) = bench.select("B4", False, GOLDEN)
    meta = json.loads((GOLDEN / "cases" / "supervisor" / "meta.json").read_text())
    assert list(b4.args) == meta["args"]
    work = bench.resolve_work(b4.args, bench.make_workdir(tmp_path, b4, GOLDEN))
    assert work.shape_slow_fast == tuple(meta["shape_slow_fast"])
    assert work.evaluations == 2463 * 2527 * 10


def test_our_runs_are_cold_unless_the_server_is_asked_for(monkeypatch):
    monkeypatch.setenv("NANOBRAGG_SERVER", "1")
    cold = bench.ours_runner("float32", "cpu", 3, ["--c-parity"])
    assert "NANOBRAGG_SERVER" not in cold.env and cold.env["OMP_NUM_THREADS"] == "3"
    assert cold.suffix == ["--threads", "3", "--dtype", "float32", "--device", "cpu", "--c-parity"]
    warm = bench.ours_runner("float64", "cpu", 1, [], {"NANOBRAGG_SERVER": "1"})
    assert warm.env["NANOBRAGG_SERVER"] == "1" and "warm server" in warm.label


def test_default_set_leaves_b4_out_without_a_corpus(tmp_path, monkeypatch, capsys):
    assert [b.id for b in bench.select(None, False, tmp_path)] == ["B1", "B2", "B3"]
    assert "B4 left out" in capsys.readouterr().err
    monkeypatch.setenv("NB_GOLDEN_DIR", str(tmp_path))      # asked for by name: an error
    assert main(["bench", "--set", "B4"]) == 9
    assert "B4 needs the golden corpus" in capsys.readouterr().err


def test_unknown_benchmark_is_a_one_line_error(capsys):
    assert main(["bench", "--set", "B1,B9"]) == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nanobragg: error: --set: unknown benchmark B9 (choose from B1, B2, B3, B4, S1, S2)"]


def test_importtime_parsing_and_phase_lookup():
    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:       120 |        120 |   _io\n"
            "import time:      2000 |       5000 |   torch._C\n"
            "import time:      3000 |       8000 | torch\n")
    assert parse_importtime(text) == [("_io", 120, 120, 1), ("torch._C", 2000, 5000, 1),
                                      ("torch", 3000, 8000, 0)]

    class FakeStats:
        stats = {("/x/nanobragg_cli/render.py", 1, "render"): (1, 1, 0.1, 4.0, {}),
                 ("/x/nanobragg_cli/kernel.py", 9, "render_chunk"): (3, 3, 3.0, 3.5, {}),
                 ("/x/other/render.py", 1, "render"): (1, 1, 0.1, 99.0, {})}
    phases = {p: (s, n) for p, s, n in phase_times(FakeStats())}
    assert phases["render (render.render)"] == (4.0, 1)
    assert phases["  kernel.render_chunk, all threads"] == (3.5, 3)
    assert phases["setup (build_scene)"] == (None, 0)


def test_series_benchmark_beside_a_c_loop(tmp_path, monkeypatch):
    """A series benchmark: ours in one --frames process, C as a shell loop of one process per
    frame (each with its own -phi and file names); every frame's files are checked, and the
    report gives the per-frame figures (ours' set-up from its own summary line)."""
    monkeypatch.setenv("NB_C_BIN", fake_c(tmp_path, sleep=0.0, ballast_mb=1))
    out_json = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--set", "T3", "--repeats", "1", "--threads", "1",
                 "--json", str(out_json), "--markdown"]) == 0
    (b,) = json.loads(out_json.read_text())["benchmarks"]
    assert b["work"]["frames"] == 3
    assert b["runs"]["c"]["ok"] and b["runs"]["py-float64"]["ok"]
    assert b["runs"]["c"]["command"][0] == "sh"
    assert b["series"]["frames"] == 3 and b["series"]["c_per_frame_s"] > 0
    note = b["series"]["ours"]["py-float64"]
    assert note["frames"] == 3 and note["per_frame_s"] > 0 and note["setup_s"] > 0
    assert bench.select("S1", False, tmp_path)[0].frames == 100


def test_series_benchmark_with_processes_beside_threads(tmp_path):
    """With --threads 2 a series is timed as 2 processes x 1 thread (--rank/--world-size)
    beside 1 process x 2 threads, in the same run; both write every frame."""
    out_json = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--set", "T3", "--repeats", "1", "--threads", "2",
                 "--json", str(out_json), "--markdown"]) == 0
    (b,) = json.loads(out_json.read_text())["benchmarks"]
    assert b["runs"]["py-float64"]["ok"] and b["runs"]["py-float64-2proc"]["ok"]
    rows = bench_report.table_rows(json.loads(out_json.read_text()))
    labels = [r[1] for r in rows]
    assert "ours float64, 2 processes × 1 thread" in labels
    assert "ours float64, 1 process × 2 threads" in labels
