"""-printout_pixel F S prints nanoBragg.c's per-pixel block; its numbers must be the C program's,
checked here against the values of nanoBragg.c's own trace of the same pixel (golden corpus)."""

import re

import pytest

from conftest import CASES, GOLDEN, golden_case_names, needs_golden
from nanobragg_cli.golden import run_case
from nanobragg_cli.tracefmt import load_trace


def _c_final(case, pixel):
    records, _ = load_trace(case.trace_log(pixel), prefer="C")
    return {r.key: r.values for r in records}


@needs_golden
@pytest.mark.parametrize("name", golden_case_names(lambda c: c.name in ("cubic_basic", "mosaic_phi",
                                                                        "thick_detector")))
def test_printout_pixel_prints_nanobraggs_values(name):
    case = CASES[name]
    s, f = case.trace_pixels[0]
    run = run_case(case, GOLDEN, c_parity=True, trace=False,
                   extra_args=["-printout_pixel", str(f), str(s)])
    block = run.result.printout
    assert block and block[0].split()[:2] == [str(f), str(s)]
    values = {m.group(1): float(m.group(2)) for line in block
              for m in [re.match(r"(I/steps|polar|omega|capfrac|pixel)\s+(\S+)$", line)] if m}
    c = _c_final(case, (s, f))
    steps = c["steps"][0]
    assert values["I/steps"] == pytest.approx(c["I_before_scaling"][0] / steps, rel=1e-9)
    assert values["polar"] == pytest.approx(c["polar"][0], rel=1e-9)
    assert values["omega"] == pytest.approx(c["omega_pixel"][0], rel=1e-9)
    assert values["capfrac"] == pytest.approx(c["capture_fraction"][0], rel=1e-9)
    assert values["pixel"] == pytest.approx(c["floatimage_accumulated"][0], rel=1e-9)


def test_bare_printout_warns_that_it_is_not_reproduced():
    from nanobragg_cli.simulate import prepare
    cfg = prepare("-cell 100 100 100 90 90 90 -default_F 100 -detpixels 16 -printout".split())
    assert any("-printout_pixel" in w for w in cfg.warnings)
