"""Drive a nanoBragg binary directly, the way the golden corpus was made, and run the same
command line through us.

:func:`run_binary` runs a user-named nanoBragg executable in a fresh empty temporary folder with
``OMP_NUM_THREADS=1``, links the input files its flags name (``-mat``, ``-hkl``, ``-sourcefile``,
``-img``, ``-mask``; by their first path component, so ``inputs/A.mat`` links ``inputs``) from a
base folder, and collects what it wrote (float/int/noise/PGM images) and printed. Nothing stray
(a cached Fdump.bin, an old image) can reach it. :func:`run_ours` renders the same flags
in-process in the same kind of folder.

The harness owns the output flags: :func:`split_user_argv` removes the user's output, progress
and pixel flags, and :func:`harness_outputs` appends its own (``-floatfile float.bin -intfile
int.img``, ``-noisefile noise.img`` unless ``-nonoise``, ``-pgmfile image.pgm`` or ``-nopgm``,
``-noprogress``), the same names the corpus uses.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import io
import os
from pathlib import Path
import shutil
import subprocess
import tempfile
import time

from .errors import NanoBraggError

INPUT_FLAGS = ("-mat", "-hkl", "-sourcefile", "-img", "-mask")
OUTPUT_FLAGS = {"-floatfile": 1, "-floatimage": 1, "-intfile": 1, "-intimage": 1,
                "-noisefile": 1, "-noiseimage": 1, "-pgmfile": 1, "-pgmimage": 1, "-nopgm": 0,
                "-noprogress": 0, "-progress": 0}
PIXEL_FLAGS = {"-trace_pixel": 2, "-dump_pixel": 2, "-printout_pixel": 2, "-printout": 0}
FILE_NAMES = {"float": "float.bin", "int": "int.img", "noise": "noise.img", "pgm": "image.pgm"}
_FLAG_OF = {"float": "-floatfile", "int": "-intfile", "noise": "-noisefile", "pgm": "-pgmfile"}


class CBinError(NanoBraggError):
    """The binary cannot be run (missing, not executable, timed out): exit 2."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


def split_user_argv(argv: list) -> tuple:
    """(flags without output/progress/pixel flags, [(slow, fast)] the user asked to trace:
    ``-trace_pixel S F`` and ``-printout_pixel F S``)."""
    rest, pixels, i = [], [], 0
    while i < len(argv):
        tok = argv[i]
        if tok in OUTPUT_FLAGS:
            i += 1 + OUTPUT_FLAGS[tok]
            continue
        if tok in PIXEL_FLAGS:
            n = PIXEL_FLAGS[tok]
            vals = argv[i + 1:i + 1 + n]
            if n == 2 and len(vals) == 2 and all(v.lstrip("-").isdigit() for v in vals):
                a, b = int(vals[0]), int(vals[1])
                px = (b, a) if tok == "-printout_pixel" else (a, b)
                if px not in pixels:
                    pixels.append(px)
            i += 1 + n
            continue
        rest.append(tok)
        i += 1
    return rest, pixels


def harness_outputs(argv: list, *, pgm: bool = False) -> list:
    """The output flags the harness appends to ``argv`` (corpus file names)."""
    out = ["-floatfile", FILE_NAMES["float"], "-intfile", FILE_NAMES["int"]]
    if "-nonoise" not in argv:
        out += ["-noisefile", FILE_NAMES["noise"]]
    out += ["-pgmfile", FILE_NAMES["pgm"]] if pgm else ["-nopgm"]
    return out + ["-noprogress"]


def input_paths(argv: list) -> list:
    """The relative input paths named by ``argv``'s input flags."""
    return [argv[i + 1] for i, tok in enumerate(argv[:-1])
            if tok in INPUT_FLAGS and not os.path.isabs(argv[i + 1])]


