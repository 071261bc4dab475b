"""The tensor kernel: intensity of a chunk of pixels, broadcast over every sampling dimension.

For a chunk of P pixels the kernel evaluates all sensor layers (T), sub-pixels (SS = os²),
sources (S), φ steps (Φ) and mosaic domains (M) as tensor dimensions, laid out as
(P, T, SS, S, Φ, M) -- nanoBragg.c's loop order, so a flattened index is C's execution order.
Pixel geometry (positions, solid angle, absorption, polarization) is computed once per
(P, T, SS[, S]) and reused across φ and mosaic domains; Miller indices come from one matrix product
of the scattering vectors with all rotated cells.

``c_parity`` selects nanoBragg.c's single-threaded arithmetic where it differs from correct
physics; each such place is marked "C-parity quirk" and listed in the README.
"""

from dataclasses import dataclass
import math

import torch
from torch import Tensor

from .physics import (GAUSS_WIDTH, ROUND_XTAL_SCALE, TOPHAT_CUT, capture_fraction,
                      polarization_factor, sinc3, sincg_direct, sincg_reduced, solid_angle)
from .geometry.rotation import dot, norm, rotate_axis
from .scene import R_E_SQR, WATER_F, Scene


@dataclass
class ChunkOutput:
    """values: (P,) pixel intensities (photons); omega_sum: scalar Σ of the solid angles used;
    killed: interpolation kill-switch state after the chunk (c-parity); traces: captured
    intermediates of traced pixels, keyed by row."""
    values: Tensor
    omega_sum: Tensor
    killed: Tensor
    traces: dict


def subpixel_positions(scene: Scene, sp: Tensor, fp: Tensor) -> Tensor:
    """(P, T, SS, 3) positions (m) of every sub-pixel centre of every sensor layer.

    sp, fp: (P,) slow/fast pixel indices (as floats). Follows nanoBragg.c: sub-pixel centre
    Fdet = sub·(fpixel·os + subF) + sub/2, layer offset Odet = layer·thickstep along the normal.
    """
    det, os_ = scene.det, scene.oversample
    sub = scene.subpixel_size
    k = torch.arange(os_, dtype=scene.dtype, device=scene.device)
    Fdet = sub * (fp[:, None] * os_ + k) + sub / 2.0                      # (P, os) fast
    Sdet = sub * (sp[:, None] * os_ + k) + sub / 2.0                      # (P, os) slow
    Odet = torch.arange(scene.thicksteps, dtype=scene.dtype, device=scene.device) * scene.thickstep
    pos = (Fdet[:, None, None, :, None] * det.fdet + Sdet[:, None, :, None, None] * det.sdet +
           Odet[None, :, None, None, None] * det.odet + det.pix0)         # (P, T, osS, osF, 3)
    pos = pos.reshape(sp.shape[0], scene.thicksteps, os_ * os_, 3)
    if scene.cfg.detector.curved:
        # pixels on a sphere of radius `distance`: detector coordinates used as angles, as in C
        det_d = det.distance
        start = (det_d * det.beam).expand_as(pos)
        swung = rotate_axis(start, det.sdet, pos[..., 1] / det_d)
        pos = rotate_axis(swung, det.fdet, pos[..., 2] / det_d)
    return pos


