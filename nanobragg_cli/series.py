"""Many images in one run, planned: which frames, each frame's own nanoBragg.c command line.

A rotation series (``--frames N [--first-frame K]``) is N single images: frame i (0-based,
numbered K + i) is exactly the image of the single run whose flags are the run's own with

* ``-phi φ0 + i·osc`` (decimal arithmetic on the flags' own text, so ``-phi 0 -osc 0.1`` gives
  ``-phi 0.3`` for frame 3, the value a shell loop over ``-phi`` would pass);
* each output template (a run of ``#`` in ``-floatfile``, ``-intfile``, ``-noisefile``,
  ``-pgmfile``, ``--png``) replaced by the zero-padded frame number;
* ``-seed S + i`` for the noise (S from ``-seed``, else the time seed the run prints), and the
  run's ``-misset_seed`` when the misset is random (mosaic domains use ``-mosaic_seed`` as given).

So frame i's random draws depend on (run seed, i) only. This module plans (no torch): the
frame list, the frames still to render, the frame's resolved Config. Rendering is in
:mod:`nanobragg_cli.series_run`.
"""

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
import math
import re
import shlex

from .cnum import looks_numeric
from .config import Config
from .errors import FlagError
from .flags import _take_values, find_flag
from .options import RawOptions

RTD = 180.0 / math.pi
# the tool options (nanobragg_cli.tool_options) that make a run a series
SERIES_OPTIONS = ("--frames", "--first-frame", "--resume", "--rank", "--world-size")
# the image outputs a template may name, in nanoBragg.c's writing order
TEMPLATE_FLAGS = ("-floatfile", "-intfile", "-pgmfile", "-noisefile")
_HASH_RUN = re.compile(r"#+")
MAX_SEED = 2 ** 31 - 1


@dataclass
class SeriesOptions:
    """``--frames N``, ``--first-frame K`` (number of frame 0), ``--resume``."""
    frames: int | None = None
    first: int = 1
    resume: bool = False

    @classmethod
    def from_tool(cls, tool) -> "SeriesOptions":
        return cls(frames=tool.frames, first=tool.first_frame, resume=tool.resume)


def wants_series(argv: list) -> bool:
    """Whether argv asks for a series (any of --frames, --first-frame, --resume)."""
    return any(tok.partition("=")[0] in SERIES_OPTIONS for tok in argv)


# ---- argv editing (flag aware: values are never mistaken for flags) ---------------------------

def flag_spans(argv: list) -> list:
    """[(Flag, start, stop)] of each flag in nanoBragg.c flags ``argv`` (already validated by
    :func:`nanobragg_cli.simulate.prepare`): argv[start:stop] is the flag and its values."""
    spans, i = [], 0
    while i < len(argv):
        if not argv[i].startswith("-") or looks_numeric(argv[i]):
            raise FlagError(f"unexpected argument {argv[i]!r} (values must follow their flag)")
        flag = find_flag(argv[i])
        if flag is None:
            raise FlagError(f"{argv[i]}: unknown flag (see 'nanobragg --help')")
        nxt = i + 1 if flag.nargs == 0 else _take_values(flag, argv[i], argv, i)[1]
        spans.append((flag, i, nxt))
        i = nxt
    return spans


def last_value(argv: list, name: str) -> str | None:
    """The value the last occurrence of flag ``name`` (or an alias) gives, None if absent."""
    target = find_flag(name)
    found = None
    for flag, a, b in flag_spans(argv):
        if flag is target and b > a + 1:
            found = argv[a + 1]
    return found


def set_flag(argv: list, name: str, values: list) -> list:
    """argv with flag ``name`` (any alias) given once, as ``name values``: in the place of its
    first occurrence (later ones removed), else appended."""
    target = find_flag(name)
    out, placed = [], False
    spans = flag_spans(argv)
    for flag, a, b in spans:
        if flag is target:
            if not placed:
                out += [name, *values]
                placed = True
            continue
        out += argv[a:b]
    if not placed:
        out += [name, *values]
    return out


def parsed_value(name: str, text: str, attr: str):
    """What flag ``name`` with ``text`` sets RawOptions.``attr`` to (the flag table's own
    conversion, so a frame's value is bit for bit that of its single-image command line)."""
    opts = RawOptions()
    find_flag(name).apply(opts, name, [text])
    return getattr(opts, attr)


# ---- output templates ----------------------------------------------------------------------

