"""Explainers for first divergences caused by the documented differences of the default mode.

Each function takes a :class:`nanobragg_cli.quirks.QuirkContext` and returns an explanation (the
difference's number in docs/differences.md and the flag that reproduces nanoBragg.c) or None;
they are registered in :data:`nanobragg_cli.quirks.QUIRK_DETECTORS`. :func:`different_pixels`
is checked before any comparison: two traces of different pixels cannot be compared key by key.
"""

from __future__ import annotations

import re

from .tracefmt import INTERPOLATION_WARNING

DOC = "docs/differences.md"
REPRODUCE = "Rerun the Python side with --c-parity to reproduce nanoBragg.c's numbers."
# keys of the final scaling of a pixel, after the sum over sub-pixels, sources, phi and domains
FINAL_KEYS = frozenset({"I_pixel_final", "floatimage_accumulated", "TAP5.I_pixel_final"})
SUM_KEYS = frozenset({"I_before_scaling", "TAP5.I_before_scaling"})
PIXEL_RE = re.compile(r"TRACE_CONFIG: tracing pixel \(spixel=(\d+), fpixel=(\d+)\)")
LAYER_KEYS = frozenset({"pixel_pos_meters", "R_distance_meters", "diffracted_vec",
                        "scattering_vec_A_inv", "hkl_frac", "hkl_rounded", "obliquity_factor",
                        "omega_pixel_sr", "capture_fraction"})


def _first(records, key):
    return next((r for r in records if r.key == key and r.values), None)


def _rows_before_ok(ctx, keys) -> bool:
    """Every row of these keys before the first divergence agrees."""
    idx = ctx.result.first_divergence_index
    return all(r.ok for r in ctx.result.rows[:idx] if r.key in keys)


def _rel(ctx) -> str:
    rd = ctx.row.rel_delta
    return "" if rd is None else f" (here rel. Δ {rd:.2g})"


def quirk_per_source_polarization(ctx) -> str | None:
    """#7: nanoBragg.c computes the polarization once per pixel, for the first source."""
    if ctx.row.key not in FINAL_KEYS:
        return None
    several = any(r.key.startswith("SOURCE2.") for r in ctx.c_records)
    polar = _first(ctx.c_records, "polar")
    flags = [_first(ctx.c_records, f"oversample_{k}") for k in ("polar", "omega", "thick")]
    if not several or polar is None or polar.values[0] == 1.0 or any(
            f is not None and f.values[0] != 0 for f in flags):
        return None
    if not _rows_before_ok(ctx, SUM_KEYS):
        return None
    return ("Documented difference #7 (pixel-level caches, " + DOC + "): nanoBragg.c computes "
            "the polarization factor once per pixel, for the first source, and applies it to "
            "every source; the default mode gives each source (divergence, dispersion or "
            "-sourcefile) its own factor. Every per-source term agrees, the polarized sum does "
            f"not{_rel(ctx)}. " + REPRODUCE)


def _no_sensor_capture(ctx) -> bool:
    """#14's signature: -oversample_thick on and a capture fraction of exactly 0 in C."""
    cap = _first(ctx.c_records, "capture_fraction")
    thick = _first(ctx.c_records, "oversample_thick")
    return cap is not None and cap.values[0] == 0.0 and thick is not None and thick.values[0] != 0


def quirk_oversample_thick_without_sensor(ctx) -> str | None:
    """#14: -oversample_thick without a sensor thickness gives nanoBragg.c a capture fraction 0."""
    if not _no_sensor_capture(ctx) or ctx.row.key not in SUM_KEYS | FINAL_KEYS | {
            "capture_fraction"}:
        return None
    return (f"Documented difference #14 ({DOC}): with -oversample_thick and no sensor thickness "
            "nanoBragg.c's capture fraction is exp(0) - exp(0) = 0 (an all-zero image); the "
            "default mode has no sensor model there (capture fraction 1). " + REPRODUCE)


