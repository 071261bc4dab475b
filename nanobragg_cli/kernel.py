"""The tensor kernel: intensity of a chunk of pixels, broadcast over every sampling dimension.

For a chunk of P pixels the kernel evaluates all sensor layers (T), sub-pixels (SS = os²),
sources (S), φ steps (Φ) and mosaic domains (M) as tensor dimensions. The pixel dimension is the
innermost (contiguous) one: per-eval tensors are (Φ·M, T, SS, S, P), per-sub-pixel tensors
(T, SS, P), so every broadcast runs over long contiguous rows. Pixel geometry (positions, solid
angle, absorption, polarization) is computed once per (T, SS[, S], P) and reused across φ and
mosaic domains; each Miller index comes from one matrix product of all rotated cells with the
stacked scattering vectors. Where nanoBragg.c's loop order matters (c-parity state), tensors are
permuted to C's order (P, T, SS, S, Φ, M).

``--c-parity`` selects nanoBragg.c's single-threaded arithmetic where it differs from correct
physics: the per-evaluation functions through ``scene.arith`` (:mod:`nanobragg_cli.arithmetic`),
the pixel reduction by ``render_chunk`` (``_reduce_c_parity`` / ``_reduce_default``), both chosen
once; each such place is marked "C-parity quirk" and listed in docs/differences.md.
"""

from dataclasses import dataclass
import math

import torch
from torch import Tensor

from .geometry.rotation import rotate_axis
from .physics import (GAUSS_WIDTH, ROUND_XTAL_SCALE, TOPHAT_CUT, capture_fraction,
                      polarization_factor, sinc3, sincg_chebyshev, sincg_direct, sincg_like_c,
                      sincg_ratio, sincg_small_sines, solid_angle)
from .c_order import COrder
from .constants import R_E_SQR, WATER_F
from .scene import Scene


@dataclass
class ChunkOutput:
    """values: (P,) pixel intensities (photons); I: (P,) nanoBragg's I before scaling;
    omega_sum: scalar Σ of the solid angles used; killed: interpolation kill-switch state after
    the chunk (c-parity); killed_rows: (P,) that state before each pixel (for tracing);
    detail: every evaluation's intermediates (only with ``detail=True``); omega_px: (P,) Σ of
    each pixel's solid angles (omega_sum is their sum)."""
    values: Tensor
    I: Tensor
    omega_sum: Tensor
    killed: Tensor
    killed_rows: Tensor | None
    detail: "KernelDetail | None" = None
    omega_px: Tensor | None = None


@dataclass
class PixelGeometry:
    """Per (T, SS, P) layer, sub-pixel and pixel, components as separate contiguous tensors:
    pos: (x, y, z) positions (m); airpath R (m); diffracted: (x, y, z) unit directions;
    omega_sub: solid angle (sr); cf_sub: capture fraction."""
    pos: tuple
    airpath: Tensor
    diffracted: tuple
    omega_sub: Tensor
    cf_sub: Tensor


@dataclass
class KernelDetail:
    """Every intermediate of a chunk's evaluations, in the kernel's own layout (kept only with
    ``render_chunk(..., detail=True)``; :func:`nanobragg_cli.trace.pixel_trace` turns one
    pixel's into a trace record). T layers, SS sub-pixels, S sources, P pixels, Φ·M orientations,
    K = T·SS·S·P evaluations per orientation.

    geo: the sub-pixel geometry, (T, SS, P) tensors; omega_used: (T, SS, P) solid angle (sr)
    each sub-pixel is scaled by; scat: (sx, sy, sz), each (T, SS, S, P), scattering vectors in
    m⁻¹; valid: (T, SS, S, P) bool, passes -dmin (None: nothing is cut); hkl, h0: three
    (Φ·M, K) fractional and rounded Miller indices; F_latt: (Φ·M, K) signed lattice factor;
    comps: its three per-axis factors (Φ·M, K) for the square shape, else None; F_cell:
    (Φ·M, K), or 0-dim when the same everywhere; executed: (Φ·M, K) or (1, K) bool, the
    evaluations nanoBragg.c does not skip (None: all); pol_all: (T, SS, S, P) polarization
    factor; polar_pixel: (P,) the pixel's cached factor (C's); cf_last: (P,) capture fraction
    of the last layer's first sub-pixel; omega_pixel: (P,) the first sub-pixel's solid angle."""
    geo: PixelGeometry
    omega_used: Tensor
    scat: tuple
    valid: Tensor | None
    hkl: list
    h0: list
    F_latt: Tensor
    comps: list | None
    F_cell: Tensor
    executed: Tensor | None
    pol_all: Tensor
    polar_pixel: Tensor
    cf_last: Tensor
    omega_pixel: Tensor


