"""One nanoBragg command line through a nanoBragg binary and through us: the whole float image,
output bytes on request, and per-pixel traces of the pixels worth looking at; the bundle.

:func:`check_binary` runs the binary (:func:`~nanobragg_cli.cbin.run_binary`) and our renderer
(:func:`~nanobragg_cli.cbin.run_ours`) on the same flags, compares the float images (rtol·|C| +
atol_fraction·max|C|), then traces chosen pixels on both sides:

- ``worst``: the pixel of largest |Δ|/tolerance, when the image is out of tolerance;
- ``brightest``: the pixel of largest C value;
- ``given``: every ``--pixel S F`` (and the ``-trace_pixel``/``-printout_pixel`` of the flags).

A pixel is traced with ``-trace_pixel S F`` and compared key by key
(:func:`~nanobragg_cli.compare.compare_records`, known quirks explained). When the binary prints
no ``TRACE_C`` line (it does not know ``-trace_pixel``), the pixel's ``-printout_pixel F S``
block is compared instead at the precision nanoBragg.c printed it
(:mod:`nanobragg_cli.printout_compare`), and the check says so (``method == "printout"``).

:attr:`BinaryCheck.signature` names the first divergence: the first divergent trace key of the
first pixel that diverges, else ``image``, else ``bytes:<file>``; None when everything agrees.
:func:`write_bundle` keeps the evidence in ``OUT/<UTC time>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import shlex
import shutil

from .cbin import (FILE_NAMES, BinaryRun, CBinError, harness_outputs, input_paths, run_binary,
                   run_ours, split_user_argv)
from .compare import DEFAULT_ATOL, DEFAULT_RTOL, compare_records
from .errors import NanoBraggError
from .golden import IMAGE_ATOL_FRACTION, IMAGE_RTOL

CHOICES = ("worst", "brightest")
BYTE_KINDS = ("int", "noise", "pgm")
PRINTOUT_NOTE = ("the binary printed no TRACE_C lines for -trace_pixel (it does not understand "
                 "it): compared its -printout_pixel values instead, at the %g precision "
                 "nanoBragg.c printed them")


@dataclass
class PixelCheck:
    """One traced pixel: why it was chosen (``worst``, ``brightest``, ``given``, joined by +),
    (slow, fast), how it was compared (``trace``, ``printout``, or ``none`` with a ``note``), the
    comparison, and both sides' texts."""
    label: str
    pixel: tuple
    method: str
    result: object = None
    c_text: str = ""
    py_text: str = ""
    note: str | None = None

    @property
    def first_divergence(self) -> str | None:
        return self.result.first_divergence if self.result is not None else None


@dataclass
class BinaryCheck:
    """Everything :func:`check_binary` found. ``flags``: the nanoBragg flags compared (output and
    pixel flags removed); ``c_argv``: what the binary ran for the image; ``image``: metrics
    (golden.image_metrics); ``bytes``: file name -> identical; ``error``: why it could not run."""
    binary: str
    flags: list
    c_argv: list
    base: Path
    c_parity: bool
    shape: tuple | None = None
    image: dict | None = None
    bytes: dict = field(default_factory=dict)
    pixels: list = field(default_factory=list)
    trace_support: bool | None = None
    c_run: BinaryRun | None = None
    ours: object = None
    error: str | None = None

    @property
    def signature(self) -> str | None:
        if self.error is not None:
            return "error"
        for px in self.pixels:
            if px.first_divergence is not None:
                return px.first_divergence
        if self.image is not None and not self.image["ok"]:
            return "image"
        for name, same in self.bytes.items():
            if not same:
                return f"bytes:{name}"
        return None

    @property
    def ok(self) -> bool:
        return self.error is None and self.signature is None

    @property
    def diverging_pixel(self) -> PixelCheck | None:
        return next((p for p in self.pixels if p.first_divergence is not None), None)

    @property
    def explanation(self) -> str | None:
        px = self.diverging_pixel
        return px.result.explanation if px is not None else None


