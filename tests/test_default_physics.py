"""The default mode's physics, quirk by quirk (docs/differences.md), checked against closed forms.

Every expectation here is computed independently of the kernel: pixel positions from the MOSFLM
geometry written out in numpy, exact solid angles of rectangles, the Kahn polarization written
with E/B projections, Beer-Lambert absorption, cubic polynomials that tricubic interpolation
must reproduce exactly, or identities between runs (a φ sweep is the sum of its φ steps). The
``--c-parity`` side of each quirk is pinned against nanoBragg.c's documented arithmetic
(nanoBragg_c.md §5) where the golden corpus does not already cover it.

Most tests use a "flat field": N=1 (F_latt = 1) with -default_F, so the scattered intensity
is F² in every direction and a pixel's value is r_e²·fluence·F²·(solid angle, polarization,
absorption) -- the factors under test.
"""

from contextlib import redirect_stdout
import io
import math

import numpy as np
import pytest

from nanobragg_cli.simulate import ToolOptions, prepare, run_simulation

R_E_SQR = 7.94079248018965e-30      # Thomson cross section r_e², m²
AVOGADRO = 6.02214179e23             # the value nanoBragg.c uses
WATER_F = 2.57                       # nanoBragg.c's forward-scattering amplitude of a water molecule
WATER_MW = 18.0                      # g/mol
WATER_DENSITY = 1e6                  # g/m³
FLUENCE = 1e24                       # photons/m², so that r_e²·fluence is not 1
F_DEFAULT = 100.0
FLAT = ("-cell 100 100 100 90 90 90 -N 1 -default_F 100 -lambda 1 -nopgm -nonoise "
        f"-fluence {FLUENCE:g}").split()


@pytest.fixture(autouse=True)
def _fresh_workdir(tmp_path, monkeypatch):
    """Each test in an empty folder: no Fdump.bin cache can leak into a run."""
    monkeypatch.chdir(tmp_path)


def simulate(argv, c_parity=False):
    """Run in-process; returns the float64 image [slow, fast] and the SimulationResult."""
    cfg = prepare([str(a) for a in argv])
    with redirect_stdout(io.StringIO()):
        res = run_simulation(cfg, ToolOptions(c_parity=c_parity))
    return res.image_tensor.detach().cpu().numpy().astype(np.float64), res


class Mosflm:
    """An independent model of nanoBragg's MOSFLM detector (beam along +x, fast axis +z, slow axis
    -y, BEAM pivot, no rotation): pixel (s, f) spans fast (f..f+1)·px − Fbeam and slow
    (s..s+1)·px − Sbeam with Fbeam = Ybeam + px/2, Sbeam = Xbeam + px/2 (nanoBragg_c.md §1.4)."""

    def __init__(self, npix, pixel_mm, distance_mm, xbeam_mm, ybeam_mm):
        self.n, self.px, self.d = npix, pixel_mm * 1e-3, distance_mm * 1e-3
        self.xbeam, self.ybeam = xbeam_mm, ybeam_mm
        self.Fbeam = ybeam_mm * 1e-3 + self.px / 2
        self.Sbeam = xbeam_mm * 1e-3 + self.px / 2
        self.pixel_mm, self.distance_mm = pixel_mm, distance_mm

    def args(self):
        return ["-detpixels", self.n, "-pixel", self.pixel_mm, "-distance", self.distance_mm,
                "-Xbeam", self.xbeam, "-Ybeam", self.ybeam]

    def lateral(self, s, f, us, uf):
        """(slow, fast) offsets (m) from the beam spot of the point at fractions (us, uf) of pixel
        (s, f); arrays broadcast."""
        return (np.asarray(s) + us) * self.px - self.Sbeam, (np.asarray(f) + uf) * self.px - self.Fbeam

    def position(self, s, f, us=0.5, uf=0.5, depth=0.0):
        """(..., 3) position (m) of a point of pixel (s, f), ``depth`` (m) behind its front face."""
        ys, yf = self.lateral(s, f, us, uf)
        ys, yf = np.broadcast_arrays(ys, yf)
        return np.stack((np.full(ys.shape, self.d + depth), -ys, yf), axis=-1)

    def centres(self, depth=0.0):
        s, f = np.meshgrid(np.arange(self.n), np.arange(self.n), indexing="ij")
        return self.position(s, f, depth=depth)

    def subpixel_centres(self, s, f, os_):
        """(os², 3) sub-pixel centres of pixel (s, f) in nanoBragg's loop order (slow outer)."""
        u = (np.arange(os_) + 0.5) / os_
        us, uf = np.meshgrid(u, u, indexing="ij")
        return self.position(s, f, us.ravel(), uf.ravel())

    def exact_solid_angle(self, s, f):
        """The solid angle of pixel (s, f) seen from the sample (sr), exactly."""
        ys0, yf0 = self.lateral(s, f, 0.0, 0.0)
        ys1, yf1 = self.lateral(s, f, 1.0, 1.0)
        d = self.d

        def g(x, y):
            return math.atan(x * y / (d * math.sqrt(d * d + x * x + y * y)))
        return g(ys1, yf1) - g(ys0, yf1) - g(ys1, yf0) + g(ys0, yf0)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def nanobragg_omega(pos, pixel_m):
    """nanoBragg's solid angle of a pixel centred at ``pos`` on a detector normal to x (sr)."""
    R = np.linalg.norm(pos, axis=-1)
    return pixel_m ** 2 / R ** 2 * (pos[..., 0] / R)