def subpixel_positions(scene: Scene, sp: Tensor, fp: Tensor) -> tuple:
    """(x, y, z), each (T, SS, P): positions (m) of every sub-pixel centre of every sensor layer.

    sp, fp: (P,) slow/fast pixel indices (as floats). Follows nanoBragg.c: sub-pixel centre
    Fdet = sub·(fpixel·os + subF) + sub/2, layer offset Odet = layer·thickstep along the normal,
    position Fdet·f̂ + Sdet·ŝ + Odet·ô + pix0.
    """
    det, os_ = scene.det, scene.oversample
    sub = scene.subpixel_size
    P, T = sp.shape[0], scene.thicksteps
    k = torch.arange(os_, dtype=scene.dtype, device=scene.device)[:, None]
    Fdet = (sub * (fp * os_ + k) + sub / 2.0)[None, None, :, :]           # (1, 1, osF, P)
    Sdet = (sub * (sp * os_ + k) + sub / 2.0)[None, :, None, :]           # (1, osS, 1, P)
    if T > 1:
        Odet = (torch.arange(T, dtype=scene.dtype, device=scene.device) * scene.thickstep)[:, None, None, None]
        pos = tuple((Fdet * det.fdet[c] + Sdet * det.sdet[c] + Odet * det.odet[c] + det.pix0[c])
                    .reshape(T, os_ * os_, P) for c in range(3))
    else:  # one layer: Odet = 0
        pos = tuple((Fdet * det.fdet[c] + Sdet * det.sdet[c] + det.pix0[c])
                    .reshape(T, os_ * os_, P) for c in range(3))
    if scene.curved:
        # pixels on a sphere of radius `distance`: detector coordinates used as angles, as in C
        d = det.distance
        start = (d * det.beam).expand(T, os_ * os_, P, 3)
        swung = rotate_axis(start, det.sdet, pos[1] / d)
        moved = rotate_axis(swung, det.fdet, pos[2] / d)
        pos = tuple(moved[..., c].contiguous() for c in range(3))
    return pos


def pixel_geometry(scene: Scene, pix: Tensor) -> PixelGeometry:
    """Geometry of every layer and sub-pixel of the pixels ``pix`` (flat indices)."""
    flat = pix.to(scene.dtype)  # exact below 2**53; float division is far cheaper than int64's
    sp = torch.floor(flat / scene.fpixels)
    fp = flat - sp * scene.fpixels
    det = scene.det
    x, y, z = subpixel_positions(scene, sp, fp)
    airpath = torch.sqrt(x * x + y * y + z * z)
    diffracted = (x / airpath, y / airpath, z / airpath)
    omega_sub = solid_angle(det.pixel_size, airpath, det.close_distance, scene.point_pixel)
    if not scene.capture_fraction:   # no sensor model: every photon counts
        cf_sub = torch.ones_like(airpath)
    else:
        layer = torch.arange(scene.thicksteps, dtype=scene.dtype, device=scene.device)[:, None, None]
        o = det.odet
        parallax = diffracted[0] * o[0] + diffracted[1] * o[1] + diffracted[2] * o[2]
        cf_sub = capture_fraction(layer, scene.thickstep, scene.mu, parallax)
    return PixelGeometry((x, y, z), airpath, diffracted, omega_sub, cf_sub)