def expand(flag: str, template: str, number: int, shot_id: str | None = None) -> str:
    """The file name of frame ``number``: the run of ``#`` replaced by the number zero-padded to
    its length (``sweep_#####.img``, 7 -> ``sweep_00007.img``), ``{id}`` by the shot id."""
    name = template if shot_id is None else template.replace("{id}", shot_id)
    runs = list(_HASH_RUN.finditer(name))
    if len(runs) > 1:
        raise FlagError(f"{flag} {template}: more than one run of '#' in the name")
    if runs:
        run = runs[0]
        digits = str(number)
        if len(digits) > len(run.group()):
            raise FlagError(f"{flag} {template}: frame number {number} needs {len(digits)} "
                            f"digits, the template has {len(run.group())} '#'")
        name = name[:run.start()] + digits.zfill(len(run.group())) + name[run.end():]
    return name


def named_outputs(nb_argv: list, tool) -> dict:
    """{flag: name} of the outputs the command line names itself (not nanoBragg.c's defaults)."""
    named = {flag: last_value(nb_argv, flag) for flag in TEMPLATE_FLAGS}
    named = {flag: v for flag, v in named.items() if v is not None}
    if tool.png:
        named["--png"] = tool.png
    return named


def check_no_templates(nb_argv: list, tool) -> None:
    """A single image: an output name with a '#' run asks for a series that --frames is missing."""
    for flag, name in named_outputs(nb_argv, tool).items():
        if "#" in name:
            raise FlagError(f"{flag} {name}: a '#' template numbers the frames of a series: "
                            "give --frames N (or a name without '#')")


def series_templates(nb_argv: list, tool) -> dict:
    """{flag: template} of a series; every output it names must be a template."""
    named = named_outputs(nb_argv, tool)
    for flag, name in named.items():
        if "#" not in name:
            raise FlagError(f"{flag} {name}: every frame would overwrite this file: put a run "
                            f"of '#' in the name for the frame number (e.g. frame_#####.img)")
    if not named:
        raise FlagError("--frames: no output template: name the frames' files with a run of "
                        "'#', e.g. -intfile sweep_#####.img")
    return named


# ---- the plan -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """One image of a run. ``index``: 0-based position; ``number``: the file number (K + index);
    ``argv``: the nanoBragg.c flags of the single-image run that makes exactly this image;
    ``outputs``: (flag, path) of the files this frame writes; ``phi_deg``: the ``-phi`` text;
    ``seed``: the ``-seed`` value of its noise (None without noise)."""
    index: int
    number: int
    argv: tuple
    outputs: tuple
    phi_deg: str | None = None
    seed: int | None = None
    shot_id: str | None = None

    def command(self, tool_argv: list = ()) -> list:
        """This frame's single-image command: ``nanobragg [tool options] <flags>``."""
        own = [a for flag, path in self.outputs if flag.startswith("--") for a in (flag, path)]
        return ["nanobragg", *tool_argv, *own, *self.argv]

    def c_command(self) -> list:
        """The same flags for nanoBragg.c."""
        return ["nanoBragg", *self.argv]

    def command_line(self, tool_argv: list = ()) -> str:
        return shlex.join(self.command(tool_argv))


