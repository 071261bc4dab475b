"""The parity bugs of issue 12, each a golden case of the repository's corpus (tests/golden/cases,
made with nanoBragg.c, one thread): --c-parity reproduces nanoBragg.c (float.bin at rtol 1e-5 with
atol 1e-7 x max, int.img and noise.img byte for byte, traces at rtol 1e-9), and the default mode
does what docs/differences.md says (the *_spec cases: nanoBragg.c run the physically sensible way).

1. -curved_det as the last argument    curved_det_last(_spec)
2. beam along the polarization vector  polar_along_beam_xds, polar_along_beam_kahn(_spec),
                                       polar_along_source
3. -oversample_thick without a sensor  oversample_thick_nothick(_spec), oversample_thick_abs_inf
4. -mat together with -cell            mat_with_cell, cell_then_mat
5. a negative -seed                    seed_negative, mosaic_seed_negative,
                                       misset_random_seed_negative
6. hkl files as nanoBragg.c reads them hkl_float_indices(_spec), hkl_header_line_spec
7. a C trace line behind a warning     interp_warning_glued
   a pixel on the direct beam          on_beam_pixel

Found by the random parity fuzzer (nanobragg suite --c-bin PATH --random N --seed S):

8. a pixel traced alone (a window) under interp_kill_switch_window
   the interpolation kill-switch
"""

from pathlib import Path

import numpy as np
import pytest

from nanobragg_cli.cli import main
from nanobragg_cli.golden import (TRACE_RTOL, compare_case_trace, compare_images, load_cases,
                                  run_case)
from nanobragg_cli.tracefmt import load_trace

GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = ("curved_det_last", "polar_along_beam_xds", "polar_along_beam_kahn", "polar_along_source",
         "oversample_thick_nothick", "oversample_thick_abs_inf", "mat_with_cell", "cell_then_mat",
         "seed_negative", "mosaic_seed_negative", "misset_random_seed_negative",
         "hkl_float_indices", "interp_warning_glued", "on_beam_pixel",
         "interp_kill_switch_window")
SPECS = ("curved_det_last_spec", "polar_along_beam_kahn_spec", "oversample_thick_nothick_spec",
         "hkl_float_indices_spec", "hkl_header_line_spec")
# cases where nanoBragg.c does the physically sensible thing: the default mode must agree too
BOTH_MODES = ("polar_along_beam_xds", "mat_with_cell", "cell_then_mat", "on_beam_pixel")
CASES = {c.name: c for c in load_cases(GOLDEN, list(NAMES + SPECS))}
_RUNS = {}


def _run(name, **kw):
    key = (name, tuple(sorted(kw.items())))
    if key not in _RUNS:
        _RUNS[key] = run_case(CASES[name], GOLDEN, **kw)
    return _RUNS[key]


def _assert_image(case, run):
    m = compare_images(run.image, case.reference_image())
    assert m.ok, f"{case.name}: {m.n_bad} pixels over tolerance, worst {m.worst:.3g}x tolerance"


def _assert_traces(case, run):
    for px in case.trace_pixels:
        res = compare_case_trace(case, px, run.traces[px], rtol=TRACE_RTOL, atol=1e-30)
        assert res.first_divergence is None, f"{case.name} {px}: {res.first_divergence}"
        assert res.counts.get("missing_py", 0) == 0


@pytest.mark.parametrize("name", NAMES)
def test_c_parity_reproduces_nanobragg(name):
    case, run = CASES[name], _run(name, c_parity=True)
    _assert_image(case, run)
    assert run.files["int"] == case.file("int.img").read_bytes()
    if case.file("noise.img") is not None:
        assert run.files["noise"] == case.file("noise.img").read_bytes()
    _assert_traces(case, run)


@pytest.mark.parametrize("name", SPECS)
def test_default_mode_matches_the_sensible_nanobragg_run(name):
    case, run = CASES[name], _run(name, default_mode=True)
    _assert_image(case, run)
    _assert_traces(case, run)


@pytest.mark.parametrize("name", BOTH_MODES)
def test_default_mode_agrees_where_nanobragg_is_right(name):
    case, run = CASES[name], _run(name, c_parity=False, trace=False)
    assert np.isfinite(run.image).all()
    _assert_image(case, run)


def test_curved_det_last_differs_between_the_modes():
    """The quirk is real: the C image without the last -curved_det is not the curved one."""
    flat = _run("curved_det_last", c_parity=True).image
    assert not compare_images(flat, CASES["curved_det_last_spec"].reference_image()).ok


def test_polarization_along_the_beam_is_the_limit_of_a_tilted_one():
    """Default mode: a polarization vector along the beam gives the image of the perpendicular
    E-vector it picks (0 1 0 for the MOSFLM beam), which is also the limit of a polarization
    vector tilted towards it (nanoBragg.c's reference: -polar_vector 0 1 0)."""
    ref = CASES["polar_along_beam_kahn_spec"].reference_image()
    tilted = run_case(CASES["polar_along_beam_kahn_spec"], GOLDEN, default_mode=True, trace=False,
                      extra_args=["-polar_vector", "1", "1e-9", "0"])
    assert compare_images(tilted.image, ref).ok


def test_divergence_about_a_polarization_along_the_beam_spans_two_directions():
    """Default mode: with the polarization along the beam the divergence grid still spreads the
    sources over both perpendicular directions (nanoBragg.c's zero axes collapse them)."""
    run = _run("polar_along_beam_kahn", c_parity=False, trace=False)
    dirs = run.result.scene.source_dirs.numpy()
    assert np.isfinite(run.image).all() and len(dirs) == 5  # 3x3 grid, round cut
    assert len({tuple(np.round(d, 12)) for d in dirs}) == 5
    assert np.ptp(dirs[:, 1]) > 1e-4 and np.ptp(dirs[:, 2]) > 1e-4
    c_dirs = _run("polar_along_beam_kahn", c_parity=True).result.scene.source_dirs.numpy()
    assert np.allclose(c_dirs, c_dirs[0], atol=1e-15)


