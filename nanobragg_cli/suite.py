"""``nanobragg suite GOLDEN_DIR``: every case of a nanoBragg.c golden corpus, run in-process and
checked against the C outputs: one row per case, ``N passed, M failed``, non-zero exit on failure.

Checks per case (see :func:`check_case`):

- image: our float image against ``float.bin`` within ``rtol·|C| + atol_fraction·max|C|``;
  cases with only a region of interest (the supervisor cases: ``float_roi.npy`` with
  ``roi_origin_slow_fast``/``roi_shape`` in meta.json) render just that window and compare it;
- bytes (float64, --c-parity only, where our argv is C's): ``int.img``, ``noise.img`` and
  ``image.pgm`` byte for byte;
- traces (with ``--traces``, and always for ROI cases): every traced pixel against its
  ``trace_S_F.log``; ``first_divergence`` must be None.

``nanobragg suite --c-bin PATH --cases FILE`` runs a list of command lines through a nanoBragg
binary instead, and ``--c-bin PATH --random N --seed S`` random ones
(:mod:`nanobragg_cli.cbin_cli`, :mod:`nanobragg_cli.fuzz_cases`).

Modes: ``auto`` runs ``*_spec`` cases (those with ``default_mode_args``) in the default mode on
those args and every other case with --c-parity; ``--c-parity`` / ``--default-mode`` force one mode
for all cases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import time

import click

from .golden import IMAGE_ATOL_FRACTION, IMAGE_RTOL, TRACE_ATOL, TRACE_RTOL
from .records import json_safe

BYTE_FILES = (("int", "int.img"), ("noise", "noise.img"), ("pgm", "image.pgm"))


@dataclass(frozen=True)
class Tolerance:
    """Image tolerance ``rtol·|C| + atol_fraction·max|C|`` on the pixels with
    ``|C| > floor_fraction·max|C|`` (all pixels for 0), and the trace rtol."""
    rtol: float
    atol_fraction: float
    floor_fraction: float
    trace_rtol: float


def tolerance_profile(dtype: str, rtol: float | None = None,
                      trace_rtol: float | None = None) -> Tolerance:
    """float64: the C-parity contract (rtol 1e-5, atol 1e-7·max on every pixel; traces 1e-9).
    float32: rtol 1e-3 on the pixels above 1e-3 of the image max (float32 cannot hold the
    faint pixels' digits); traces at 1e-3."""
    if dtype == "float32":
        base = Tolerance(1e-3, IMAGE_ATOL_FRACTION, 1e-3, 1e-3)
    else:
        base = Tolerance(IMAGE_RTOL, IMAGE_ATOL_FRACTION, 0.0, TRACE_RTOL)
    return Tolerance(base.rtol if rtol is None else rtol, base.atol_fraction,
                     base.floor_fraction, base.trace_rtol if trace_rtol is None else trace_rtol)


@dataclass
class CaseReport:
    """Outcome of one case. ``image``: metrics (ok, worst = max |Δ|/tolerance, n_bad, corr,
    sum_ratio, max_rel, region); ``bytes``: file name → identical; ``traces``: "S,F" → first
    divergence (None = agreement); ``error``: why the case could not run."""
    name: str
    mode: str
    ok: bool = False
    seconds: float = 0.0
    image: dict | None = None
    bytes: dict = field(default_factory=dict)
    traces: dict = field(default_factory=dict)
    error: str | None = None


def case_mode(case, mode: str) -> tuple:
    """(c_parity, default_mode) arguments of golden.run_case for ``mode``."""
    spec = case.default_mode_args is not None
    if mode == "c-parity":
        return True, False
    if mode == "default":
        return False, spec
    return (False, True) if spec else (True, False)


def roi_window(case) -> tuple | None:
    """(s0, s1, f0, f1) inclusive of a case checked on a region only, else None."""
    meta = case.meta
    if case.has_image or "roi_origin_slow_fast" not in meta or case.file("float_roi.npy") is None:
        return None
    (s0, f0), (h, w) = meta["roi_origin_slow_fast"], meta["roi_shape"]
    return (s0, s0 + h - 1, f0, f0 + w - 1)


def check_case(case, golden: Path, *, mode: str = "auto", dtype: str = "float64",
               device: str = "cpu", tol: Tolerance | None = None,
               traces: bool = False) -> CaseReport:
    """Run one case in-process and check it (never raises for a failing case)."""
    import numpy as np
    from .golden import compare_case_trace, compare_images, run_case

    tol = tol or tolerance_profile(dtype)
    c_parity, default_mode = case_mode(case, mode)
    rep = CaseReport(case.name, "c-parity" if c_parity else "default")
    t0 = time.perf_counter()
    try:
        window = roi_window(case)
        if not case.has_image and window is None:
            raise ValueError("no float.bin and no float_roi.npy region in the case")
        want_traces = traces or window is not None
        kw = dict(c_parity=c_parity, default_mode=default_mode, dtype=dtype, device=device)
        run = run_case(case, golden, trace=want_traces, window=window, **kw)
        if window is None:
            ref, ours, region = case.reference_image(), run.image, None
        else:
            s0, s1, f0, f1 = window
            ref = np.load(case.dir / "float_roi.npy")
            ours, region = run.image[s0:s1 + 1, f0:f1 + 1], list(window)
        ref = np.asarray(ref, dtype=np.float64)
        mask = None
        if tol.floor_fraction > 0:
            mask = np.abs(ref) > tol.floor_fraction * np.abs(ref).max()
        m = compare_images(ours, ref, rtol=tol.rtol, atol_fraction=tol.atol_fraction, mask=mask)
        rep.image = dict(ok=m.ok, worst=m.worst, n_bad=m.n_bad, max_rel=m.max_rel, corr=m.corr,
                         sum_ratio=m.sum_ratio, region=region)
        if dtype == "float64" and c_parity and window is None:
            for key, name in BYTE_FILES:
                if case.file(name) is not None:
                    rep.bytes[name] = run.files.get(key) == case.file(name).read_bytes()
        if want_traces:
            for px in case.trace_pixels:
                text = run.traces.get(px)
                if text is None:   # outside the window: render that pixel alone
                    text = run_case(case, golden, trace=True, window=(px[0], px[0], px[1], px[1]),
                                    **kw).traces.get(px)
                if text is None:
                    rep.traces[f"{px[0]},{px[1]}"] = "(pixel not rendered)"
                    continue
                res = compare_case_trace(case, px, text, rtol=tol.trace_rtol, atol=TRACE_ATOL)
                rep.traces[f"{px[0]},{px[1]}"] = res.first_divergence
        rep.ok = (m.ok and all(rep.bytes.values())
                  and all(v is None for v in rep.traces.values()))
    except Exception as err:  # a case that cannot run is a failed row, not a crash of the suite
        rep.error = f"{type(err).__name__}: {err}"
        rep.ok = False
    rep.seconds = time.perf_counter() - t0
    return rep


def run_suite(golden: Path, names: list | None = None, *, mode: str = "auto",
              dtype: str = "float64", device: str = "cpu", tol: Tolerance | None = None,
              traces: bool = False, on_case=None) -> list:
    """check_case for every case of the corpus (or ``names``), in name order.
    ``on_case(report)`` is called after each case. Raises KeyError for unknown names."""
    from .golden import load_cases
    reports = []
    for case in load_cases(Path(golden), names):
        rep = check_case(case, Path(golden), mode=mode, dtype=dtype, device=device, tol=tol,
                         traces=traces)
        reports.append(rep)
        if on_case is not None:
            on_case(rep)
    return reports


def _image_cell(rep: CaseReport) -> str:
    m = rep.image
    if m is None:
        return "-"
    where = "ROI " if m["region"] else ""
    if m["ok"]:
        return f"{where}ok (max |Δ|/tol {m['worst']:.2g})"
    return f"{where}FAIL {m['n_bad']} px over tol (max |Δ|/tol {m['worst']:.3g})"


def _bytes_cell(rep: CaseReport) -> str:
    if not rep.bytes:
        return "-"
    bad = [k for k, v in rep.bytes.items() if not v]
    return "FAIL " + ", ".join(bad) if bad else "identical (" + ", ".join(rep.bytes) + ")"


def _traces_cell(rep: CaseReport) -> str:
    if not rep.traces:
        return "-"
    bad = {k: v for k, v in rep.traces.items() if v is not None}
    if not bad:
        return f"{len(rep.traces)}/{len(rep.traces)} None"
    return "; ".join(f"({k}): {v}" for k, v in bad.items())


def report_json(reports: list, **info) -> dict:
    passed = sum(r.ok for r in reports)
    return json_safe(dict(info, passed=passed, failed=len(reports) - passed,
                      cases=[asdict(r) for r in reports]))


@click.command("suite", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("golden_dir", type=click.Path(), required=False)
@click.option("--cases", "cases", multiple=True, metavar="A,B,...|FILE",
              help="Only these cases (comma-separated; may be repeated). With --c-bin: the "
                   "cases file, one nanoBragg.c command line per line.")
@click.option("--c-bin", default=None, metavar="PATH",
              help="Run every line of the --cases FILE through this nanoBragg binary and "
                   "through us (no corpus needed; see nanobragg_cli.cbin_cli).")
@click.option("--random", "n_random", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --c-bin: check N random command lines over the whole flag table "
                   "(inputs written for them) instead of a cases file.")
@click.option("--seed", "random_seed", type=int, default=1, show_default=True,
              help="With --random: the draw; the same seed gives the same cases.")
@click.option("--start", "random_start", type=click.IntRange(min=0), default=0,
              show_default=True, help="With --random: the index of the first case drawn.")
@click.option("--shrink", "do_shrink", is_flag=True, default=False,
              help="With --c-bin: shrink each diverging case to the flags that cause it.")
@click.option("--out", type=click.Path(), default=None,
              help="With --c-bin: write a parity bundle per failing case under this folder.")
@click.option("--traces", is_flag=True, default=False,
              help="Also compare every traced pixel with the C trace.")
@click.option("--mode", type=click.Choice(["auto", "c-parity", "default"]), default="auto",
              show_default=True, help="auto: *_spec cases in the default mode, others --c-parity.")
@click.option("--c-parity", "force_c", is_flag=True, default=False,
              help="Same as --mode c-parity.")
@click.option("--default-mode", "force_d", is_flag=True, default=False,
              help="Same as --mode default.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--rtol", type=float, default=None,
              help="Image rtol (default 1e-5; float32: 1e-3 on pixels above 1e-3 of the max).")
@click.option("--trace-rtol", type=float, default=None,
              help="Trace rtol (default 1e-9; float32: 1e-3).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the results as JSON to this file.")
@click.pass_context
def suite_command(ctx, golden_dir, cases, c_bin, n_random, random_seed, random_start, do_shrink, out, traces, mode, force_c, force_d,
                  dtype, device, rtol, trace_rtol, json_path):
    """Run every case of a golden corpus (laid out like tests/golden) and check it against
    nanoBragg.c, or with --c-bin every line of a cases file through a binary. Exit status: 0 all passed, 1 a case failed, 2 unusable input."""
    from rich.console import Console
    from rich.table import Table

    def fail(message):
        click.echo(f"nanobragg suite: error: {message}", err=True)
        ctx.exit(2)

    if force_c and force_d:
        fail("give --c-parity or --default-mode, not both")
    mode = "c-parity" if force_c else "default" if force_d else mode
    if c_bin is not None:
        if golden_dir or traces or json_path or rtol or trace_rtol or (
                len(cases) != 1 if n_random is None else cases):
            fail("--c-bin takes one --cases FILE (or --random N) and no GOLDEN_DIR, --traces, "
                 "--json, --rtol")
        from .cbin_cli import suite_c_bin, suite_random
        from .errors import NanoBraggError
        try:
            if n_random is not None:
                ctx.exit(suite_random(c_bin, n_random, random_seed, start=random_start,
                                      c_parity=mode != "default", dtype=dtype, device=device,
                                      do_shrink=do_shrink, out=out and Path(out)))
            ctx.exit(suite_c_bin(c_bin, Path(cases[0]), c_parity=mode != "default", dtype=dtype,
                                 device=device, do_shrink=do_shrink, out=out and Path(out)))
        except NanoBraggError as err:
            fail(str(err))
    if do_shrink or out or n_random is not None:
        fail("--shrink, --out and --random need --c-bin")
    if golden_dir is None:
        fail("give the GOLDEN_DIR to check (e.g. tests/golden), or --c-bin PATH --cases FILE")
    golden = Path(golden_dir)
    if not golden.exists():
        fail(f"{golden}: the folder does not exist")
    if not golden.is_dir():
        fail(f"{golden}: not a folder")
    if not (golden / "cases").is_dir():
        fail(f"{golden}: not a golden corpus (no cases/ folder)")
    names = [n for chunk in cases for n in chunk.split(",") if n] or None
    tol = tolerance_profile(dtype, rtol, trace_rtol)
    import os
    import sys
    # CI logs are not terminals: print the table wide rather than folding every cell
    width = None if sys.stdout.isatty() else max(150, int(os.environ.get("COLUMNS", "0") or 0))
    console = Console(highlight=False, width=width)
    t0 = time.perf_counter()
    try:
        with console.status("running cases") as status:
            reports = run_suite(golden, names, mode=mode, dtype=dtype, device=device, tol=tol,
                                traces=traces,
                                on_case=lambda r: status.update(f"{r.name} done ({r.seconds:.1f} s)"))
    except KeyError as err:
        fail(f"--cases: no such case in {golden}: {err.args[0]}")
    wall = time.perf_counter() - t0

    table = Table(title=f"golden corpus {golden} ({dtype}, mode {mode})", title_justify="left")
    for name, right in (("case", False), ("mode", False), ("image", False), ("bytes", False),
                        ("traces", False), ("s", True), ("result", False)):
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for r in reports:
        table.add_row(r.name, r.mode, _image_cell(r) if r.error is None else r.error,
                      _bytes_cell(r), _traces_cell(r), f"{r.seconds:.1f}",
                      "pass" if r.ok else "FAIL", style=None if r.ok else "bold red")
    console.print(table)
    passed = sum(r.ok for r in reports)
    if json_path:
        info = dict(golden_dir=str(golden), mode=mode, dtype=dtype, device=device,
                    traces=traces, tolerance=asdict(tol), seconds=wall)
        try:
            Path(json_path).write_text(json.dumps(report_json(reports, **info), indent=1,
                                                  allow_nan=False) + "\n")
        except OSError as err:
            fail(f"--json {json_path}: cannot write ({err.strerror or err})")
    click.echo(f"wall time {wall:.1f} s for {len(reports)} cases")
    click.echo(f"{passed} passed, {len(reports) - passed} failed")
    ctx.exit(0 if passed == len(reports) else 1)
