"""The differentiable Python API: gradients of the image in every continuous parameter family
(torch.autograd.gradcheck against central finite differences, float64, small detectors), the
API image against nanoBragg.c's golden images and the CLI's render of the same flags, and the
API's pixel selection, units and error messages."""

import math
from pathlib import Path
import re

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from conftest import CASES, GOLDEN, cached_run, needs_golden

from nanobragg_cli import PARAMETER_NAMES, Simulator, from_si, to_si
from nanobragg_cli.errors import NanoBraggError
from nanobragg_cli.golden import case_workdir, compare_images

# A triclinic, misset crystal with few cells (broad spots) seen on a 10x10 detector of 0.5 mm
# pixels at 50 mm: the 5 mm field holds several spots and their flanks, and 2x2 sub-pixels make
# the image a smooth function of every geometric parameter.
BASE = ("-cell 50 60 70 80 85 95 -misset 10 20 30 -N 3 -default_F 100 -lambda 1 -distance 50 "
        "-detpixels 10 -pixel 0.5 -oversample 2")


def _check(sim: Simulator, names: list, values: dict | None = None, fast: bool = False,
           scale: dict | None = None) -> dict:
    """gradcheck the image in the parameters ``names`` and return the gradient of the image sum.

    The leaves are in flag units (mm, deg, Å), where the finite-difference step 1e-6 is small
    against the scale on which the image varies; ``scale`` {name: s} makes the leaf value/s for
    parameters whose flag unit is not such a scale (the A matrix, in Å⁻¹).
    """
    scale = scale or {}
    leaves = sim.parameters(names, units="flag")
    for name, value in (values or {}).items():
        leaves[name] = torch.as_tensor(value, dtype=sim.dtype, device=sim.device)
    leaves = {n: (v.detach() / scale.get(n, 1.0)).requires_grad_() for n, v in leaves.items()}
    inputs = tuple(leaves[n] for n in names)

    def image(*xs):
        return sim.render({n: x * scale.get(n, 1.0) for n, x in zip(names, xs)}, units="flag")

    assert gradcheck(image, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)
    grads = torch.autograd.grad(image(*inputs).sum(), inputs)
    for name, g in zip(names, grads):
        assert torch.isfinite(g).all(), name
    return dict(zip(names, grads))


def _nonzero(g: torch.Tensor) -> bool:
    return bool((g.abs() > 0).all())


def test_gradcheck_cell_lengths_and_angles():
    g = _check(Simulator.from_flags(BASE), ["cell"])
    assert _nonzero(g["cell"])


def test_gradcheck_misset_angles():
    g = _check(Simulator.from_flags(BASE), ["misset"])
    assert _nonzero(g["misset"])


def test_gradcheck_misset_from_zero():
    """No -misset: the API still exposes the angles (zeros), differentiable at zero."""
    g = _check(Simulator.from_flags(BASE.replace("-misset 10 20 30", "")), ["misset"])
    assert _nonzero(g["misset"])


def _write_amat(path, lam_A: float = 1.0) -> None:
    """A MOSFLM A matrix of a rotated 50 x 60 x 70 Å orthorhombic cell (columns a*, b*, c*,
    times λ in Å)."""
    def rot(axis, deg):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m
    U = rot(2, 25.0) @ rot(1, -15.0) @ rot(0, 40.0)
    A = U @ np.diag([1 / 50.0, 1 / 60.0, 1 / 70.0]) * lam_A
    path.write_text("\n".join(" ".join(f"{v:.10f}" for v in row) for row in A) + "\n")


def test_gradcheck_A_matrix(tmp_path):
    _write_amat(tmp_path / "A.mat")
    flags = (f"-mat {tmp_path / 'A.mat'} -N 3 -default_F 100 -lambda 1 -distance 50 "
             "-detpixels 10 -pixel 0.5 -oversample 2")
    sim = Simulator.from_flags(flags)
    assert sim.params.cell is None
    g = _check(sim, ["amat", "misset"], scale={"amat": 1e-3})
    assert _nonzero(g["amat"]) and _nonzero(g["misset"])
    with pytest.raises(NanoBraggError, match="cell: .*-mat"):
        sim.parameters(["cell"])