def _failed(run: BinaryRun) -> str:
    tail = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:] or [""]
    return f"the binary exited with status {run.returncode}: {tail[0][:200]}"


def choose_pixels(ours, ref, metrics: dict, choose: tuple, given: list,
                  rtol: float, atol_fraction: float) -> list:
    """[(label, (slow, fast))]: the chosen pixels in the order worst, brightest, given (one entry
    per pixel, labels joined with + when a pixel is chosen for several reasons)."""
    import numpy as np
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    picked = []
    if "worst" in choose and not metrics["ok"]:
        tol = rtol * np.abs(b) + atol_fraction * float(np.abs(b).max())
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(tol > 0, np.abs(a - b) / tol, np.where(a != b, np.inf, 0.0))
        ratio = np.nan_to_num(ratio, nan=np.inf)
        picked.append(("worst", tuple(int(x) for x in np.unravel_index(ratio.argmax(), b.shape))))
    if "brightest" in choose:
        picked.append(("brightest", tuple(int(x) for x in np.unravel_index(b.argmax(), b.shape))))
    picked += [("given", tuple(p)) for p in given]
    out = {}
    for label, px in picked:
        out[px] = out[px] + "+" + label if px in out else label
    return [(label, px) for px, label in out.items()]


def check_binary(binary: str, argv: list, base: Path | None = None, *, c_parity: bool = True,
                 dtype: str = "float64", device: str = "cpu", pixels: list = (),
                 choose: tuple = CHOICES, compare_bytes: tuple = (),
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 image_rtol: float = IMAGE_RTOL, image_atol_fraction: float = IMAGE_ATOL_FRACTION,
                 timeout: float | None = None, progress=None) -> BinaryCheck:
    """Run ``argv`` (nanoBragg flags) through ``binary`` and through us from folder ``base``
    (``progress``: a RenderProgress for our whole-image render).
    A run that fails on either side is a check with ``error`` set (never raises for that);
    CBinError when the binary cannot be started at all."""
    from .compare import TraceInputError
    from .golden import image_metrics
    from .tracefmt import load_trace

    base = Path(base or os.getcwd())
    ours_only = [t for t in argv if t.startswith("--")]
    if ours_only:
        raise CBinError(f"{ours_only[0]}: this tool's options go before '--' (the flags after it "
                        "are given to the binary as they are)")
    flags, user_pixels = split_user_argv(list(argv))
    given = list(pixels) + [p for p in user_pixels if p not in pixels]
    outs = harness_outputs(flags, pgm="pgm" in compare_bytes)
    chk = BinaryCheck(binary, flags, flags + outs, base, c_parity)
    chk.c_run = c = run_binary(binary, chk.c_argv, base, timeout)
    if c.returncode != 0 or "float" not in c.files:
        chk.error = _failed(c) if c.returncode else "the binary wrote no float image"
        return chk
    kw = dict(c_parity=c_parity, dtype=dtype, device=device)
    try:
        chk.ours = ours = run_ours(chk.c_argv, base, progress=progress, **kw)
    except NanoBraggError as err:
        chk.error = f"our run failed: {err}"
        return chk
    except Exception as err:  # noqa: BLE001 - a crash of ours is this case's finding
        chk.error = f"our run crashed: {type(err).__name__}: {err}"
        return chk
    chk.shape = tuple(ours.image.shape)
    ref = c.image(chk.shape)
    if ref is None:
        chk.error = (f"the binary's float image has {len(c.files['float']) // 4} pixels, ours "
                     f"{chk.shape[0]}x{chk.shape[1]}")
        return chk
    s_max, f_max = chk.shape[0] - 1, chk.shape[1] - 1
    chk.image = image_metrics(ours.image, ref, None, (0, s_max, 0, f_max), image_rtol,
                              image_atol_fraction)
    for kind in compare_bytes:
        if kind in c.files or kind in ours.files:
            chk.bytes[FILE_NAMES[kind]] = c.files.get(kind) == ours.files.get(kind)
    for label, (s, f) in choose_pixels(ours.image, ref, chk.image, tuple(choose), given,
                                       image_rtol, image_atol_fraction):
        px = PixelCheck(label, (s, f), "none")
        chk.pixels.append(px)
        if not (0 <= s <= s_max and 0 <= f <= f_max):
            px.note = f"pixel ({s}, {f}) is outside the {chk.shape[0]}x{chk.shape[1]} detector"
            continue
        window = (s, s, f, f)
        if chk.trace_support is not False:
            run = run_binary(binary, chk.c_argv + ["-trace_pixel", str(s), str(f)], base, timeout)
            if run.returncode != 0:
                px.note = f"trace run: {_failed(run)}"
                continue
            chk.trace_support = run.has_trace
        if chk.trace_support:
            mine = run_ours(chk.c_argv, base, trace_pixels=[(s, f)], window=window, **kw)
            px.c_text, px.py_text = run.stdout, mine.traces.get((s, f), "")
            if not px.py_text.strip():
                px.note = "the pixel is not rendered on our side (outside -roi, or masked)"
                continue
            try:
                c_rec, _ = load_trace(px.c_text, prefer="C")
                py_rec, _ = load_trace(px.py_text, prefer="PY")
            except TraceInputError as err:
                px.note = f"unreadable trace: {err}"
                continue
            px.method = "trace"
            px.result = compare_records(c_rec, py_rec, rtol=rtol, atol=atol,
                                        c_name=f"c_trace_{s}_{f}.log",
                                        py_name=f"trace_py_{s}_{f}.log")
        else:
            from .printout_compare import compare_printouts
            pp = ["-printout_pixel", str(f), str(s)]
            run = run_binary(binary, chk.c_argv + pp, base, timeout)
            if run.returncode != 0:
                px.note = f"printout run: {_failed(run)}"
                continue
            mine = run_ours(chk.c_argv + pp, base, window=window, **kw)
            px.c_text, px.py_text = run.stdout, "\n".join(mine.printout) + "\n"
            px.method = "printout"
            px.note = PRINTOUT_NOTE
            px.result = compare_printouts(px.c_text.splitlines(), mine.printout,
                                          c_name=f"c_printout_{s}_{f}.txt",
                                          py_name=f"printout_py_{s}_{f}.txt")
    return chk