def test_default_mode_is_finite_for_a_source_along_the_polarization():
    run = _run("polar_along_source", c_parity=False, trace=False)
    assert np.isfinite(run.image).all() and run.image.max() > 0


def test_oversample_thick_without_sensor_is_all_zero_only_in_c_parity():
    assert not CASES["oversample_thick_nothick"].reference_image().any()
    assert _run("oversample_thick_abs_inf", c_parity=False, trace=False).image.max() > 0


def test_negative_seed_noise_differs_from_a_fresh_stream():
    """-seed -7 continues nanoBragg.c's random stream (C's seed +7): not the -seed 7 image."""
    neg = _run("seed_negative", c_parity=True).files["noise"]
    pos = run_case(CASES["seed_negative"], GOLDEN, c_parity=True, trace=False,
                   extra_args=["-seed", "7"]).files["noise"]
    assert neg == CASES["seed_negative"].file("noise.img").read_bytes() and neg != pos


def test_hkl_float_indices_store_nothing_in_c_parity():
    """nanoBragg.c's second fscanf pass stops at '1.0': every reflection gets -default_F."""
    assert "125 initialized hkls (all others =100)" in CASES["hkl_float_indices"].file(
        "stdout.txt").read_text()
    c_img = _run("hkl_float_indices", c_parity=True).image
    d_img = _run("hkl_float_indices", c_parity=False, trace=False).image
    assert not compare_images(d_img, c_img).ok


def test_hkl_header_line_is_refused_in_c_parity(tmp_path, monkeypatch, capsys):
    """nanoBragg.c prints "ERROR: not enough HKL indices in inputs/i12_header.hkl" and exits 9 on
    a '# h k l F' first line; --c-parity says so in one line, exit 9, nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs").symlink_to(GOLDEN / "inputs")
    args = CASES["hkl_header_line_spec"].meta["default_mode_args"]
    rc = main(["--c-parity", *args, "-floatfile", "f.bin", "-intfile", "i.img", "-nopgm",
               "-nonoise", "-noprogress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 9 and len(err) == 1
    assert err[0].startswith("nanobragg: error: hkl file inputs/i12_header.hkl, line 1")
    assert "not enough HKL indices" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]


def test_trace_record_glued_behind_a_warning_is_read():
    """nanoBragg.c glues its trace line behind "WARNING: further warnings will not be printed! "."""
    case = CASES["interp_warning_glued"]
    log = case.trace_log((0, 0))
    glued = [ln for ln in log.read_text().splitlines()
             if ln.startswith("WARNING: further warnings will not be printed! TRACE_C: ")]
    assert glued
    records, _ = load_trace(log, prefer="C")
    assert any(r.raw == glued[0].split("printed! ", 1)[1] for r in records)
    res = compare_case_trace(case, (0, 0), _run("interp_warning_glued", c_parity=True).traces[(0, 0)],
                             rtol=TRACE_RTOL, atol=1e-30)
    assert res.first_divergence is None


def test_on_beam_pixel_traces_c_rounding():
    """nanoBragg.c's x/1000.0 unit conversion leaves -4.3e-19 m on the beam (not 0)."""
    records, _ = load_trace(CASES["on_beam_pixel"].trace_log((31, 31)), prefer="C")
    pos = next(r for r in records if r.key == "pixel_pos_meters").values
    assert pos[1] != 0.0 and abs(pos[1]) < 1e-18


def test_a_pixel_traced_alone_sees_the_kill_switch_of_the_pixels_before_it():
    """The corner pixels before it fall out of the HKL grid's interpolation range and switch
    nanoBragg.c's interpolation off for the rest of the image: a window of that one pixel (how
    the --c-bin harness traces) must use the nearest F as the whole image does."""
    case, px = CASES["interp_kill_switch_window"], (11, 13)
    run = run_case(case, GOLDEN, c_parity=True, window=(px[0], px[0], px[1], px[1]))
    res = compare_case_trace(case, px, run.traces[px], rtol=TRACE_RTOL, atol=1e-30)
    assert res.first_divergence is None, res.first_divergence
    whole = _run("interp_kill_switch_window", c_parity=True).image
    image = np.asarray(run.image)
    assert image[px] == np.asarray(whole)[px] and np.count_nonzero(image) == 1


@pytest.mark.parametrize("mode", [["--c-parity"], []])
def test_osc_zero_with_a_phistep_is_refused(tmp_path, monkeypatch, capsys, mode):
    """-osc 0 -phistep 0.2: nanoBragg.c's ceil(osc/phistep) = 0 phi steps, so it divides by
    steps = 0 and writes a NaN image (inf with -water; found by the fuzzer, seed 3). We refuse it
    in one line, exit 9, nothing written; -osc 0 alone (one step) still renders."""
    monkeypatch.chdir(tmp_path)
    base = ["-cell", "70", "70", "70", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-detpixels", "16", "-distance", "80", "-oversample", "1", "-floatfile", "f.bin",
            "-nonoise", "-nopgm", "-noprogress", "-intfile", "i.img"]
    assert main([*mode, *base, "-osc", "0", "-phistep", "0.2"]) == 9
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("nanobragg: error: -osc 0 with -phistep 0.2")
    assert list(tmp_path.iterdir()) == []
    assert main([*mode, *base, "-osc", "0"]) == 0
    assert np.isfinite(np.fromfile(tmp_path / "f.bin", dtype="<f4")).all()
