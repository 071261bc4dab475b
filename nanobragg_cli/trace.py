"""Per-pixel trace: the kernel's intermediates for one pixel as TRACE_PY lines and JSON.

Lines mirror nanoBragg.c's ``TRACE_C:`` lines key for key, in the same order and repetition
(geometry per sub-pixel and layer for source 0; lattice lines and ``TRACE_PY_PHI`` per φ step for
source 0 and mosaic domain 0; ``TRACE_PY_SOURCE2:`` lines for source 2; the final scaling block),
numbers as ``%.15g``. Keys print what the C keys print, including ``scattering_vec_A_inv`` in m⁻¹
and ``rot_*_star_A_inv`` as the unrotated reciprocal vectors.

A traced pixel is rendered again on its own with the kernel's ``detail=True``
(:func:`trace_pixel`); :func:`pixel_trace` turns the kernel's intermediates into a
:class:`PixelTrace`, the one record :func:`trace_records` and :func:`printout_lines` read.
"""

from dataclasses import dataclass, fields
import math

import numpy as np
import torch
from torch import Tensor

from .constants import R_E_SQR, RTD
from .kernel import KernelDetail, render_chunk
from .tracefmt import is_integer_key

PREFIX = "TRACE_PY:"


def _g(x) -> str:
    return "%.15g" % float(x)


def _vec(x) -> str:
    return " ".join(_g(v) for v in np.asarray(x, dtype=np.float64).reshape(-1))


@dataclass
class PixelTrace:
    """The intermediates of one traced pixel, in nanoBragg.c's loop order (layer T, sub-pixel SS,
    source S, φ step Φ, mosaic domain M). Lengths in m, solid angles in sr.

    pos: (T, SS, 3) sub-pixel positions; airpath: (T, SS) distances from the sample;
    diffracted: (T, SS, 3) unit directions; omega: (T, SS) solid angle each sub-pixel is scaled
    by; incident: (S, 3) unit incident directions; lam: (S,) wavelengths; scat: (T, SS, S, 3)
    scattering vectors (m⁻¹); valid: (T, SS, S) bool, passes -dmin; h, h0: (T, SS, S, Φ, M, 3)
    fractional and rounded Miller indices; F_latt: (T, SS, S, Φ, M) signed lattice factor;
    comps: three such per-axis factors (square shape) or None; F_cell: (T, SS, S, Φ, M);
    executed: (T, SS, S, Φ, M) bool, the evaluations nanoBragg.c does not skip; polar:
    (T, SS, S) polarization factor each evaluation is scaled by; I, value: 0-dim, the pixel's I
    before scaling and its final value (photons), as the image holds them; capture_fraction,
    polar_final, omega_final: 0-dim, the factors of the final scaling block; orient,
    orient_first: (Φ, M, 3, 3) real cell vectors (m) per step and domain, the second for the
    first executed sub-iteration (c-parity φ=0 carryover) or None; first_ts: (layer, sub-pixel,
    source) of that sub-iteration when it is this pixel's, else None."""
    pos: Tensor
    airpath: Tensor
    diffracted: Tensor
    omega: Tensor
    incident: Tensor
    lam: Tensor
    scat: Tensor
    valid: Tensor
    h: Tensor
    h0: Tensor
    F_latt: Tensor
    comps: list | None
    F_cell: Tensor
    executed: Tensor
    polar: Tensor
    I: Tensor
    value: Tensor
    capture_fraction: Tensor
    polar_final: Tensor
    omega_final: Tensor
    orient: Tensor
    orient_first: Tensor | None
    first_ts: tuple | None