@contextmanager
def clean_folder(argv: list, base: Path, prefix: str = "nb_cbin_"):
    """A fresh temporary folder holding links to the first path component of every relative
    input path of ``argv`` (resolved against ``base``); removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for rel in input_paths(argv):
            top = Path(rel).parts[0]
            src, dst = Path(base) / top, tmp / top
            if src.exists() and not os.path.lexists(dst):
                try:
                    os.symlink(src.resolve(), dst)
                except OSError:
                    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class BinaryRun:
    """One run of the binary: its argv, exit status, stdout/stderr text, the files it wrote
    (kind -> bytes, kinds as in FILE_NAMES) and the wall time in seconds."""
    argv: list
    returncode: int
    stdout: str
    stderr: str
    files: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def has_trace(self) -> bool:
        return any(line.startswith("TRACE_C") for line in self.stdout.splitlines())

    def image(self, shape: tuple):
        """The -floatfile image as float64 [slow, fast] (None if missing or the wrong size)."""
        import numpy as np
        data = self.files.get("float")
        if data is None or len(data) != 4 * shape[0] * shape[1]:
            return None
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float64)


def run_binary(binary: str, argv: list, base: Path | None = None,
               timeout: float | None = None) -> BinaryRun:
    """Run ``binary argv`` in a clean folder (see :func:`clean_folder`) with one OpenMP thread.
    Output files are found by the names ``argv`` gives them."""
    path = shutil.which(binary) if os.sep not in binary else binary
    if not path or not os.path.isfile(path):
        raise CBinError(f"--c-bin {binary}: no such file")
    if not os.access(path, os.X_OK):
        raise CBinError(f"--c-bin {binary}: not executable")
    path = os.path.abspath(path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with clean_folder(argv, Path(base or os.getcwd())) as tmp:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([path, *argv], cwd=tmp, env=env, capture_output=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CBinError(f"--c-bin {binary}: no answer within {timeout:g} s") from None
        except OSError as err:
            raise CBinError(f"--c-bin {binary}: cannot run it ({err.strerror or err})") from None
        files = {}
        for kind, flag in _FLAG_OF.items():
            names = [argv[i + 1] for i, tok in enumerate(argv[:-1]) if tok == flag]
            if names and (tmp / names[-1]).is_file():
                files[kind] = (tmp / names[-1]).read_bytes()
        return BinaryRun(list(argv), proc.returncode, proc.stdout.decode(errors="replace"),
                         proc.stderr.decode(errors="replace"), files, time.perf_counter() - t0)


@dataclass
class OurRun:
    """One in-process run: float32 image [slow, fast], files (kind -> bytes), TRACE_PY text per
    traced (slow, fast) pixel, the -printout_pixel block lines, and the simulation result."""
    image: object
    files: dict
    traces: dict
    printout: list
    result: object = None


def run_ours(argv: list, base: Path | None = None, *, c_parity: bool = True,
             dtype: str = "float64", device: str = "cpu", trace_pixels: list = (),
             window: tuple | None = None, progress=None) -> OurRun:
    """Render ``argv`` (nanoBragg flags, plus this tool's --options) in-process in a clean
    folder, tracing ``trace_pixels`` (slow, fast); ``window`` renders only that block;
    ``progress(done, total)`` hears the render's progress."""
    from contextlib import redirect_stdout
    from .simulate import output_files, prepare, run_simulation, split_tool_options
    from .trace import format_lines

    nb_argv, tool = split_tool_options(list(argv))
    tool.c_parity = tool.c_parity or c_parity
    tool.dtype, tool.device = dtype, device
    old = os.getcwd()
    with clean_folder(nb_argv, Path(base or old), prefix="nb_ours_") as tmp:
        os.chdir(tmp)
        try:
            cfg = prepare(nb_argv)
            with redirect_stdout(io.StringIO()):
                res = run_simulation(cfg, tool, extra_trace_pixels=list(trace_pixels),
                                     window=window, progress=progress)
            kind_of = {cfg.output.floatfile: "float", cfg.output.intfile: "int",
                       cfg.output.pgmfile: "pgm", cfg.output.noisefile: "noise"}
            files = {kind_of[p]: data for p, data in output_files(res)}
        finally:
            os.chdir(old)
    traces = {px: "\n".join(format_lines(lines)) + "\n" for px, (lines, _) in res.traces.items()}
    return OurRun(res.image, files, traces, list(res.printout), res)