def polarization(K, incident, diffracted, e_vector=(0.0, 0.0, 1.0)):
    """Kahn-weighted Thomson polarization: a fraction (1+K)/2 of the beam polarized along the
    E-vector's component perpendicular to the incident direction, (1−K)/2 perpendicular to it.
    A polarized photon scatters ∝ 1 − (ê·d̂)²."""
    i = unit(incident)
    d = unit(diffracted)
    p = np.asarray(e_vector, dtype=np.float64)
    e = unit(p - (p @ i) * i)
    b = np.cross(i, e)
    return (1 + K) / 2 * (1 - (d @ e) ** 2) + (1 - K) / 2 * (1 - (d @ b) ** 2)


def absorbed(a, cos_incidence):
    """Beer-Lambert: fraction of photons absorbed in a sensor of thickness/attenuation length a,
    crossed at incidence angle with cosine cos_incidence."""
    return 1.0 - np.exp(-a / cos_incidence)


# ---- sensor layers ------------------------------------------------------------------------------

NORMAL = Mosflm(9, 0.1, 50, 0.4, 0.4)          # the direct beam hits the centre of pixel (4, 4)


@pytest.mark.parametrize("thick_um,att_um", [(100, 200), (320, 500), (500, 100)])
@pytest.mark.parametrize("steps", [None, 1, 2, 3, 7])
def test_thick_sensor_absorbs_one_minus_exp_at_normal_incidence(thick_um, att_um, steps):
    base = FLAT + NORMAL.args() + ["-oversample", 1]
    layers = ["-detector_thick", thick_um, "-detector_abs", att_um]
    layers += [] if steps is None else ["-detector_thicksteps", steps]
    thin, _ = simulate(base)
    thick, _ = simulate(base + layers)
    want = 1.0 - math.exp(-thick_um / att_um)
    assert thick[4, 4] / thin[4, 4] == pytest.approx(want, rel=1e-12)


OBLIQUE = Mosflm(10, 1.0, 20, 0.0, 0.0)       # up to 27° incidence at the far corner


def test_thick_sensor_absorption_follows_obliquity_and_not_the_number_of_layers():
    """Off-normal, a ray crosses thick/cos of sensor: the pixel absorbs 1 − exp(−a/cos). The
    layers are sampled along rays to points 0..thick behind the pixel face, so the model may
    differ from the front face's ray by the spread of Beer-Lambert between the front and back
    face's incidence angles (O(thick/distance)), whatever the number of layers."""
    thick_um, att_um = 200.0, 150.0
    a = thick_um / att_um
    base = FLAT + OBLIQUE.args() + ["-oversample", 1]
    thin, _ = simulate(base)
    front = unit(OBLIQUE.centres())[..., 0]
    back = unit(OBLIQUE.centres(depth=thick_um * 1e-6))[..., 0]
    want, width = absorbed(a, front), absorbed(a, front) - absorbed(a, back)
    assert np.all(width < 1e-3) and np.all(width >= 0)
    ratios = []
    for steps in (2, 5, 12):
        img, _ = simulate(base + ["-detector_thick", thick_um, "-detector_abs", att_um,
                                  "-detector_thicksteps", steps])
        ratio = img / thin
        assert np.all(np.abs(ratio - want) <= width + 1e-12), steps
        ratios.append(ratio)
    assert np.all(np.abs(ratios[0] - ratios[2]) <= width + 1e-12)
    # the oblique excess is physical: far more than that spread above normal incidence
    assert ratios[2][-1, -1] - absorbed(a, 1.0) > 20 * width[-1, -1]


@pytest.mark.parametrize("steps,want", [(None, 0.3446), (3, 0.4026), (1, 0.4774)])
def test_c_parity_sensor_layers_use_the_last_layer_capture_fraction(steps, want):
    """nanoBragg.c (§5.3): I summed over T layers of thickness thick/(T−1) (thick/2 with T=2 by
    default; T≥2), times the last layer's capture fraction only."""
    base = FLAT + NORMAL.args() + ["-oversample", 1]
    layers = ["-detector_thick", 100, "-detector_abs", 200]
    layers += [] if steps is None else ["-detector_thicksteps", steps]
    thin, _ = simulate(base, c_parity=True)
    thick, _ = simulate(base + layers, c_parity=True)
    T = 2 if steps is None or steps < 2 else steps
    t_mu = 0.5 / 2 if steps is None else 0.5 / (T - 1)
    closed = T * (math.exp(-(T - 1) * t_mu) - math.exp(-T * t_mu))
    assert thick[4, 4] / thin[4, 4] == pytest.approx(closed, rel=1e-12)
    assert closed == pytest.approx(want, abs=2e-4)     # the ratios §5.3 measured