def pixel_trace(scene, d: KernelDetail, I: Tensor, value: Tensor,
                first_ts: tuple | None) -> PixelTrace:
    """The :class:`PixelTrace` of the one pixel of a ``detail=True`` kernel run (P = 1), with
    ``I`` and ``value`` the pixel's own from the image's render."""
    T, SS, _ = d.geo.airpath.shape
    S = scene.n_src
    Phi, M = scene.n_phi, scene.n_mos
    device = scene.device
    K_shape = d.hkl[0].shape

    def sub(x):      # (T, SS, P) -> (T, SS) of pixel 0
        return x[:, :, 0]

    def src(x):      # (T, SS, S, P) -> (T, SS, S)
        return x[..., 0]

    def ev(x):       # (Φ·M, K) -> (T, SS, S, Φ, M)
        x = x.expand(K_shape) if x.dim() == 0 or x.shape != K_shape else x
        return x.reshape(Phi, M, T, SS, S, -1)[..., 0].permute(2, 3, 4, 0, 1)

    valid = (torch.ones(T, SS, S, dtype=torch.bool, device=device) if d.valid is None
             else src(d.valid))
    pol_all = src(d.pol_all)
    if scene.oversample_polar:
        ok = valid.reshape(-1).nonzero()
        polar_final = pol_all.reshape(-1)[ok[-1, 0]] if ok.numel() else d.polar_pixel[0]
        polar = pol_all
    else:
        polar_final = d.polar_pixel[0]
        polar = d.polar_pixel[0].expand(pol_all.shape)
    return PixelTrace(
        pos=torch.stack([sub(c) for c in d.geo.pos], -1), airpath=sub(d.geo.airpath),
        diffracted=torch.stack([sub(c) for c in d.geo.diffracted], -1),
        omega=sub(d.omega_used), incident=-scene.source_dirs, lam=scene.source_lambda,
        scat=torch.stack([src(c) for c in d.scat], -1), valid=valid,
        h=torch.stack([ev(h) for h in d.hkl], -1), h0=torch.stack([ev(h) for h in d.h0], -1),
        F_latt=ev(d.F_latt), comps=None if d.comps is None else [ev(c) for c in d.comps],
        F_cell=ev(d.F_cell),
        executed=(torch.ones(T, SS, S, Phi, M, dtype=torch.bool, device=device)
                  if d.executed is None else ev(d.executed)),
        polar=polar, I=I, value=value,
        capture_fraction=(d.geo.cf_sub[T - 1, SS - 1, 0] if scene.oversample_thick
                          else d.cf_last[0]),
        polar_final=polar_final,
        omega_final=(d.geo.omega_sub[T - 1, SS - 1, 0] if scene.oversample_omega
                     else d.omega_pixel[0]),
        orient=scene.orient, orient_first=scene.orient_first, first_ts=first_ts)


def trace_pixel(scene, one: Tensor, main, row: int, killed: Tensor,
                first_local: tuple | None) -> PixelTrace:
    """The :class:`PixelTrace` of pixel ``one`` (a (1,) flat index), row ``row`` of the chunk
    whose render is ``main`` (a kernel ChunkOutput): the same kernel run on that pixel alone with
    ``detail=True``, its state (kill-switch ``killed`` before the chunk, first sub-iteration
    ``first_local`` in chunk rows) taken from the chunk, and I and the pixel value taken from the
    chunk's own render so that the trace prints exactly what the image holds."""
    state = killed if main.killed_rows is None else main.killed_rows[row]
    first = None
    if first_local is not None and first_local[0] == row:
        first = (0,) + tuple(first_local[1:])
    d = render_chunk(scene, one, state, first, detail=True).detail
    return pixel_trace(scene, d, main.I[row], main.values[row],
                       None if first is None else tuple(first[1:]))


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _as_numpy(cap: PixelTrace) -> PixelTrace:
    """The same record with every tensor as a float64 numpy array (bool arrays stay bool)."""
    def conv(v):
        if isinstance(v, Tensor):
            return v.cpu().numpy() if v.dtype == torch.bool else _np(v)
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v
    return PixelTrace(**{f.name: conv(getattr(cap, f.name)) for f in fields(cap)})


def _subpixel_geometry_lines(emit, scene, cap: PixelTrace, t: int, ss: int) -> None:
    """The geometry lines of layer t, sub-pixel ss (source 0)."""
    det = scene.det
    pos, air, diff = cap.pos, cap.airpath, cap.diffracted
    inc, lam, scat = cap.incident, cap.lam, cap.scat
    close = float(det.close_distance)
    emit("pix0_vector_meters", _vec(_np(det.pix0)))
    emit("fdet_vec", _vec(_np(det.fdet)))
    emit("sdet_vec", _vec(_np(det.sdet)))
    emit("pixel_pos_meters", _vec(pos[t, ss]))
    emit("R_distance_meters", _g(air[t, ss]))
    emit("omega_pixel_sr", _g(cap.omega[t, ss]))
    emit("close_distance_meters", _g(close))
    emit("obliquity_factor", _g(close / air[t, ss]))
    emit("diffracted_vec", _vec(diff[t, ss]))
    emit("incident_vec", _vec(inc[0]))
    emit("lambda_meters", _g(lam[0]))
    emit("lambda_angstroms", _g(lam[0] * 1e10))
    emit("scattering_vec_A_inv", _vec(scat[t, ss, 0]))


