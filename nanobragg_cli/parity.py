"""The parity bundle: run one traced pixel through our simulator, diff it against nanoBragg.c and
keep every piece of evidence in one folder.

``nanobragg parity --c-trace C.log [--c-image C.bin|C.npz|C.npy] [--topic NAME | --out DIR]
[--c-parity] -- <nanoBragg flags> -trace_pixel S F`` renders in-process through the CLI's code
path (:mod:`nanobragg_cli.simulate`: ``prepare``, ``run_simulation``, ``output_files``,
``stdout_report``, ``trace_json_record``), compares our trace with each C trace
(:mod:`nanobragg_cli.compare`) and our image with the C image
(:func:`~nanobragg_cli.golden.compare_images`), and writes ``DIR/<UTC timestamp>/``:

    commands.txt          working folder, this command, the plain nanobragg command, the C command
    trace_py.log          our stdout (report with the TRACE_PY lines)
    trace_py_per_phi.json the --trace-json record
    c_trace.log           copy of the first --c-trace (c_trace_<label>.log for further ones)
    compare.txt/.md/.json the comparison with the first C trace (compare_<label>.* for others)
    image_metrics.json    with --c-image: correlation, sum ratio, max |Δ|/max, pixels over tolerance
    <our outputs>         the run's own -floatfile/-intfile/... names (and Fdump.bin with -hkl)
    env.json, git_sha.txt versions, device, dtype, threads, platform; the code's commit
    summary.md            verdict, first divergence and its explanation, metrics, how to reproduce
    sha256.txt            every file of the bundle and every input file (``sha256sum -c`` format)

``nanobragg parity --c-bin PATH [--pixel S F] [--bytes KIND] [--shrink] -- <flags>`` instead runs
a nanoBragg binary itself (:mod:`nanobragg_cli.cbin_check`, :mod:`nanobragg_cli.cbin_cli`).

Nothing is written to the working folder, and nothing at all on an error: the bundle is built in
a hidden staging folder and renamed into place when complete. Exit status as ``nanobragg
compare``: 0 when the first C trace agrees (and the image, if given, is within tolerance), 1 on a
divergence or an image out of tolerance, 2 for unusable input. Further --c-trace files are
compared and reported but do not change the exit status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import sys

import click

from .bundle import (compare_text, environment, git_sha, json_text, summary_markdown,
                     stage_folder, write_checksums)
from .compare import DEFAULT_ATOL, DEFAULT_RTOL, CompareResult, compare_records
from .compare_report import summary_line, to_json, to_markdown
from .errors import NanoBraggError
from .golden import IMAGE_ATOL_FRACTION, IMAGE_RTOL, image_metrics
from .tracefmt import TraceInputError, load_trace, read_trace_text, trace_notes

_PIXEL_RE = re.compile(r"tracing pixel \(spixel=(\d+), fpixel=(\d+)\)")


class ParityInputError(NanoBraggError):
    """Unusable input to ``nanobragg parity`` (exit 2, as ``nanobragg compare``)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


@dataclass
class TraceCheck:
    """One C trace and our comparison with it; ``stem`` names its compare.* files."""
    path: Path
    label: str
    stem: str
    copy_name: str
    result: CompareResult
    meta: dict | None = None


@dataclass
class ParityResult:
    """What :func:`run_parity` did: the bundle folder, the exit status, the trace checks (the
    first decides), the image metrics (or None) and the in-memory simulation result."""
    bundle: Path
    exit_code: int
    traces: list
    image: dict | None
    sim: object = None
    files: list = field(default_factory=list)


def _case_meta(trace: Path) -> dict | None:
    """meta.json of the golden case holding ``trace``, if it lies in one."""
    meta = trace.parent / "meta.json"
    try:
        return json.loads(meta.read_text()) if meta.is_file() else None
    except (OSError, ValueError):
        return None


