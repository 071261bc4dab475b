"""Tests of the trace parser and `nanobragg compare` (nanobragg_cli/compare.py, tracefmt.py).

Golden C traces come from the corpus at $NB_GOLDEN_DIR (default tests/golden); tests
that need it skip when it is absent. The Python side is built from a C trace by the text
substitution TRACE_C -> TRACE_PY, then perturbed line by line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the package may not be installed in the venv
    sys.path.insert(0, str(REPO))

from click.testing import CliRunner  # noqa: E402

from nanobragg_cli.compare import compare_command, compare_traces  # noqa: E402
from nanobragg_cli.golden import default_golden_dir  # noqa: E402
from nanobragg_cli.compare_report import to_json, to_markdown  # noqa: E402
from nanobragg_cli.compare_explain import QUIRK_DETECTORS  # noqa: E402
from nanobragg_cli.tracefmt import TraceInputError, load_trace, parse_trace  # noqa: E402

GOLDEN = default_golden_dir()
CASES = GOLDEN / "cases"
GOLDEN_TRACES = sorted(CASES.glob("*/trace_*.log")) if CASES.is_dir() else []
NO_GOLDEN = f"golden corpus not found at {GOLDEN} (set NB_GOLDEN_DIR to its folder)"

# the C trace used for the φ=0 carryover test: its first traced block already shows the
# carryover (phi_tic=0 at phi_deg=0 equals phi_tic=4 bit for bit) because (65, 65) is not the
# first pixel rendered
CARRY_CASE = "phi_from0/trace_65_65.log"
# the same geometry rendered with -phi 1e-30: no carryover signature
NO_CARRY_CASE = "phi_from0_spec/trace_65_65.log"


@pytest.fixture
def golden():
    if not CASES.is_dir():
        pytest.skip(NO_GOLDEN)
    return CASES


def c_text(case: str) -> str:
    return (CASES / case).read_text()


def as_py(text: str) -> str:
    return text.replace("TRACE_C", "TRACE_PY")


def last_line(output: str) -> str:
    lines = output.rstrip("\n").splitlines()
    return lines[-1] if lines else ""


def nth_line_index(lines: list[str], prefix: str, occurrence: int) -> int:
    hits = [i for i, ln in enumerate(lines) if ln.startswith(prefix)]
    assert len(hits) > occurrence, f"{prefix!r} occurs {len(hits)} times"
    return hits[occurrence]


def perturb(text: str, prefix: str, occurrence: int = 0, index: int | None = None,
            rel: float = 1e-8, field: str | None = None) -> str:
    """Multiply one number of the occurrence-th line starting with ``prefix`` by (1 + rel).

    ``index`` picks the value (default: the largest in magnitude) of a ``key v1 v2 v3`` line;
    ``field`` picks ``field=value`` of a PHI line instead.
    """
    lines = text.splitlines()
    i = nth_line_index(lines, prefix, occurrence)
    line = lines[i]
    if field is not None:
        m = re.search(rf"\b{field}=(\S+)", line)
        assert m
        new = repr(float(m.group(1)) * (1 + rel))
        lines[i] = line[: m.start(1)] + new + line[m.end(1):]
    else:
        head, rest = line[: len(prefix)], line[len(prefix):].split()
        values = [float(v) for v in rest]
        k = index if index is not None else max(range(len(values)), key=lambda j: abs(values[j]))
        rest[k] = repr(values[k] * (1 + rel))
        lines[i] = head + " ".join(rest)
    return "\n".join(lines) + "\n"


def drop_line(text: str, prefix: str, occurrence: int = 0) -> str:
    lines = text.splitlines()
    del lines[nth_line_index(lines, prefix, occurrence)]
    return "\n".join(lines) + "\n"


def run_cli(tmp_path: Path, c: str | Path, py: str | Path, *extra: str):
    """Write texts to files when needed and run the click command; returns the click result."""
    def as_file(obj, name):
        if isinstance(obj, Path):
            return str(obj)
        path = tmp_path / name
        path.write_text(obj)
        return str(path)

    args = [as_file(c, "c.log"), as_file(py, "py.log"), *extra]
    return CliRunner().invoke(compare_command, args, catch_exceptions=False)


# ---------------------------------------------------------------------------------------------
# parser


def test_every_golden_trace_parses(golden):
    assert GOLDEN_TRACES, NO_GOLDEN
    for path in GOLDEN_TRACES:
        text = path.read_text()
        records, name = load_trace(path, prefer="C")
        assert len(records) > 0, path
        assert all(r.side == "C" for r in records), path
        assert all(r.is_numeric and r.values for r in records), path
        # every line with a TRACE_C* token (anywhere: nanoBragg.c glues its interpolation
        # warning in front of one) became at least one record, nothing else did
        c_lines = {i for i, ln in enumerate(text.splitlines(), 1)
                   if re.search(r"TRACE_C[:_ ]", ln)}
        assert {r.line_no for r in records} == c_lines, path
        # TRACE: blocks and TRACE_CONFIG: are not trace records
        assert not any(r.key.startswith(("TRACE", "ONFIG", "tracing")) for r in records), path


def test_parse_forms_and_keys():
    text = "\n".join([
        "some program output 1 2 3",
        "TRACE: Phi rotation (phi=0.1 degrees):",
        "TRACE_CONFIG: tracing pixel (spixel=1, fpixel=2)",
        "TRACE_C: rot_a_angstroms 1 2 3",
        "TRACE_C: hkl_rounded 0 -1 2",
        "TRACE_C:pix0_vector=0.1 0.2 0.3",
        "TRACE_C:rotation_matrix=[1 0 0; 0 1 0; 0 0 1]",
        "TRACE_C:angles_rad=rotx:0.1 roty:0 rotz:-0.2 twotheta:0",
        "TRACE_C:detector_convention=MOSFLM",
        "TRACE_C_PHI phi_tic=3 phi_deg=0.3 k_frac=-0.02 F_latt_b=4.8 F_latt=118.9",
        "TRACE_C_SOURCE2: polar 0.99",
        "TRACE_C_SOURCE2: source_index 2",
        "TRACE_C_TAP5: pixel 10 12",
        "TRACE_C_TAP5: I_before_scaling 725725.934393854",
        "TRACE_C_TAP5_HKL: subpixel=0 1 hkl_frac=-0.0008 0.65 -0.45 h0=0 k0=1 l0=0 "
        "F_cell=100 out_of_bounds=0",
        "TRACE_PY: F_latt nan",
    ])
    recs = parse_trace(text)
    got = {r.key: (list(r.values), r.text, r.side) for r in recs}
    assert got["rot_a_angstroms"][0] == [1, 2, 3]
    assert got["hkl_rounded"][0] == [0, -1, 2]
    assert got["pix0_vector"][0] == [0.1, 0.2, 0.3]
    assert got["rotation_matrix"][0] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert got["angles_rad"][0] == [0.1, 0, -0.2, 0]
    assert got["detector_convention"][1] == "MOSFLM"
    assert [r.key for r in recs if r.key.startswith("PHI.")] == [
        "PHI.phi_tic", "PHI.phi_deg", "PHI.k_frac", "PHI.F_latt_b", "PHI.F_latt"]
    assert got["PHI.k_frac"][0] == [-0.02]
    assert got["SOURCE2.polar"][0] == [0.99]
    assert got["SOURCE2.source_index"][0] == [2]
    assert got["TAP5.pixel"][0] == [10, 12]
    assert got["TAP5.I_before_scaling"][0] == [725725.934393854]
    assert got["TAP5_HKL.subpixel"][0] == [0, 1]
    assert got["TAP5_HKL.hkl_frac"][0] == [-0.0008, 0.65, -0.45]
    assert got["TAP5_HKL.out_of_bounds"][0] == [0]
    assert got["F_latt"][2] == "PY"
    assert len(recs) == 6 + 5 + 2 + 2 + 7 + 1  # CONFIG, TRACE: and prose lines dropped


def test_c_and_py_prefixes_normalise_to_the_same_keys(golden):
    text = c_text("dispersion/trace_65_65.log")
    c = parse_trace(text)
    p = parse_trace(as_py(text))
    assert [r.key for r in c] == [r.key for r in p]
    assert {r.side for r in p} == {"PY"}
    assert any(r.key == "SOURCE2.polar" for r in c)


# ---------------------------------------------------------------------------------------------
# comparison through the command


@pytest.mark.parametrize("case", ["cubic_basic/trace_65_65.log", CARRY_CASE,
                                  "dispersion/trace_65_65.log", "supervisor/trace_685_1039.log",
                                  "thick_oversample/trace_64_54.log",
                                  "xtalsize/trace_65_65.log"])
def test_golden_against_itself_is_clean(golden, tmp_path, case):
    text = c_text(case)
    res = run_cli(tmp_path, CASES / case, as_py(text))
    assert res.exit_code == 0, res.output
    assert last_line(res.stdout) == "first_divergence=None"
    assert res.stderr == ""


@pytest.mark.parametrize("prefix,occurrence,field,key", [
    ("TRACE_PY: F_latt ", 2, None, "F_latt"),
    ("TRACE_PY: rot_b_angstroms ", 1, None, "rot_b_angstroms"),
    ("TRACE_PY: I_pixel_final ", 0, None, "I_pixel_final"),
    ("TRACE_PY_PHI ", 3, "k_frac", "PHI.k_frac"),
    ("TRACE_PY_PHI ", 7, "F_latt", "PHI.F_latt"),
])
def test_perturbation_of_1e8_is_reported(golden, tmp_path, prefix, occurrence, field, key):
    case = "phi_from10/trace_55_123.log"  # phi never 0: no quirk explanation
    py = perturb(as_py(c_text(case)), prefix, occurrence, field=field, rel=1e-8)
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 1, res.output
    assert last_line(res.stdout) == f"first_divergence={key}"
    result = compare_traces(CASES / case, py)
    assert result.first_divergence == key
    assert result.first_row.occurrence == occurrence
    assert result.counts["failed"] == 1
    assert result.explanation is None


def test_source2_perturbation_is_reported(golden, tmp_path):
    case = "dispersion/trace_65_65.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY_SOURCE2: I_contribution ", 0, rel=1e-8)
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 1
    assert last_line(res.stdout) == "first_divergence=SOURCE2.I_contribution"


@pytest.mark.parametrize("prefix,field", [("TRACE_PY: F_latt ", None),
                                          ("TRACE_PY: scattering_vec_A_inv ", None),
                                          ("TRACE_PY_PHI ", "k_frac")])
def test_perturbation_of_1e11_passes(golden, tmp_path, prefix, field):
    case = "phi_from10/trace_55_123.log"
    py = perturb(as_py(c_text(case)), prefix, 1, field=field, rel=1e-11)
    assert py != as_py(c_text(case))
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 0, res.output
    assert last_line(res.stdout) == "first_divergence=None"


def test_near_zero_component_is_judged_on_the_vector_scale(golden):
    # rot_a_angstroms = (99.99, 0.698, 6.1e-15): doubling the 6e-15 component is within
    # atol + rtol * 100
    case = "phi_from10/trace_55_123.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY: rot_a_angstroms ", 0, index=2, rel=1.0)
    assert compare_traces(CASES / case, py).first_divergence is None


def test_rtol_option_loosens_the_check(golden, tmp_path):
    case = "cubic_basic/trace_65_65.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY: F_latt ", 0, rel=1e-8)
    res = run_cli(tmp_path, CASES / case, py, "--rtol", "1e-7")
    assert res.exit_code == 0
    assert last_line(res.stdout) == "first_divergence=None"


def test_missing_record_is_reported_with_its_key(golden, tmp_path):
    case = "cubic_basic/trace_65_65.log"
    py = drop_line(as_py(c_text(case)), "TRACE_PY: F_cell ", 0)
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 1
    assert last_line(res.stdout) == "first_divergence=F_cell"
    assert "missing in Py" in res.stdout
    result = compare_traces(CASES / case, py)
    assert result.first_row.status == "missing_py"
    assert result.first_row.py_values is None


def test_truncated_python_trace_is_a_divergence_not_unusable(golden, tmp_path):
    case = "cubic_basic/trace_65_65.log"
    lines = as_py(c_text(case)).splitlines()
    cut = nth_line_index(lines, "TRACE_PY: hkl_frac ", 1)
    py = "\n".join(lines[:cut]) + "\nTRACE_PY: hkl_fr"  # cut mid-line
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 1, res.output
    assert last_line(res.stdout) == "first_divergence=hkl_frac"
    result = compare_traces(CASES / case, py)
    assert result.counts["missing_py"] > 10
    assert result.counts["missing_c"] == 1  # the cut line "hkl_fr", listed after C's rows
    assert result.rows[-1].key == "hkl_fr"


def test_extra_python_record_is_reported(golden):
    case = "cubic_basic/trace_65_65.log"
    lines = as_py(c_text(case)).splitlines()
    i = nth_line_index(lines, "TRACE_PY: F_cell ", 0)
    lines.insert(i + 1, "TRACE_PY: my_extra_key 1 2 3")
    result = compare_traces(CASES / case, "\n".join(lines))
    assert result.first_divergence == "my_extra_key"
    assert result.first_row.status == "missing_c"
    # placed between the aligned records around it
    assert result.rows[result.first_divergence_index - 1].key == "F_cell"


def test_integer_keys_compare_exactly():
    c = "TRACE_C: steps 1000000000000\nTRACE_C: F_latt 1000000000000\n"
    py = "TRACE_PY: steps 1000000000001\nTRACE_PY: F_latt 1000000000001\n"
    result = compare_traces(c, py)
    assert [r.ok for r in result.rows] == [False, True]
    assert result.first_divergence == "steps"


def test_text_input_and_text_values():
    c = "TRACE_C:detector_convention=MOSFLM\nTRACE_C: polar 0.5\n"
    assert compare_traces(c, c.replace("TRACE_C", "TRACE_PY")).first_divergence is None
    bad = "TRACE_PY:detector_convention=XDS\nTRACE_PY: polar 0.5\n"
    assert compare_traces(c, bad).first_divergence == "detector_convention"


def test_nan_matches_only_nan():
    assert compare_traces("TRACE_C: x nan\n", "TRACE_PY: x nan\n").first_divergence is None
    assert compare_traces("TRACE_C: x nan\n", "TRACE_PY: x 1\n").first_divergence == "x"
    res = compare_traces("TRACE_C: x 1 2\n", "TRACE_PY: x 1\n")
    assert res.first_divergence == "x" and res.first_row.status == "length"


# ---------------------------------------------------------------------------------------------
# unusable input, output files, output contract


def test_empty_and_missing_files_exit_2(tmp_path):
    good = tmp_path / "good.log"
    good.write_text("TRACE_C: F_latt 1\n")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    prose = tmp_path / "prose.log"
    prose.write_text("TRACE: a block\nTRACE_CONFIG: tracing pixel (spixel=1, fpixel=2)\nhello\n")
    missing = tmp_path / "nope.log"
    for c, py, named in [(good, empty, empty), (empty, good, empty), (missing, good, missing),
                         (good, missing, missing), (good, prose, prose), (good, tmp_path, tmp_path)]:
        res = CliRunner().invoke(compare_command, [str(c), str(py)])
        assert res.exit_code == 2, (c, py, res.output)
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1, err
        assert str(named) in err
        assert "Traceback" not in res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)


def test_compare_traces_raises_trace_input_error(tmp_path):
    with pytest.raises(TraceInputError, match="no such file"):
        compare_traces(tmp_path / "missing.log", "TRACE_PY: a 1")
    (tmp_path / "e.log").write_text("")
    with pytest.raises(TraceInputError, match="empty"):
        compare_traces("TRACE_C: a 1", tmp_path / "e.log")


def test_json_and_markdown_outputs(golden, tmp_path):
    case = "cubic_basic/trace_65_65.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY: R_distance_meters ", 1, rel=1e-6)
    jpath, mpath = tmp_path / "out.json", tmp_path / "out.md"
    res = run_cli(tmp_path, CASES / case, py, "--json", str(jpath), "--markdown", str(mpath))
    assert res.exit_code == 1
    assert last_line(res.stdout) == "first_divergence=R_distance_meters"
    data = json.loads(jpath.read_text())
    assert data["first_divergence"] == "R_distance_meters"
    assert data["first_divergence_occurrence"] == 1
    assert data["counts"]["failed"] == 1
    assert len(data["rows"]) == data["counts"]["rows"] == 138
    bad = [r for r in data["rows"] if not r["ok"]]
    assert len(bad) == 1 and bad[0]["key"] == "R_distance_meters" and bad[0]["rel_delta"] > 1e-9
    md = mpath.read_text()
    assert md.startswith("# Trace comparison")
    assert "| key | # | C | Py |" in md
    assert "**R_distance_meters**" in md
    assert last_line(md) == "first_divergence=R_distance_meters"
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(table_rows) == 1 + 138


def test_default_table_stops_at_first_divergence_and_all_shows_everything(golden, tmp_path):
    case = "cubic_basic/trace_65_65.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY: pixel_pos_meters ", 0, rel=1e-6)
    short = run_cli(tmp_path, CASES / case, py)
    full = run_cli(tmp_path, CASES / case, py, "--all")
    assert "floatimage_accumulated" not in short.stdout
    assert "further records not shown" in short.stdout
    assert "floatimage_accumulated" in full.stdout
    for res in (short, full):
        assert res.exit_code == 1
        assert last_line(res.stdout) == "first_divergence=pixel_pos_meters"
        assert "1 out of tolerance" in res.stdout


def test_long_tables_print_one_line_per_record(golden, tmp_path, monkeypatch):
    import nanobragg_cli.compare_report as compare_mod

    monkeypatch.setattr(compare_mod, "RICH_TABLE_MAX_ROWS", 10)
    case = "cubic_basic/trace_65_65.log"
    py = perturb(as_py(c_text(case)), "TRACE_PY: F_latt ", 1, rel=1e-6)
    res = run_cli(tmp_path, CASES / case, py)
    assert res.exit_code == 1
    assert last_line(res.stdout) == "first_divergence=F_latt"
    bad = [ln for ln in res.stdout.splitlines() if ln.startswith("F_latt ")]
    assert len(bad) == 2 and bad[0].endswith(" ok") and bad[1].endswith("FAIL")


def test_json_with_non_finite_numbers_is_strict_json():
    result = compare_traces("TRACE_C: x nan 0\n", "TRACE_PY: x 1 0\n")
    text = json.dumps(to_json(result), allow_nan=False)
    assert json.loads(text)["rows"][0]["c"][0] == "nan"


# ---------------------------------------------------------------------------------------------
# quirk explanations


def carry_py(case: str) -> str:
    """The Python side as default (correct) mode would print it at the first phi_tic=0: the
    unrotated rot_a of the cell, instead of C's carried-over phi=0.4 deg orientation."""
    lines = as_py(c_text(case)).splitlines()
    i = nth_line_index(lines, "TRACE_PY: rot_a_angstroms ", 0)
    lines[i] = "TRACE_PY: rot_a_angstroms 100 6.12323399573677e-15 6.12323399573677e-15"
    return "\n".join(lines) + "\n"