def _lattice_lines(emit, scene, cap: PixelTrace, t: int, ss: int, per_phi: list) -> None:
    """The lattice lines of layer t, sub-pixel ss, source 0 (φ step 0, then one TRACE_PY_PHI
    line per φ step), appending the per-φ entries to ``per_phi``."""
    h, h0, F_latt, F_cell = cap.h, cap.h0, cap.F_latt, cap.F_cell
    comps, executed = cap.comps, cap.executed
    orient, orient_first = cap.orient, cap.orient_first
    phis = _np(scene.phis)
    lat = scene.lattice
    square = scene.shape == "square"
    first = cap.first_ts == (t, ss, 0) and orient_first is not None
    rot = (orient_first if first else orient)[0, 0]
    for name, v in zip("abc", rot):
        emit(f"rot_{name}_angstroms", _vec(v * 1e10))
    for name, v in zip("abc", (lat.a_star, lat.b_star, lat.c_star)):
        emit(f"rot_{name}_star_A_inv", _vec(_np(v)))
    emit("hkl_frac", _vec(h[t, ss, 0, 0, 0]))
    emit("hkl_rounded", " ".join("%d" % int(v) for v in h0[t, ss, 0, 0, 0]))
    if square:
        for name, c in zip("abc", comps):
            emit(f"F_latt_{name}", _g(c[t, ss, 0, 0, 0]))
        emit("F_latt", _g(F_latt[t, ss, 0, 0, 0]))
    for k in range(len(phis)):
        if square:
            entry = dict(layer=t, subpixel=ss, phi_tic=k, phi_deg=float(phis[k] * RTD),
                         k_frac=float(h[t, ss, 0, k, 0, 1]),
                         F_latt_b=float(comps[1][t, ss, 0, k, 0]),
                         F_latt=float(F_latt[t, ss, 0, k, 0]))
            per_phi.append(entry)
            emit("PHI", "phi_tic=%d phi_deg=%s k_frac=%s F_latt_b=%s F_latt=%s" % (
                k, _g(entry["phi_deg"]), _g(entry["k_frac"]), _g(entry["F_latt_b"]),
                _g(entry["F_latt"])), ns="PHI")
        if k == 0 and executed[t, ss, 0, 0, 0]:
            emit("F_cell", _g(F_cell[t, ss, 0, 0, 0]))


def _source2_lines(emit, cap: PixelTrace, t: int, ss: int) -> None:
    """The TRACE_PY_SOURCE2 lines of layer t, sub-pixel ss (φ step 0, mosaic domain 0)."""
    F_cell, F_latt = cap.F_cell, cap.F_latt
    inc, diff, polar, lam = cap.incident, cap.diffracted, cap.polar, cap.lam
    fc, fl = F_cell[t, ss, 2, 0, 0], F_latt[t, ss, 2, 0, 0]
    for key, val in (("F_cell", fc), ("F_latt", fl), ("F_cell_squared", fc * fc),
                     ("F_latt_squared", fl * fl), ("I_contribution", fc * fc * fl * fl),
                     ("polar", polar[t, ss, 2]),
                     ("cos2theta", float(np.dot(inc[2], diff[t, ss]))),
                     ("lambda_angstroms", lam[2] * 1e10)):
        emit(key, _g(val), ns="SOURCE2")
    emit("source_index", "2", ns="SOURCE2")


def _final_lines(scene, cap: PixelTrace) -> list:
    """[(key, text)] of the final scaling block."""
    inc, diff = cap.incident, cap.diffracted
    T, SS, S = diff.shape[0], diff.shape[1], inc.shape[0]
    value = float(cap.value)
    return [
        ("I_before_scaling", _g(cap.I)),
        ("r_e_meters", _g(math.sqrt(R_E_SQR))),
        ("r_e_sqr", _g(R_E_SQR)),
        ("fluence_photons_per_m2", _g(scene.fluence)),
        ("steps", "%d" % scene.steps),
        ("oversample_thick", "%d" % int(scene.oversample_thick)),
        ("oversample_polar", "%d" % int(scene.oversample_polar)),
        ("oversample_omega", "%d" % int(scene.oversample_omega)),
        ("capture_fraction", _g(cap.capture_fraction)),
        ("polar", _g(cap.polar_final)),
        ("omega_pixel", _g(cap.omega_final)),
        ("cos_2theta", _g(np.dot(inc[S - 1], diff[T - 1, SS - 1]))),
        ("I_pixel_final", _g(value)),
        ("floatimage_accumulated", _g(np.float32(value))),
    ]