def test_gradcheck_phi_start_and_step():
    sim = Simulator.from_flags(BASE + " -phi 5 -osc 4 -phisteps 2")
    g = _check(sim, ["phi0", "phistep"])
    assert _nonzero(g["phi0"]) and _nonzero(g["phistep"])


def test_gradcheck_detector_distance():
    g = _check(Simulator.from_flags(BASE), ["distance"])
    assert _nonzero(g["distance"])


def test_gradcheck_close_distance_sample_pivot():
    g = _check(Simulator.from_flags(BASE + " -close_distance 48 -pivot sample"),
               ["close_distance"])
    assert _nonzero(g["close_distance"])


@pytest.mark.parametrize("pivot", ["beam", "sample"])
def test_gradcheck_beam_center(pivot):
    g = _check(Simulator.from_flags(BASE + f" -pivot {pivot}"), ["beam_center"])
    assert _nonzero(g["beam_center"])


def test_gradcheck_detector_rotations_and_twotheta():
    flags = BASE + " -detector_rotx 2 -detector_roty -3 -detector_rotz 4 -twotheta 5"
    g = _check(Simulator.from_flags(flags), ["rotations", "twotheta"])
    assert _nonzero(g["rotations"]) and _nonzero(g["twotheta"])


def test_gradcheck_wavelength():
    g = _check(Simulator.from_flags(BASE), ["wavelength"])
    assert _nonzero(g["wavelength"])


def test_gradcheck_fluence_and_image_is_linear_in_it():
    sim = Simulator.from_flags(BASE)
    # fluence in units of 1e28 photons/m² so that the finite-difference step is relative
    scale = 1e28
    f0 = sim.params.fluence / scale
    leaf = f0.clone().requires_grad_()
    image = lambda f: sim.render({"fluence": f * scale})  # noqa: E731
    assert gradcheck(image, (leaf,), eps=1e-6, atol=1e-5, rtol=1e-4)
    img = image(leaf)
    (g,) = torch.autograd.grad(img.sum(), leaf)
    # physics: every term of the image is proportional to the fluence
    assert torch.allclose(g, img.sum() / f0, rtol=1e-12)


@pytest.mark.parametrize("kahn", [0.0, 0.6])
def test_gradcheck_polarization_factor(kahn):
    """Also at K = 0, where the unpolarised shortcut used to drop the derivative."""
    g = _check(Simulator.from_flags(BASE + f" -polar {kahn}"), ["polarization"])
    # physics: dI/dK = -½·cos2ψ·sin²2θ·(rest); away from the beam it is not zero
    assert g["polarization"].abs() > 0


@pytest.mark.parametrize("N", [(3.0, 3.0, 3.0), (3.3, 2.6, 4.2)])
def test_gradcheck_crystal_size_continuous(N):
    g = _check(Simulator.from_flags(BASE), ["N"], values={"N": N})
    assert _nonzero(g["N"])


def test_continuous_N_agrees_with_integer_N_lattice_transform():
    """At integral values the continuous-N image is the image of that many cells (the
    periodic lattice transform sin(Nπh)/sin(πh), physics), for each cell count given."""
    sim = Simulator.from_flags(BASE.replace("-N 3", "-Na 2 -Nb 3 -Nc 4"))
    n = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    cont = sim.render({"N": n})
    integral = sim.render()
    assert torch.allclose(cont, integral, rtol=1e-10, atol=0.0)


def test_gradcheck_mosaic_spread():
    sim = Simulator.from_flags(BASE + " -mosaic 2 -mosaic_domains 4 -mosaic_seed 7")
    g = _check(sim, ["mosaic_spread"])
    assert _nonzero(g["mosaic_spread"])


def _write_hkl(path, half: int = 3) -> None:
    rng = np.random.default_rng(5)
    rows = [f"{h} {k} {l} {rng.uniform(50.0, 150.0):.4f}"
            for h in range(-half, half + 1) for k in range(-half, half + 1)
            for l in range(-half, half + 1)]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("interp", ["-nointerpolate", "-interpolate"])