def scattering_vectors(scene: Scene, diffracted: tuple) -> tuple:
    """((sx, sy, sz) each (T, SS, S, P) in m⁻¹, valid (T, SS, S, P) or None when nothing is
    cut by -dmin). scat = (d̂ − î)/λ with î = −(source direction), per source."""
    lam = scene.source_lambda[:, None]
    scat = tuple((d[:, :, None, :] + scene.source_dirs[:, c, None]) / lam
                 for c, d in enumerate(diffracted))
    if scene.dmin <= 0.0:
        return scat, None
    stol = 0.5 * torch.sqrt(scat[0] * scat[0] + scat[1] * scat[1] + scat[2] * scat[2])
    return scat, ~((stol > 0.0) & (scene.dmin > 0.5 / torch.where(stol > 0, stol, 1.0)))


def polarization(scene: Scene, diffracted: tuple) -> Tensor:
    """(T, SS, S, P) Kahn polarization factor of every sub-pixel for every source."""
    incident = -scene.source_dirs
    if scene.unpolarized:
        cos2t = sum(d[:, :, None, :] * incident[:, c, None] for c, d in enumerate(diffracted))
        return 0.5 * (1.0 + cos2t * cos2t)
    d = torch.stack(diffracted, dim=-1)[:, :, None, :, :]                # (T, SS, 1, P, 3)
    axis = scene.arith.polarization_axis(incident, scene.polar_vector)
    return polarization_factor(scene.kahn, incident[:, None, :], d, axis)


def miller_indices(scene: Scene, scat: tuple, first_sub: tuple | None) -> list:
    """Fractional h, k, l for every orientation: three (Φ·M, T·SS·S·P) tensors.

    scat: (sx, sy, sz), each (T, SS, S, P); first_sub: (pixel, layer, sub-pixel, source).
    h = a·S summed x + y + z as nanoBragg.c does, elementwise (multiply-adds) rather than by a
    matrix product, so that every value is bit-identical whatever the chunk size (BLAS kernels
    round differently at block edges)."""
    T, SS, S, P = scat[0].shape
    cols = [c.reshape(1, -1) for c in scat]                             # (1, K)
    orient = scene.orient.reshape(-1, 3, 3)                             # (Φ·M, a|b|c, xyz)

    def project(axes, vecs):
        h = vecs[0] * axes[:, 0:1]
        return h.addcmul_(vecs[1], axes[:, 1:2]).addcmul_(vecs[2], axes[:, 2:3])

    hkl = [project(orient[:, i, :], cols) for i in range(3)]
    if first_sub is not None and scene.orient_first is not None:
        # C-parity quirk (φ=0 carryover): the first sub-iteration nanoBragg.c executes still sees
        # the unrotated crystal at φ=0; every later one reuses the last φ step's rotation.
        r, t, ss, s = first_sub
        col = ((t * SS + ss) * S + s) * P + r
        first = scene.orient_first.reshape(-1, 3, 3)
        rows = torch.arange(first.shape[0], device=first.device)
        at = torch.full_like(rows, col)
        one = [c[:, col:col + 1] for c in cols]
        hkl = [h.index_put((rows, at), project(first[:, i, :], one)[:, 0])
               for i, h in enumerate(hkl)]
    return hkl


def _rounded(h: Tensor) -> Tensor:
    """nanoBragg's nearest index ceil(h − 0.5)."""
    return (h - 0.5).ceil_()


# Largest cell count whose lattice factor is taken from the Chebyshev recurrence (one cosine and
# N − 1 multiply-adds) rather than the ratio of two sines: past it the sines are cheaper
# (docs/performance.md). The recurrence's rounding error grows like N²·eps.
CHEBYSHEV_MAX_N = 10


