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