def test_gradcheck_structure_factor_table(tmp_path, monkeypatch, interp):
    monkeypatch.chdir(tmp_path)          # -hkl writes its Fdump.bin cache in the current folder
    _write_hkl(tmp_path / "F.hkl")
    # -default_F 0: every photon comes from the table, so the F² sum rule below is exact
    flags = BASE.replace("-default_F 100", "-default_F 0") + f" -hkl F.hkl {interp}"
    sim = Simulator.from_flags(flags)
    assert sim.params.fhkl is not None
    g = _check(sim, ["fhkl"], fast=True)
    assert (g["fhkl"] != 0).any()
    # physics (nearest lookup): I ∝ F², so Σ_hkl F·∂I/∂F = 2·I
    if interp == "-nointerpolate":
        F = sim.params.fhkl
        assert torch.allclose((F * g["fhkl"]).sum(), 2.0 * sim.render().sum(), rtol=1e-10)


def test_gradcheck_c_parity_quirks_stay_differentiable():
    """--c-parity's φ=0 carryover and -oversample_omega/-oversample_polar running-sum scaling."""
    flags = BASE + " -phi 0 -osc 4 -phisteps 2 -oversample_omega -oversample_polar -polar 0.5"
    sim = Simulator.from_flags(flags, c_parity=True)
    g = _check(sim, ["distance", "cell", "polarization"])
    assert _nonzero(g["distance"]) and _nonzero(g["cell"])


def test_gradcheck_thick_detector_default_mode():
    flags = BASE + " -detector_thick 100 -detector_abs 200 -detector_thicksteps 2"
    g = _check(Simulator.from_flags(flags), ["distance", "beam_center"])
    assert _nonzero(g["distance"]) and _nonzero(g["beam_center"])


def test_float32_gradients_follow_float64():
    """--dtype float32 (mixed precision: geometry in float64) gives the same derivatives to
    float32 accuracy."""
    names = ["distance", "beam_center", "cell", "misset", "N", "wavelength"]
    grads = {}
    for dtype in (torch.float64, torch.float32):
        sim = Simulator.from_flags(BASE, dtype=dtype)
        x = sim.parameters(names, units="flag")
        image = sim.render(x, units="flag")
        assert image.dtype == dtype
        grads[dtype] = torch.autograd.grad(image.sum(), [x[n] for n in names])
    for name, a, b in zip(names, grads[torch.float64], grads[torch.float32]):
        assert b.dtype == torch.float32
        assert (b.double() - a).abs().max() <= 1e-4 * a.abs().max(), name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gradcheck_on_cuda_matches_cpu_gradients():
    names = ["distance", "beam_center", "cell", "misset", "wavelength"]
    flags = BASE + " -mosaic 1 -mosaic_domains 3"
    cpu = Simulator.from_flags(flags)
    gpu = Simulator.from_flags(flags, device="cuda")
    g_gpu = _check(gpu, names, fast=True)
    leaves = cpu.parameters(names, units="flag")
    img = cpu.render(leaves, units="flag")
    g_cpu = torch.autograd.grad(img.sum(), [leaves[n] for n in names])
    for name, g in zip(names, g_cpu):
        assert torch.allclose(g_gpu[name].cpu(), g, rtol=1e-9, atol=1e-9), name


# --- the API renders what the CLI renders and what nanoBragg.c wrote ----------------------------
API_CASES = ["cubic_basic", "triclinic_misset", "mat_hkl", "mosaic", "phi_from10"]


@needs_golden
@pytest.mark.parametrize("name", API_CASES)
def test_api_image_equals_cli_and_c_image(name):
    case = CASES[name]
    with case_workdir(GOLDEN):
        sim = Simulator.from_flags(case.args, c_parity=True)
        image = sim.render()
    run = cached_run(name, c_parity=True)
    assert image.dtype == torch.float64 and tuple(image.shape) == case.shape
    assert torch.allclose(image, run.result.image_tensor, rtol=1e-12, atol=0.0)
    assert np.array_equal(image.numpy().astype(np.float32), run.image)
    metrics = compare_images(image.numpy(), case.reference_image())
    assert metrics.ok, metrics


