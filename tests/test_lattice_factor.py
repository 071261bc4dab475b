"""The lattice transform sin(Nπh)/sin(πh): the reduced form used by the default mode equals the
mathematical function (limit ±N at integers), agrees with nanoBragg.c's full-argument form away
from integers, and keeps float32 accurate at high orders."""

import math

import numpy as np
import pytest
import torch

from nanobragg_cli.physics import sincg_like_c, sincg_reduced


def _reduced(h, n, dtype=torch.float64):
    h = torch.as_tensor(h, dtype=torch.float64)
    h0 = torch.ceil(h - 0.5)
    return sincg_reduced((h - h0).to(dtype), h0.to(dtype), torch.tensor(float(n), dtype=dtype))


@pytest.mark.parametrize("n", [2, 5, 10, 36, 47])
def test_reduced_form_gives_the_limit_at_integers(n):
    h = torch.arange(-60, 61, dtype=torch.float64)
    expected = n * (-1.0) ** (h * (n - 1))          # lim sin(Nπh)/sin(πh) = N·(−1)^{(N−1)h}
    assert torch.equal(_reduced(h, n), expected)


@pytest.mark.parametrize("n", [3, 10, 29])
def test_reduced_and_full_forms_agree_away_from_integers(n):
    rng = np.random.default_rng(1)
    base = rng.integers(-80, 80, 2000).astype(np.float64)
    frac = rng.uniform(1e-4, 0.5, 2000) * rng.choice([-1, 1], 2000)
    h = torch.tensor(base + frac)
    exact = np.sin(n * math.pi * (base + frac)) / np.sin(math.pi * (base + frac))
    np.testing.assert_allclose(_reduced(h, n).numpy(), exact, rtol=1e-9, atol=1e-9 * n)
    np.testing.assert_allclose(sincg_like_c(h, n).numpy(), exact, rtol=1e-9, atol=1e-9 * n)


def test_full_argument_form_loses_accuracy_next_to_integers():
    """Why the default mode reduces the argument: at an integer h (exactly, or within ~1e-14) the
    full-argument ratio is dominated by the rounding error of π·h, far from the limit ±10."""
    h = torch.tensor([20.0, 36.0, 36.0 - 2 ** -47], dtype=torch.float64)
    full = sincg_like_c(h, 10).abs()
    assert (torch.abs(full - 10) > 0.5).all()
    assert torch.allclose(_reduced(h, 10).abs(), torch.full((3,), 10.0, dtype=torch.float64))


def test_float32_reduced_form_keeps_its_digits_at_high_orders():
    rng = np.random.default_rng(2)
    h = torch.tensor(rng.uniform(-500, 500, 5000))
    f64 = _reduced(h, 36)
    f32 = _reduced(h, 36, torch.float32).double()
    sel = f64.abs() > 1e-3 * 36
    rel = ((f32 - f64).abs() / f64.abs())[sel]
    assert rel.max() < 5e-4


@pytest.mark.parametrize("n", [11.0, 29.0, 36.0, 47.0, 12.5])
def test_polynomial_sines_of_the_fused_kernel_match_the_lattice_transform(n):
    """The fused kernel's sin(Nπf)/sin(πf) for N > 10 (both sines by a polynomial after reducing
    N·f) against numpy's sines in float64: within 2e-15 of the peak N, and N at f = 0."""
    from nanobragg_cli.physics import sin_pi_small, sincg_small_sines
    rng = np.random.default_rng(7)
    f = np.concatenate([[0.0, 0.5, -0.5, 1e-12], rng.uniform(-0.5, 0.5, 20000)])
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.where(f == 0.0, n, np.sin(n * np.pi * f) / np.sin(np.pi * f))
    ours = sincg_small_sines(torch.tensor(f), n).numpy()
    assert np.max(np.abs(np.abs(ours) - np.abs(exact))) <= 2e-15 * n
    g = np.linspace(-0.5, 0.5, 10001)
    assert np.max(np.abs(sin_pi_small(torch.tensor(g)).numpy() - np.sin(np.pi * g))) < 1e-15