# ---- -oversample_omega / -oversample_polar / -oversample_thick --------------------------------

WIDE = Mosflm(4, 2.0, 6, 0.0, 0.0)             # 2 mm pixels at 6 mm: ω varies by ~2x across one


def test_oversample_omega_converges_to_the_exact_pixel_solid_angle():
    s, f = 3, 2
    exact = WIDE.exact_solid_angle(s, f)
    scale = R_E_SQR * FLUENCE * F_DEFAULT ** 2
    grid = WIDE.position(s, f, *np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101)))
    omega = nanobragg_omega(grid, WIDE.px)
    variation = omega.max() - omega.min()
    errors = []
    for os_ in (1, 2, 4, 8, 16):
        base = FLAT + WIDE.args() + ["-nopolar", "-oversample", os_]
        img, _ = simulate(base + ["-oversample_omega"])
        plain, _ = simulate(base)
        assert abs(img[s, f] - plain[s, f]) / scale <= variation
        errors.append(abs(img[s, f] / scale - exact))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-3 * exact < errors[0]


def test_c_parity_oversample_omega_multiplies_the_running_sum():
    """nanoBragg.c (§5.3): I ← (I + F²)·ω_j over the sub-pixels j (slow outer), no final ω."""
    s, f, os_ = 3, 2, 2
    img, _ = simulate(FLAT + WIDE.args() + ["-nopolar", "-oversample", os_, "-oversample_omega"],
                      c_parity=True)
    omega = nanobragg_omega(WIDE.subpixel_centres(s, f, os_), WIDE.px)
    I = 0.0
    for w in omega:
        I = (I + F_DEFAULT ** 2) * w
    assert img[s, f] == pytest.approx(R_E_SQR * FLUENCE * I / os_ ** 2, rel=1e-9)


def _gauss_pixel_integral(geom, s, f, fn, n=48):
    """∫ fn(d̂) dΩ over pixel (s, f) by Gauss-Legendre quadrature in the detector plane."""
    x, w = np.polynomial.legendre.leggauss(n)
    u, w = (x + 1) / 2, w / 2
    us, uf = np.meshgrid(u, u, indexing="ij")
    pos = geom.position(s, f, us, uf)
    dOmega = nanobragg_omega(pos, geom.px)   # = px²·cos/R²: the solid angle per pixel area
    return float(np.sum(w[:, None] * w[None, :] * fn(unit(pos)) * dOmega))


def test_oversample_polar_converges_to_the_pixel_averaged_polarization():
    s, f, K = 0, 3, 1.0
    scale = R_E_SQR * FLUENCE * F_DEFAULT ** 2
    exact = _gauss_pixel_integral(WIDE, s, f, lambda d: polarization(K, (1, 0, 0), d))
    grid = unit(WIDE.position(s, f, *np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101))))
    P = polarization(K, (1, 0, 0), grid)
    assert P.max() - P.min() > 0.1
    errors = []
    for os_ in (2, 4, 8, 16):
        base = FLAT + WIDE.args() + ["-polar", K, "-oversample", os_, "-oversample_omega"]
        img, _ = simulate(base + ["-oversample_polar"])
        plain, _ = simulate(base)
        assert abs(img[s, f] - plain[s, f]) <= (P.max() - P.min()) * plain[s, f] / P.min()
        errors.append(abs(img[s, f] / scale - exact))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-3 * exact


def test_c_parity_oversample_polar_multiplies_the_running_sum():
    """nanoBragg.c (§5.3): I ← (I + F²)·P_j over the sub-pixels j, then the pixel's cached ω."""
    s, f, os_, K = 0, 3, 2, 1.0
    img, _ = simulate(FLAT + WIDE.args() + ["-polar", K, "-oversample", os_, "-oversample_polar"],
                      c_parity=True)
    sub = WIDE.subpixel_centres(s, f, os_)
    I = 0.0
    for P in polarization(K, (1, 0, 0), sub):
        I = (I + F_DEFAULT ** 2) * P
    omega_first = nanobragg_omega(sub[0], WIDE.px)
    assert img[s, f] == pytest.approx(R_E_SQR * FLUENCE * I / os_ ** 2 * omega_first, rel=1e-9)