@needs_golden
def test_api_pixels_window_and_roi_match_c():
    case = CASES["cubic_basic"]
    ref = case.reference_image()
    with case_workdir(GOLDEN):
        sim = Simulator.from_flags(case.args, c_parity=True)
    pixels = [(64, 64), (0, 0), (127, 5), (40, 90), (64, 64)]
    values = sim.render(pixels=pixels).numpy()
    want = np.array([ref[s, f] for s, f in pixels])
    assert np.allclose(values, want, rtol=1e-5, atol=1e-7 * ref.max())
    window = sim.render(window=(30, 40, 50, 70)).numpy()
    assert np.allclose(window[30:41, 50:71], ref[30:41, 50:71], rtol=1e-5, atol=1e-7 * ref.max())
    assert not window[:30].any() and not window[:, :50].any()
    roi_ref = CASES["roi"].reference_image()       # the same flags with -roi 10 100 20 90
    roi = sim.render(roi=(10, 100, 20, 90)).numpy()
    assert compare_images(roi, roi_ref).ok


# --- units, parameters and errors ---------------------------------------------------------------
def test_flag_units_are_the_flags_units():
    sim = Simulator.from_flags(BASE + " -phi 5 -osc 4 -phisteps 2 -twotheta 3 -mosaic 0.5 "
                               "-mosaic_domains 2")
    expect = {"cell": [50, 60, 70, 80, 85, 95], "misset": [10, 20, 30], "distance": 50.0,
              "wavelength": 1.0, "phi0": 5.0, "phistep": 2.0, "twotheta": 3.0,
              "mosaic_spread": 0.5, "N": [3, 3, 3]}
    for name, value in expect.items():
        got = sim.get(name, units="flag")
        assert torch.allclose(got, torch.tensor(value, dtype=torch.float64), rtol=1e-12), name
    assert math.isclose(float(sim.params.distance), 0.05, rel_tol=1e-12)
    assert math.isclose(float(sim.params.cell[3]), math.radians(80.0), rel_tol=1e-12)
    assert torch.allclose(to_si("cell", from_si("cell", sim.params.cell)), sim.params.cell)


def test_parameters_are_fresh_leaves_and_render_accepts_flag_units():
    sim = Simulator.from_flags(BASE)
    leaves = sim.parameters(["distance", "beam_center"], units="flag")
    assert all(t.is_leaf and t.requires_grad for t in leaves.values())
    assert not sim.params.distance.requires_grad
    img = sim.render(leaves, units="flag")
    img.sum().backward()
    assert leaves["distance"].grad is not None and leaves["beam_center"].grad.shape == (2,)
    # the same geometry given in SI renders the same image
    same = sim.render({"distance": 0.05, "beam_center": leaves["beam_center"].detach() * 1e-3})
    assert torch.allclose(img.detach(), same, rtol=1e-12)


def test_api_refuses_parameters_the_flags_give_nothing_to_act_on():
    sim = Simulator.from_flags(BASE)
    with pytest.raises(NanoBraggError, match="mosaic_spread: .*-mosaic"):
        sim.render({"mosaic_spread": torch.tensor(0.01, dtype=torch.float64, requires_grad=True)})
    with pytest.raises(NanoBraggError, match="fhkl: .*-hkl"):
        sim.parameters(["fhkl"])
    with pytest.raises(NanoBraggError, match="close_distance: .*-close_distance"):
        sim.parameters(["close_distance"])
    with pytest.raises(NanoBraggError, match="bogus: not a parameter"):
        sim.parameters(["bogus"])
    with pytest.raises(NanoBraggError, match="pixels: "):
        sim.render(pixels=[(10, 0)])


def test_non_finite_geometry_is_a_clear_error():
    sim = Simulator.from_flags(BASE)
    with pytest.raises(NanoBraggError, match="non-finite"):
        sim.render({"cell": torch.tensor([-50.0, 60, 70, 80, 85, 95])}, units="flag")


def test_docs_example_runs_as_written(capsys):
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/api.md", "exec"), {"__name__": "docs_api"})
    out = capsys.readouterr().out
    assert "Simulator(64x64 pixels" in out and "tensor(" in out
    # the parameter table documents every field of SceneParams
    for name in PARAMETER_NAMES:
        assert f"| `{name}` |" in text, name


def test_import_is_cheap():
    """``import nanobragg_cli`` does not import torch (the API is loaded on first use, as the
    ``from nanobragg_cli import Simulator`` at the top of this file does)."""
    import subprocess
    import sys
    code = "import sys, nanobragg_cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
