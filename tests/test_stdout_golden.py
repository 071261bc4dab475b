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

STATISTICS = (r"max_I = ", r"mean= ", r"intfile_scale = ", r"pgm_scale = ")
SOURCE_LIST = (r"-?[0-9.e+-]+ -?[0-9.e+-]+ -?[0-9.e+-]+   ",)   # "X Y Z   I lambda" of a source
# Default mode: the lines that print different numbers by design (docs/differences.md, quirk #),
# because the default mode's image (or sensor layering, or sources) is the physically correct one.
DEFAULT_MODE_DIFFERS = {
    "phi_from0": (STATISTICS, "#1 phi = 0 carryover: every phi step is rotated"),
    "mosaic_phi": (STATISTICS, "#1 phi = 0 carryover"),
    "thick_detector": (STATISTICS + (r"thick",), "#2/#3 sensor layers: own capture fractions, "
                       "thick/N layers (the thickN lines print the layer depths used)"),
    "thick_oversample": (STATISTICS + (r"thick",), "#2/#3/#4 sensor layers and -oversample_thick"),
    "oversample_flags": (STATISTICS, "#4 -oversample_* factors weight each sub-pixel"),
    "water": (STATISTICS, "#5 water background linear in fluence, independent of steps"),
    "curved_det_last": (STATISTICS + (r"solid angle subtended ",),
                        "#12 -curved_det as the last argument is applied"),
    "polar_along_beam_kahn": (STATISTICS + SOURCE_LIST, "#13 an E-vector perpendicular to the "
                              "beam: the divergence sources spread around it"),
    "polar_along_source": (STATISTICS, "#13 polarization along a source"),
    "oversample_thick_nothick": (STATISTICS, "#14 no sensor: capture fraction 1, not 0"),
    "oversample_thick_abs_inf": (STATISTICS, "#14 no sensor: capture fraction 1, not 0"),
    "hkl_float_indices": (STATISTICS, "#15 '1.0' read as the index 1"),
    "interp_kill_switch_window": (STATISTICS, "#6 every evaluation in range interpolates"),
}
# ... and the lines only the default mode prints (#12: it applies -curved_det and says so)
DEFAULT_MODE_EXTRA = {"curved_det_last": ("  curved detector: all pixels same distance",)}
# Not reproduced (both modes): the warning nanoBragg.c prints while rendering when the
# interpolation kill-switch (#6) fires, with the h,k,l of the first out-of-range evaluation in its
# loop order; its second line has no newline, so C's blank line after the render carries it.
KILL_SWITCH_WARNING = "WARNING: out of range for three point interpolation: "
KILL_SWITCH_GLUED = "WARNING: further warnings will not be printed! "
# The *_spec references are nanoBragg.c run with other flags (the physically sensible reading of
# the case); only the lines echoing those flags differ from our default mode given the case's
# default_mode_args, never the statistics.
SPEC_ECHOES = {
    "phi_from0_spec": (r"phi0 = ", r"  \d+ phi steps from "),   # -phi 1e-30 instead of 0
    "mosaic_phi_spec": (r"phi0 = ", r"  \d+ phi steps from "),
    "hkl_float_indices_spec": (r"counting entries in ", r"re-reading "),   # another hkl file
    "hkl_header_line_spec": (r"counting entries in ", r"re-reading "),
    "oversample_thick_nothick_spec": (r"  \d+x\d+ pixel oversample steps",),  # no -oversample_thick
    "polar_along_beam_kahn_spec": (r"  POLARIZATION_PLANE_NORMAL= ",),      # another -polar_vector
}


def c_stdout(case) -> list:
    """nanoBragg.c's stdout lines of the case, the -trace_pixel build's instrumentation aside
    (and the kill-switch warning, which is not reproduced)."""
    text = case.file("stdout.txt").read_text()
    lines = [ln for ln in text.splitlines()
             if not INSTRUMENTATION.match(ln) and not ln.startswith(KILL_SWITCH_WARNING)]
    return ["" if ln == KILL_SWITCH_GLUED else ln for ln in lines]


def _matches(line: str, patterns) -> bool:
    return any(re.match(p, line) for p in patterns)


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
    extra = DEFAULT_MODE_EXTRA.get(name, ())
    if extra:
        assert any(ln.startswith(extra) for ln in got), f"{name}: the default mode's own line"
        got = [ln for ln in got if not ln.startswith(extra)]
    bad = _differences(c_stdout(CASES[name]), got)
    prefixes, why = DEFAULT_MODE_DIFFERS.get(name, ((), ""))
    unexplained = [(k, w, g) for k, w, g in bad if not _matches(w, prefixes)]
    assert not unexplained, "\n".join(f"line {k + 1}: C {w!r}\n        ours {g!r}"
                                      for k, w, g in unexplained)
    if prefixes:
        assert bad, f"{name}: listed as differing by design ({why}) but prints C's numbers"


@needs_golden
@pytest.mark.parametrize("name", SPEC_CASES)
def test_default_mode_stdout_matches_the_sensible_nanobragg_run(name):
    """The *_spec references: nanoBragg.c run the physically sensible way (e.g. -phi 1e-30 for
    -phi 0), our default mode given the case's default_mode_args. Same lines, same statistics;
    only the lines echoing the flags given differently (SPEC_ECHOES) may differ."""
    got = cached_run(name, default_mode=True).report.splitlines()
    bad = _differences(c_stdout(CASES[name]), got)
    echoes = SPEC_ECHOES.get(name, ())
    assert all(_matches(w, echoes) for k, w, g in bad), bad