def lattice_factor(scene: Scene, h: Tensor, h0: Tensor) -> tuple:
    """F_latt of the crystal shape and, for the square shape, the per-axis factors.

    h, h0: (..., 3) fractional and rounded Miller indices. Returns (F_latt (...), (Fa, Fb, Fc) or
    None).
    """
    N = scene.N
    frac = h - h0
    if scene.shape == "square":
        comps = []
        for i in range(3):
            if N.requires_grad:
                comps.append(sincg_direct(h[..., i], N[i]))
            elif float(N[i]) > 1.0:
                comps.append(sincg_reduced(frac[..., i], h0[..., i], N[i]))
            else:
                comps.append(None)
        one = torch.ones_like(h[..., 0])
        comps = [one if c is None else c for c in comps]
        return comps[0] * comps[1] * comps[2], comps
    Na, Nb, Nc = N[0], N[1], N[2]
    if scene.shape == "round":
        hrad = (frac[..., 0] * frac[..., 0] * Na * Na + frac[..., 1] * frac[..., 1] * Nb * Nb +
                frac[..., 2] * frac[..., 2] * Nc * Nc)
        arg = math.pi * torch.sqrt(hrad * scene.fudge)
        return Na * Nb * Nc * ROUND_XTAL_SCALE * sinc3(arg), None
    recip = torch.stack((scene.lattice.a_star, scene.lattice.b_star, scene.lattice.c_star))
    d_star = (frac[..., 0:1] * recip[0] + frac[..., 1:2] * recip[1] + frac[..., 2:3] * recip[2])
    rad = (d_star[..., 0] * d_star[..., 0] + d_star[..., 1] * d_star[..., 1] +
           d_star[..., 2] * d_star[..., 2]) * Na * Na * Nb * Nb * Nc * Nc
    if scene.shape == "gauss":
        return Na * Nb * Nc * torch.exp(-(rad / GAUSS_WIDTH * scene.fudge)), None
    return Na * Nb * Nc * (rad * scene.fudge < TOPHAT_CUT).to(h.dtype), None


def _first_valid_index(valid: Tensor) -> tuple:
    """For (P, K) booleans: index of the first True per row (0 if none) and whether any."""
    any_valid = valid.any(dim=1)
    first = torch.argmax(valid.to(torch.int8), dim=1)
    return first, any_valid