def lattice_factor_squared(scene: Scene, hkl: list, h0: list | None = None,
                           consume: bool = False) -> Tensor:
    """F_latt² for every evaluation (the image needs only the square, so no signs are computed).

    Square shape: Π sincg² on reduced arguments f = h − h0 (h0 the rounded indices when the
    caller has them, else round(h); float32 keeps its digits at high-order reflections). For an
    integral N ≤ :data:`CHEBYSHEV_MAX_N` each factor is U_{N−1}(cos πf)
    (:func:`nanobragg_cli.physics.sincg_chebyshev`), otherwise sin(Nπf)/sin(πf) with an exact
    zero argument moved to the smallest normal number (whose ratio is N, avoiding a branch).
    --c-parity evaluates nanoBragg.c's full-argument form instead (see
    :func:`nanobragg_cli.physics.sincg_like_c`). Other shapes square the full factor, and so does
    a differentiable run (the in-place products below would overwrite what autograd saved).
    ``consume``: nothing reads ``hkl`` afterwards, so the reduced indices overwrite it.
    """
    work = scene.work_dtype
    if scene.shape != "square" or scene.N.requires_grad or hkl[0].requires_grad:
        F, _ = lattice_factor(scene, hkl, h0 if h0 is not None else [_rounded(h) for h in hkl])
        return (F * F).to(work)

    def reduced(i, h, n):
        near = h0[i] if h0 is not None else torch.round(h)
        f = h.sub_(near) if consume else h - near
        f = f.to(work)                                       # |f| <= 1/2, exact in float64
        if n <= CHEBYSHEV_MAX_N and n == int(n):
            return sincg_chebyshev(f, int(n))
        if torch.compiler.is_compiling():   # fused: polynomial sines, in registers
            return sincg_small_sines(f, n)
        return sincg_ratio(f, n)

    def like_c(i, h, n):   # C-parity quirk (sincg near integers), see physics.sincg_like_c
        return sincg_like_c(h, n).to(work)

    axis_factor = like_c if scene.c_parity else reduced
    L = None
    for i, (h, n) in enumerate(zip(hkl, scene.N_values)):
        if n <= 1.0:
            continue
        r = axis_factor(i, h, n)
        L = r if L is None else L.mul_(r)
    if L is None:
        return torch.ones_like(hkl[0], dtype=work)
    return L.mul_(L)


def lattice_factor(scene: Scene, hkl: list, h0: list) -> tuple:
    """F_latt with its sign (and, for the square shape, the per-axis factors) -- for traces and
    non-square shapes. hkl, h0: three tensors of fractional and rounded indices."""
    N = scene.N
    if scene.shape == "square":
        comps = []
        for i in range(3):
            if N.requires_grad:
                comps.append(sincg_direct(hkl[i], N[i]))
            elif scene.N_values[i] > 1.0:
                comps.append(scene.arith.square_axis(hkl[i], h0[i], N[i]))
            else:
                comps.append(torch.ones_like(hkl[i]))
        return comps[0] * comps[1] * comps[2], comps
    Na, Nb, Nc = N[0], N[1], N[2]
    fh, fk, fl = (h - r for h, r in zip(hkl, h0))
    if scene.shape == "round":
        hrad = fh * fh * Na * Na + fk * fk * Nb * Nb + fl * fl * Nc * Nc
        return Na * Nb * Nc * ROUND_XTAL_SCALE * sinc3(math.pi * torch.sqrt(hrad * scene.fudge)), None
    a_s, b_s, c_s = scene.lattice.a_star, scene.lattice.b_star, scene.lattice.c_star
    d = [fh * a_s[j] + fk * b_s[j] + fl * c_s[j] for j in range(3)]
    rad = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) * Na * Na * Nb * Nb * Nc * Nc
    if scene.shape == "gauss":
        return Na * Nb * Nc * torch.exp(-(rad / GAUSS_WIDTH * scene.fudge)), None
    return Na * Nb * Nc * (rad * scene.fudge < TOPHAT_CUT).to(rad.dtype), None


