"""``nanobragg --help`` and docs/flags.md, both generated from the flag tables (no torch import).

The flag table (:data:`nanobragg_cli.flags.FLAGS`) and the tool-option table
(:data:`nanobragg_cli.tool_options.TOOL_OPTIONS`) say how each flag is spelled, its group, unit,
default and meaning; this module only lays that out: as terminal text wrapped to the window
(:func:`help_text`) and as the markdown reference (:func:`flags_markdown`, committed as
docs/flags.md; regenerate with ``python -m nanobragg_cli.help --markdown > docs/flags.md``).
"""

import shutil
import sys
import textwrap

from . import __version__
from .flags import FLAGS, GROUPS
from .tool_options import TOOL_OPTIONS

SUBCOMMANDS_HELP = (
    ("compare", "C_TRACE PY_TRACE", "diff a nanoBragg.c trace against ours; names the first "
     "divergence"),
    ("parity", "...", "write a parity evidence bundle (traces, comparison, environment); "
     "--c-bin runs a nanoBragg binary itself"),
    ("suite", "GOLDEN_DIR", "run a golden corpus and compare every case (CI parity job); "
     "--c-bin PATH --cases FILE runs a case list through a binary"),
    ("golden", "make ...", "write a golden corpus from any nanoBragg binary and a case list"),
    ("bench", "...", "time our renders (and nanoBragg.c's, if given)"),
    ("batch", "SHOTS.jsonl [-- FLAGS]", "render a shot list: one image per line "
     "{\"id\": ..., \"flags\": ...}, its flags added to the base FLAGS"),
)

# How the values of a flag are shown, where its unit alone would not say it.
METAVARS = {
    "-cell": "a b c [α β γ]",
    "-misset": "rx ry rz | random",
    "-roi": "xmin xmax ymin ymax",
    "-trace_pixel": "S F",
    "-printout_pixel": "F S",
    "-pivot": "sample|beam",
    "-detector_abs": "µm|inf",
}

GROUP_TITLES = {
    "No effect": "No effect (accepted, as in nanoBragg.c)",
}

MIN_WIDTH, MAX_WIDTH = 60, 100
NAME_COLUMN = 30


def metavar(flag) -> str:
    """The value placeholder shown after a flag's name: '<mm>', '<file>', '<x y z>', ''."""
    name = flag.names[0]
    if name in METAVARS:
        return f"<{METAVARS[name]}>"
    if flag.nargs == 0:
        return ""
    if flag.unit == "unit vector" or flag.nargs == 3:
        return "<x y z>"
    unit = flag.unit or "value"
    return f"<{unit}>"


def flag_names(flag) -> str:
    """Every spelling of a flag; prefix matches (nanoBragg.c's strstr) end in '*'."""
    names = list(flag.names) + [p + "*" for p in flag.prefixes if p not in flag.names]
    return ", ".join(names)


def flag_usage(flag) -> str:
    mv = metavar(flag)
    return f"{flag_names(flag)} {mv}" if mv else flag_names(flag)


NBSP = "\u00a0"  # keeps "default: X" on one line when wrapping; printed as a space


def flag_description(flag) -> str:
    """The help sentence with the default appended (units are in the metavar)."""
    text = flag.help
    if flag.default:
        text += f" (default: {flag.default})"
    return text


def terminal_width() -> int:
    """Columns to wrap to: the terminal's (or $COLUMNS), clamped to a readable range."""
    cols = shutil.get_terminal_size((80, 24)).columns
    return max(MIN_WIDTH, min(MAX_WIDTH, cols))


def _entry(usage: str, text: str, width: int) -> list:
    """One two-column entry: usage left, wrapped text right (below, if the usage is long)."""
    indent = " " * (NAME_COLUMN + 2)
    wrap = textwrap.TextWrapper(width=width, initial_indent=indent, subsequent_indent=indent,
                                break_on_hyphens=False, break_long_words=False)
    text = text.replace("(default: ", "(default:" + NBSP)
    body = [line.replace(NBSP, " ") for line in wrap.wrap(text)] or [indent]
    head = "  " + usage
    if len(head) <= NAME_COLUMN:
        return [head.ljust(NAME_COLUMN + 2) + body[0][len(indent):]] + body[1:]
    # a long usage (several aliases) gets lines of its own, wrapped at the commas
    heads = textwrap.wrap(usage, width=width - 2, initial_indent="  ", subsequent_indent="    ",
                          break_on_hyphens=False, break_long_words=False)
    return heads + body


