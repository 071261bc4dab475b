"""Per-pixel trace: the kernel's intermediates for one pixel as TRACE_PY lines and JSON.

Lines mirror nanoBragg.c's ``TRACE_C:`` lines key for key, in the same order and repetition
(geometry per sub-pixel and layer for source 0; lattice lines and ``TRACE_PY_PHI`` per φ step for
source 0 and mosaic domain 0; ``TRACE_PY_SOURCE2:`` lines for source 2; the final scaling block),
numbers as ``%.15g``. Keys print what the C keys print, including ``scattering_vec_A_inv`` in m⁻¹
and ``rot_*_star_A_inv`` as the unrotated reciprocal vectors.
"""

import math

import numpy as np

from .constants import R_E_SQR, RTD
from .tracefmt import is_integer_key

PREFIX = "TRACE_PY:"


def _g(x) -> str:
    return "%.15g" % float(x)


def _vec(x) -> str:
    return " ".join(_g(v) for v in np.asarray(x, dtype=np.float64).reshape(-1))


def trace_records(scene, cap: dict) -> tuple:
    """(lines, record) for a captured pixel: lines without prefix ('key values') in emission
    order with their namespace, and a JSON-able record with a per-φ list."""
    det = scene.det
    to_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    pos, air, diff = to_np(cap["pos"]), to_np(cap["airpath"]), to_np(cap["diffracted"])
    omega, inc, lam = to_np(cap["omega"]), to_np(cap["incident"]), to_np(cap["lam"])
    scat, valid, h, h0 = to_np(cap["scat"]), cap["valid"].cpu().numpy(), to_np(cap["h"]), to_np(cap["h0"])
    F_latt, F_cell = to_np(cap["F_latt"]), to_np(cap["F_cell"])
    comps = None if cap["comps"] is None else [to_np(c) for c in cap["comps"]]
    executed = cap["executed"].cpu().numpy()
    polar = to_np(cap["polar"])
    orient = to_np(cap["orient"])
    orient_first = None if cap["orient_first"] is None else to_np(cap["orient_first"])
    phis = to_np(scene.phis)
    lat = scene.lattice
    stars = [to_np(v) for v in (lat.a_star, lat.b_star, lat.c_star)]
    pix0, fdet, sdet = to_np(det.pix0), to_np(det.fdet), to_np(det.sdet)
    close = float(det.close_distance)
    square = scene.shape == "square"
    T, SS = pos.shape[0], pos.shape[1]
    S = inc.shape[0]

    lines = []   # (namespace, key, text)
    per_phi = []

    def emit(key, text, ns="C"):
        lines.append((ns, key, text))

    for t in range(T):
        for ss in range(SS):
            emit("pix0_vector_meters", _vec(pix0))
            emit("fdet_vec", _vec(fdet))
            emit("sdet_vec", _vec(sdet))
            emit("pixel_pos_meters", _vec(pos[t, ss]))
            emit("R_distance_meters", _g(air[t, ss]))
            emit("omega_pixel_sr", _g(omega[t, ss]))
            emit("close_distance_meters", _g(close))
            emit("obliquity_factor", _g(close / air[t, ss]))
            emit("diffracted_vec", _vec(diff[t, ss]))
            emit("incident_vec", _vec(inc[0]))
            emit("lambda_meters", _g(lam[0]))
            emit("lambda_angstroms", _g(lam[0] * 1e10))
            emit("scattering_vec_A_inv", _vec(scat[t, ss, 0]))
            if valid[t, ss, 0]:
                first = cap["first_ts"] == (t, ss, 0) and orient_first is not None
                rot = (orient_first if first else orient)[0, 0]
                for name, v in zip("abc", rot):
                    emit(f"rot_{name}_angstroms", _vec(v * 1e10))
                for name, v in zip("abc", stars):
                    emit(f"rot_{name}_star_A_inv", _vec(v))
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
            if S > 2 and valid[t, ss, 2] and executed[t, ss, 2, 0, 0]:
                fc, fl = F_cell[t, ss, 2, 0, 0], F_latt[t, ss, 2, 0, 0]
                for key, val in (("F_cell", fc), ("F_latt", fl), ("F_cell_squared", fc * fc),
                                 ("F_latt_squared", fl * fl), ("I_contribution", fc * fc * fl * fl),
                                 ("polar", polar[t, ss, 2]),
                                 ("cos2theta", float(np.dot(inc[2], diff[t, ss]))),
                                 ("lambda_angstroms", lam[2] * 1e10)):
                    emit(key, _g(val), ns="SOURCE2")
                emit("source_index", "2", ns="SOURCE2")

    smp = scene.cfg.sampling
    value = float(cap["value"])
    final = [
        ("I_before_scaling", _g(cap["I"])),
        ("r_e_meters", _g(math.sqrt(R_E_SQR))),
        ("r_e_sqr", _g(R_E_SQR)),
        ("fluence_photons_per_m2", _g(scene.fluence)),
        ("steps", "%d" % scene.steps),
        ("oversample_thick", "%d" % int(smp.oversample_thick)),
        ("oversample_polar", "%d" % int(smp.oversample_polar)),
        ("oversample_omega", "%d" % int(smp.oversample_omega)),
        ("capture_fraction", _g(cap["capture_fraction"])),
        ("polar", _g(cap["polar_final"])),
        ("omega_pixel", _g(cap["omega_final"])),
        ("cos_2theta", _g(np.dot(inc[S - 1], diff[T - 1, SS - 1]))),
        ("I_pixel_final", _g(value)),
        ("floatimage_accumulated", _g(np.float32(value))),
    ]
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