def quirk_oversample_factors(ctx) -> str | None:
    """#4: -oversample_thick/_polar/_omega multiply nanoBragg.c's running sum."""
    if _no_sensor_capture(ctx):
        return None
    on = [k for k in ("thick", "polar", "omega")
          if (r := _first(ctx.c_records, f"oversample_{k}")) is not None and r.values[0] != 0]
    if not on or ctx.row.key not in SUM_KEYS | FINAL_KEYS:
        return None
    flags = ", ".join(f"-oversample_{k}" for k in on)
    return (f"Documented difference #4 ({DOC}): with {flags} nanoBragg.c multiplies the running "
            "sum by each sub-pixel's factor (earlier sub-pixels are scaled again and again); the "
            "default mode weights each sub-pixel's term by its own factor. " + REPRODUCE)


def quirk_sensor_layers(ctx) -> str | None:
    """#2/#3: nanoBragg.c's layers are thick/(N-1) deep and only the last capture fraction counts."""
    cap = _first(ctx.c_records, "capture_fraction")
    if cap is None or cap.values[0] == 1.0 or _no_sensor_capture(ctx):
        return None
    key = ctx.row.key
    if not (key in LAYER_KEYS or key in SUM_KEYS | FINAL_KEYS):
        return None
    if key in LAYER_KEYS and ctx.row.occurrence == 0 and key != "capture_fraction":
        return None   # the first layer is at the detector face in both modes
    return (f"Documented differences #2 and #3 (sensor layers, {DOC}): with -detector_thick "
            "nanoBragg.c places its -detector_thicksteps N layers thick/(N-1) apart and weights "
            "the sum by the last layer's capture fraction only; the default mode slices the "
            "thickness into N layers of thick/N, each weighted by its own capture fraction, so "
            f"the traced '{key}' of a deeper layer differs{_rel(ctx)}. " + REPRODUCE)


def quirk_water_background(ctx) -> str | None:
    """#5: nanoBragg.c scales its water background by r_e^2*fluence twice and by 1/steps."""
    if ctx.row.key not in SUM_KEYS:
        return None
    lattice_keys = {"F_cell", "F_latt", "F_latt_a", "F_latt_b", "F_latt_c", "hkl_frac"}
    if not _rows_before_ok(ctx, lattice_keys):
        return None
    if any((r := _first(ctx.c_records, f"oversample_{k}")) is not None and r.values[0] != 0
           for k in ("thick", "polar", "omega")):
        return None
    cap = _first(ctx.c_records, "capture_fraction")
    if cap is not None and cap.values[0] != 1.0:
        return None
    return (f"Every structure-factor and lattice term agrees but their sum{_rel(ctx)} does not: "
            "the documented difference that adds a term outside them is the water background "
            f"(#5 in {DOC}, -water): nanoBragg.c's background grows as fluence squared and "
            "shrinks as 1/steps; the default mode's is linear in fluence and independent of the "
            "sampling. " + REPRODUCE)


def quirk_sincg_next_to_integer(ctx) -> str | None:
    """#11: nanoBragg.c's sincg on the full argument is noise within ~1e-13 of an integer h."""
    key = ctx.row.key.rsplit(".", 1)[-1]
    if key not in ("F_latt_a", "F_latt_b", "F_latt_c", "F_latt") or ctx.row.c_line is None:
        return None
    hkl = None
    for r in ctx.c_records:
        if r.line_no >= ctx.row.c_line:
            break
        if r.key.rsplit(".", 1)[-1] == "hkl_frac" and len(r.values) == 3:
            hkl = r.values
    if hkl is None:
        return None
    axes = {"F_latt_a": (0,), "F_latt_b": (1,), "F_latt_c": (2,)}.get(key, (0, 1, 2))
    near = [(i, hkl[i]) for i in axes if round(hkl[i]) != 0 and abs(hkl[i] - round(hkl[i])) < 1e-9]
    if not near:
        return None
    i, h = near[0]
    return (f"Documented difference #11 ({DOC}): {'hkl'[i]} = {h:.15g} is within "
            f"{abs(h - round(h)):.1g} of an integer, where nanoBragg.c's sincg(pi*h, N) on the "
            "full argument is mostly rounding noise; the default mode uses the reduced argument "
            "and gives the limit N. " + REPRODUCE)


