"""``nanobragg golden make --c-bin PATH --cases FILE OUT``: write a golden corpus in the layout
of the repository's own (tests/golden/README.md) by running a nanoBragg binary on every line of a
cases file; ``nanobragg suite OUT`` then checks us against it without the binary.

Per case, in a fresh folder holding a link ``inputs -> OUT/inputs`` and with one OpenMP thread:
one image run (``-floatfile float.bin -intfile int.img``, ``-noisefile noise.img`` when the flags
hold ``-seed`` (else ``-nonoise``), ``-pgmfile image.pgm`` for names starting ``pgm_`` (else
``-nopgm``), ``-noprogress``), then one run per traced pixel with ``-trace_pixel S F`` appended,
kept as ``trace_S_F.log`` when the binary prints TRACE_C lines. Traced pixels: ``--pixel S F``
(repeatable), else the brightest pixel and an off-peak one (the pixel whose value is closest to
a tenth of the maximum). Input files must be named ``inputs/...`` relative to the cases file's
folder; the ones named are copied into ``OUT/inputs/``. The corpus is built in a hidden staging
folder and renamed to OUT when complete: on an error nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import sys

import click

from .cbin import input_paths, run_binary
from .errors import NanoBraggError


def case_outputs(name: str, flags: list) -> list:
    """The output flags appended to a case's flags, as the corpus' meta.json "outputs"."""
    seed = "-seed" in flags
    out = ["-floatfile", "float.bin", "-intfile", "int.img"]
    out += ["-pgmfile", "image.pgm"] if name.startswith("pgm_") else ["-nopgm"]
    out += ["-noprogress"] + (["-noisefile", "noise.img"] if seed else ["-nonoise"])
    return out


def default_trace_pixels(image) -> list:
    """[(slow, fast)]: the brightest pixel and the one closest to a tenth of the maximum."""
    import numpy as np
    peak = np.unravel_index(int(image.argmax()), image.shape)
    off = np.unravel_index(int(np.abs(image - 0.1 * image.max()).argmin()), image.shape)
    pixels = [tuple(int(x) for x in peak)]
    if tuple(int(x) for x in off) != pixels[0]:
        pixels.append(tuple(int(x) for x in off))
    return pixels


def make_case(binary: str, name: str, flags: list, root: Path, pixels: list) -> dict:
    """Write ``root/cases/<name>/`` (root holds inputs/); returns its meta.json content."""
    import numpy as np
    from .simulate import prepare

    try:
        cfg = prepare(list(flags))
    except NanoBraggError as err:
        raise NanoBraggError(f"case {name}: {err}", exit_code=2) from None
    shape = (cfg.detector.spixels, cfg.detector.fpixels)
    outputs = case_outputs(name, flags)
    run = run_binary(binary, list(flags) + outputs, root)
    if run.returncode != 0:
        tail = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:] or [""]
        raise NanoBraggError(f"case {name}: the binary exited with status {run.returncode}: "
                             f"{tail[0][:200]}", exit_code=2)
    image = run.image(shape)
    if image is None:
        raise NanoBraggError(f"case {name}: the binary wrote no {shape[0]}x{shape[1]} float image",
                             exit_code=2)
    folder = root / "cases" / name
    folder.mkdir(parents=True)
    for kind, fname in (("float", "float.bin"), ("int", "int.img"), ("noise", "noise.img"),
                        ("pgm", "image.pgm")):
        if kind in run.files:
            (folder / fname).write_bytes(run.files[kind])
    (folder / "stdout.txt").write_text(run.stdout)
    traced = []
    for s, f in (pixels or default_trace_pixels(image)):
        tr = run_binary(binary, list(flags) + outputs + ["-trace_pixel", str(s), str(f)], root)
        if tr.returncode == 0 and tr.has_trace:
            (folder / f"trace_{s}_{f}.log").write_text(tr.stdout)
            traced.append([s, f])
    meta = {"name": name, "args": list(flags), "outputs": outputs,
            "shape_slow_fast": list(shape), "trace_pixels_slow_fast": traced,
            "omp_num_threads": 1, "max": float(image.max()),
            "sum": float(np.asarray(image, dtype=np.float64).sum())}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


README = """# Golden corpus made by `nanobragg golden make`

Layout and meaning of every file as in the nanobragg_cli repository's tests/golden/README.md.
Binary: {binary} (run with OMP_NUM_THREADS=1, each case in a fresh empty folder holding a link
`inputs -> ../inputs`). Cases file: {cases}. Check against it with `nanobragg suite <this folder>`.
"""


def make_corpus(binary: str, cases_path: Path, out: Path, pixels: list = (),
                echo=click.echo) -> list:
    """Write the corpus ``out`` (must not exist); returns the cases' meta dicts."""
    from .cases_file import read_cases
    cases = read_cases(cases_path)
    base = Path(cases_path).resolve().parent
    out = Path(out)
    if os.path.lexists(out):
        raise NanoBraggError(f"OUT {out}: already exists (give a new folder)", exit_code=2)
    for case in cases:
        for rel in input_paths(case.flags):
            if Path(rel).parts[0] != "inputs" or ".." in Path(rel).parts:
                raise NanoBraggError(f"--cases {cases_path}:{case.line}: {rel}: input files must "
                                     "lie under inputs/ beside the cases file", exit_code=2)
            if not (base / rel).is_file():
                raise NanoBraggError(f"--cases {cases_path}:{case.line}: {base / rel}: no such "
                                     "file", exit_code=2)
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        (stage / "inputs").mkdir(parents=True)
        (stage / "cases").mkdir()
        for case in cases:
            for rel in input_paths(case.flags):
                dst = stage / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base / rel, dst)
        (stage / "README.md").write_text(README.format(binary=os.path.basename(binary),
                                                       cases=Path(cases_path).name))
        metas = []
        for case in cases:
            meta = make_case(binary, case.name, case.flags, stage, list(pixels))
            metas.append(meta)
            echo(f"{case.name}: {meta['shape_slow_fast'][0]}x{meta['shape_slow_fast'][1]}, "
                 f"max {meta['max']:.6g}, traces {meta['trace_pixels_slow_fast'] or 'none'}")
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return metas


@click.group("golden", context_settings={"help_option_names": ["-h", "--help"]})
def golden_command():
    """Golden corpora of nanoBragg outputs (see tests/golden/README.md)."""


@golden_command.command("make")
@click.option("--c-bin", required=True, metavar="PATH", help="The nanoBragg binary to run.")
@click.option("--cases", "cases_path", required=True, type=click.Path(), metavar="FILE",
              help="One nanoBragg.c command line per line ([NAME:] FLAGS; # comments).")
@click.option("--pixel", "pixels", type=int, nargs=2, multiple=True, metavar="S F",
              help="Trace these (slow, fast) pixels in every case (default: the brightest and "
                   "an off-peak pixel).")
@click.argument("out", type=click.Path())
@click.pass_context
def make_command(ctx, c_bin, cases_path, pixels, out):
    """Run every case through the binary and write a corpus in the repository's layout to OUT.
    Exit status: 0 written, 2 unusable input (nothing written)."""
    try:
        metas = make_corpus(c_bin, Path(cases_path), Path(out), [tuple(p) for p in pixels])
    except NanoBraggError as err:
        click.echo(f"nanobragg golden make: error: {err}", err=True)
        ctx.exit(2)
    click.echo(f"wrote {len(metas)} cases to {out} (check with: nanobragg suite {out})")
    sys.stdout.flush()
