"""The supervisor command (2463x2527 pixels, -phi 0 over 10 φ steps) through `nanobragg parity`,
against nanoBragg.c's golden outputs: in --c-parity the trace of pixel (685, 1039) and the 128x128
ROI (a window render) agree with C; in the default mode they agree with C forced to rotate at φ=0
(supervisor_spec), and against C's own trace the first divergence is the φ=0 carryover. The
whole-image comparison (about a minute) is marked slow; the ROI tests cover the same code path."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import GOLDEN, REPO, needs_golden
from nanobragg_cli.compare_explain import PHI_DEPENDENT_KEYS
from nanobragg_cli.golden import case_workdir, compare_images
from nanobragg_cli.parity import parity_command
from nanobragg_cli.tracefmt import load_trace

SUP = GOLDEN / "cases" / "supervisor"
SPEC = GOLDEN / "cases" / "supervisor_spec"
TRACE = "trace_685_1039.log"


def _meta(case: Path) -> dict:
    return json.loads((case / "meta.json").read_text())


def _roi(case: Path) -> tuple:
    m = _meta(case)
    (s0, f0), (h, w) = m["roi_origin_slow_fast"], m["roi_shape"]
    return s0, s0 + h - 1, f0, f0 + w - 1


def _run(args: list, out: Path):
    with case_workdir(GOLDEN):
        res = CliRunner().invoke(parity_command, [str(a) for a in args])
    bundles = [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []
    assert len(bundles) == 1, res.output
    return res, bundles[0]


def _argv(case: Path, default_mode: bool) -> list:
    m = _meta(case)
    args = m["default_mode_args"] if default_mode else m["args"]
    return list(args) + list(m["outputs"])


def _final(trace_text: str, key: str) -> float:
    records, _ = load_trace(trace_text)
    return next(r.values[0] for r in records if r.key == key)


def _roi_of_bundle(bundle: Path, case: Path) -> np.ndarray:
    S, F = _meta(case)["shape_slow_fast"]
    s0, s1, f0, f1 = _roi(case)
    return np.fromfile(bundle / "float.bin", dtype="<f4").reshape(S, F)[s0:s1 + 1, f0:f1 + 1]


@pytest.fixture(scope="module")
def c_parity_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("sup_c")
    s0, _, f0, _ = _roi(SUP)
    res, bundle = _run(["--c-parity", "--out", out, "--c-trace", SUP / TRACE,
                        "--c-image", SUP / "float_roi.npy", "--c-image-origin", s0, f0,
                        "--window", *_roi(SUP), "--", *_argv(SUP, False)], out)
    return res, bundle


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("sup_d")
    s0, _, f0, _ = _roi(SPEC)
    res, bundle = _run(["--out", out, "--c-trace", SPEC / TRACE, "--c-trace", SUP / TRACE,
                        "--c-image", SPEC / "float_roi.npy", "--c-image-origin", s0, f0,
                        "--window", *_roi(SPEC), "--", *_argv(SPEC, True)], out)
    return res, bundle


@needs_golden
def test_make_supervisor_runs_the_corpus_supervisor_command():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    args = re.search(r"^SUPERVISOR_ARGS\s*=(.*)$", text, re.M).group(1).split()
    assert args == _meta(SUP)["args"] == _meta(SPEC)["default_mode_args"]
    outputs = re.search(r"^SUPERVISOR_OUTPUTS\s*=(.*)$", text, re.M).group(1).split()
    assert outputs == _meta(SUP)["outputs"]


@needs_golden
def test_c_parity_trace_of_the_supervisor_pixel_has_no_divergence(c_parity_bundle):
    res, bundle = c_parity_bundle
    assert res.exit_code == 0, res.output
    cmp = json.loads((bundle / "compare.json").read_text())
    assert cmp["first_divergence"] is None and cmp["rtol"] == 1e-9
    assert cmp["counts"]["missing_py"] == 0 and cmp["counts"]["ok"] == cmp["counts"]["rows"]
    c_value = _final((SUP / TRACE).read_text(), "I_before_scaling")
    assert c_value == 943654.80923755
    ours = _final((bundle / "trace_py.log").read_text(), "I_before_scaling")
    assert ours == pytest.approx(c_value, rel=1e-9)


@needs_golden
def test_c_parity_supervisor_roi_equals_nanobragg(c_parity_bundle):
    _, bundle = c_parity_bundle
    ref = np.load(SUP / "float_roi.npy")
    m = compare_images(_roi_of_bundle(bundle, SUP), ref)
    assert m.ok, f"{m.n_bad} pixels over tolerance, worst {m.worst:.3g}x"
    metrics = json.loads((bundle / "image_metrics.json").read_text())
    assert metrics["ok"] and metrics["pixels"] == ref.size
    assert metrics["region_slow_fast"] == list(_roi(SUP))


@needs_golden
def test_default_mode_first_divergence_from_nanobragg_is_the_phi0_carryover(default_bundle):
    _, bundle = default_bundle
    cmp = json.loads((bundle / "compare_supervisor.json").read_text())
    key = cmp["first_divergence"]
    assert key in PHI_DEPENDENT_KEYS or key.startswith("PHI."), key
    assert "phi=0 carryover" in cmp["explanation"] and "--c-parity" in cmp["explanation"]
    before = cmp["rows"][:cmp["first_divergence_row"]]
    assert {"pixel_pos_meters", "diffracted_vec", "scattering_vec_A_inv"} <= {r["key"] for r in before}
    for row in before:
        assert row["ok"] and (row["rel_delta"] is None or row["rel_delta"] <= 1e-9), row["key"]


@needs_golden
def test_default_mode_matches_nanobragg_forced_to_rotate_at_phi0(default_bundle):
    res, bundle = default_bundle
    assert res.exit_code == 0, res.output
    cmp = json.loads((bundle / "compare.json").read_text())
    assert cmp["first_divergence"] is None and cmp["counts"]["missing_py"] == 0
    ours = _roi_of_bundle(bundle, SPEC)
    m = compare_images(ours, np.load(SPEC / "float_roi.npy"))
    assert m.ok, f"{m.n_bad} pixels over tolerance, worst {m.worst:.3g}x"
    # and the carryover is a real difference in this ROI: C's own image is not the default mode's
    assert not compare_images(ours, np.load(SUP / "float_roi.npy")).ok


@needs_golden
def test_c_parity_whole_supervisor_image_matches_nanobragg(tmp_path):
    res, bundle = _run(["--c-parity", "--out", tmp_path, "--c-trace", SUP / TRACE,
                        "--c-image", SUP / "float_full.npz", "--", *_argv(SUP, False)], tmp_path)
    assert res.exit_code == 0, res.output
    metrics = json.loads((bundle / "image_metrics.json").read_text())
    S, F = _meta(SUP)["shape_slow_fast"]
    ours = np.fromfile(bundle / "float.bin", dtype="<f4").reshape(S, F).astype(np.float64)
    with np.load(SUP / "float_full.npz") as z:
        ref = z["image"].astype(np.float64)
    corr = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    ratio = ours.sum() / ref.sum()
    print(f"supervisor whole image: correlation {corr:.12f}, sum ratio {ratio:.12f}, "
          f"{metrics['pixels_over_tolerance']} pixels over tolerance")
    assert corr >= 0.999999 and abs(ratio - 1) <= 1e-6
    assert metrics["pixels"] == S * F and metrics["correlation"] >= 0.999999