def _decimal(flag: str, text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise FlagError(f"{flag}: expected a number, got {text!r}") from None


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def base_seed(cfg: Config, previous: dict | None = None) -> int:
    """S of a series (the ``-seed`` value of frame 0): the run's -seed, else the seed of the run
    being resumed, else the time seed nanoBragg.c would use (printed, so it can be repeated)."""
    if not cfg.output.seed_given and previous and previous.get("noise_seed") is not None:
        return int(previous["noise_seed"])
    return -cfg.output.seed


def misset_seed(cfg: Config, previous: dict | None = None) -> int | None:
    """The ``-misset_seed`` value every frame repeats (random misset only), as :func:`base_seed`."""
    c = cfg.crystal
    if c.misset != "random":
        return None
    if not c.misset_seed_given and previous and previous.get("misset_seed") is not None:
        return int(previous["misset_seed"])
    return -c.misset_seed


def frame_argv(nb_argv: list, index: int, outputs: list, phi: str | None, seed: int | None,
               misset: int | None) -> list:
    """The nanoBragg.c flags of one frame: the run's, with its file names, φ and seeds."""
    argv = list(nb_argv)
    for flag, path in outputs:
        if not flag.startswith("--"):
            argv = set_flag(argv, flag, [path])
    if phi is not None:
        argv = set_flag(argv, "-phi", [phi])
    if seed is not None:
        if abs(seed) > MAX_SEED:
            raise FlagError(f"-seed: frame {index} would need seed {seed}, beyond a C int")
        argv = set_flag(argv, "-seed", [str(seed)])
    if misset is not None:
        argv = set_flag(argv, "-misset_seed", [str(misset)])
    return argv


def frame_outputs(templates: dict, cfg: Config, number: int, shot_id: str | None = None) -> list:
    """[(flag, path)] a frame writes: the templates expanded, those the run actually writes."""
    out = cfg.output
    wanted = {"-floatfile": True, "-intfile": True, "-pgmfile": out.write_pgm,
              "-noisefile": out.calculate_noise, "--png": True}
    return [(flag, expand(flag, t, number, shot_id)) for flag, t in templates.items()
            if wanted[flag]]


def plan_series(nb_argv: list, cfg: Config, opts: SeriesOptions, templates: dict,
                previous: dict | None = None) -> list:
    """The frames of ``--frames N``: [Frame] in order (see the module docstring)."""
    s = cfg.sampling
    n = opts.frames
    phi_text = last_value(nb_argv, "-phi")
    phi0 = _decimal("-phi", phi_text) if phi_text is not None else Decimal(repr(s.phi0 * RTD))
    osc_text = last_value(nb_argv, "-osc")
    osc = _decimal("-osc", osc_text) if osc_text is not None else Decimal(repr(s.osc * RTD))
    if n > 1 and osc == 0:
        raise FlagError("--frames: the oscillation range is 0, so every frame would be the same "
                        "image: give -osc (degrees per frame)")
    noise = cfg.output.calculate_noise and "-noisefile" in templates
    seed0 = base_seed(cfg, previous) if noise else None
    misset = misset_seed(cfg, previous)
    frames = []
    for i in range(n):
        number = opts.first + i
        outputs = frame_outputs(templates, cfg, number)
        phi = _decimal_text(phi0 + i * osc)
        seed = None if seed0 is None else seed0 + i
        argv = frame_argv(nb_argv, i, outputs, phi, seed, misset)
        frames.append(Frame(index=i, number=number, argv=tuple(argv), outputs=tuple(outputs),
                            phi_deg=phi, seed=seed))
    paths = [p for f in frames for _, p in f.outputs]
    if len(set(paths)) != len(paths):
        raise FlagError("--frames: two frames would write the same file (check the templates)")
    return frames


def frame_config(cfg: Config, frame: Frame) -> Config:
    """The resolved Config of ``frame``'s own command line, derived from the run's (no file is
    read again): its φ, seeds and file names; outputs it does not write switched off."""
    written = dict(frame.outputs)
    out = cfg.output
    o = {}
    for flag, field in (("-floatfile", "floatfile"), ("-intfile", "intfile"),
                        ("-pgmfile", "pgmfile"), ("-noisefile", "noisefile")):
        if flag in written:
            o[field] = written[flag]
    o["calculate_noise"] = out.calculate_noise and "-noisefile" in written
    o["write_pgm"] = out.write_pgm and "-pgmfile" in written
    if frame.seed is not None:
        o["seed"] = parsed_value("-seed", str(frame.seed), "seed")
        o["seed_given"] = True
    new = replace(cfg, output=replace(out, **o))
    if frame.phi_deg is not None:
        new = replace(new, sampling=replace(cfg.sampling,
                                            phi0=parsed_value("-phi", frame.phi_deg, "phi0")))
    c = cfg.crystal
    if c.misset == "random":
        value = last_value(list(frame.argv), "-misset_seed")
        new = replace(new, crystal=replace(c, misset_seed=parsed_value("-misset_seed", value,
                                                                       "misset_seed"),
                                           misset_seed_given=True))
    return new


def frames_to_render(frames: list, done: set | frozenset = frozenset(), rank: int = 0,
                     world: int = 1) -> list:
    """The frames this process renders: its share of ``frames`` among ``world`` processes
    (position i belongs to rank i mod world: frames r, r+W, r+2W, ...), less those ``done``
    (numbers of frames whose files are complete). The share does not depend on ``done``, so
    ranks that start at different times (or resume) never render a frame twice."""
    return [f for f in frames[rank::world] if f.number not in done]
