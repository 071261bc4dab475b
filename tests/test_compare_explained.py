"""`nanobragg compare` for people and logs: the table fits the width without breaking numbers,
every default-mode divergence of the golden corpus is explained by its documented difference,
and traces of different pixels are reported as such first."""

import re

import pytest
from click.testing import CliRunner

from conftest import CASES, cached_run, golden_case_names, needs_golden
from nanobragg_cli.compare import compare_command, compare_traces
from nanobragg_cli.golden import compare_case_trace

# default mode against nanoBragg.c: the difference (docs/differences.md) explaining each case's
# first divergence; every other traced case must agree
DEFAULT_MODE_EXPLAINED = {
    "phi_from0": "phi0_carryover", "mosaic_phi": "phi0_carryover",
    "divergence": "per_source_polarization", "divergence_square": "per_source_polarization",
    "divergence_steps": "per_source_polarization", "sourcefile": "per_source_polarization",
    "oversample_flags": "oversample_factors",
    "thick_detector": "sensor_layers", "thick_oversample": "sensor_layers",
    "water": "water_background",
    "oversample_thick_nothick": "oversample_thick_without_sensor",
    "oversample_thick_abs_inf": "oversample_thick_without_sensor",
    "hkl_float_indices": "hkl_read_by_fscanf",
    "polar_along_beam_kahn": "polarization_along_the_beam",
    "polar_along_source": "polarization_along_the_beam",
    # the kill-switch (#6) tripped at an earlier pixel: C's warning precedes the records
    "interp_kill_switch_window": "interpolation_kill_switch",
}
TRACED = golden_case_names(lambda c: bool(c.trace_pixels) and (c.dir / "stdout.txt").exists()
                           and "default_mode_reference_for" not in c.meta)


@needs_golden
@pytest.mark.parametrize("name", TRACED)
def test_every_default_mode_divergence_is_explained(name):
    run = cached_run(name, c_parity=False)
    for pixel in CASES[name].trace_pixels:
        result = compare_case_trace(CASES[name], pixel, run.traces[pixel])
        names = [q["name"] for q in result.quirks]
        if name in DEFAULT_MODE_EXPLAINED:
            assert result.first_divergence is not None, f"{name} {pixel}: no divergence"
            assert names == [DEFAULT_MODE_EXPLAINED[name]], (name, pixel, result.first_divergence)
            assert "docs/differences.md" in result.explanation
            assert "--c-parity" in result.explanation
        else:
            assert result.first_divergence is None, (name, pixel, result.first_divergence)


@needs_golden
def test_divergence_case_names_per_source_polarization(tmp_path):
    """The issue's example: pixel (65, 64) of `divergence` ends at I_pixel_final, rel 9e-8."""
    run = cached_run("divergence", c_parity=False)
    result = compare_case_trace(CASES["divergence"], (65, 64), run.traces[(65, 64)])
    assert result.first_divergence == "I_pixel_final"
    assert 1e-8 < result.first_row.rel_delta < 1e-6
    assert "#7" in result.explanation and "polarization" in result.explanation


def _trace_files(tmp_path, pixel=(65, 64)):
    case = CASES["divergence"]
    run = cached_run("divergence", c_parity=False)
    s, f = pixel
    py = tmp_path / "py.log"
    py.write_text(f"TRACE_CONFIG: tracing pixel (spixel={s}, fpixel={f})\n" + run.traces[pixel])
    return case.trace_log((65, 64)), py


@needs_golden
def test_traces_of_different_pixels_are_reported_first(tmp_path):
    c_log, py = _trace_files(tmp_path, (54, 46))
    res = CliRunner().invoke(compare_command, [str(c_log), str(py)], env={"COLUMNS": "100"})
    first = res.output.splitlines()[0]
    assert first.startswith("The two traces are of different pixels")
    assert "(slow 65, fast 64)" in first and "(slow 54, fast 46)" in first
    assert "-trace_pixel 65 64" in first
    assert compare_traces(c_log, py).quirks[0]["name"] == "different_pixels"
    c_log, same = _trace_files(tmp_path, (65, 64))
    assert "different pixels" not in CliRunner().invoke(compare_command,
                                                        [str(c_log), str(same)]).output


def _numbers(text: str) -> list:
    return re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?", text)


@needs_golden
@pytest.mark.parametrize("columns", [80, 200])
def test_compare_fits_the_width_without_breaking_numbers(tmp_path, columns):
    c_log, py = _trace_files(tmp_path)
    res = CliRunner().invoke(compare_command, [str(c_log), str(py), "--all"],
                             env={"COLUMNS": str(columns)})
    assert res.exit_code == 1
    lines = res.output.splitlines()
    table = lines[:lines.index(next(ln for ln in lines if " records: " in ln))]
    assert max(len(ln) for ln in table[1:]) <= columns   # the title line is a file name
    # every number of both traces is printed whole, on one line
    result = compare_traces(c_log, py)
    shown = set(_numbers(res.output))
    for row in result.rows:
        for v in (row.c_values or []) + (row.py_values or []):
            text = "%.15g" % v
            if not (row.integer and float(v).is_integer()):
                assert text in shown, (row.key, text)
    if columns >= 200:
        assert any(ln.startswith("┃ key") for ln in table)     # the boxed table
    else:
        assert any(ln.startswith("  C   ") for ln in table)     # the compact layout


@needs_golden
def test_lattice_factor_next_to_an_integer_is_explained():
    """#11 in a synthetic pair: h one part in 1e14 from 4, and F_latt_c differs."""
    text = CASES["cubic_basic"].trace_log((65, 106)).read_text()
    text = text.replace("4.12149487111492\n", "4.00000000000001\n")
    py = text.replace("TRACE_C", "TRACE_PY").replace("TRACE_PY: F_latt_c 2.53307886060036",
                                                     "TRACE_PY: F_latt_c 5")
    result = compare_traces(text, py)
    assert result.first_divergence == "F_latt_c"
    assert [q["name"] for q in result.quirks] == ["sincg_next_to_integer"]
    assert "#11" in result.explanation and "l = 4.00000000000001" in result.explanation
    far = compare_traces(text.replace("4.00000000000001\n", "4.12149487111492\n"),
                         py.replace("4.00000000000001\n", "4.12149487111492\n"))
    assert far.first_divergence == "F_latt_c" and not far.quirks


def test_trace_notes_keep_c_warnings_and_drop_the_glued_record():
    """nanoBragg.c prints its interpolation warning before the records, and glues the next
    TRACE_C line behind "further warnings will not be printed! " (no newline)."""
    from nanobragg_cli.tracefmt import INTERPOLATION_WARNING, trace_notes
    text = ("auto-selected tricubic interpolation of structure factors\n"
            "WARNING: out of range for three point interpolation: h,k,l,h0,k0,l0: "
            "3.3,3.2,-4.0,3,3,-4 \n"
            "WARNING: further warnings will not be printed! TRACE_C: pix0_vector_meters 0.08 0 0\n"
            "TRACE_C: F_cell 12.5\n")
    notes = trace_notes(text)
    assert notes == ("WARNING: out of range for three point interpolation: h,k,l,h0,k0,l0: "
                     "3.3,3.2,-4.0,3,3,-4", "WARNING: further warnings will not be printed!")
    assert notes[0].startswith(INTERPOLATION_WARNING)
