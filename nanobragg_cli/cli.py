"""Command line entry point: ``nanobragg <nanoBragg.c flags>`` and the subcommands.

Parsing is separate from physics: argv becomes a Config (:func:`nanobragg_cli.simulate.prepare`)
and the same functions the Python API uses do the work. Nothing here imports torch until a
simulation actually runs, so ``--help`` and ``--version`` are instant.

Contract with the user: every error prints one line (``nanobragg: error: ...`` naming the flag or
file) and exits 9 without a traceback or an output file; Ctrl-C exits 130 (SIGTERM 143) with one
line saying truthfully what is on disk. All outputs of a run (Fdump.bin and --manifest included)
are one transaction, :func:`nanobragg_cli.io.atomic.commit_outputs`: all new files or all old ones.
"""

import os
import signal
import sys
import time

from . import __version__
from .errors import FlagError, NanoBraggError

SUBCOMMANDS = ("compare", "parity", "suite", "bench")
HELP = ("-h", "--help", "-help")
EXIT_INTERRUPT = 130
EXIT_TERMINATED = 143
EXIT_INTERNAL = 70


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that cleanup runs as for Ctrl-C."""


def _err(message: str, code: int = 9) -> int:
    print(f"nanobragg: error: {message}", file=sys.stderr)
    return code


def _note(message: str) -> None:
    print(f"nanobragg: {message}", file=sys.stderr)


def _subcommand(name: str, args: list) -> int:
    """Run ``nanobragg_cli.<name>.<name>_command`` (a click command), ``--help`` included."""
    import importlib
    try:
        module = importlib.import_module(f".{name}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{name}":
            raise  # a dependency of the subcommand is missing: say which (internal error line)
        raise NanoBraggError(f"{name}: this subcommand is not available in this installation "
                             f"(module {__package__}.{name} is missing)") from None
    command = getattr(module, f"{name}_command", None)
    if command is None:
        raise NanoBraggError(f"{name}: this subcommand is not available in this installation "
                             f"({__package__}.{name} defines no {name}_command)")
    try:
        rv = command.main(args=args, prog_name=f"nanobragg {name}", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return rv if isinstance(rv, int) else 0


def _seed_notes(cfg) -> None:
    """Say which time-based seeds this run uses, so that it can be repeated exactly."""
    out, c = cfg.output, cfg.crystal
    if out.calculate_noise and not out.seed_given:
        _note(f"noise seed: {out.seed} (repeat with -seed {-out.seed})")
    if c.misset == "random" and not c.misset_seed_given:
        _note(f"random misset seed: {c.misset_seed} (repeat with -misset_seed {-c.misset_seed})")


def _trace_json(cfg, tool, res) -> bytes:
    import json
    record = res.trace_record or {"lines": [], "per_phi": [], "final": {}}
    pixel = cfg.output.trace_pixel
    record = dict(record, pixel={"slow": pixel[0] if pixel else None,
                                 "fast": pixel[1] if pixel else None},
                  mode="c-parity" if tool.c_parity else "default")
    return json.dumps(record, indent=1).encode()


def _extra_outputs(cfg, tool, res, argv: list) -> list:
    """[(flag, path, bytes)] of this tool's own outputs (--trace-json, --hdf5, --png)."""
    files = []
    if tool.trace_json:
        files.append(("--trace-json", tool.trace_json, _trace_json(cfg, tool, res)))
    if tool.hdf5:
        from .io.hdf5 import hdf5_bytes
        files.append(("--hdf5", tool.hdf5, hdf5_bytes(res, title=" ".join(["nanobragg", *argv]))))
    if tool.png:
        from .io.png import image_png_bytes
        files.append(("--png", tool.png, image_png_bytes(res.image, tool.png_scale, res.rendered)))
    return files


def _report(cfg, res) -> list:
    from .simulate import report_lines
    from .trace import format_lines
    lines = report_lines(res)
    if cfg.output.trace_pixel is not None:
        at = next(i for i, line in enumerate(lines) if line.startswith("solid angle"))
        s, f = cfg.output.trace_pixel
        lines[at:at] = [f"TRACE_CONFIG: tracing pixel (spixel={s}, fpixel={f})",
                        *format_lines(res.trace_lines)]
    return lines


