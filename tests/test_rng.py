"""Tests of nanobragg_cli.rng (nanoBragg.c's ran1 / poidev / mosaic / misset random numbers).

Bit-exact references come only from the golden corpus ($NB_GOLDEN_DIR, default
tests/golden): case noise_seed (noise image, -seed 7) and misset_random
(-misset random -misset_seed 3).  Those tests are skipped, with that reason, when the corpus is
absent.  Mosaic matrices have no golden printout, so they are tested for physics here.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from nanobragg_cli import rng as R
from nanobragg_cli.golden import default_golden_dir

REPO = Path(__file__).resolve().parents[1]
GOLDEN = default_golden_dir()
needs_golden = pytest.mark.skipif(not (GOLDEN / "cases").is_dir(),
                                  reason=f"golden corpus not found at {GOLDEN} (set NB_GOLDEN_DIR)")


def _case(name: str) -> tuple[Path, list[str]]:
    d = GOLDEN / "cases" / name
    return d, json.loads((d / "meta.json").read_text())["args"]


def _arg(args: list[str], flag: str) -> str:
    return args[len(args) - 1 - args[::-1].index(flag) + 1]


def _read_smv_u16(path: Path, shape) -> np.ndarray:
    raw = path.read_bytes()
    nhead = int(re.search(rb"HEADER_BYTES=\s*(\d+)", raw[:512]).group(1))
    return np.frombuffer(raw[nhead:], dtype="<u2").reshape(shape)


# ---------------------------------------------------------------- golden: bit-exact references

@needs_golden
def test_noise_image_matches_c_noisefile():
    d, args = _case("noise_seed")
    seed = -int(_arg(args, "-seed"))                  # -seed 7 -> C value -7
    adc = float(_arg(args, "-adc")) if "-adc" in args else 40.0
    flt = np.fromfile(d / "float.bin", dtype="<f4").reshape(128, 128)
    ref = _read_smv_u16(d / "noise.img", flt.shape)
    img, photons, overloads = R.noise_image(flt, seed, adc)
    assert img.dtype == np.uint16 and np.array_equal(img, ref)
    line = re.search(r"^(\d+) photons on noise image \((\d+) overloads\)$",
                     (d / "stdout.txt").read_text(), re.M)
    assert f"{photons:.0f}" == line.group(1) == "36500"
    assert overloads == int(line.group(2)) == 0


@needs_golden
def test_random_misset_matches_c_printout():
    d, args = _case("misset_random")
    seed = -int(_arg(args, "-misset_seed"))           # -misset_seed 3 -> C value -3
    line = re.search(r"random orientation misset angles: (\S+) (\S+) (\S+) deg",
                     (d / "stdout.txt").read_text())
    mine = [f"{a * R.RTD:f}" for a in R.random_misset(seed)]
    assert mine == list(line.groups()) == ["-59.080957", "44.294830", "-35.125620"]


# ---------------------------------------------------------------- ran1 and the shared table

def test_park_miller_minimal_standard_check_value():
    idum = 1                                          # Park & Miller (1988): x_10000 = 1043618065
    for _ in range(10000):
        idum = R._schrage(idum)
    assert idum == 1043618065


def test_ran1_deterministic_float32_in_open_unit_interval():
    g1, g2, s1, s2 = R.NanoRandom(), R.NanoRandom(), R.Seed(-7), R.Seed(-7)
    u1 = [g1.ran1(s1) for _ in range(2000)]
    u2 = [g2.ran1(s2) for _ in range(2000)]
    assert u1 == u2 and s1.value == s2.value and u1[0] == R.NanoRandom().ran1(-7)
    u = np.array(u1)
    assert np.array_equal(u, u.astype(np.float32)) and u.min() > 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.03 and len(set(u1)) > 1990


def test_shared_table_positive_seed_continues_negative_seed_reinitialises():
    g, a = R.NanoRandom(), R.Seed(-5)
    for _ in range(10):
        g.ran1(a)
    # a positive seed does not touch the table: its next output is the shuffled slot iv[iy/NDIV]
    b = R.Seed(12345)
    expected_iy = g.iv[g.iy // R.NDIV]
    assert g.ran1(b) == R.f32(R.AM * expected_iy) and g.iy == expected_iy
    assert b.value == R._schrage(12345)
    # ... so the same positive seed gives a different stream on a fresh (empty-table) generator,
    # where it behaves like any seed that maps to idum = 1 (C: positive idum on an empty table -> 1)
    fresh = R.NanoRandom().ran1(R.Seed(12345))
    assert fresh == R.NanoRandom().ran1(R.Seed(-1)) == R.NanoRandom().ran1(R.Seed(0))
    # a seed <= 0 re-initialises the shared table: same stream as in a fresh process
    c, ref = R.Seed(-7), R.Seed(-7)
    fresh_g = R.NanoRandom()
    assert [g.ran1(c) for _ in range(50)] == [fresh_g.ran1(ref) for _ in range(50)]
    assert g.iv == fresh_g.iv and g.iy == fresh_g.iy


def test_f32_is_c_float_cast():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(20000) * np.exp(rng.uniform(-100, 100, 20000)),
                        [0.0, -0.0, 1e-46, 3e-39, 3.4028235e38, 3.5e38, -1e39, np.inf, 1.0 + 2**-24]])
    with np.errstate(over="ignore"):
        ref = x.astype(np.float32).astype(np.float64)
    assert np.array_equal(np.array([R.f32(float(v)) for v in x]), ref)


# ---------------------------------------------------------------- poidev / gaussdev / gammln

def test_gammln_close_to_lgamma():
    for x in (0.5, 1.0, 2.5, 13.0, 101.0, 12345.0, 1e6):
        assert R.gammln(x) == pytest.approx(math.lgamma(x), rel=1e-6, abs=1e-6)


def test_poidev_statistics_and_float_results():
    g, s = R.NanoRandom(), R.Seed(-11)
    for xm, n in ((0.0, 200), (0.3, 4000), (5.0, 4000), (40.0, 3000), (2e6, 400)):
        v = np.array([g.poidev(xm, s) for _ in range(n)])
        assert np.array_equal(v, v.astype(np.float32))
        if xm == 0.0:
            assert not v.any()
        else:
            assert abs(v.mean() - xm) < 5 * math.sqrt(xm / n) + 1e-9
            assert v.var() == pytest.approx(xm, rel=0.25)
    gd = np.array([g.gaussdev(s) for _ in range(4000)])
    assert abs(gd.mean()) < 0.08 and gd.std() == pytest.approx(1.0, rel=0.05)


def test_noise_stream_equals_scalar_poidev_including_state():
    """The block-buffered noise loop draws exactly what successive poidev(ran1) calls draw and
    leaves the same seed, shuffle table and statics behind."""
    r = np.random.default_rng(5)
    xs = np.concatenate([r.exponential(2.0, 3000), np.zeros(300), r.uniform(11.5, 300, 400),
                         r.uniform(9e5, 3e6, 60), -r.exponential(3, 50), [np.nan, np.inf, -1.0, 12.0],
                         np.repeat(r.uniform(0, 30, 30), 4)]).astype(np.float32)
    r.shuffle(xs)
    g1, s1, g2, s2 = R.NanoRandom(), R.Seed(-3), R.NanoRandom(), R.Seed(-3)
    ref = [g1.poidev(float(x), s1) for x in xs]
    got = g2._poidev_stream(xs.tolist(), s2)
    np.testing.assert_array_equal(np.array(got), np.array(ref))
    assert (s1.value, g1.iy, g1.iv, g1.iset, g1.gset) == (s2.value, g2.iy, g2.iv, g2.iset, g2.gset)
    assert [g1.ran1(s1) for _ in range(5)] == [g2.ran1(s2) for _ in range(5)]


def test_poidev_first_call_with_minus_one_uses_unset_static_g():
    """C's poidev starts with oldm = -1 and g = 0: xm = -1.0 on the first call multiplies
    uniforms until the float product underflows to 0 (many draws), later calls do not."""
    g, s = R.NanoRandom(), R.Seed(-9)
    ems = [g.poidev(-1.0, s), g.poidev(-1.0, s), g.poidev(-2.0, s)]
    assert ems[0] > 20 and ems[1] > 20 and ems[2] == 0.0
    assert R.NanoRandom()._poidev_stream([-1.0, -1.0, -2.0], R.Seed(-9)) == ems


# ---------------------------------------------------------------- noise image

def test_noise_image_roi_adc_and_overloads():
    r = np.random.default_rng(8)
    img = r.exponential(3.0, (20, 30)).astype(np.float32)
    img[5, 7] = 1e9                                   # Gaussian branch, far above 65535
    roi = (4, 20, 2, 11)                              # xmin xmax ymin ymax (fast, slow), inclusive
    out, photons, over = R.noise_image(img, -5, 10.0, roi)
    assert not out[:2].any() and not out[12:].any() and not out[:, :4].any() and not out[:, 21:].any()
    crop, photons_c, over_c = R.noise_image(img[2:12, 4:21], -5, 10.0)   # same raster sequence
    assert np.array_equal(out[2:12, 4:21], crop) and photons == photons_c and over == over_c == 1
    assert out[5, 7] == 65535 and (out[2:12, 4:21] >= 10).all()
    full, _, _ = R.noise_image(img, -5, 10.0)
    assert not np.array_equal(full[2:12, 4:21], crop)


def test_noise_image_reproducible_and_seed_dependent():
    img = np.full((16, 16), 4.0, dtype=np.float32)
    a, sa, _ = R.noise_image(img, -1, 40.0)
    b, sb, _ = R.noise_image(img, -1, 40.0)
    c, _, _ = R.noise_image(img, -2, 40.0)
    assert np.array_equal(a, b) and sa == sb and not np.array_equal(a, c)
    assert sa == float((a.astype(np.int64) - 40).sum())


# ---------------------------------------------------------------- mosaic and misset (physics)

@pytest.mark.parametrize("spread_deg", [0.05, 0.5, 5.0, 40.0])
def test_mosaic_umats_are_rotations_within_spread(spread_deg):
    spread = spread_deg / R.RTD
    u = R.mosaic_umats(spread, 200, -12345678)
    assert u.shape == (200, 3, 3) and u.dtype == np.float64
    assert np.array_equal(u[0], np.eye(3))
    np.testing.assert_allclose(u @ u.transpose(0, 2, 1), np.broadcast_to(np.eye(3), u.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(u), 1.0, atol=1e-12)
    angle = np.arccos(np.clip((np.trace(u, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert angle.max() <= np.float32(spread) * (1 + 1e-6) + 1e-7
    assert angle[1:].min() > 0 and angle.max() > 0.5 * spread
    # reproducible, and the same as domain-by-domain mosaic_rotation_umat (domain 0 still drawn)
    assert np.array_equal(u, R.mosaic_umats(spread, 200, -12345678))
    g, s = R.NanoRandom(), R.Seed(-12345678)
    one = np.array([g.mosaic_rotation_umat(spread, s) for _ in range(200)]).reshape(-1, 3, 3)
    assert np.array_equal(u[1:], one[1:])


def test_mosaic_axes_isotropic_and_random_misset_consistent():
    u = R.mosaic_umats(1.0, 3000, -77)[1:]
    axis = np.stack([u[:, 2, 1] - u[:, 1, 2], u[:, 0, 2] - u[:, 2, 0], u[:, 1, 0] - u[:, 0, 1]], 1)
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    assert np.all(np.abs(axis.mean(0)) < 0.06)
    # random_misset = umat2misset(mosaic_rotation_umat(90 rad)): Rz(rotz) Ry(roty) Rx(rotx) = U
    m = R.mosaic_rotation_umat(90.0, -3)
    rx, ry, rz = R.random_misset(-3)
    assert (rx, ry, rz) == R.umat2misset(m)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    np.testing.assert_allclose(Rz @ Ry @ Rx, np.reshape(m, (3, 3)), atol=1e-12)
