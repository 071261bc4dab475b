"""``make gpu-check``: on a CUDA machine, the CUDA-marked tests and ``nanobragg bench --device
cuda`` (float64 and float32), summed up in one JSON record.

Run as ``python -m nanobragg_cli.gpu_check OUT_DIR [--repeats N]``. It writes, under OUT_DIR:
``cuda-tests.xml`` (pytest's JUnit report), ``bench-cuda.json`` (the bench record, schema
``nanobragg-bench/1``) and ``gpu-check.json`` (schema ``nanobragg-gpu-check/1``: the device, torch,
the tests' exit status and counts, the bench's median wall times and throughputs). Exit status 0
when the tests passed and every benchmark ran; 9 with one line on stderr when no CUDA device is
visible (nothing is run). Sized to finish within ~5 minutes on one GPU (2 runs per benchmark;
B1..B4 and the series benchmarks S1, S2).
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

SCHEMA = "nanobragg-gpu-check/1"
BENCH_SETS = "B1,B2,B3,B4,S1,S2"


def _test_counts(junit: Path) -> dict:
    """{tests, failures, errors, skipped} summed over the JUnit report's test suites."""
    counts = dict(tests=0, failures=0, errors=0, skipped=0)
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return counts
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return counts


def _bench_summary(path: Path) -> list:
    """[{id, program, median_s, evals_per_s}] of a bench JSON record (empty if unreadable)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [{"id": bench.get("id"), "program": key, "median_s": run.get("median_s"),
             "evals_per_s": run.get("evals_per_s")}
            for bench in record.get("benchmarks", []) for key, run in bench.get("runs", {}).items()]


def main(argv: list | None = None) -> int:
    import argparse
    import torch
    ap = argparse.ArgumentParser(prog="python -m nanobragg_cli.gpu_check")
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("nanobragg: error: gpu-check: no CUDA device is visible to torch "
              f"{torch.__version__}", file=sys.stderr)
        return 9
    args.out.mkdir(parents=True, exist_ok=True)
    junit, bench_json = args.out / "cuda-tests.xml", args.out / "bench-cuda.json"
    t0 = time.time()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda",
                            f"--junitxml={junit}"])
    t1 = time.time()
    bench = subprocess.run([sys.executable, "-m", "nanobragg_cli", "bench", "--set", BENCH_SETS,
                            "--device", "cuda", "--dtype", "float32",
                            "--repeats", str(args.repeats), "--timeout", "60",
                            "--json", str(bench_json), "--markdown"])
    t2 = time.time()
    record = dict(
        schema=SCHEMA, device=torch.cuda.get_device_name(0), torch=torch.__version__,
        cuda=torch.version.cuda, tests=dict(exit_status=tests.returncode, seconds=t1 - t0,
                                            **_test_counts(junit)),
        bench=dict(exit_status=bench.returncode, seconds=t2 - t1, record=bench_json.name,
                   rows=_bench_summary(bench_json)))
    (args.out / "gpu-check.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"gpu-check: tests exit {tests.returncode}, bench exit {bench.returncode}; "
          f"record {args.out / 'gpu-check.json'}")
    return 0 if tests.returncode == 0 and bench.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