def render_chunk(scene: Scene, pix: Tensor, killed: Tensor, first_sub: tuple | None = None,
                 trace_rows: list = ()) -> ChunkOutput:
    """Render the pixels with flat indices ``pix`` (P,) (raster order, slow-major).

    killed: c-parity interpolation kill-switch state before this chunk (bool scalar tensor).
    first_sub: (row in pix, layer, sub-pixel, source) of the first sub-iteration nanoBragg.c
    executes (c-parity φ=0 carryover), when it lies in this chunk. trace_rows: rows of ``pix``
    whose intermediates are captured for tracing.
    """
    cp = scene.c_parity
    smp = scene.cfg.sampling
    det = scene.det
    dtype, device = scene.dtype, scene.device
    P, T, SS = pix.shape[0], scene.thicksteps, scene.oversample ** 2
    S, PHI, M = scene.n_src, scene.n_phi, scene.n_mos
    sp = torch.div(pix, scene.fpixels, rounding_mode="floor").to(dtype)
    fp = torch.remainder(pix, scene.fpixels).to(dtype)

    # --- per sub-pixel geometry: (P, T, SS) ------------------------------------------------
    pos = subpixel_positions(scene, sp, fp)
    airpath = norm(pos)
    diffracted = pos / airpath.unsqueeze(-1)
    omega_sub = solid_angle(det.pixel_size, airpath, det.close_distance,
                            scene.cfg.detector.point_pixel)
    omega_pixel = omega_sub[:, 0, 0]
    if scene.detector_thick == 0.0:
        cf_sub = torch.ones_like(airpath)
    else:
        layer = torch.arange(T, dtype=dtype, device=device)[None, :, None]
        parallax = dot(diffracted, det.odet)
        cf_sub = capture_fraction(layer, scene.thickstep, scene.mu, parallax)
    omega_used = omega_sub if smp.oversample_omega else omega_pixel[:, None, None].expand(P, T, SS)

    # --- per source: (P, T, SS, S) --------------------------------------------------------
    incident = -scene.source_dirs                                          # (S, 3)
    lam = scene.source_lambda
    scat = (diffracted[:, :, :, None, :] - incident) / lam[:, None]        # (P, T, SS, S, 3)
    if scene.dmin > 0.0:
        stol = 0.5 * norm(scat)
        valid = ~((stol > 0.0) & (scene.dmin > 0.5 / torch.where(stol > 0, stol, 1.0)))
    else:
        valid = torch.ones(P, T, SS, S, dtype=torch.bool, device=device)
    kahn = scene.kahn if scene.kahn.requires_grad else float(scene.kahn)
    pol_all = polarization_factor(kahn, incident, diffracted[:, :, :, None, :], scene.polar_vector)

    # --- Miller indices for every (φ, mosaic) orientation ---------------------------------
    A = scene.orient.reshape(PHI * M * 3, 3)
    h = (scat.reshape(-1, 3) @ A.T).reshape(P, T, SS, S, PHI, M, 3)
    orient_row0 = scene.orient[0, 0]
    if first_sub is not None and scene.orient_first is not None:
        # C-parity quirk (φ=0 carryover): the first sub-iteration nanoBragg.c executes still sees
        # the unrotated crystal at φ=0; every later one reuses the last φ step's rotation.
        r, t, ss, s = first_sub
        A1 = scene.orient_first.reshape(PHI * M * 3, 3)
        h_first = (scat[r, t, ss, s] @ A1.T).reshape(1, PHI, M, 3)
        idx = tuple(torch.tensor([v], device=device) for v in (r, t, ss, s))
        h = h.index_put(idx, h_first)
    h0 = torch.ceil(h - 0.5)
    F_latt, comps = lattice_factor(scene, h, h0)
    skipped = (F_latt == 0.0) if scene.cfg.sampling.water_size == 0.0 else torch.zeros_like(F_latt, dtype=torch.bool)
    executed = valid[..., None, None] & ~skipped                           # (P, T, SS, S, Φ, M)

    # --- structure factors ------------------------------------------------------------------
    sf = scene.sf
    new_killed = killed
    if scene.interpolate:
        hh, kk, ll = h[..., 0], h[..., 1], h[..., 2]
        nearest = sf.nearest(h0[..., 0], h0[..., 1], h0[..., 2])
        oob = sf.out_of_range(hh, kk, ll)
        interp = sf.tricubic(hh, kk, ll)
        if cp:
            # C-parity quirk (interpolation kill-switch): the first out-of-range neighbourhood in
            # loop order switches interpolation off for everything after it, itself included.
            hit = (oob & executed).reshape(-1)
            off = killed | (torch.cumsum(hit.to(torch.int32), 0) > 0).reshape(oob.shape)
            new_killed = killed | hit.any()
        else:
            # interpolate wherever the 4x4x4 block lies in the grid (C's test refuses a margin more)
            off = sf.block_outside(hh, kk, ll)
        F_cell = torch.where(off, nearest, interp)
    elif sf.count > 0:
        F_cell = sf.nearest(h0[..., 0], h0[..., 1], h0[..., 2])
    else:
        F_cell = torch.full((), sf.default_F, dtype=dtype, device=device)
    term = F_cell * F_cell * F_latt * F_latt
    term = torch.where(executed, term, torch.zeros((), dtype=dtype, device=device))

    # --- reduction and scaling ---------------------------------------------------------------
    r_e2_fluence = R_E_SQR * scene.fluence
    flat_valid = valid.reshape(P, T * SS * S)
    first_valid, any_valid = _first_valid_index(flat_valid)
    if scene.nopolar:
        polar_pixel = torch.ones(P, dtype=dtype, device=device)
    else:
        polar_pixel = pol_all.reshape(P, -1).gather(1, first_valid[:, None])[:, 0]
        polar_pixel = torch.where(any_valid, polar_pixel, torch.zeros_like(polar_pixel))
    ov = (smp.oversample_thick, smp.oversample_polar, smp.oversample_omega)
    if cp:
        if any(ov):
            # C-parity quirk (-oversample_* flags): each factor multiplies the running sum I in
            # every innermost iteration, I <- (I + term)·factor, so earlier terms are scaled again.
            g = torch.ones(P, T, SS, S, dtype=dtype, device=device)
            if ov[0]:
                g = g * cf_sub[..., None]
            if ov[1]:
                g = g * pol_all
            if ov[2]:
                g = g * omega_sub[..., None]
            g = torch.where(executed, g[..., None, None], torch.ones((), dtype=dtype, device=device))
            g = g.reshape(P, -1)
            suffix = torch.flip(torch.cumprod(torch.flip(g, (1,)), 1), (1,))
            I = scene.I_bg * suffix[:, 0] + (term.reshape(P, -1) * suffix).sum(1)
        else:
            I = scene.I_bg + term.reshape(P, -1).sum(1)
        value = r_e2_fluence * I / scene.steps
        # C-parity quirk (sensor layers): the sum over layers is scaled by the LAST layer's
        # capture fraction only (and layers are not counted in `steps`).
        cf_last = cf_sub[:, T - 1, 0]
        if not ov[0]:
            value = value * cf_last
        if not ov[1]:
            value = value * polar_pixel
        if not ov[2]:
            value = value * omega_pixel
    else:
        cf_w = cf_sub if ov[0] else cf_sub[:, :, 0:1].expand(P, T, SS)
        if scene.nopolar:
            pol_w = torch.ones_like(pol_all)
        else:
            pol_w = pol_all if ov[1] else pol_all[:, 0:1, 0:1, :].expand(P, T, SS, S)
        weight = cf_w[..., None] * pol_w * omega_used[..., None]          # (P, T, SS, S)
        bragg = term.sum(dim=(-2, -1))                                     # (P, T, SS, S)
        bg = scene.water_molecules * WATER_F * WATER_F * PHI * M * valid.to(dtype)
        I = (bragg + bg)
        value = r_e2_fluence * (I * weight).reshape(P, -1).sum(1) / scene.steps
        cf_last = cf_sub[:, T - 1, 0]
        I = I.reshape(P, -1).sum(1)

    omega_sum = omega_used.sum()

    traces = {row: _capture_trace(scene, row, first_sub, pos, airpath, diffracted, omega_used,
                                  incident, lam, scat, valid, h, h0, F_latt, comps, F_cell,
                                  executed, pol_all, polar_pixel, cf_sub, omega_sub, I, value,
                                  cf_last, omega_pixel)
              for row in trace_rows}
    return ChunkOutput(values=value, omega_sum=omega_sum, killed=new_killed, traces=traces)


