"""``nanobragg --help``: generated from the flag table, grouped by area (no torch import)."""

from .flags import FLAGS, GROUPS

TOOL_OPTIONS = (
    ("--c-parity", "reproduce nanoBragg.c's single-threaded arithmetic, quirks included"),
    ("--device cpu|cuda", "where to compute (default cpu)"),
    ("--dtype float64|float32", "working precision (default float64)"),
    ("--trace-json PATH", "write the -trace_pixel record (with per-phi entries) as JSON"),
    ("--max-memory SIZE", "memory budget of the kernel per pixel chunk, e.g. 512M (default 256M)"),
    ("--threads N", "CPU threads (default: torch's choice)"),
    ("--progress / --no-progress", "force the progress bar on or off"),
)

SUBCOMMANDS_HELP = (
    ("compare C_TRACE PY_TRACE", "diff a nanoBragg.c trace against ours; names the first divergence"),
    ("parity", "write a parity evidence bundle under reports/"),
    ("suite GOLDEN_DIR", "run a golden corpus (CI parity job)"),
    ("bench", "benchmark against nanoBragg.c"),
)


def _names(flag) -> str:
    names = list(flag.names) + [p + "*" for p in flag.prefixes if p not in flag.names]
    return ", ".join(names)


def help_text() -> str:
    lines = [
        "usage: nanobragg [nanoBragg.c flags] [--tool options]",
        "       nanobragg <subcommand> --help",
        "",
        "PyTorch reimplementation of nanoBragg.c: same flags, same images. Lengths in mm,",
        "angles in degrees, wavelength in Å unless a flag says otherwise.",
    ]
    for group in GROUPS:
        flags = [f for f in FLAGS if f.group == group]
        if not flags:
            continue
        lines += ["", f"{group}:" if group != "No effect" else
                  "Accepted for compatibility (no effect in nanoBragg.c either):"]
        for f in flags:
            meta = f" [{f.unit}]" if f.unit else ""
            default = f" (default: {f.default})" if f.default else ""
            lines.append(f"  {_names(f):<34} {f.help}{meta}{default}")
    lines += ["", "Tool options:"]
    lines += [f"  {name:<34} {text}" for name, text in TOOL_OPTIONS]
    lines += ["", "Subcommands:"]
    lines += [f"  {name:<34} {text}" for name, text in SUBCOMMANDS_HELP]
    lines += ["", "Errors exit with code 9 and one line naming the flag or file."]
    return "\n".join(lines)


def print_help() -> None:
    print(help_text())
