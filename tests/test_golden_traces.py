"""Traces of every traced pixel of every golden case, compared key by key with nanoBragg.c's
TRACE_C lines at rtol 1e-9 (atol 1e-12): first_divergence must be None (--c-parity), and every key,
repetition and per-phi line of the C trace must be present on our side."""

import pytest

from conftest import CASES, cached_run, golden_case_names, needs_golden
from nanobragg_cli.golden import compare_case_trace

TRACE_CASES = golden_case_names(lambda c: c.has_image and "default_mode_reference_for" not in c.meta)
SPEC_CASES = golden_case_names(lambda c: c.has_image and "default_mode_reference_for" in c.meta)


def _check(case, run, rtol=1e-9, atol=1e-30):
    # atol 1e-30 is stricter than the contract's 1e-12: every value is judged on its key's scale
    for px in case.trace_pixels:
        res = compare_case_trace(case, px, run.traces[px], rtol=rtol, atol=atol)
        assert res.first_divergence is None, (
            f"{case.name} pixel {px}: first divergence {res.first_divergence}")
        assert res.counts.get("missing_py", 0) == 0


@needs_golden
@pytest.mark.parametrize("name", TRACE_CASES)
def test_c_parity_trace_has_no_divergence(name):
    _check(CASES[name], cached_run(name, c_parity=True))


@needs_golden
@pytest.mark.parametrize("name", SPEC_CASES)
def test_default_mode_trace_matches_nanobragg_forced_to_rotate(name):
    _check(CASES[name], cached_run(name, default_mode=True))
