"""Command line entry point: ``nanobragg <nanoBragg.c flags>`` and the subcommands.

Parsing is separate from physics: argv becomes a Config (:func:`nanobragg_cli.simulate.prepare`)
and the same functions the Python API uses do the work. User errors print one line and exit 9;
nothing here imports torch until a simulation actually runs, so ``--help`` is instant.
"""

import os
import sys

from . import __version__
from .errors import NanoBraggError

SUBCOMMANDS = ("compare", "parity", "suite", "bench")


def _err(message: str, code: int = 9) -> int:
    print(f"nanobragg: error: {message}", file=sys.stderr)
    return code


def _subcommand(name: str, args: list) -> int:
    import importlib
    module = importlib.import_module(f".{name}", __package__)
    command = getattr(module, f"{name}_command")
    try:
        command.main(args=args, prog_name=f"nanobragg {name}", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def simulate_main(argv: list) -> int:
    """Run a simulation from nanoBragg.c flags (plus this tool's --options)."""
    from .simulate import (check_output_paths, input_files, output_files, prepare,
                           report_lines, run_simulation, split_tool_options)
    nb_argv, tool = split_tool_options(argv)
    cfg = prepare(nb_argv)
    check_output_paths(cfg, input_files(cfg))
    for w in cfg.warnings:
        print(f"nanobragg: warning: {w}", file=sys.stderr)
    from .progress import RenderProgress
    show = cfg.output.progress if tool.progress is None else tool.progress
    bar = RenderProgress(show)
    try:
        res = run_simulation(cfg, tool, progress=bar)
    finally:
        bar.close()
    from .io.atomic import atomic_write_bytes
    from .trace import format_lines
    lines = report_lines(res)
    if cfg.output.trace_pixel is not None:
        at = next(i for i, line in enumerate(lines) if line.startswith("solid angle"))
        s, f = cfg.output.trace_pixel
        lines[at:at] = [f"TRACE_CONFIG: tracing pixel (spixel={s}, fpixel={f})",
                        *format_lines(res.trace_lines)]
    files = output_files(res)
    if tool.trace_json:
        import json
        record = res.trace_record or {"lines": [], "per_phi": [], "final": {}}
        record = dict(record, pixel={"slow": cfg.output.trace_pixel[0] if cfg.output.trace_pixel else None,
                                     "fast": cfg.output.trace_pixel[1] if cfg.output.trace_pixel else None},
                      mode="c-parity" if tool.c_parity else "default")
        files.append((tool.trace_json, json.dumps(record, indent=1).encode()))
    for path, data in files:
        atomic_write_bytes(path, data)
    print("\n".join(lines))
    return 0


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("NANOBRAGG_DEBUG"))
    try:
        if not argv or argv[0] in ("-h", "--help", "-help"):
            from .help import print_help
            print_help()
            return 0
        if argv[0] == "--version":
            print(f"nanobragg {__version__}")
            return 0
        if argv[0] in SUBCOMMANDS:
            return _subcommand(argv[0], argv[1:])
        return simulate_main(argv)
    except NanoBraggError as err:
        return _err(str(err), err.exit_code)
    except KeyboardInterrupt:
        print("nanobragg: interrupted; no output file was written", file=sys.stderr)
        return 130
    except MemoryError:
        return _err("out of memory: lower --max-memory or render a smaller -roi")
    except Exception as exc:  # a bug: say so in one line unless debugging
        if debug:
            raise
        return _err(f"internal error: {type(exc).__name__}: {exc} "
                    "(set NANOBRAGG_DEBUG=1 for a traceback)", 70)