def _c_pixel(text: str) -> tuple | None:
    m = _PIXEL_RE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def load_c_image(path: Path, shape: tuple, origin: tuple | None):
    """The reference image as float64 [slow, fast]: raw float32 .bin (the detector's shape), .npy,
    or .npz (key "image", else its only array)."""
    import numpy as np
    try:
        if path.suffix == ".bin":
            if origin is not None:
                raise ParityInputError(f"--c-image {path}: a raw .bin has no shape; give a crop "
                                       "as .npy or .npz with --c-image-origin")
            data = np.fromfile(path, dtype="<f4")
            if data.size != shape[0] * shape[1]:
                raise ParityInputError(f"--c-image {path}: {data.size} floats, but the detector "
                                       f"has {shape[0]}x{shape[1]} pixels")
            return data.reshape(shape).astype(np.float64)
        if path.suffix == ".npy":
            return np.load(path).astype(np.float64)
        if path.suffix == ".npz":
            with np.load(path) as z:
                if "image" in z.files:
                    return z["image"].astype(np.float64)
                if len(z.files) == 1:
                    return z[z.files[0]].astype(np.float64)
                raise ParityInputError(f"--c-image {path}: no array named 'image' in the .npz")
    except OSError as err:
        raise ParityInputError(f"--c-image {path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise ParityInputError(f"--c-image {path}: not a readable array ({err})") from None
    raise ParityInputError(f"--c-image {path}: expected a .bin, .npy or .npz file")


def image_region(shape: tuple, ref_shape: tuple, origin: tuple | None,
                 window: tuple | None) -> tuple:
    """(s0, s1, f0, f1) inclusive: the part of the detector the reference covers (placed at
    ``origin``), cut to ``window`` if given."""
    s0, f0 = origin or (0, 0)
    if len(ref_shape) != 2:
        raise ParityInputError(f"--c-image: expected a 2-D image, got shape {tuple(ref_shape)}")
    s1, f1 = s0 + ref_shape[0] - 1, f0 + ref_shape[1] - 1
    if s0 < 0 or f0 < 0 or s1 >= shape[0] or f1 >= shape[1]:
        raise ParityInputError(f"--c-image: a {ref_shape[0]}x{ref_shape[1]} image at (slow, fast) "
                               f"= ({s0}, {f0}) does not fit the {shape[0]}x{shape[1]} detector")
    if window is not None:
        s0, s1 = max(s0, window[0]), min(s1, window[1])
        f0, f1 = max(f0, window[2]), min(f1, window[3])
        if s0 > s1 or f0 > f1:
            raise ParityInputError("--window does not overlap the part of the detector the "
                                   "--c-image covers")
    return s0, s1, f0, f1


def _trace_checks(c_traces: list) -> tuple:
    """Parse the C traces: (list of (path, records, name, text, meta, label)), C's pixel."""
    parsed, labels = [], set()
    for k, p in enumerate(c_traces):
        path = Path(p)
        try:
            text, _ = read_trace_text(path)
            records, name = load_trace(path, prefer="C")
        except TraceInputError as err:
            raise ParityInputError(f"--c-trace {err}") from None
        meta = _case_meta(path)
        label = meta.get("name", path.parent.name) if meta else path.stem
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", label) or "c"
        while label in labels:
            label += "_"
        labels.add(label)
        parsed.append((path, records, name, text, meta, label))
    return parsed, _c_pixel(parsed[0][3])


def _input_files(cfg, argv: list, redirected: bool) -> list:
    """Files the run read: -mat, -hkl, -sourcefile, -img, -mask, and a cached Fdump read."""
    files = [cfg.crystal.matfile, cfg.crystal.hklfile, cfg.beam.sourcefile]
    files += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-img", "-mask")]
    if cfg.crystal.hklfile is None and not redirected and os.path.exists(cfg.crystal.dumpfile):
        files.append(cfg.crystal.dumpfile)
    return [f for f in files if f]


def _c_command(check: TraceCheck, pixel: tuple) -> str | None:
    meta = check.meta
    if not meta or "args" not in meta:
        return None
    argv = list(meta["args"]) + list(meta.get("outputs", []))
    if "-trace_pixel" not in argv:
        argv += ["-trace_pixel", str(pixel[0]), str(pixel[1])]
    where = check.path.resolve().parent.parent.parent
    return (f"# {check.label}: from {check.path.parent / 'meta.json'}; run in a fresh folder "
            f"holding a link inputs -> {where / 'inputs'}\nOMP_NUM_THREADS=1 nanoBragg "
            + shlex.join(argv))


def _prepare(nb_argv: list, parsed: list, c_pixel: tuple | None, c_parity: bool,
             dtype: str | None, device: str | None) -> tuple:
    """(nanoBragg argv, ToolOptions, Config, traced pixel) of a parity run: the options given
    to ``nanobragg parity`` win over those among the flags; -trace_pixel defaults to C's."""
    from .simulate import prepare, split_tool_options
    argv, tool = split_tool_options(list(nb_argv))
    tool.c_parity = tool.c_parity or c_parity
    tool.dtype = dtype or tool.dtype
    tool.device = device or tool.device
    cfg = prepare(argv)
    if cfg.output.trace_pixel is None:
        if c_pixel is None:
            raise ParityInputError("-trace_pixel S F: give the pixel to trace (the C trace does "
                                   "not say which pixel it traced)")
        argv += ["-trace_pixel", str(c_pixel[0]), str(c_pixel[1])]
        cfg = prepare(argv)
    pixel = tuple(cfg.output.trace_pixel)
    if c_pixel is not None and c_pixel != pixel:
        raise ParityInputError(f"-trace_pixel {pixel[0]} {pixel[1]}: the C trace {parsed[0][0]} "
                               f"traced pixel {c_pixel[0]} {c_pixel[1]}")
    return argv, tool, cfg, pixel


def _check_window(window: tuple, shape: tuple, pixel: tuple) -> None:
    """--window must lie in the detector and hold the traced pixel."""
    s0, s1, f0, f1 = window
    if not (0 <= s0 <= s1 < shape[0] and 0 <= f0 <= f1 < shape[1]):
        raise ParityInputError(f"--window {s0} {s1} {f0} {f1}: expected 0 <= S0 <= S1 < "
                               f"{shape[0]} and 0 <= F0 <= F1 < {shape[1]}")
    if not (s0 <= pixel[0] <= s1 and f0 <= pixel[1] <= f1):
        raise ParityInputError(f"--window {s0} {s1} {f0} {f1}: the traced pixel "
                               f"{pixel[0]} {pixel[1]} is outside it")


def _plain_command(argv: list, tool) -> str:
    """Our simulation as a plain ``nanobragg`` command line."""
    return shlex.join(["nanobragg", *argv] + (["--c-parity"] if tool.c_parity else [])
                      + (["--dtype", tool.dtype] if tool.dtype != "float64" else [])
                      + (["--device", tool.device] if tool.device != "cpu" else []))


def _commands_text(plain: str, checks: list, pixel: tuple, window: tuple | None,
                   invocation: str | None, c_command: str | None) -> str:
    """commands.txt: the working folder, this bundle's command, the plain one, the C one."""
    c_lines = [c_command] if c_command else [c for c in (_c_command(ch, pixel)
                                                         for ch in checks) if c]
    commands = ["# working folder", os.getcwd(), "", "# this bundle",
                invocation or "(run through the Python API: nanobragg_cli.parity.run_parity)",
                "", "# our simulation as a plain command (it writes its outputs into the "
                "working folder" + ("; it renders the whole image, the bundle only --window "
                                    f"{' '.join(map(str, window))}" if window else "") + ")",
                plain, "", "# nanoBragg.c"] + (c_lines or ["unknown (give --c-command)"])
    return "\n".join(commands) + "\n"


def run_parity(nb_argv: list, c_traces: list, out: Path, *, c_image: Path | None = None,
               c_image_origin: tuple | None = None, c_parity: bool = False,
               dtype: str | None = None, device: str | None = None,
               rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
               image_rtol: float = IMAGE_RTOL, image_atol_fraction: float = IMAGE_ATOL_FRACTION,
               window: tuple | None = None, c_command: str | None = None,
               invocation: str | None = None, progress=None) -> ParityResult:
    """Render ``nb_argv`` (nanoBragg flags plus this tool's --options) in-process, compare with
    the C traces (the first decides the exit status) and the C image, and write the bundle
    ``out/<UTC timestamp>/``. Raises :class:`ParityInputError` / NanoBraggError on bad input
    (then nothing is written)."""
    from .simulate import output_files, run_simulation, stdout_report, trace_json_record

    if not c_traces:
        raise ParityInputError("--c-trace: give at least one nanoBragg.c trace")
    parsed, c_pixel = _trace_checks(c_traces)
    argv, tool, cfg, pixel = _prepare(nb_argv, parsed, c_pixel, c_parity, dtype, device)
    shape = (cfg.detector.spixels, cfg.detector.fpixels)
    if window is not None:
        _check_window(window, shape, pixel)
    ref = region = None
    if c_image is not None:
        ref = load_c_image(Path(c_image), shape, c_image_origin)
        region = image_region(shape, ref.shape, c_image_origin, window)

    final, stage = stage_folder(out, ParityInputError)
    try:
        redirected = cfg.crystal.hklfile is not None
        if redirected:   # the Fdump cache is an output: it goes into the bundle
            dump = str(stage / Path(cfg.crystal.dumpfile).name)
            cfg = replace(cfg, crystal=replace(cfg.crystal, dumpfile=dump))
        inputs = [Path(p) for p in c_traces] + ([Path(c_image)] if c_image else [])
        inputs += [Path(p) for p in _input_files(cfg, argv, redirected)]
        for w in cfg.warnings:
            print(f"nanobragg: warning: {w}", file=sys.stderr)
        res = run_simulation(cfg, tool, progress=progress, window=window)
        if not res.trace_lines:
            raise ParityInputError(f"-trace_pixel {pixel[0]} {pixel[1]}: the pixel is not "
                                   "rendered (outside -roi, or masked), so there is no trace")
        py_text = "\n".join(stdout_report(res)) + "\n"
        py_records, _ = load_trace(py_text, prefer="PY")
        checks = []
        for k, (path, records, name, text, meta, label) in enumerate(parsed):
            result = compare_records(records, py_records, rtol=rtol, atol=atol, c_name=name,
                                     py_name="trace_py.log", c_notes=trace_notes(text))
            stem = "compare" if k == 0 else f"compare_{label}"
            copy = "c_trace.log" if k == 0 else f"c_trace_{label}.log"
            checks.append(TraceCheck(path, label, stem, copy, result, meta))
        metrics = None
        if ref is not None:
            metrics = dict(c_image=str(c_image), origin_slow_fast=list(c_image_origin or (0, 0)),
                           shape_slow_fast=list(ref.shape),
                           **image_metrics(res.image, ref, c_image_origin, region, image_rtol,
                                           image_atol_fraction))
        files = {}
        for path, data in output_files(res):
            files[Path(path).name] = data
        files["trace_py.log"] = py_text.encode()
        files["trace_py_per_phi.json"] = json_text(trace_json_record(res, tool)).encode()
        for (path, _, _, text, _, _), check in zip(parsed, checks):
            files[check.copy_name] = text.encode()
            files[check.stem + ".txt"] = compare_text(check.result).encode()
            files[check.stem + ".md"] = to_markdown(check.result).encode()
            files[check.stem + ".json"] = json_text(to_json(check.result)).encode()
        if metrics is not None:
            files["image_metrics.json"] = json_text(metrics).encode()
        files["env.json"] = json_text(environment(tool)).encode()
        files["git_sha.txt"] = git_sha().encode()
        plain = _plain_command(argv, tool)
        files["commands.txt"] = _commands_text(plain, checks, pixel, window, invocation,
                                               c_command).encode()
        exit_code = 0 if checks[0].result.first_divergence is None else 1
        if metrics is not None and not metrics["ok"]:
            exit_code = 1
        files["summary.md"] = summary_markdown(final, res, tool, pixel, window, checks, metrics,
                                               exit_code, invocation, plain).encode()
        for name, data in files.items():
            (stage / name).write_bytes(data)
        write_checksums(stage, inputs)
        stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ParityResult(final, exit_code, checks, metrics, res,
                        sorted(p.name for p in final.iterdir()))


_CONTEXT = {"help_option_names": ["-h", "--help"]}


class _ParityCommand(click.Command):
    """Says where nanoBragg flags go when one lands among the options."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as err:
            raise click.UsageError(f"{err.format_message()} (put the nanoBragg flags after "
                                   "'--': nanobragg parity [OPTIONS] -- -cell ...)", ctx) from None


@click.command("parity", cls=_ParityCommand, context_settings=_CONTEXT,
               epilog="Put the nanoBragg flags after '--'. Exit status: 0 agreement, 1 divergence "
                      "or image out of tolerance, 2 unusable input.")
@click.option("--c-trace", "c_traces", multiple=True, type=click.Path(),
              help="nanoBragg.c trace (TRACE_C lines); repeat to compare with several, the first "
                   "decides the exit status.")
@click.option("--c-bin", default=None, metavar="PATH",
              help="Run this nanoBragg binary on the flags instead of reading --c-trace/--c-image "
                   "(clean folder, one thread; see nanobragg_cli.cbin_check).")
@click.option("--pixel", "pixels", type=int, nargs=2, multiple=True, metavar="S F",
              help="With --c-bin: also trace this (slow, fast) pixel (besides the worst and the "
                   "brightest); repeatable.")
@click.option("--bytes", "byte_kinds", type=click.Choice(["int", "noise", "pgm"]), multiple=True,
              help="With --c-bin: also compare these output files byte for byte; repeatable.")
@click.option("--shrink", "do_shrink", is_flag=True, default=False,
              help="With --c-bin: on a divergence, remove flags and simplify values while the "
                   "same first divergence persists; print the smallest command line.")
@click.option("--c-image", type=click.Path(), default=None,
              help="nanoBragg.c float image: raw float32 .bin, .npy, or .npz (key 'image').")
@click.option("--c-image-origin", type=int, nargs=2, default=None, metavar="S F",
              help="The --c-image is a crop starting at this (slow, fast) pixel.")
@click.option("--topic", default=None, help="Bundle under reports/TOPIC/ (default: the C trace's "
                                            "corpus case, else 'parity').")
@click.option("--out", type=click.Path(), default=None,
              help="Bundle under this folder instead of reports/TOPIC.")
@click.option("--c-parity", is_flag=True, default=False,
              help="Reproduce nanoBragg.c's numerical quirks (as for the golden corpus).")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default=None)
@click.option("--device", default=None, help="cpu (default), cuda or cuda:N.")
@click.option("--rtol", type=float, default=DEFAULT_RTOL, show_default=True,
              help="Trace tolerance, relative to the largest |C value| of a key.")
@click.option("--atol", type=float, default=DEFAULT_ATOL, show_default=True,
              help="Trace absolute tolerance.")
@click.option("--image-rtol", type=float, default=IMAGE_RTOL, show_default=True)
@click.option("--image-atol-fraction", type=float, default=IMAGE_ATOL_FRACTION, show_default=True,
              help="Image absolute tolerance as a fraction of the C image's max.")
@click.option("--window", type=int, nargs=4, default=None, metavar="S0 S1 F0 F1",
              help="Render only this block of the image (inclusive), keeping the run's state.")
@click.option("--c-command", default=None,
              help="The nanoBragg.c command line, for commands.txt (found in the corpus' "
                   "meta.json when the trace lies in a golden case).")
@click.argument("nb_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def parity_command(ctx, c_traces, c_bin, pixels, byte_kinds, do_shrink, c_image, c_image_origin,
                   topic, out, c_parity, dtype, device, rtol, atol, image_rtol,
                   image_atol_fraction, window, c_command, nb_args):
    """Render a traced pixel, compare it with nanoBragg.c, and write a parity bundle."""
    from .progress import RenderProgress

    if topic and out:
        _fail(ctx, "give --topic or --out, not both")
    if c_bin is not None:
        if c_traces or c_image or window:
            _fail(ctx, "--c-bin runs the binary itself: leave out --c-trace, --c-image, --window")
        from .cbin_cli import parity_c_bin
        out = Path(out) if out else Path("reports") / (topic or "parity")
        try:
            code = parity_c_bin(c_bin, list(nb_args), out, c_parity=c_parity, dtype=dtype or "float64",
                                device=device or "cpu", pixels=[tuple(p) for p in pixels],
                                byte_kinds=tuple(byte_kinds), do_shrink=do_shrink, rtol=rtol,
                                atol=atol, image_rtol=image_rtol,
                                image_atol_fraction=image_atol_fraction)
        except NanoBraggError as err:
            _fail(ctx, str(err))
        ctx.exit(code)
    if not c_traces:
        _fail(ctx, "--c-trace: give at least one nanoBragg.c trace (or --c-bin PATH to run one)")
    if pixels or byte_kinds or do_shrink:
        _fail(ctx, "--pixel, --bytes and --shrink need --c-bin")
    if not (rtol >= 0 and atol >= 0 and image_rtol >= 0 and image_atol_fraction >= 0):
        _fail(ctx, "tolerances must be non-negative numbers")
    if out is None:
        if topic is None:
            meta = _case_meta(Path(c_traces[0]))
            topic = meta.get("name", "parity") if meta else "parity"
        if Path(topic).is_absolute() or ".." in Path(topic).parts:
            _fail(ctx, f"--topic {topic}: expected a name (use --out for a folder)")
        out = Path("reports") / topic
    invocation = ["nanobragg", "parity"]
    for p in c_traces:
        invocation += ["--c-trace", p]
    if c_image:
        invocation += ["--c-image", c_image]
    if c_image_origin:
        invocation += ["--c-image-origin", *map(str, c_image_origin)]
    invocation += ["--out", str(out)] + (["--c-parity"] if c_parity else [])
    invocation += (["--dtype", dtype] if dtype else []) + (["--device", device] if device else [])
    if (rtol, atol) != (DEFAULT_RTOL, DEFAULT_ATOL):
        invocation += ["--rtol", repr(rtol), "--atol", repr(atol)]
    if (image_rtol, image_atol_fraction) != (IMAGE_RTOL, IMAGE_ATOL_FRACTION):
        invocation += ["--image-rtol", repr(image_rtol),
                       "--image-atol-fraction", repr(image_atol_fraction)]
    if window:
        invocation += ["--window", *map(str, window)]
    invocation += ["--", *nb_args]
    bar = RenderProgress("-noprogress" not in nb_args)
    try:
        res = run_parity(list(nb_args), list(c_traces), Path(out), c_image=c_image and Path(c_image),
                         c_image_origin=c_image_origin, c_parity=c_parity, dtype=dtype,
                         device=device, rtol=rtol, atol=atol, image_rtol=image_rtol,
                         image_atol_fraction=image_atol_fraction, window=window,
                         c_command=c_command, invocation=shlex.join(invocation), progress=bar)
    except NanoBraggError as err:
        bar.close()
        _fail(ctx, str(err))
    bar.close()
    for ch in res.traces:
        click.echo(f"{ch.label}: {summary_line(ch.result)}; "
                   f"first_divergence={ch.result.first_divergence}")
        if ch.result.explanation:
            click.echo(ch.result.explanation)
    if res.image is not None:
        m = res.image
        click.echo(f"image: correlation {m['correlation']:.9g}, sum ratio {m['sum_ratio']:.9g}, "
                   f"max |d|/max {m['max_abs_delta_over_max']:.3g}, "
                   f"{m['pixels_over_tolerance']} of {m['pixels']} pixels over tolerance")
    click.echo(f"bundle: {res.bundle}")
    click.echo(f"first_divergence={res.traces[0].result.first_divergence}")
    ctx.exit(res.exit_code)


def _fail(ctx: click.Context, message: str) -> None:
    click.echo(f"nanobragg parity: error: {message}", err=True)
    ctx.exit(2)