def _paragraph(text: str, width: int) -> list:
    return textwrap.wrap(text, width=width, break_on_hyphens=False)


def help_text(width: int | None = None) -> str:
    """The full --help text, wrapped to ``width`` columns (default: the terminal's)."""
    width = terminal_width() if width is None else max(MIN_WIDTH, width)
    lines = [
        "usage: nanobragg [nanoBragg.c flags] [--tool options]",
        "       nanobragg compare|parity|suite|bench [options]",
        "",
    ]
    lines += _paragraph(
        f"nanobragg {__version__}: nanoBragg.c's diffraction image simulator in PyTorch. Same "
        "flags, same images; one dash for nanoBragg.c's flags, two for this tool's options. "
        "Units are those of nanoBragg.c: lengths in mm, angles in degrees, wavelength in Å, "
        "sensor thickness in µm, divergence in mrad, unless a flag says otherwise.", width)
    for group in GROUPS:
        flags = [f for f in FLAGS if f.group == group]
        if not flags:
            continue
        lines += ["", GROUP_TITLES.get(group, group) + ":"]
        for f in flags:
            lines += _entry(flag_usage(f), flag_description(f), width)
    lines += ["", "Tool options:"]
    for o in TOOL_OPTIONS:
        lines += _entry(f"{o.name} {o.metavar}" if o.metavar else o.name, o.help, width)
    lines += ["", "Subcommands (each has its own --help):"]
    for name, mv, text in SUBCOMMANDS_HELP:
        lines += _entry(f"{name} {mv}", text, width)
    lines += [""]
    lines += _paragraph(
        "Output files are written completely or not at all (temporary name, then rename); an "
        "output never overwrites an input. Errors print one line naming the flag or file and "
        "exit with code 9; Ctrl-C exits with 130 and writes nothing.", width)
    return "\n".join(lines)


def _write(text: str) -> None:
    try:
        print(text)
    except UnicodeEncodeError:  # a terminal that cannot show Å or µ
        print(text.encode("ascii", "replace").decode("ascii"))


def print_help() -> None:
    _write(help_text())


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def flags_markdown() -> str:
    """docs/flags.md: the flag reference as markdown tables, one per group."""
    out = [
        "# nanobragg flag reference",
        "",
        "Generated from the flag table (`nanobragg_cli/flags.py`) by "
        "`python -m nanobragg_cli.help --markdown > docs/flags.md`; do not edit by hand "
        "(tests/test_help.py checks that this file is up to date). `nanobragg --help` prints "
        "the same information.",
        "",
        "nanoBragg.c's flags take one dash and keep its units: lengths in mm, angles in degrees, "
        "wavelength in Å, sensor thickness in µm, divergence in mrad. Names ending in `*` are "
        "matched as prefixes, as nanoBragg.c does. Zero or negative sizes and counts are "
        "refused with a message naming the flag, except where nanoBragg.c gives them a "
        "meaning (`-N 0` is one cell, `-phisteps 0` one step, `-oversample 0` automatic).",
    ]
    for group in GROUPS:
        flags = [f for f in FLAGS if f.group == group]
        if not flags:
            continue
        out += ["", f"## {GROUP_TITLES.get(group, group)}", "",
                "| flag | value (unit) | meaning | default |", "|---|---|---|---|"]
        for f in flags:
            names = ", ".join(f"`{n}`" for n in flag_names(f).split(", "))
            mv = metavar(f)
            out.append(f"| {names} | {_md(mv[1:-1]) if mv else ''} | {_md(f.help)} | "
                       f"{_md(f.default)} |")
    out += ["", "## Tool options", "", "| option | value | meaning |", "|---|---|---|"]
    for o in TOOL_OPTIONS:
        out.append(f"| `{o.name}` | {_md(o.metavar)} | {_md(o.help)} |")
    out += ["", "## Subcommands", "", "| subcommand | arguments | purpose |", "|---|---|---|"]
    for name, mv, text in SUBCOMMANDS_HELP:
        out.append(f"| `nanobragg {name}` | {_md(mv)} | {_md(text)} |")
    out += ["", "`nanobragg <subcommand> --help` lists a subcommand's options.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        print_help()
