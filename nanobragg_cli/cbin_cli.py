"""What ``nanobragg parity --c-bin`` and ``nanobragg suite --c-bin --cases FILE`` do (the click
options live in parity.py and suite.py; this module runs them and prints the results).

parity: one command line through the binary and through us (:func:`~nanobragg_cli.cbin_check.
check_binary`), a line per traced pixel with its ``first_divergence``, the bundle, and with
``--shrink`` the smallest command line that still diverges the same way. Exit 0 agreement,
1 divergence, 2 unusable input.

suite: every line of a cases file (:mod:`nanobragg_cli.cases_file`), one row per case, then
``N passed, M failed`` as the last line; exit 0 when all pass, 1 otherwise, 2 unusable input.

suite --random N --seed S: the same for N command lines drawn by :mod:`nanobragg_cli.fuzz_cases`
(with the input files they name), each failure printed as a one-line command and its first
divergence, and the failures counted by kind.
"""

from __future__ import annotations

from pathlib import Path
import time

import click

from .cbin_check import check_binary, image_line, pixel_lines, write_bundle
from .errors import NanoBraggError


def _shrink(binary, chk, check_kw):
    from .shrink import shrink_binary
    click.echo(f"shrinking: keeping first_divergence={chk.signature}")
    res = shrink_binary(binary, chk, on_step=lambda s: click.echo(f"  {s}"), **check_kw)
    for line in res.report_lines():
        click.echo(line)
    return res


def parity_c_bin(binary: str, nb_args: list, out: Path, *, c_parity: bool,
                 dtype: str, device: str, pixels: list, byte_kinds: tuple, do_shrink: bool,
                 rtol: float, atol: float, image_rtol: float, image_atol_fraction: float) -> int:
    """``nanobragg parity --c-bin``; returns the exit status (NanoBraggError on bad input)."""
    import shlex
    inv = ["nanobragg", "parity", "--c-bin", binary] + (["--c-parity"] if c_parity else [])
    for s, f in pixels:
        inv += ["--pixel", str(s), str(f)]
    for kind in byte_kinds:
        inv += ["--bytes", kind]
    inv += (["--shrink"] if do_shrink else []) + ["--out", str(out), "--", *nb_args]
    invocation = shlex.join(inv)
    check_kw = dict(c_parity=c_parity, dtype=dtype, device=device, compare_bytes=byte_kinds,
                    rtol=rtol, atol=atol, image_rtol=image_rtol,
                    image_atol_fraction=image_atol_fraction)
    from .progress import RenderProgress
    bar = RenderProgress(True)
    try:
        chk = check_binary(binary, list(nb_args), Path.cwd(), pixels=pixels, progress=bar,
                           **check_kw)
    finally:
        bar.close()
    if chk.error is not None:
        raise NanoBraggError(f"-- {' '.join(nb_args)[:80]}: {chk.error}", exit_code=2)
    click.echo(image_line(chk))
    if chk.bytes:
        click.echo("bytes: " + ", ".join(f"{k} {'identical' if v else 'DIFFER'}"
                                         for k, v in chk.bytes.items()))
    if chk.trace_support is False:
        from .cbin_check import PRINTOUT_NOTE
        click.echo(f"note: {PRINTOUT_NOTE}")
    for line in pixel_lines(chk):
        click.echo(line)
    shrunk = _shrink(binary, chk, check_kw) if do_shrink and not chk.ok else None
    bundle = write_bundle(chk, out, invocation, shrunk)
    click.echo(f"bundle: {bundle}")
    click.echo(f"first_divergence={chk.signature}")
    return 0 if chk.ok else 1


def _row(name: str, chk, seconds: float) -> str:
    if chk.error is not None:
        return f"{name:<24} FAIL  error: {chk.error}"
    m = chk.image
    img = ("image ok" if m["ok"] else f"image {m['pixels_over_tolerance']} px over tol")
    bad_bytes = [k for k, v in chk.bytes.items() if not v]
    parts = [img, ("bytes identical" if not bad_bytes else "bytes DIFFER " + ",".join(bad_bytes))
             if chk.bytes else "bytes -"]
    for px in chk.pixels:
        what = px.method if px.result is not None else "not compared"
        parts.append(f"({px.pixel[0]},{px.pixel[1]}) {px.label} {what}: "
                     f"{px.first_divergence if px.result is not None else px.note}")
    return (f"{name:<24} {'pass' if chk.ok else 'FAIL'}  " + "; ".join(parts)
            + f"  {seconds:.1f} s")


def _check_cases(binary: str, cases: list, base: Path, *, c_parity: bool, dtype: str,
                 device: str, do_shrink: bool, out: Path | None, describe, on_fail=None) -> int:
    """Check every case (objects with ``name`` and ``flags``; input paths relative to ``base``):
    one row per case, a bundle per failing case under ``out``; ``describe(case)`` names the case
    in a bundle's invocation, ``on_fail(case, chk, shrunk)`` hears each failure. Returns how
    many passed."""
    from .progress import RenderProgress
    passed = 0
    for case in cases:
        byte_kinds = ("int",) + (("noise",) if "-seed" in case.flags else ())
        check_kw = dict(c_parity=c_parity, dtype=dtype, device=device, compare_bytes=byte_kinds)
        t = time.perf_counter()
        bar = RenderProgress(True)
        try:
            chk = check_binary(binary, case.flags, base, progress=bar, **check_kw)
        finally:
            bar.close()
        click.echo(_row(case.name, chk, time.perf_counter() - t))
        for px in chk.pixels:
            if px.result is not None and px.result.explanation:
                click.echo(f"  {case.name} ({px.pixel[0]},{px.pixel[1]}): "
                           + px.result.explanation.replace("\n", " "))
        passed += chk.ok
        shrunk = None
        if do_shrink and not chk.ok and chk.error is None:
            shrunk = _shrink(binary, chk, check_kw)
        if on_fail is not None and not chk.ok:
            on_fail(case, chk, shrunk)
        if out is not None and not chk.ok:
            bundle = write_bundle(chk, Path(out) / case.name, describe(case), shrunk)
            click.echo(f"  bundle: {bundle}")
    return passed