def test_oversample_thick_converges_to_the_pixel_averaged_absorption():
    """With every factor oversampled, a pixel collects ∫ P·(absorbed fraction) dΩ; the layers'
    depth sampling leaves at most the front/back-face bracket of the absorption as error."""
    s, f, K = 3, 3, 0.0
    thick_um, att_um = 300.0, 200.0
    a = thick_um / att_um
    scale = R_E_SQR * FLUENCE * F_DEFAULT ** 2

    def integrand(depth):
        return lambda d: polarization(K, (1, 0, 0), d) * absorbed(a, d[..., 0])
    front = _gauss_pixel_integral(WIDE, s, f, integrand(0.0))
    # the same integral with the incidence cosine of the back face's points
    x, w = np.polynomial.legendre.leggauss(48)
    u, w = (x + 1) / 2, w / 2
    us, uf = np.meshgrid(u, u, indexing="ij")
    pos = WIDE.position(s, f, us, uf)
    cos_back = unit(WIDE.position(s, f, us, uf, depth=thick_um * 1e-6))[..., 0]
    d = unit(pos)
    back = float(np.sum(w[:, None] * w[None, :] * polarization(K, (1, 0, 0), d) *
                        absorbed(a, cos_back) * nanobragg_omega(pos, WIDE.px)))
    lo, hi = min(front, back), max(front, back)
    flags = ["-oversample_thick", "-oversample_omega", "-oversample_polar",
             "-detector_thick", thick_um, "-detector_abs", att_um, "-detector_thicksteps", 8]
    values = []
    for os_ in (2, 4, 8, 16):
        img, _ = simulate(FLAT + WIDE.args() + ["-oversample", os_] + flags)
        values.append(img[s, f] / scale)
    steps = np.abs(np.diff(values))
    assert np.all(steps[1:] < 0.5 * steps[:-1])          # converges (midpoint rule, O(1/n²))
    assert lo <= values[-1] <= hi


# ---- water background ---------------------------------------------------------------------------

def _water_background(argv, c_parity=False):
    wet, res = simulate(argv + ["-water", 50], c_parity=c_parity)
    dry, _ = simulate(argv, c_parity=c_parity)
    return wet - dry, res


WATER_MOLECULES = (50e-6) ** 3 * WATER_DENSITY * AVOGADRO / WATER_MW


@pytest.mark.parametrize("extra", [["-oversample", 1], ["-oversample", 2], ["-oversample", 3],
                                   ["-oversample", 1, "-phi", 0, "-osc", 1, "-phisteps", 3],
                                   ["-oversample", 2, "-fluence", 1e25]])
def test_water_background_is_linear_in_fluence_and_independent_of_sampling(extra):
    """Thomson scattering of n water molecules: r_e²·fluence·n·F_bg²·ω·P per pixel, with the
    pixel's solid angle and polarization (taken at its first sub-pixel)."""
    geom = Mosflm(6, 0.5, 20, 1.0, 1.0)
    bg, res = _water_background(FLAT + geom.args() + extra)
    fluence = float(res.scene.fluence)
    os_ = res.scene.oversample
    first = geom.position(*np.meshgrid(np.arange(6), np.arange(6), indexing="ij"),
                          us=0.5 / os_, uf=0.5 / os_)
    P = polarization(0.0, (1, 0, 0), first)
    want = R_E_SQR * fluence * WATER_MOLECULES * WATER_F ** 2 * nanobragg_omega(first, geom.px) * P
    np.testing.assert_allclose(bg, want, rtol=1e-9)


@pytest.mark.parametrize("os_,fluence", [(1, 1e24), (2, 1e24), (2, 1e25)])
def test_c_parity_water_background_scales_with_fluence_squared_and_one_over_steps(os_, fluence):
    """nanoBragg.c (§5.3): I_bg already holds r_e²·fluence and is scaled again by r_e²·fluence/steps."""
    geom = Mosflm(6, 0.5, 20, 1.0, 1.0)
    argv = FLAT + geom.args() + ["-oversample", os_, "-fluence", fluence]
    bg, _ = _water_background(argv, c_parity=True)
    first = geom.position(*np.meshgrid(np.arange(6), np.arange(6), indexing="ij"),
                          us=0.5 / os_, uf=0.5 / os_)
    P = polarization(0.0, (1, 0, 0), first)
    want = ((R_E_SQR * fluence) ** 2 * WATER_MOLECULES * WATER_F ** 2 / os_ ** 2 *
            nanobragg_omega(first, geom.px) * P)
    np.testing.assert_allclose(bg, want, rtol=1e-9)


def test_water_background_through_a_thick_sensor_is_the_absorbed_fraction():
    argv = FLAT + NORMAL.args() + ["-oversample", 1]
    thin, _ = _water_background(argv)
    thick, _ = _water_background(argv + ["-detector_thick", 100, "-detector_abs", 80,
                                         "-detector_thicksteps", 4])
    assert thick[4, 4] / thin[4, 4] == pytest.approx(1 - math.exp(-100 / 80), rel=1e-12)


# ---- interpolation ------------------------------------------------------------------------------

INTERP = Mosflm(24, 0.2, 100, 2.3, 2.3)     # beam at the centre; |k|, |l| up to ~2.4 at the edges
HKL_RANGE = range(-3, 4)


def _write_hkl(path, F):
    with open(path, "w") as fh:
        for h in HKL_RANGE:
            for k in HKL_RANGE:
                for l in HKL_RANGE:
                    fh.write(f"{h} {k} {l} {F(h, k, l)!r}\n")