def c_command(chk: BinaryCheck, argv: list | None = None) -> str:
    """The binary's command line as the harness ran it."""
    links = sorted({Path(p).parts[0] for p in input_paths(chk.flags)})
    where = (f" holding links {', '.join(f'{t} -> {chk.base / t}' for t in links)}"
             if links else "")
    return (f"# run in a fresh empty folder{where}\nOMP_NUM_THREADS=1 "
            + shlex.join([chk.binary, *(argv or chk.c_argv)]))


def pixel_lines(chk: BinaryCheck) -> list:
    """One line per traced pixel: label, pixel, method, summary and first_divergence."""
    from .compare_report import summary_line
    lines = []
    for px in chk.pixels:
        head = f"pixel ({px.pixel[0]}, {px.pixel[1]}) [{px.label}]"
        if px.result is None:
            lines.append(f"{head}: not compared: {px.note}")
            continue
        lines.append(f"{head} {px.method}: {summary_line(px.result)}; "
                     f"first_divergence={px.first_divergence}")
        if px.result.explanation:
            lines.append(px.result.explanation)
    return lines


def image_line(chk: BinaryCheck) -> str:
    m = chk.image
    if m is None:
        return f"image: not compared ({chk.error})"
    return (f"image: {m['pixels_over_tolerance']} of {m['pixels']} pixels over tolerance, "
            f"correlation {m['correlation']:.9g}, sum ratio {m['sum_ratio']:.9g}, "
            f"max |d|/max {m['max_abs_delta_over_max']:.3g}")