def suite_c_bin(binary: str, cases_path: Path, *, c_parity: bool, dtype: str, device: str,
                do_shrink: bool, out: Path | None) -> int:
    """``nanobragg suite --c-bin PATH --cases FILE``; returns the exit status."""
    from .cases_file import read_cases
    cases = read_cases(cases_path)
    base = Path(cases_path).resolve().parent
    t0 = time.perf_counter()
    passed = _check_cases(binary, cases, base, c_parity=c_parity, dtype=dtype, device=device,
                          do_shrink=do_shrink, out=out,
                          describe=lambda case: f"nanobragg suite --c-bin {binary} --cases "
                                                f"{cases_path} (case {case.name}, line {case.line})")
    click.echo(f"wall time {time.perf_counter() - t0:.1f} s for {len(cases)} cases")
    click.echo(f"{passed} passed, {len(cases) - passed} failed")
    return 0 if passed == len(cases) else 1


def failure_kind(chk) -> str:
    """What a failed check counts as in the fuzzer's summary: ``refused by validation`` (our
    side refused the flags with a user error; the binary's image NaN/inf or finite), ``our run
    crashed``, ``binary failed``, else its first divergence."""
    if chk.error is None:
        return f"first_divergence={chk.signature}"
    if chk.error.startswith("our run failed"):
        import numpy as np
        data = chk.c_run.files.get("float", b"") if chk.c_run is not None else b""
        finite = bool(np.isfinite(np.frombuffer(data[:len(data) // 4 * 4], dtype="<f4")).all())
        return "refused by validation (the binary's image is " + (
            "finite: a real image we refuse)" if finite else "NaN/inf)")
    if chk.error.startswith("our run crashed"):
        return "our run crashed"
    if chk.error.startswith("the binary"):
        return "binary failed"
    return "error"


def suite_random(binary: str, n: int, seed: int, *, start: int, c_parity: bool, dtype: str,
                 device: str, do_shrink: bool, out: Path | None) -> int:
    """``nanobragg suite --c-bin PATH --random N --seed S``: draw cases ``start..start+N-1`` of
    ``seed`` (:mod:`nanobragg_cli.fuzz_cases`), write their inputs and a cases file (under
    ``OUT/random_<seed>/``, else a temporary folder kept only when a case fails), check each
    like a line of a cases file, print each failure as a one-line command with its first
    divergence, then the counts by kind; returns the exit status."""
    import collections
    import shlex
    import shutil
    import tempfile
    from .fuzz_cases import draw_cases, write_cases
    cases = draw_cases(n, seed, start)
    if out is not None:
        folder = Path(out) / f"random_{seed}"
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"nb_random_{seed}_"))
    cases_path = write_cases(cases, folder)
    click.echo(f"{n} random cases of seed {seed} (from case {start}); inputs and cases file: "
               f"{cases_path}")
    mode = ["--c-parity"] if c_parity else []
    failures = []

    def one_line(flags):
        return (f"cd {shlex.quote(str(folder))} && nanobragg parity --c-bin "
                f"{shlex.quote(binary)} {' '.join(mode)} -- {shlex.join(flags)}")

    def on_fail(case, chk, shrunk):
        kind = failure_kind(chk)
        failures.append((case, kind))
        click.echo(f"  FAILED {case.name}: {one_line(case.flags)}")
        click.echo(f"  {kind}" + (f" ({chk.error})" if chk.error else ""))
        if shrunk is not None:
            click.echo(f"  minimal: {one_line(shrunk.flags)}")

    t0 = time.perf_counter()
    try:
        passed = _check_cases(binary, cases, folder, c_parity=c_parity, dtype=dtype,
                              device=device, do_shrink=do_shrink,
                              out=out and Path(out) / f"random_{seed}",
                              describe=lambda case: f"nanobragg suite --c-bin {binary} --random "
                                                    f"{n} --seed {seed} --start {start} "
                                                    f"(case {case.name})", on_fail=on_fail)
    except BaseException:        # an unusable binary, Ctrl-C: no temporary folder left behind
        if out is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    click.echo(f"wall time {time.perf_counter() - t0:.1f} s for {n} cases")
    # a refusal where the binary's own image is NaN/inf is a documented difference, not a failure
    refused = sum(k.endswith("NaN/inf)") for _, k in failures)
    for kind, count in collections.Counter(k for _, k in failures).most_common():
        click.echo(f"  {count} {'refused' if kind.endswith('NaN/inf)') else 'failed'}: {kind}")
    if out is None and len(failures) == refused:
        shutil.rmtree(folder, ignore_errors=True)
    failed = n - passed - refused
    click.echo(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1