def structure_factors(scene: Scene, hkl: list, h0: list | None, executed: Tensor | None,
                      killed: Tensor, c_order) -> tuple:
    """F_cell per evaluation (or a 0-dim tensor when it is the same everywhere).

    c_order: function taking a (Φ·M, K) tensor to C's loop order (P, T·SS·S·Φ·M) -- the
    kill-switch is sequential in that order. Returns (F_cell, killed after the chunk, killed
    state before each pixel (P,) or None).
    """
    sf = scene.sf
    if not (scene.interpolate or sf.count > 0):
        return torch.tensor(sf.default_F, dtype=scene.work_dtype, device=scene.device), killed, None
    h0 = h0 if h0 is not None else [_rounded(h) for h in hkl]
    nearest = sf.nearest(h0[0], h0[1], h0[2])
    if not scene.interpolate:
        return nearest, killed, None
    interp = sf.tricubic(hkl[0], hkl[1], hkl[2])
    # where the block leaves the grid; with --c-parity the interpolation kill-switch
    return scene.arith.interpolate(sf, hkl, nearest, interp, executed, killed, c_order)


def _sum_rows(x: Tensor, in_place: bool = False) -> Tensor:
    """Σ over dim 0, strictly in row order: torch's sum() changes its summation order with the
    width of the rows, which would make an image depend (in the last bit) on the chunk size.
    ``in_place``: x is scratch, its running sums overwrite it (no second (R, K) tensor).
    Compiled (:mod:`nanobragg_cli.fused`, whose chunks all have one shape) it is a plain sum,
    which the compiler fuses with the loop that makes x instead of storing x first."""
    if torch.compiler.is_compiling():
        return x.sum(0)
    if x.shape[0] == 1:
        return x[0].clone() if in_place else x[0]
    # (clone: the last row must not keep the whole running-sum tensor alive)
    return (x.cumsum_(0) if in_place else torch.cumsum(x, 0))[-1].clone()


def _sum_to_pixels(x: Tensor, P: int) -> Tensor:
    """Σ over everything but the trailing pixel dimension, in row order."""
    return _sum_rows(x.reshape(-1, P))


def _reduce_c_parity(scene: Scene, term: Tensor, geo: PixelGeometry, pol_all: Tensor,
                     executed: Tensor | None, order: COrder, polar_pixel: Tensor,
                     cf_last: Tensor, omega_pixel: Tensor, ov: tuple) -> tuple:
    """(I, value), each (P,): nanoBragg.c's sum of ``term`` (Φ·M, K) into pixels and its scaling,
    quirks included. ov: (-oversample_thick, -oversample_polar, -oversample_omega)."""
    dtype, device = scene.dtype, scene.device
    T, SS, P = geo.airpath.shape
    S, PM = scene.n_src, scene.n_phi * scene.n_mos
    r_e2_fluence = R_E_SQR * scene.fluence
    if any(ov):
        # C-parity quirk (-oversample_* flags): each factor multiplies the running sum I in
        # every innermost iteration, I <- (I + term)·factor, so earlier terms are scaled again.
        g = torch.ones(T, SS, S, P, dtype=dtype, device=device)
        if ov[0]:
            g = g * geo.cf_sub[:, :, None, :]
        if ov[1]:
            g = g * pol_all
        if ov[2]:
            g = g * geo.omega_sub[:, :, None, :]
        g = g.reshape(1, -1).expand(PM, -1)
        if executed is not None:
            g = torch.where(executed, g, torch.ones((), dtype=dtype, device=device))
        g = order(g)
        suffix = torch.flip(torch.cumprod(torch.flip(g, (1,)), 1), (1,))
        I = scene.I_bg * suffix[:, 0] + (order(term.to(dtype)) * suffix).sum(1)
    else:
        I = scene.I_bg + _sum_to_pixels(term, P).to(dtype)
    # C-parity quirk (water background): I_bg already holds r_e²·fluence and is scaled
    # again by r_e²·fluence/steps with the rest of I.
    value = r_e2_fluence * I / scene.steps
    # C-parity quirk (sensor layers): the sum over layers is scaled by the LAST layer's
    # capture fraction only (and layers are not counted in `steps`).
    if not ov[0]:
        value = value * cf_last
    if not ov[1]:
        value = value * polar_pixel
    if not ov[2]:
        value = value * omega_pixel
    return I, value