def simulate_main(argv: list, written: list | None = None) -> int:
    """Run a simulation from nanoBragg.c flags (plus this tool's --options).

    ``written`` (a list) receives each output path once it is in place, so that an interrupted
    caller can say which files exist.
    """
    from . import preflight
    from .simulate import output_files, prepare, run_simulation, split_tool_options

    started, t0 = time.time(), time.perf_counter()
    written = [] if written is None else written
    nb_argv, tool = split_tool_options(argv)
    if tool.hdf5:
        from .io.hdf5 import require_h5py
        require_h5py()
    preflight.check_header_inputs(nb_argv, tool.max_memory)
    try:
        cfg = prepare(nb_argv)
    except FlagError as err:  # a value an -img/-mask header set: name the file and key
        from .image_headers import blame_header
        raise blame_header(err, nb_argv) from None
    inputs = preflight.input_files(cfg)
    preflight.check_inputs(inputs)
    preflight.check_outputs(preflight.planned_outputs(cfg, tool), inputs)
    preflight.check_memory(cfg, tool.max_memory)
    from .validate import check_inputs
    check_inputs(cfg, tool.c_parity, warn=lambda w: _note(f"warning: {w}"), argv=nb_argv)
    for w in cfg.warnings:
        _note(f"warning: {w}")
    _seed_notes(cfg)

    input_records = None
    if tool.manifest:
        from .manifest import file_record
        input_records = [file_record(flag, path) for flag, path in inputs]

    from .io.atomic import collect_deferred_writes, commit_outputs
    from .progress import RenderProgress
    from .validate import check_image, quiet_numpy
    show = cfg.output.progress if tool.progress is None else tool.progress
    bar = RenderProgress(show)
    try:
        with collect_deferred_writes() as deferred, quiet_numpy():  # Fdump.bin waits for the commit
            res = run_simulation(cfg, tool, progress=bar)
    finally:
        bar.close()
    check_image(res, tool.c_parity, warn=lambda w: _note(f"warning: {w}"))

    flag_of = {cfg.output.floatfile: "-floatfile", cfg.output.intfile: "-intfile",
               cfg.output.pgmfile: "-pgmfile", cfg.output.noisefile: "-noisefile"}
    with quiet_numpy():
        files = [(flag_of.get(path, "output"), path, data) for path, data in output_files(res)]
    files += _extra_outputs(cfg, tool, res, argv)
    files += [("-dump", path, data) for path, data in deferred]
    lines = _report(cfg, res)
    if tool.manifest:
        from .manifest import file_record, manifest, manifest_bytes
        outputs = [file_record(flag, path, data) for flag, path, data in files]
        record = manifest(list(argv), cfg, tool, res, input_records, outputs, started,
                          time.perf_counter() - t0)
        files.append(("--manifest", tool.manifest, manifest_bytes(record)))
    # one transaction (see io/atomic.commit_outputs); no fsync: like nanoBragg.c's own writes,
    # durability against power loss is left to the filesystem
    commit_outputs([(path, data) for _, path, data in files], committed=written,
                   optional=[path for flag, path, _ in files if flag == "-dump"],
                   warn=lambda w: _note(f"WARNING: {w}"))
    print("\n".join(lines))
    return 0


def _interrupted(written: list, what: str) -> str:
    """The outputs are committed all or nothing, so either none or every one is on disk."""
    if not written:
        return f"{what}; no output file was written"
    return f"{what} after writing every output ({', '.join(written)})"


def _is_allocation_failure(exc: BaseException) -> bool:
    """torch's 'DefaultCPUAllocator: can't allocate memory' / 'CUDA out of memory' errors."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
        or type(exc).__name__ == "OutOfMemoryError")


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("NANOBRAGG_DEBUG"))
    written: list = []
    old_term = None
    try:
        if not argv or argv[0] in HELP:
            from .help import print_help
            print_help()
            return 0
        if argv[0] == "--version":
            print(f"nanobragg {__version__}")
            return 0
        if argv[0] in SUBCOMMANDS:
            return _subcommand(argv[0], argv[1:])
        if any(a in HELP for a in argv):
            from .help import print_help
            print_help()
            return 0
        from . import server_client as server
        if server.enabled():  # NANOBRAGG_SERVER=1: run in a warm server (torch loaded)
            code = server.run_remote(argv)
            if code is not None:
                return code
        try:
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (an embedding application): leave it alone
            old_term = None
        return simulate_main(argv, written)
    except NanoBraggError as err:
        return _err(str(err), err.exit_code)
    except KeyboardInterrupt:
        print(f"nanobragg: {_interrupted(written, 'interrupted')}", file=sys.stderr)
        return EXIT_INTERRUPT
    except Terminated:
        print(f"nanobragg: {_interrupted(written, 'terminated')}", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # e.g. nanobragg --help | head
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except MemoryError:
        return _err("out of memory: lower --max-memory, use fewer pixels or a smaller -roi")
    except Exception as exc:  # a bug: say so in one line unless debugging
        if _is_allocation_failure(exc):  # torch's allocators raise RuntimeError
            return _err("out of memory: lower --max-memory, use fewer pixels or a smaller -roi")
        if debug:
            raise
        return _err(f"internal error: {type(exc).__name__}: {exc} "
                    "(set NANOBRAGG_DEBUG=1 for a traceback)", EXIT_INTERNAL)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def run() -> None:
    """Console-script entry point: ``main()``, then leave without the interpreter's teardown.

    Tearing down a process that imported torch takes about a second on a small machine --
    longer than rendering a 1024² image. Every output file is complete (written, synced and
    renamed) before main() returns, so only the standard streams need flushing.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    os._exit(code if isinstance(code, int) else 1)