def _capture_trace(scene, r, first_sub, pos, airpath, diffracted, omega_used, incident, lam, scat,
                   valid, h, h0, F_latt, comps, F_cell, executed, pol_all, polar_pixel, cf_sub,
                   omega_sub, I, value, cf_last, omega_pixel) -> dict:
    """Slices of the kernel's intermediates for one pixel (row r), for :mod:`nanobragg_cli.trace`."""
    smp = scene.cfg.sampling
    T, SS = pos.shape[1], pos.shape[2]
    S = incident.shape[0]
    if first_sub is not None and first_sub[0] == r and scene.orient_first is not None:
        first_ts = (first_sub[1], first_sub[2], first_sub[3])
    else:
        first_ts = None
    F_cell_full = F_cell.expand_as(F_latt) if F_cell.dim() == 0 else F_cell
    pol_trace = pol_all[r] if (smp.oversample_polar) else polar_pixel[r].expand(T, SS, S)
    if scene.cfg.sampling.oversample_polar:
        last = valid[r].reshape(-1).nonzero()
        polar_final = pol_all[r].reshape(-1)[last[-1, 0]] if last.numel() else polar_pixel[r]
    else:
        polar_final = polar_pixel[r]
    return dict(
        pos=pos[r], airpath=airpath[r], diffracted=diffracted[r], omega=omega_used[r],
        incident=incident, lam=lam, scat=scat[r], valid=valid[r], h=h[r], h0=h0[r],
        F_latt=F_latt[r], comps=None if comps is None else [c[r] for c in comps],
        F_cell=F_cell_full[r], executed=executed[r], polar=pol_trace, I=I[r], value=value[r],
        capture_fraction=(cf_sub[r, T - 1, SS - 1] if smp.oversample_thick else cf_last[r]),
        polar_final=polar_final,
        omega_final=(omega_sub[r, T - 1, SS - 1] if smp.oversample_omega else omega_pixel[r]),
        orient=scene.orient, orient_first=scene.orient_first, first_ts=first_ts,
    )