def _reduce_default(scene: Scene, term: Tensor, geo: PixelGeometry, pol_all: Tensor,
                    valid: Tensor | None, omega_used: Tensor, ov: tuple,
                    F2_per_sub: Tensor | None = None) -> tuple:
    """(I, value), each (P,): the default mode's sum of ``term`` (Φ·M, K) into pixels, every
    sub-pixel and source weighted by its own capture fraction, polarization and solid angle
    (the pixel's first ones unless -oversample_thick/_polar/_omega), plus the water background.
    F2_per_sub: a 0-dim F² that ``term`` still lacks, applied to each sub-pixel's sum; ``term``
    is then scratch and summed in place."""
    dtype = scene.dtype
    T, SS, P = geo.airpath.shape
    S, PM = scene.n_src, scene.n_phi * scene.n_mos
    r_e2_fluence = R_E_SQR * scene.fluence
    cf_w = geo.cf_sub if ov[0] else geo.cf_sub[:, 0:1].expand(T, SS, P)
    if scene.nopolar:
        pol_w = torch.ones_like(pol_all)
    else:
        pol_w = pol_all if ov[1] else pol_all[0:1, 0:1].expand(T, SS, S, P)
    weight = cf_w[:, :, None, :] * pol_w * omega_used[:, :, None, :]     # (T, SS, S, P)
    if F2_per_sub is None:
        per_sub = _sum_rows(term)
    else:
        per_sub = _sum_rows(term, in_place=True).mul_(F2_per_sub)
    per_sub = per_sub.to(dtype).reshape(T, SS, S, P)
    if scene.water_size != 0.0:
        bg = scene.water_molecules * WATER_F * WATER_F * PM
        per_sub = per_sub + (bg if valid is None else bg * valid.to(dtype))
    I = _sum_to_pixels(per_sub, P)
    value = r_e2_fluence * _sum_to_pixels(per_sub * weight, P) / scene.steps
    return I, value