def _kill_switch_note(ctx) -> str | None:
    """C's interpolation warning among the log's notes (the kill-switch tripped), or None."""
    return next((n for n in ctx.c_notes if n.startswith(INTERPOLATION_WARNING)), None)


def quirk_interpolation_kill_switch(ctx) -> str | None:
    """#6: nanoBragg.c switched interpolation off at the first out-of-range evaluation."""
    if ctx.row.key.rsplit(".", 1)[-1] != "F_cell" or not _rows_before_ok(ctx, {"hkl_rounded"}):
        return None
    note = _kill_switch_note(ctx)
    if note is None:
        return None
    return (f"Documented difference #6 (interpolation kill-switch, {DOC}): the C log holds "
            f"nanoBragg.c's warning '{note}': an evaluation at this pixel or one before it in "
            "loop order left the interpolation range, which switched interpolation off for "
            "everything after it, so C's F_cell is the nearest grid point's; the default mode "
            "interpolates every evaluation whose 4x4x4 block lies inside the grid"
            f"{_rel(ctx)}. " + REPRODUCE)


def quirk_hkl_read_by_fscanf(ctx) -> str | None:
    """#15: nanoBragg.c's fscanf passes store nothing for indices written like '1.0'."""
    if ctx.row.key.rsplit(".", 1)[-1] != "F_cell" or not _rows_before_ok(ctx, {"hkl_rounded"}):
        return None
    if _kill_switch_note(ctx) is not None:
        return None   # the kill-switch (#6) explains an F_cell divergence there
    c_values = {r.values[0] for r in ctx.c_records
                if r.key.rsplit(".", 1)[-1] == "F_cell" and r.values}
    if len(c_values) != 1:
        return None
    return (f"nanoBragg.c gives every traced reflection the same F_cell ({c_values.pop():g}) "
            "where the Python side reads the hkl file's values: documented difference #15 "
            f"({DOC}): C's fscanf passes store nothing for indices written like '1.0' (every "
            "reflection then gets -default_F); the default mode reads them as integers. "
            + REPRODUCE)


def quirk_polarization_along_the_beam(ctx) -> str | None:
    """#13: a polarization vector along the beam (or a source): nanoBragg.c's zero E-vector."""
    key = ctx.row.key.rsplit(".", 1)[-1]
    if key == "incident_vec" and ctx.row.c_values and ctx.row.py_values:
        c = ctx.row.c_values
        if sorted(abs(x) for x in c) != [0.0, 0.0, 1.0]:
            return None   # C's source is not on a coordinate axis (its collapsed beam)
        what = ("nanoBragg.c's divergence sources collapse onto the beam (its divergence axes "
                "are zero), the default mode's spread around a perpendicular E-vector")
    elif key == "polar" and _rows_before_ok(ctx, {"cos_2theta", "incident_vec", "diffracted_vec"}):
        what = ("the polarization factor alone differs: nanoBragg.c's E-vector basis is zero "
                "(psi = 0), the default mode takes the E-vector perpendicular to the beam or "
                "source")
    else:
        return None
    return (f"Documented difference #13 ({DOC}, a polarization vector along the beam or along a "
            f"-sourcefile source): {what}{_rel(ctx)}. " + REPRODUCE)


def traced_pixel(text: str) -> tuple | None:
    """(slow, fast) named by a trace's TRACE_CONFIG line, or None."""
    m = PIXEL_RE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def different_pixels(c_text: str, py_text: str) -> str | None:
    """The message when the two traces name different pixels in their TRACE_CONFIG lines."""
    c, p = traced_pixel(c_text), traced_pixel(py_text)
    if c is None or p is None or c == p:
        return None
    return (f"The two traces are of different pixels: the C trace traced (slow {c[0]}, fast "
            f"{c[1]}), the Python trace (slow {p[0]}, fast {p[1]}); their values cannot agree. "
            f"Trace the same pixel: rerun with -trace_pixel {c[0]} {c[1]}.")
