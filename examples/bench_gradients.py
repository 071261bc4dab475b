"""Time and memory of gradient renders through the Python API: forward without gradients,
forward with gradients, backward, and each one's peak memory, for B1 and the supervisor command.

Each measurement runs in a fresh process (peak RSS is per process): ``forward`` renders under
``torch.no_grad()``; ``grad`` renders with the detector distance and the cell (A matrix for the
supervisor's -mat crystal) as leaves, then calls ``image.sum().backward()``. The runs are
interleaved (forward, grad, forward, grad, ...) and medians reported, so the ratios compare
runs that saw the same load on a shared machine. Every process first renders a 64x64 warm-up
image with a gradient (first-call start-up of torch's kernels and autograd is not counted).

    .venv/bin/python examples/bench_gradients.py                    # B1 and supervisor, 3 repeats
    .venv/bin/python examples/bench_gradients.py --cases B1 --repeats 5 --threads 2
    .venv/bin/python examples/bench_gradients.py --supervisor-phisteps 2   # a lighter supervisor

Output: a Markdown table (docs/performance.md, "Gradients") and, with --json FILE, the raw runs.
"""

import argparse
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile

REPO = Path(__file__).resolve().parent.parent
B1 = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 "
      "-detpixels 1024 -pixel 0.1")


def supervisor_flags(phisteps: int = 10) -> str:
    """The Makefile's SUPERVISOR_ARGS with the corpus inputs' absolute paths."""
    text = (REPO / "Makefile").read_text()
    start = text.index("SUPERVISOR_ARGS =") + len("SUPERVISOR_ARGS =")
    end = text.index("SUPERVISOR_OUTPUTS")
    args = text[start:end].replace("\\\n", " ")
    args = args.replace("inputs/", f"{REPO / 'tests' / 'golden' / 'inputs'}/")
    return " ".join(args.split()).replace("-phisteps 10", f"-phisteps {phisteps}")


WORKER = r"""
import json, resource, sys, time, torch
from nanobragg_cli import Simulator
flags, mode, threads, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
warm = Simulator.from_flags("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 "
                            "-distance 100 -detpixels 64 -pixel 0.1")
x = warm.parameters(["distance"])
warm.render(x).sum().backward()
sim = Simulator.from_flags(flags, max_memory=budget)
names = ["distance", "cell" if sim.params.cell is not None else "amat"]
x = sim.parameters(names, units="flag")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"mode": mode, "setup_rss_mb": base, "evaluations": sim.scene().evals_per_pixel()
       * sim.shape[0] * sim.shape[1]}
t0 = time.perf_counter()
if mode == "forward":
    with torch.no_grad():
        image = sim.render(x, units="flag")
    out["forward_s"] = time.perf_counter() - t0
else:
    image = sim.render(x, units="flag")
    t1 = time.perf_counter()
    image.sum().backward()
    out["forward_s"], out["backward_s"] = t1 - t0, time.perf_counter() - t1
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_one(flags: str, mode: str, threads: int, budget: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:      # -hkl writes Fdump.bin in the cwd
        env = dict(os.environ, PYTHONPATH=str(REPO))
        res = subprocess.run([sys.executable, "-c", WORKER, flags, mode, str(threads),
                              str(budget)], capture_output=True, text=True, cwd=tmp, env=env)
    if res.returncode:
        raise SystemExit(f"bench_gradients: error: {mode} run failed: "
                         f"{res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="B1,supervisor")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-memory", type=int, default=256 * 2 ** 20,
                    help="the Simulator's chunk budget in bytes (default 256 MiB)")
    ap.add_argument("--supervisor-phisteps", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cases = {"B1": B1, "supervisor": supervisor_flags(args.supervisor_phisteps)}
    chosen = [c.strip() for c in args.cases.split(",")]
    runs = {c: {"forward": [], "grad": []} for c in chosen}
    for r in range(args.repeats):
        for case in chosen:
            for mode in ("forward", "grad"):
                run = run_one(cases[case], mode, args.threads, args.max_memory)
                runs[case][mode].append(run)
                print(f"# {case} {mode} run {r + 1}: " + json.dumps(run), file=sys.stderr)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    print(f"{args.threads} threads, budget {args.max_memory / 2 ** 20:g} MiB, median of "
          f"{args.repeats} interleaved runs")
    print()
    print("| case | evaluations | forward (no grad) | forward with grad | backward | "
          "grad fwd / fwd | backward / fwd | peak RSS no grad | peak RSS grad |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in chosen:
        f, g = runs[case]["forward"], runs[case]["grad"]
        fw, gf, bw = med(f, "forward_s"), med(g, "forward_s"), med(g, "backward_s")
        label = case + (f" ({args.supervisor_phisteps} φ steps)" if case == "supervisor" else "")
        print(f"| {label} | {f[0]['evaluations'] / 1e6:.1f} M | {fw:.2f} s | {gf:.2f} s | "
              f"{bw:.2f} s | {gf / fw:.2f} | {bw / fw:.2f} | {med(f, 'peak_rss_mb'):.0f} MB | "
              f"{med(g, 'peak_rss_mb'):.0f} MB |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