def test_c_trace_shows_the_carryover_signature(golden):
    phi = [ln for ln in c_text(CARRY_CASE).splitlines() if ln.startswith("TRACE_C_PHI")]
    first_block = phi[:5]
    f0 = dict(kv.split("=") for kv in first_block[0].split()[1:])
    f4 = dict(kv.split("=") for kv in first_block[4].split()[1:])
    assert f0["phi_tic"] == "0" and f0["phi_deg"] == "0" and f4["phi_tic"] == "4"
    assert (f0["k_frac"], f0["F_latt"]) == (f4["k_frac"], f4["F_latt"])


def test_phi0_carryover_is_explained(golden, tmp_path):
    py = carry_py(CARRY_CASE)
    jpath, mpath = tmp_path / "c.json", tmp_path / "c.md"
    res = run_cli(tmp_path, CASES / CARRY_CASE, py, "--json", str(jpath), "--markdown", str(mpath))
    assert res.exit_code == 1
    assert last_line(res.stdout) == "first_divergence=rot_a_angstroms"
    assert "carryover" in res.stdout and "--c-parity" in res.stdout
    data = json.loads(jpath.read_text())
    assert "--c-parity" in data["explanation"]
    assert data["quirks"][0]["name"] == "phi0_carryover"
    md = mpath.read_text()
    assert "## Explanation" in md and "--c-parity" in md
    result = compare_traces(CASES / CARRY_CASE, py)
    assert "phi_tic=4" in result.explanation and "docs/differences.md" in result.explanation