def printout_lines(scene, cap: dict, pixel: tuple) -> list:
    """nanoBragg.c's ``-printout_pixel F S`` block for one pixel: the values its variables hold
    after the pixel's last evaluation (last layer, sub-pixel, source, φ step and mosaic domain).

    pixel: (slow, fast). Formats as nanoBragg.c prints them (``%g``, ``%f``, ``%15.10g``).
    """
    to_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    pos = to_np(cap["pos"])[-1, -1]
    scat = to_np(cap["scat"])[-1, -1, -1]
    h = to_np(cap["h"])[-1, -1, -1, -1, -1]
    h0 = to_np(cap["h0"])[-1, -1, -1, -1, -1]
    F_latt = float(to_np(cap["F_latt"])[-1, -1, -1, -1, -1])
    F_cell = float(to_np(cap["F_cell"])[-1, -1, -1, -1, -1])
    rot = to_np(cap["orient"])[-1, -1] * 1e10
    stol = 0.5 * float(np.sqrt((scat * scat).sum()))
    twotheta = math.atan2(math.sqrt(pos[1] ** 2 + pos[2] ** 2), pos[0])
    stol_nominal = math.sin(twotheta / 2.0) / (scene.cfg.beam.lambda0 * 1e10)
    I = float(cap["I"])
    s, f = pixel
    lines = ["%4d %4d : stol = %g or %g" % (f, s, stol, stol_nominal),
             "at %g %g %g" % tuple(pos),
             "hkl= %f %f %f  hkl0= %d %d %d" % (*h, *(int(x) for x in h0)),
             " F_cell=%g  F_latt=%g   I = %g" % (F_cell, F_latt, I),
             "I/steps %15.10g" % (I / scene.steps),
             "polar   %15.10g" % float(cap["polar_final"]),
             "omega   %15.10g" % float(cap["omega_final"]),
             "capfrac %15.10g" % float(cap["capture_fraction"]),
             "pixel   %15.10g" % float(np.float32(float(cap["value"]))),
             "real-space cell vectors (Angstrom):",
             "     %-10s  %-10s  %-10s" % ("a", "b", "c")]
    for axis, name in enumerate("XYZ"):
        lines.append("%s: %11.8f %11.8f %11.8f" % (name, rot[0][axis], rot[1][axis], rot[2][axis]))
    return lines