def render_chunk(scene: Scene, pix: Tensor, killed: Tensor, first_sub: tuple | None = None,
                 detail: bool = False) -> ChunkOutput:
    """Render the pixels with flat indices ``pix`` (P,) (raster order, slow-major).

    killed: c-parity interpolation kill-switch state before this chunk (bool scalar tensor).
    first_sub: (row in pix, layer, sub-pixel, source) of the first sub-iteration nanoBragg.c
    executes (c-parity φ=0 carryover), when it lies in this chunk. detail: keep every
    evaluation's intermediates (signed lattice factors, F_cell, ...) for a trace.
    """
    cp = scene.c_parity
    dtype, device = scene.dtype, scene.device
    P, T, SS = pix.shape[0], scene.thicksteps, scene.oversample ** 2
    S, PM = scene.n_src, scene.n_phi * scene.n_mos
    ov = (scene.oversample_thick, scene.oversample_polar, scene.oversample_omega)
    order = COrder(T, SS, S, P, PM)

    geo = pixel_geometry(scene, pix)                                    # (T, SS, P)
    omega_pixel = geo.omega_sub[0, 0]                                   # (P,)
    omega_used = geo.omega_sub if ov[2] else omega_pixel.expand(T, SS, P)
    scat, valid = scattering_vectors(scene, geo.diffracted)             # (T, SS, S, P)
    pol_all = polarization(scene, geo.diffracted)                       # (T, SS, S, P)

    hkl = miller_indices(scene, scat, first_sub)                        # (PM, K)
    need_skip = cp and (any(ov) or scene.interpolate) or detail
    h0 = [_rounded(h) for h in hkl] if (detail or scene.sf.count > 0 or
                                        scene.shape != "square") else None
    comps = None
    if detail:
        F_latt, comps = lattice_factor(scene, hkl, h0)
        L2 = F_latt * F_latt
    else:
        # only interpolation reads the fractional Miller indices again (a lookup reads h0)
        L2 = lattice_factor_squared(scene, hkl, h0, consume=not scene.interpolate)
        F_latt = None
    valid_k = None if valid is None else valid.reshape(1, -1)
    executed = None
    if need_skip and scene.water_size == 0.0:
        executed = L2 != 0.0
    if valid_k is not None:
        executed = valid_k if executed is None else executed & valid_k
    F_cell, new_killed, killed_rows = structure_factors(scene, hkl, h0, executed, killed, order)
    F_cell = F_cell.to(scene.work_dtype)
    if not (cp or detail or F_cell.dim() or L2.requires_grad or F_cell.requires_grad):
        # one F for every evaluation (-default_F only): F² scales each sub-pixel's sum instead
        # of every evaluation; L2 is this chunk's own scratch, summed in place
        term, F2_per_sub = L2, F_cell * F_cell
    elif F_cell.shape == L2.shape and not (detail or F_cell.requires_grad or L2.requires_grad):
        # F_cell is this chunk's own lookup result: squared and weighted in place
        term, F2_per_sub = F_cell.mul_(F_cell).mul_(L2), None
    else:
        term, F2_per_sub = L2 * (F_cell * F_cell), None
    if valid_k is not None:
        term = torch.where(valid_k, term, torch.zeros((), dtype=term.dtype, device=device))

    # --- reduction and scaling ------------------------------------------------------------
    # C-parity quirk (pixel-level caches): polarization once per pixel, at the first (sub-pixel,
    # source) that passes -dmin, reused for every source (docs/differences.md #7); the default
    # mode's reduction weighs every source by its own factor. (Traces print polar_pixel in both.)
    if scene.nopolar:
        polar_pixel = torch.ones(P, dtype=dtype, device=device)
    elif valid is None:
        polar_pixel = pol_all[0, 0, 0]
    else:
        flat_valid = valid.reshape(-1, P)                               # (T·SS·S, P)
        first_valid = torch.argmax(flat_valid.to(torch.int8), dim=0)
        polar_pixel = pol_all.reshape(-1, P).gather(0, first_valid[None, :])[0]
        polar_pixel = torch.where(flat_valid.any(0), polar_pixel, torch.zeros_like(polar_pixel))
    cf_last = geo.cf_sub[T - 1, 0]
    if cp:
        I, value = _reduce_c_parity(scene, term, geo, pol_all, executed, order, polar_pixel,
                                    cf_last, omega_pixel, ov)
    else:
        I, value = _reduce_default(scene, term, geo, pol_all, valid, omega_used, ov, F2_per_sub)

    omega_px = omega_used.sum((0, 1))
    out = ChunkOutput(values=value, I=I, omega_sum=omega_px.sum(), killed=new_killed,
                      killed_rows=killed_rows, omega_px=omega_px)
    if detail:
        out.detail = KernelDetail(
            geo=geo, omega_used=omega_used, scat=scat, valid=valid, hkl=hkl, h0=h0, F_latt=F_latt,
            comps=comps, F_cell=F_cell, executed=executed, pol_all=pol_all,
            polar_pixel=polar_pixel, cf_last=cf_last, omega_pixel=omega_pixel)
    return out
