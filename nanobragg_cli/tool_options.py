"""This tool's own options (double dash, not nanoBragg.c's): one declarative table.

:data:`TOOL_OPTIONS` says, for each option, its name, value placeholder, help sentence and how its
value is read into :class:`ToolOptions`. The parser (:func:`split_tool_options`), ``--help`` and
docs/flags.md (both laid out by :mod:`nanobragg_cli.help`) all come from it, as nanoBragg.c's own
flags come from :data:`nanobragg_cli.flags.FLAGS`. A new option is one row here plus the field
of :class:`ToolOptions` it sets. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable

from .errors import FlagError


@dataclass
class ToolOptions:
    """Options of this tool (double dash), not of nanoBragg.c."""
    c_parity: bool = False
    device: str = "cpu"
    dtype: str = "float64"
    trace_json: str | None = None
    max_memory: int | None = None
    threads: int | None = None
    progress: bool | None = None
    manifest: str | None = None
    hdf5: str | None = None
    png: str | None = None
    png_scale: str = "log"
    frames: int | None = None      # a rotation series (nanobragg_cli.series)
    first_frame: int = 1
    resume: bool = False
    rank: int | None = None        # this process's share of a series or batch (nanobragg_cli.ranks)
    world_size: int | None = None
    compile: str = "auto"          # the fused kernel (nanobragg_cli.fused)


def parse_size(flag: str, text: str) -> int:
    """'512M', '2G', '1.5g', '4096' -> bytes (positive and finite, else a FlagError)."""
    units = {"k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}
    t = text.strip().lower().rstrip("b")
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise FlagError(f"{flag}: expected a size like 512M or 2G, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise FlagError(f"{flag}: the size must be positive")
    return int(value)


def _device(flag: str, text: str) -> str:
    if text not in ("cpu", "cuda") and not text.startswith("cuda:"):
        raise FlagError(f"{flag}: expected cpu or cuda, got {text!r}")
    return text


def _choice(*choices: str) -> Callable:
    def read(flag: str, text: str) -> str:
        if text not in choices:
            raise FlagError(f"{flag}: expected {' or '.join(choices)}, got {text!r}")
        return text
    return read


def _positive_int(flag: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise FlagError(f"{flag}: expected a positive integer, got {text!r}")
    return int(text)


def _path(flag: str, text: str) -> str:
    return text


def _int_at_least(lowest: int) -> Callable:
    def read(flag: str, text: str) -> int:
        t = text.strip()
        if not t.lstrip("+-").isdigit() or abs(int(t)) > 2 ** 31 - 1:
            raise FlagError(f"{flag}: expected an integer, got {text!r}")
        if int(t) < lowest:
            raise FlagError(f"{flag}: must be at least {lowest}, got {text!r}")
        return int(t)
    return read


@dataclass(frozen=True)
class ToolOption:
    """One row of the table. ``field``: the ToolOptions field it sets (None: handled by
    ``cli.main`` before parsing, e.g. --version). ``read(flag, text)`` turns the value into the
    field's value; a switch (no ``read``) sets the field to ``const``. ``writes``: the option
    names an output file (planned, checked and written by :mod:`nanobragg_cli.simulate`)."""
    name: str
    metavar: str
    help: str
    field: str | None = None
    read: Callable | None = None
    const: object = True
    writes: bool = False

    @property
    def nargs(self) -> int:
        return 0 if self.read is None else 1


TOOL_OPTIONS = (
    ToolOption("--c-parity", "", "reproduce nanoBragg.c's single-threaded arithmetic, quirks "
               "included (default: physically correct mode)", "c_parity"),
    ToolOption("--device", "cpu|cuda", "where to compute (default: cpu)", "device", _device),
    ToolOption("--dtype", "float64|float32", "working precision (default: float64)", "dtype",
               _choice("float64", "float32")),
    ToolOption("--threads", "N", "CPU threads (default: torch's choice)", "threads",
               _positive_int),
    ToolOption("--compile", "auto|on|off", "the fused kernel, compiled ahead of time (~3x "
               "faster rendering; compiling a kernel costs ~15-40 s the first time, then it "
               "loads from the cache in milliseconds): auto = "
               "for runs of at least 2.5e9 sub-pixel evaluations, a series' frames counted "
               "together; on = always; off = never; never with --c-parity or a trace (default: "
               "auto)", "compile", _choice("auto", "on", "off")),
    ToolOption("--max-memory", "SIZE", "memory budget of the kernel's working arrays per pixel "
               "chunk, e.g. 512M or 2G (default: 256M)", "max_memory", parse_size),
    ToolOption("--progress", "", "show progress: a bar on a terminal, plain lines in a log or "
               "pipe (default: a bar on a terminal after 1 s; plain lines for runs over ~10 s)",
               "progress", const=True),
    ToolOption("--no-progress", "", "never show progress", "progress", const=False),
    ToolOption("--trace-json", "FILE", "write the -trace_pixel record (with per-phi entries) as "
               "JSON", "trace_json", _path, writes=True),
    ToolOption("--manifest", "FILE", "write a JSON manifest of the run: argv, resolved "
               "configuration with units, seeds, versions, device, timing, sha256 of every input "
               "and output file", "manifest", _path, writes=True),
    ToolOption("--hdf5", "FILE", "also write the float image as NeXus/HDF5 (NXmx layout; needs "
               "h5py)", "hdf5", _path, writes=True),
    ToolOption("--png", "FILE", "also write a grayscale PNG picture of the image", "png", _path,
               writes=True),
    ToolOption("--png-scale", "log|sqrt", "PNG brightness scale, clipped at the 99.9th "
               "percentile (default: log)", "png_scale", _choice("log", "sqrt")),
    ToolOption("--frames", "N", "render a rotation series of N frames, frame i starting at "
               "-phi + i*osc; output names are templates, a run of '#' becomes the frame number",
               "frames", _int_at_least(1)),
    ToolOption("--first-frame", "K", "with --frames: number of the first frame in the file "
               "names (default: 1)", "first_frame", _int_at_least(0)),
    ToolOption("--resume", "", "with --frames (or batch) and --manifest: render only the frames "
               "whose files are missing or differ from the manifest", "resume"),
    ToolOption("--rank", "R", "with --frames (or batch) and --world-size W: render only frames "
               "R, R+W, R+2W, ... (default: the rank torchrun, srun or mpirun sets, else 0)",
               "rank", _int_at_least(0)),
    ToolOption("--world-size", "W", "the number of processes sharing the frames (default: from "
               "the launcher, else 1); see docs/scale-out.md", "world_size", _int_at_least(1)),
    ToolOption("--version", "", "print the version and exit"),
    ToolOption("--help", "", "print this help and exit"),
)

PARSED = {o.name: o for o in TOOL_OPTIONS if o.field is not None}
# name -> number of values, of every option the parser accepts
TOOL_FLAGS = {name: o.nargs for name, o in PARSED.items()}


def split_tool_options(argv: list) -> tuple:
    """Separate this tool's --options from nanoBragg.c's -flags: (nanoBragg argv, ToolOptions)."""
    tool = ToolOptions()
    rest = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            rest.append(tok)
            i += 1
            continue
        name, _, inline = tok.partition("=")
        option = PARSED.get(name)
        if option is None:
            import difflib
            near = difflib.get_close_matches(name, list(TOOL_FLAGS), n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]}?" if near else ""  # as flags.did_you_mean
            raise FlagError(f"{name}: unknown option{hint} (see 'nanobragg --help')")
        if option.nargs and not inline:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise FlagError(f"{name}: expected a value")
            inline = argv[i + 1]
            i += 1
        i += 1
        value = option.const if option.read is None else option.read(name, inline)
        setattr(tool, option.field, value)
    return rest, tool


def output_options(tool: ToolOptions) -> list:
    """[(option, path)] of the files ``tool`` asks to write, in table order."""
    return [(o.name, getattr(tool, o.field)) for o in TOOL_OPTIONS
            if o.writes and getattr(tool, o.field)]