def _miller(geom, cell_A=100.0, lam_A=1.0):
    """(S, F, 3) fractional h, k, l at pixel centres: cubic cell with a, b, c along x, y, z."""
    d = unit(geom.centres())
    return cell_A / lam_A * (d - np.array([1.0, 0.0, 0.0]))


def _in_grid(hkl):
    """The 4x4x4 block floor(x)-1 .. floor(x)+2 lies inside the -3..3 grid on every axis."""
    base = np.floor(hkl)
    return np.all((base - 1 >= -3) & (base + 2 <= 3), axis=-1)


def _in_nanobragg_range(hkl):
    """nanoBragg.c's stricter range test: h_min+2 <= x <= h_max-2 on every axis."""
    return np.all((hkl >= -1.0) & (hkl <= 1.0), axis=-1)


def _cubic(h, k, l):
    return 40.0 + 3 * h - 2 * k + l + 0.5 * h * h - 0.3 * k * l + 0.2 * h ** 3 - 0.1 * l ** 3 + \
        0.05 * h * k * l


def _interp_runs(hkl_file, c_parity):
    base = ("-cell 100 100 100 90 90 90 -N 2 -lambda 1 -oversample 1 -nopgm -nonoise "
            f"-fluence {FLUENCE:g}").split() + INTERP.args()
    # F = 1 everywhere; first, before the -hkl run leaves an Fdump.bin that would replace it
    ref, _ = simulate(base + ["-default_F", 1], c_parity=c_parity)
    img, res = simulate(base + ["-hkl", hkl_file, "-interpolate"], c_parity=c_parity)
    return img, ref, res


def test_interpolation_reproduces_a_cubic_structure_factor_after_out_of_range_pixels():
    """Tricubic Lagrange interpolation is exact for a polynomial of degree 3 per axis. The first
    pixels in raster order lie outside the grid's interpolation range; every later pixel whose
    4x4x4 block is in the grid must still interpolate (no global kill-switch), including those
    nanoBragg.c's one-index-stricter range test would refuse."""
    _write_hkl("cubic.hkl", _cubic)
    hkl = _miller(INTERP)
    inside = _in_grid(hkl)
    assert not inside[0, 0] and inside.sum() > 50
    assert (inside & ~_in_nanobragg_range(hkl)).sum() > 50
    img, ref, res = _interp_runs("cubic.hkl", c_parity=False)
    assert res.scene.interpolate
    lit = ref > 1e-6 * ref.max()
    F2 = img[lit & inside] / ref[lit & inside]
    h, k, l = np.moveaxis(hkl[lit & inside], -1, 0)
    np.testing.assert_allclose(F2, _cubic(h, k, l) ** 2, rtol=1e-9)
    # out of range: the nearest grid point
    h0, k0, l0 = np.moveaxis(np.ceil(hkl[lit & ~inside] - 0.5), -1, 0)
    np.testing.assert_allclose(img[lit & ~inside] / ref[lit & ~inside], _cubic(h0, k0, l0) ** 2,
                               rtol=1e-9)


def test_c_parity_interpolation_switches_off_after_the_first_out_of_range_pixel():
    """nanoBragg.c (§5.2.1): pixel (0, 0) is out of range, so every pixel is nearest-neighbour."""
    _write_hkl("cubic.hkl", _cubic)
    hkl = _miller(INTERP)
    img, ref, _ = _interp_runs("cubic.hkl", c_parity=True)
    lit = ref > 1e-6 * ref.max()
    h0, k0, l0 = np.moveaxis(np.ceil(hkl[lit] - 0.5), -1, 0)
    np.testing.assert_allclose(img[lit] / ref[lit], _cubic(h0, k0, l0) ** 2, rtol=1e-9)


def _lagrange_tricubic(table, x):
    """Independent tricubic interpolation: the cubic through the 4 nodes floor(x)-1..floor(x)+2 of
    each axis (numpy polyfit), applied axis by axis. table[h+3, k+3, l+3]."""
    base = np.floor(x).astype(int) - 1
    nodes = [np.arange(b, b + 4) for b in base]
    block = table[np.ix_(*(n + 3 for n in nodes))]
    for axis in (2, 1, 0):
        coef = np.polynomial.polynomial.polyfit(nodes[axis], np.moveaxis(block, axis, 0).reshape(4, -1), 3)
        vals = np.polynomial.polynomial.polyval(x[axis], coef)
        block = vals.reshape(np.moveaxis(block, axis, 0).shape[1:])
    return float(block)


def test_interpolation_matches_an_independent_tricubic_on_a_random_grid():
    rng = np.random.default_rng(7)
    table = rng.uniform(20.0, 80.0, size=(7, 7, 7))
    _write_hkl("random.hkl", lambda h, k, l: float(table[h + 3, k + 3, l + 3]))
    hkl = _miller(INTERP)
    inside = _in_grid(hkl)
    img, ref, _ = _interp_runs("random.hkl", c_parity=False)
    lit = ref > 1e-6 * ref.max()
    sel = np.argwhere(lit & inside)
    assert len(sel) > 50
    for s, f in sel[::7]:
        want = _lagrange_tricubic(table, hkl[s, f]) ** 2
        assert img[s, f] / ref[s, f] == pytest.approx(want, rel=1e-9)