def trace_records(scene, cap: PixelTrace) -> tuple:
    """(lines, record) for a traced pixel: lines without prefix ('key values') in emission
    order with their namespace, and a JSON-able record with a per-φ list."""
    cap = _as_numpy(cap)
    T, SS = cap.pos.shape[0], cap.pos.shape[1]
    S = cap.incident.shape[0]
    valid, executed = cap.valid, cap.executed
    lines = []   # (namespace, key, text)
    per_phi = []

    def emit(key, text, ns="C"):
        lines.append((ns, key, text))

    for t in range(T):
        for ss in range(SS):
            _subpixel_geometry_lines(emit, scene, cap, t, ss)
            if valid[t, ss, 0]:
                _lattice_lines(emit, scene, cap, t, ss, per_phi)
            if S > 2 and valid[t, ss, 2] and executed[t, ss, 2, 0, 0]:
                _source2_lines(emit, cap, t, ss)
    final = _final_lines(scene, cap)
    for key, text in final:
        emit(key, text)
    record = {"lines": [{"namespace": ns, "key": k, "values": _numbers(k, t)}
                        for ns, k, t in lines if ns != "PHI"],
              "per_phi": per_phi,
              "final": {k: _numbers(k, t)[0] for k, t in final}}
    return lines, record


def _numbers(key: str, text: str) -> list:
    """The numbers of a trace line's value text (ints for the integer keys, e.g. hkl_rounded)."""
    convert = int if is_integer_key(key) else float
    return [convert(v) for v in text.split()]


def format_lines(lines: list, prefix: str = "TRACE_PY") -> list:
    """TRACE_PY text lines from (namespace, key, text) records."""
    out = []
    for ns, key, text in lines:
        if ns == "PHI":
            out.append(f"{prefix}_PHI {text}")
        elif ns == "SOURCE2":
            out.append(f"{prefix}_SOURCE2: {key} {text}")
        else:
            out.append(f"{prefix}: {key} {text}")
    return out


def printout_lines(scene, cap: PixelTrace, pixel: tuple) -> list:
    """nanoBragg.c's ``-printout_pixel F S`` block for one pixel: the values its variables hold
    after the pixel's last evaluation (last layer, sub-pixel, source, φ step and mosaic domain).

    pixel: (slow, fast). Formats as nanoBragg.c prints them (``%g``, ``%f``, ``%15.10g``).
    """
    pos = _np(cap.pos)[-1, -1]
    scat = _np(cap.scat)[-1, -1, -1]
    h = _np(cap.h)[-1, -1, -1, -1, -1]
    h0 = _np(cap.h0)[-1, -1, -1, -1, -1]
    F_latt = float(_np(cap.F_latt)[-1, -1, -1, -1, -1])
    F_cell = float(_np(cap.F_cell)[-1, -1, -1, -1, -1])
    rot = _np(cap.orient)[-1, -1] * 1e10
    stol = 0.5 * float(np.sqrt((scat * scat).sum()))
    twotheta = math.atan2(math.sqrt(pos[1] ** 2 + pos[2] ** 2), pos[0])
    stol_nominal = math.sin(twotheta / 2.0) / (scene.wavelength * 1e10)
    I = float(cap.I)
    s, f = pixel
    lines = ["%4d %4d : stol = %g or %g" % (f, s, stol, stol_nominal),
             "at %g %g %g" % tuple(pos),
             "hkl= %f %f %f  hkl0= %d %d %d" % (*h, *(int(x) for x in h0)),
             " F_cell=%g  F_latt=%g   I = %g" % (F_cell, F_latt, I),
             "I/steps %15.10g" % (I / scene.steps),
             "polar   %15.10g" % float(cap.polar_final),
             "omega   %15.10g" % float(cap.omega_final),
             "capfrac %15.10g" % float(cap.capture_fraction),
             "pixel   %15.10g" % float(np.float32(float(cap.value))),
             "real-space cell vectors (Angstrom):",
             "     %-10s  %-10s  %-10s" % ("a", "b", "c")]
    for axis, name in enumerate("XYZ"):
        lines.append("%s: %11.8f %11.8f %11.8f" % (name, rot[0][axis], rot[1][axis], rot[2][axis]))
    return lines
