"""Shared fixtures: the golden corpus (skipped with a reason when absent) and a per-session cache of
in-process runs, so image and trace tests of a case share one render."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nanobragg_cli.golden import default_golden_dir, load_cases, run_case  # noqa: E402

GOLDEN = default_golden_dir()
HAVE_GOLDEN = (GOLDEN / "cases").is_dir()
NO_GOLDEN = f"golden corpus not found at {GOLDEN} (it ships in tests/golden; NB_GOLDEN_DIR overrides)"
needs_golden = pytest.mark.skipif(not HAVE_GOLDEN, reason=NO_GOLDEN)

CASES = {c.name: c for c in load_cases(GOLDEN)} if HAVE_GOLDEN else {}
_RUNS = {}


def golden_case_names(pred=lambda case: True) -> list:
    """Names of corpus cases matching ``pred``, or one skipped placeholder without a corpus."""
    if not HAVE_GOLDEN:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_GOLDEN))]
    return [name for name, case in sorted(CASES.items()) if pred(case)]


def cached_run(name: str, **kw):
    """Run a golden case once per session per set of options."""
    key = (name, tuple(sorted(kw.items())))
    if key not in _RUNS:
        _RUNS[key] = run_case(CASES[name], GOLDEN, **kw)
    return _RUNS[key]


@pytest.fixture(autouse=True)
def _single_process_environment(monkeypatch):
    """Tests run as one process even when the test runner itself was started by torchrun, srun
    or mpirun: their rank variables would split every in-process series (nanobragg_cli.ranks)."""
    from nanobragg_cli.ranks import launcher_variables
    for name in launcher_variables():
        monkeypatch.delenv(name, raising=False)


def main_in(args, cwd) -> int:
    """``nanobragg_cli.cli.main(args)`` run in the folder ``cwd`` (in this process); its exit code."""
    import os
    from nanobragg_cli.cli import main
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)


def announce_script(pause_s: float = 0.0) -> str:
    """A ``python -c`` script that runs the CLI on its arguments and prints RENDERING (on stdout)
    when the first kernel chunk starts, then waits ``pause_s`` seconds: a test can then interrupt
    (or read from) a render that has really started, not the start-up."""
    return f"""
import sys, time
import nanobragg_cli.chunks as chunks
from nanobragg_cli.cli import main
original = chunks.render_chunk
def announcing(*args, **kw):
    if not getattr(announcing, "done", False):
        announcing.done = True
        print("RENDERING", flush=True)
        time.sleep({pause_s!r})
    return original(*args, **kw)
chunks.render_chunk = announcing
raise SystemExit(main(sys.argv[1:]))
"""


def load_example(name: str):
    """The module examples/<name>.py, loaded from its file (examples are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
