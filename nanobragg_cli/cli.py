"""Command line entry point: ``nanobragg <nanoBragg.c flags>`` and the subcommands.

Parsing is separate from physics: the simulate command lives in :mod:`nanobragg_cli.simulate`
(argv -> Config -> render -> files -> report), whose stages the Python API and the subcommands
share. Nothing here imports torch until a
simulation actually runs, so ``--help`` and ``--version`` are instant.

Contract with the user: every error prints one line (``nanobragg: error: ...`` naming the flag or
file) and exits 9 without a traceback or an output file; Ctrl-C exits 130 (SIGTERM 143) with one
line saying truthfully what is on disk. All outputs of a run (Fdump.bin and --manifest included)
are one transaction, :func:`nanobragg_cli.io.atomic.commit_outputs`: all new files or all old ones.
"""

import os
import signal
import sys

from . import __version__
from .errors import NanoBraggError

SUBCOMMANDS = ("compare", "parity", "suite", "bench", "golden", "batch")
# a subcommand whose click command lives in a module not named after it
SUBCOMMAND_MODULES = {"golden": "golden_make"}
HELP = ("-h", "--help", "-help")
EXIT_INTERRUPT = 130
EXIT_TERMINATED = 143
EXIT_INTERNAL = 70


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that cleanup runs as for Ctrl-C."""


def _err(message: str, code: int = 9) -> int:
    print(f"nanobragg: error: {message}", file=sys.stderr)
    return code


def _subcommand(name: str, args: list) -> int:
    """Run ``nanobragg_cli.<module>.<name>_command`` (a click command), ``--help`` included;
    the module is ``name`` unless SUBCOMMAND_MODULES says otherwise."""
    import importlib
    mod = SUBCOMMAND_MODULES.get(name, name)
    try:
        module = importlib.import_module(f".{mod}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{mod}":
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


def simulate_main(argv: list, written: list | None = None) -> int:
    """Run a simulation from nanoBragg.c flags (plus this tool's --options): the simulate
    command of :mod:`nanobragg_cli.simulate`. ``written`` (a list) receives each output path once
    it is in place, so that an interrupted caller can say which files exist."""
    from .simulate import simulate_command
    return simulate_command(argv, written)


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
        if not argv:   # as nanoBragg.c: its usage on stdout, exit 9
            from .c_usage import usage_lines
            print("\n".join(usage_lines(os.path.exists("Fdump.bin"))))
            return _err("no crystal and no structure factors given (nanoBragg.c's usage is "
                        "above; 'nanobragg --help' describes every flag and this tool's options)")
        if argv[0] in HELP:
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
        from .series import wants_series
        if wants_series(argv):   # --frames N: many images in one run
            from .series_run import series_main
            return series_main(argv, written)
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