# ---- φ = 0 --------------------------------------------------------------------------------------

PHI_ARGS = ("-cell 60 70 80 90 90 90 -misset 10 20 30 -N 5 -default_F 100 -lambda 1 -oversample 1 "
            f"-nopgm -nonoise -fluence {FLUENCE:g}").split() + Mosflm(24, 0.5, 50, 6.0, 6.0).args()


def _single_phi_images(n, osc_deg, phi0_deg=0.0, c_parity=False):
    step = osc_deg / n
    return [simulate(PHI_ARGS + ["-phi", phi0_deg + k * step, "-osc", step, "-phisteps", 1],
                     c_parity=c_parity)[0] for k in range(n)]


@pytest.mark.parametrize("phi0", [0.0, -1.0])
def test_phi_sweep_through_zero_is_the_mean_of_its_single_step_images(phi0):
    """A sweep φ0, φ0+δ, ..., φ0+(n−1)δ is the average of n still images at those φ: the step at
    exactly φ = 0 (the first one, or the third of -phi -1 -osc 2 -phisteps 4) sees the unrotated
    crystal."""
    n, osc = 4, 2.0
    sweep, _ = simulate(PHI_ARGS + ["-phi", phi0, "-osc", osc, "-phisteps", n])
    singles = _single_phi_images(n, osc, phi0)
    assert np.abs(singles[0] - singles[-1]).max() > 0.1 * singles[0].max()
    np.testing.assert_allclose(sweep, np.mean(singles, axis=0), rtol=1e-9,
                               atol=1e-12 * sweep.max())


def test_c_parity_phi_zero_reuses_the_last_step_except_for_the_first_pixel():
    """nanoBragg.c (§5.1): at φ == 0.0 it skips the rotation and keeps the previous sub-iteration's
    last φ orientation; only the first pixel rendered sees the unrotated crystal."""
    n, osc = 4, 2.0
    sweep, _ = simulate(PHI_ARGS + ["-phi", 0, "-osc", osc, "-phisteps", n], c_parity=True)
    singles = _single_phi_images(n, osc)
    carried = (singles[-1] + sum(singles[1:])) / n
    correct = np.mean(singles, axis=0)
    assert sweep[0, 0] == pytest.approx(correct[0, 0], rel=1e-9)
    rest = np.ones(sweep.shape, dtype=bool)
    rest[0, 0] = False
    np.testing.assert_allclose(sweep[rest], carried[rest], rtol=1e-9, atol=1e-12 * sweep.max())


# ---- polarization per source --------------------------------------------------------------------

SOURCES = np.array([[-10.0, 0.0, 0.0], [-10.0, 4.0, 3.0]])   # toward the sources (m)


def _two_source_runs(K, c_parity):
    with open("two_sources.txt", "w") as fh:
        for x, y, z in SOURCES:
            fh.write(f"{x} {y} {z} 1.0 1e-10\n")
    geom = Mosflm(8, 1.0, 30, 3.0, 3.0)
    base = FLAT + geom.args() + ["-oversample", 1, "-sourcefile", "two_sources.txt"]
    pol, _ = simulate(base + ["-polar", K], c_parity=c_parity)
    nopol, _ = simulate(base + ["-nopolar"], c_parity=c_parity)
    d = unit(geom.centres())
    P = [polarization(K, -src, d) for src in SOURCES]
    return pol / nopol, P


@pytest.mark.parametrize("K", [0.0, 0.8, 1.0])
def test_each_source_gets_its_own_polarization_factor(K):
    ratio, P = _two_source_runs(K, c_parity=False)
    assert np.abs(P[0] - P[1]).max() > 0.05
    np.testing.assert_allclose(ratio, (P[0] + P[1]) / 2, rtol=1e-12)


def test_c_parity_reuses_the_first_source_polarization_for_all_sources():
    """nanoBragg.c (§5.2.8): polar is computed once per pixel, at its first (sub-pixel, source)."""
    ratio, P = _two_source_runs(0.8, c_parity=True)
    np.testing.assert_allclose(ratio, P[0], rtol=1e-12)


@pytest.mark.parametrize("c_parity", [False, True])
def test_nopolar_with_oversample_polar(c_parity):
    """-nopolar means P = 1; nanoBragg.c's -oversample_polar recomputes (unpolarized) P anyway."""
    argv = FLAT + WIDE.args() + ["-oversample", 1, "-nopolar"]
    img, _ = simulate(argv + ["-oversample_polar"], c_parity=c_parity)
    pos = WIDE.centres()
    want = R_E_SQR * FLUENCE * F_DEFAULT ** 2 * nanobragg_omega(pos, WIDE.px)
    if c_parity:
        want = want * polarization(0.0, (1, 0, 0), pos)
    np.testing.assert_allclose(img, want, rtol=1e-12)


