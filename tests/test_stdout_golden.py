"""Our stdout is nanoBragg.c's stdout, line by line, on every golden case, in both modes.

The corpus' stdout.txt files come from the -trace_pixel build of nanoBragg.c; its instrumentation
adds lines upstream nanoBragg.c does not print (``TRACE:`` blocks, ``DETECTOR_FAST_AXIS`` /
``_SLOW_AXIS`` / ``_NORMAL_AXIS`` / ``DETECTOR_PIX0_VECTOR``): those are set aside, every other
line must be the same text (so every number at the precision C printed it). Lines allowed to
differ are named below with the reason.
"""

import re

import pytest

from conftest import CASES, cached_run, golden_case_names, needs_golden

INSTRUMENTATION = re.compile(r"^(TRACE|DETECTOR_(FAST|SLOW|NORMAL)_AXIS |DETECTOR_PIX0_VECTOR )")
# C prints the heap address of the SMV file it read (-img, -mask): a different number every run
POINTER = re.compile(r"^mmap\((.*)\) = 0x[0-9a-f]+$")

STDOUT_CASES = golden_case_names(lambda c: (c.dir / "stdout.txt").exists()
                                 and "default_mode_reference_for" not in c.meta)
SPEC_CASES = golden_case_names(lambda c: (c.dir / "stdout.txt").exists()
                               and "default_mode_reference_for" in c.meta)

STATISTICS = ("max_I = ", "mean= ", "intfile_scale = ", "pgm_scale = ")
# Default mode: the lines that print different numbers by design (docs/differences.md, quirk #),
# because the default mode's image (or sensor layering) is the physically correct one there.
DEFAULT_MODE_DIFFERS = {
    "phi_from0": (STATISTICS, "#1 phi = 0 carryover: every phi step is rotated"),
    "mosaic_phi": (STATISTICS, "#1 phi = 0 carryover"),
    "thick_detector": (STATISTICS + ("thick",), "#2/#3 sensor layers: own capture fractions, "
                       "thick/N layers (the thickN lines print the layer depths used)"),
    "thick_oversample": (STATISTICS + ("thick",), "#2/#3/#4 sensor layers and -oversample_thick"),
    "oversample_flags": (STATISTICS, "#4 -oversample_* factors weight each sub-pixel"),
    "water": (STATISTICS, "#5 water background linear in fluence, independent of steps"),
}


def c_stdout(case) -> list:
    """nanoBragg.c's stdout lines of the case, the -trace_pixel build's instrumentation aside."""
    text = case.file("stdout.txt").read_text()
    return [ln for ln in text.splitlines() if not INSTRUMENTATION.match(ln)]


def _same(want: str, got: str) -> bool:
    m = POINTER.match(want)
    if m:
        return POINTER.match(got) is not None and POINTER.match(got).group(1) == m.group(1)
    return want == got


def _differences(want: list, got: list) -> list:
    assert len(got) == len(want), (f"{len(got)} lines printed, nanoBragg.c prints {len(want)}:\n"
                                   + "\n".join(got))
    return [(k, w, g) for k, (w, g) in enumerate(zip(want, got)) if not _same(w, g)]


@needs_golden
@pytest.mark.parametrize("name", STDOUT_CASES)
def test_c_parity_stdout_is_nanobraggs(name):
    got = cached_run(name, c_parity=True).report.splitlines()
    bad = _differences(c_stdout(CASES[name]), got)
    assert not bad, "\n".join(f"line {k + 1}: C {w!r}\n        ours {g!r}" for k, w, g in bad)


@needs_golden
@pytest.mark.parametrize("name", STDOUT_CASES)
def test_default_mode_stdout_is_nanobraggs_except_where_the_physics_differs(name):
    """Default mode prints the same lines; only the numbers named in DEFAULT_MODE_DIFFERS differ,
    and there they must differ (else the entry is stale)."""
    got = cached_run(name, c_parity=False).report.splitlines()
    bad = _differences(c_stdout(CASES[name]), got)
    prefixes, why = DEFAULT_MODE_DIFFERS.get(name, ((), ""))
    unexplained = [(k, w, g) for k, w, g in bad if not w.startswith(prefixes)]
    assert not unexplained, "\n".join(f"line {k + 1}: C {w!r}\n        ours {g!r}"
                                      for k, w, g in unexplained)
    if prefixes:
        assert bad, f"{name}: listed as differing by design ({why}) but prints C's numbers"


@needs_golden
@pytest.mark.parametrize("name", SPEC_CASES)
def test_default_mode_stdout_matches_nanobragg_forced_to_rotate(name):
    """The *_spec references: nanoBragg.c given -phi 1e-30, our default mode given -phi 0. The
    statistics (the image) are the same; only the phi start C was given (1e-30 rad) prints
    differently."""
    got = cached_run(name, default_mode=True).report.splitlines()
    bad = _differences(c_stdout(CASES[name]), got)
    phi_lines = [(k, w, g) for k, w, g in bad
                 if w.startswith("phi0 = ") or re.match(r"^  \d+ phi steps from ", w)]
    assert phi_lines and bad == phi_lines, bad