def write_bundle(chk: BinaryCheck, out: Path, invocation: str, shrunk=None) -> Path:
    """Write ``out/<UTC time>/`` (staged, renamed into place when complete): commands.txt,
    c_stdout.txt, c_float.bin and py_float.bin, image_metrics.json, bytes.json, per pixel
    c_trace_S_F.log / trace_py_S_F.log (or c_printout_S_F.txt / printout_py_S_F.txt) with
    compare_S_F.txt/.md/.json, shrink.txt, env.json, git_sha.txt, summary.md, sha256.txt."""
    from .bundle import (compare_text, environment, git_sha, json_text, stage_folder,
                         write_checksums)
    from .compare_report import to_json, to_markdown
    from .simulate import ToolOptions

    final, stage = stage_folder(out, CBinError)
    try:
        files = {}
        plain = shlex.join(["nanobragg", *chk.c_argv] + (["--c-parity"] if chk.c_parity else []))
        files["commands.txt"] = "\n".join([
            "# working folder (input paths resolve here)", str(chk.base), "",
            "# this bundle", invocation, "", "# the binary (image run; traces add -trace_pixel "
            "S F, printouts -printout_pixel F S)", c_command(chk), "", "# our side", plain, ""])
        if chk.c_run is not None:
            files["c_stdout.txt"] = chk.c_run.stdout
            if "float" in chk.c_run.files:
                files["c_float.bin"] = chk.c_run.files["float"]
        if chk.ours is not None and "float" in chk.ours.files:
            files["py_float.bin"] = chk.ours.files["float"]
        if chk.image is not None:
            files["image_metrics.json"] = json_text(dict(shape_slow_fast=list(chk.shape),
                                                         **chk.image))
        if chk.bytes:
            files["bytes.json"] = json_text(chk.bytes)
        for px in chk.pixels:
            if px.result is None:
                continue
            s, f = px.pixel
            c_name, py_name = ((f"c_trace_{s}_{f}.log", f"trace_py_{s}_{f}.log")
                               if px.method == "trace" else
                               (f"c_printout_{s}_{f}.txt", f"printout_py_{s}_{f}.txt"))
            files[c_name], files[py_name] = px.c_text, px.py_text
            files[f"compare_{s}_{f}.txt"] = compare_text(px.result)
            files[f"compare_{s}_{f}.md"] = to_markdown(px.result)
            files[f"compare_{s}_{f}.json"] = json_text(dict(to_json(px.result), pixel=[s, f],
                                                            label=px.label, method=px.method,
                                                            note=px.note))
        if shrunk is not None:
            files["shrink.txt"] = "\n".join(shrunk.report_lines()) + "\n"
        tool = ToolOptions(c_parity=chk.c_parity)
        files["env.json"] = json_text(dict(environment(tool), c_bin=chk.binary))
        files["git_sha.txt"] = git_sha()
        verdict = "agreement" if chk.ok else f"divergence: {chk.signature}"
        summary = [f"# Parity against {chk.binary}", "", f"Verdict: **{verdict}**", "",
                   f"- {image_line(chk)}"]
        summary += [f"- {line}" for line in pixel_lines(chk)]
        if chk.bytes:
            summary.append("- bytes: " + ", ".join(f"{k} {'identical' if v else 'DIFFER'}"
                                                   for k, v in chk.bytes.items()))
        if chk.error:
            summary.append(f"- error: {chk.error}")
        if shrunk is not None:
            summary += ["", "## Shrunk", "", "```", *shrunk.report_lines(), "```"]
        summary += ["", "## Reproduce", "", "```", invocation, "```", ""]
        files["summary.md"] = "\n".join(summary)
        for name, data in files.items():
            (stage / name).write_bytes(data if isinstance(data, (bytes, bytearray, memoryview)) else data.encode())
        write_checksums(stage, [chk.base / p for p in input_paths(chk.flags)])
        stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final