def test_phi0_carryover_also_explains_phi_lines(golden):
    py = perturb(as_py(c_text("mosaic_phi/trace_65_65.log")), "TRACE_PY_PHI ", 0,
                 field="k_frac", rel=1e-6)
    result = compare_traces(CASES / "mosaic_phi/trace_65_65.log", py)
    assert result.first_divergence == "PHI.k_frac"
    assert result.explanation and "--c-parity" in result.explanation


def test_no_carryover_explanation_without_signature_or_for_other_keys(golden):
    # -phi 1e-30 reference: a divergence at the same key, but C shows no carryover
    py = perturb(as_py(c_text(NO_CARRY_CASE)), "TRACE_PY: rot_a_angstroms ", 0, rel=1e-6)
    result = compare_traces(CASES / NO_CARRY_CASE, py)
    assert result.first_divergence == "rot_a_angstroms"
    assert result.explanation is None
    # carryover present in C, but the divergence is in the detector geometry
    py = perturb(as_py(c_text(CARRY_CASE)), "TRACE_PY: pixel_pos_meters ", 0, rel=1e-6)
    result = compare_traces(CASES / CARRY_CASE, py)
    assert result.first_divergence == "pixel_pos_meters"
    assert result.explanation is None


def test_scattering_vector_unit_quirk_is_explained(golden):
    case = "cubic_basic/trace_65_65.log"
    lines = as_py(c_text(case)).splitlines()
    i = nth_line_index(lines, "TRACE_PY: scattering_vec_A_inv ", 0)
    vals = [float(v) / 1e10 for v in lines[i].split()[2:]]
    lines[i] = "TRACE_PY: scattering_vec_A_inv " + " ".join("%.15g" % v for v in vals)
    result = compare_traces(CASES / case, "\n".join(lines))
    assert result.first_divergence == "scattering_vec_A_inv"
    assert "1/m" in result.explanation


def test_quirk_detectors_are_a_plain_list():
    assert callable(QUIRK_DETECTORS[0])
    assert all(callable(d) for d in QUIRK_DETECTORS)


def test_compare_module_does_not_import_torch():
    code = ("import sys; import nanobragg_cli.compare, nanobragg_cli.tracefmt; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr


def test_markdown_renderer_without_divergence():
    result = compare_traces("TRACE_C: a 1\n", "TRACE_PY: a 1\n")
    md = to_markdown(result)
    assert "first_divergence=None" in md and "## Explanation" not in md