# ---- symmetry, scaling, inverse square, dmin -----------------------------------------------------

CENTRED = Mosflm(16, 0.1, 60, 0.75, 0.75)     # the beam hits the corner shared by the 4 central pixels


@pytest.mark.parametrize("extra", [["-oversample", 1],
                                   ["-oversample", 2, "-oversample_omega", "-oversample_polar"]])
def test_cubic_crystal_at_normal_incidence_gives_a_symmetric_image(extra):
    """A cubic lattice with a, b, c along x, y, z seen down x has 4mm symmetry about the beam, and
    so has the unpolarized Thomson factor and the flat detector."""
    img, _ = simulate("-cell 100 100 100 90 90 90 -N 5 -default_F 100 -lambda 1 -nopgm -nonoise"
                      .split() + CENTRED.args() + extra)
    tol = 1e-9 * img.max()
    assert img.max() > 0
    np.testing.assert_allclose(img, img[::-1, :], atol=tol)
    np.testing.assert_allclose(img, img[:, ::-1], atol=tol)
    np.testing.assert_allclose(img, img.T, atol=tol)


def test_image_is_linear_in_fluence():
    argv = "-cell 70 80 90 90 90 90 -misset 5 6 7 -N 4 -default_F 50 -water 20 -nopgm -nonoise".split()
    argv += Mosflm(12, 0.2, 80, 1.0, 1.3).args() + ["-oversample", 2]
    one, _ = simulate(argv + ["-fluence", 1e24])
    three, _ = simulate(argv + ["-fluence", 3e24])
    np.testing.assert_allclose(three, 3 * one, rtol=1e-12)


def test_point_pixel_follows_the_inverse_square_law():
    values = {}
    for dist in (50, 100, 200):
        geom = Mosflm(9, 0.1, dist, 0.4, 0.4)
        img, _ = simulate(FLAT + geom.args() + ["-point_pixel", "-oversample", 1])
        values[dist] = img[4, 4]
        assert img[4, 4] == pytest.approx(R_E_SQR * FLUENCE * F_DEFAULT ** 2 / (dist * 1e-3) ** 2,
                                          rel=1e-12)
    assert values[50] / values[200] == pytest.approx(16.0, rel=1e-12)


@pytest.mark.parametrize("c_parity", [False, True])
def test_dmin_skips_exactly_the_pixels_beyond_the_resolution_limit(c_parity):
    geom = Mosflm(20, 1.0, 40, 9.5, 9.5)
    dmin = 4.0
    img, _ = simulate(FLAT + geom.args() + ["-oversample", 1, "-dmin", dmin], c_parity=c_parity)
    d = unit(geom.centres())
    resolution = 1.0 / np.linalg.norm(d - np.array([1.0, 0.0, 0.0]), axis=-1)   # λ/(2 sin θ), Å
    assert (resolution < dmin).any() and (resolution > dmin).any()
    clear = np.abs(resolution - dmin) > 1e-9
    assert np.all((img[clear] == 0) == (resolution[clear] < dmin))


# ---- SMV header overflow ------------------------------------------------------------------------

LONG_HEADER = ("-cell 100 100 100 90 90 90 -N 1 -default_F 100 -detpixels 4 -nopgm -nonoise "
               "-lambda 1.23456789 -distance 123.456789 -pixel 0.0123456 -Xbeam -0.0123457 "
               "-Ybeam -0.0123457 -twotheta 12.3456 -phi -12.34567 -osc 0.00123457 "
               "-detector_rotx 1.23456 -detector_roty 2.3456 -detector_rotz 3.4567").split()


def _smv_layout(data):
    end = data.index(b"}")
    text = data[:end].decode("ascii")
    declared = int(text.split("HEADER_BYTES=")[1].split(";")[0])
    return end, declared


def test_long_smv_header_gives_a_valid_larger_header():
    from nanobragg_cli.simulate import output_files
    _, res = simulate(LONG_HEADER)
    data = dict(output_files(res))[res.cfg.output.intfile]
    end, declared = _smv_layout(data)
    assert end > 512, "the header text must overflow 512 bytes for this test to mean anything"
    assert declared % 512 == 0 and declared > end
    assert len(data) == declared + 2 * 4 * 4
    pixels = np.frombuffer(data[declared:], dtype="<u2")
    assert pixels.max() > 0


def test_c_parity_long_smv_header_is_written_as_nanobragg_does():
    """nanoBragg.c prints the header text, whatever its length, before the pixels and still says
    HEADER_BYTES=512 (nanoBragg_c.md §2: no guard)."""
    from nanobragg_cli.simulate import output_files
    _, res = simulate(LONG_HEADER, c_parity=True)
    data = dict(output_files(res))[res.cfg.output.intfile]
    end, declared = _smv_layout(data)
    assert declared == 512 and end > 512
    assert len(data) == end + 2 + 2 * 4 * 4    # "}\f", then the pixels


