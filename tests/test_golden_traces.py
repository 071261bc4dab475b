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


@needs_golden
@pytest.mark.parametrize("name", golden_case_names(lambda c: c.name in ("phi_from0", "mosaic_phi",
                                                                        "divergence")))
def test_trace_json_record_holds_nanobraggs_values(name):
    """The --trace-json record: per-φ entries and final values equal nanoBragg.c's trace lines."""
    from nanobragg_cli.tracefmt import load_trace

    case = CASES[name]
    px = case.trace_pixels[0]
    _, record = cached_run(name, c_parity=True).result.traces[px]
    c_records, _ = load_trace(case.trace_log(px), prefer="C")
    c_phi = [r.values[0] for r in c_records if r.key == "PHI.k_frac"]
    assert [e["k_frac"] for e in record["per_phi"]] == pytest.approx(c_phi, rel=1e-9, abs=1e-12)
    c_final = {r.key: r.values[0] for r in c_records}
    for key in ("I_before_scaling", "steps", "polar", "omega_pixel", "I_pixel_final"):
        assert record["final"][key] == pytest.approx(c_final[key], rel=1e-9)
    assert isinstance(record["final"]["steps"], int)