# ---- flag readings ------------------------------------------------------------------------------

@pytest.mark.parametrize("other", [["-mosaic_seed", 5], ["-misset_seed", 5]])
def test_mosaic_and_misset_seeds_leave_the_noise_seed_alone(other):
    """nanoBragg.c's "-seed" test is a substring match, but neither "-mosaic_seed" nor
    "-misset_seed" contains "-seed": the noise image depends on -seed only (no mosaic spread and
    no random misset here, so the other seeds draw nothing)."""
    from nanobragg_cli.simulate import output_files
    argv = FLAT + NORMAL.args() + ["-oversample", 1, "-fluence", 1e29, "-seed", 7]
    argv = [a for a in argv if a != "-nonoise"]
    _, ref = simulate(argv)
    _, res = simulate(argv + other)
    assert res.cfg.output.seed == -7
    noise = lambda r: dict(output_files(r))[r.cfg.output.noisefile]  # noqa: E731
    assert noise(res) == noise(ref)


TINY = "-cell 100 100 100 90 90 90 -default_F 100 -detpixels 4 -nopgm -nonoise".split()


@pytest.mark.parametrize("flags,effect,warning", [
    (["-pivot", "sample"], lambda c: c.detector.pivot == "beam",
     "forces pivot=beam with the MOSFLM convention"),
    (["-twotheta", 5], lambda c: c.detector.pivot == "beam",
     "forces pivot=beam with the MOSFLM convention"),
    (["-xds", "-Xbeam", 0.2], lambda c: c.detector.pivot == "sample",
     "forces pivot=sample with the XDS convention"),
    (["-fdet_vector", 0, 0, 1], lambda c: c.detector.convention == "custom",
     "switches to the CUSTOM convention"),
    (["-pix0_vector", 0.1, 0, 0], lambda c: c.detector.convention == "custom",
     "has no effect on the geometry"),
    (["-twotheta", 10, "-twotheta_axis", 0, 0, -1],
     lambda c: c.detector.twotheta == 0.0 and c.detector.pivot == "sample",
     "also sets the 2theta angle to its first component"),
    (["-mosaic_domains", 3], lambda c: c.crystal.mosaic_domains == 1,
     "-mosaic_domains without -mosaic"),
    (["-oversample", 0], lambda c: c.sampling.oversample <= 0, "selects the automatic oversampling"),
    (["-coherent"], lambda c: True, "-coherent has no effect"),
    (["-density", 1.2], lambda c: True, "-density has no effect"),
    (["-stol", "x.txt"], lambda c: True, "-stol has no effect"),
])
def test_surprising_nanobragg_readings_are_followed_with_a_warning(flags, effect, warning):
    cfg = prepare([str(a) for a in TINY + flags])
    assert effect(cfg)
    assert any(warning in w for w in cfg.warnings), cfg.warnings


def test_zero_cells_means_one_cell_with_a_warning():
    one, _ = simulate(TINY + ["-N", 1])
    zero, res = simulate(TINY + ["-N", 0])
    np.testing.assert_array_equal(zero, one)
    assert any("N < 1 is treated as N = 1" in m for m in res.messages)


def test_fdump_cache_replaces_default_F_with_a_warning():
    """nanoBragg.c (§5.2.5): without -hkl, an Fdump.bin left in the folder by an -hkl run is read
    even when -default_F is given."""
    _write_hkl("cubic.hkl", _cubic)
    argv = TINY + ["-N", 2, "-nointerpolate"]
    plain, _ = simulate(argv)
    with_hkl, _ = simulate(argv + ["-hkl", "cubic.hkl"])
    cached, res = simulate(argv)
    assert np.abs(with_hkl - plain).max() > 0
    np.testing.assert_array_equal(cached, with_hkl)
    assert any("replaces -default_F" in m for m in res.messages)


@pytest.mark.parametrize("c_parity", [False, True])
def test_image_does_not_depend_on_chunking(c_parity):
    """The pixels are rendered in chunks sized by --max-memory; neither mode's image may depend on
    it, including the state nanoBragg.c carries from pixel to pixel (φ = 0 carryover, the
    interpolation kill-switch), which --c-parity must carry across chunks."""
    _write_hkl("cubic.hkl", _cubic)
    argv = ("-cell 100 100 100 90 90 90 -misset 3 4 5 -N 2 -lambda 1 -oversample 2 -nopgm -nonoise "
            "-hkl cubic.hkl -phi 0 -osc 1 -phisteps 3").split() + INTERP.args()
    cfg = prepare([str(a) for a in argv])
    images = []
    for max_memory in (None, 40_000):
        with redirect_stdout(io.StringIO()):
            res = run_simulation(cfg, ToolOptions(c_parity=c_parity, max_memory=max_memory))
        images.append(res.image_tensor.detach().cpu().numpy())
    np.testing.assert_array_equal(images[1], images[0])
