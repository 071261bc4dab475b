"""``nanobragg compare``'s explainers: divergences that match a known nanoBragg.c quirk.

:func:`nanobragg_cli.compare.compare_records` tries every function of :data:`QUIRK_DETECTORS` on
the first divergence; each returns an explanation (naming the flag that reproduces the quirk) or
None. Add one function to add an explainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from . import known_differences
from .tracefmt import TraceRecord

if TYPE_CHECKING:
    from .compare_model import CompareResult, CompareRow


@dataclass
class QuirkContext:
    """What a quirk detector may look at: the result (with its first divergent row), the
    parsed records of both sides and ``c_notes``, the C log's warnings
    (:func:`nanobragg_cli.tracefmt.trace_notes`)."""

    result: CompareResult
    c_records: list[TraceRecord]
    py_records: list[TraceRecord]
    c_notes: tuple = ()

    @property
    def row(self) -> CompareRow:
        row = self.result.first_row
        assert row is not None
        return row


#: Keys whose values depend on the crystal orientation at φ (and hence on the carryover).
PHI_DEPENDENT_KEYS = frozenset(
    {
        "rot_a_angstroms", "rot_b_angstroms", "rot_c_angstroms",
        "hkl_frac", "hkl_rounded",
        "F_latt_a", "F_latt_b", "F_latt_c", "F_latt", "F_cell",
        "I_before_scaling", "I_pixel_final", "floatimage_accumulated",
        "SOURCE2.F_cell", "SOURCE2.F_latt", "SOURCE2.F_cell_squared", "SOURCE2.F_latt_squared",
        "SOURCE2.I_contribution",
        "TAP5.I_before_scaling", "TAP5.I_pixel_final",
        "TAP5_HKL.hkl_frac", "TAP5_HKL.h0", "TAP5_HKL.k0", "TAP5_HKL.l0", "TAP5_HKL.F_cell",
        "TAP5_HKL.out_of_bounds",
    }
)


def _phi_blocks(records: list[TraceRecord]) -> list[list[dict[str, float]]]:
    """The ``PHI.*`` records regrouped into φ lines, and the lines into blocks (one block per
    sub-pixel/layer: a new block starts when phi_tic does not increase)."""
    lines: list[dict[str, float]] = []
    current: dict[str, float] = {}
    last_line = None
    for r in records:
        if not r.key.startswith("PHI.") or not r.values:
            continue
        if r.line_no != last_line:
            if current:
                lines.append(current)
            current, last_line = {}, r.line_no
        current[r.key[4:]] = r.values[0]
    if current:
        lines.append(current)
    blocks: list[list[dict[str, float]]] = []
    for ln in lines:
        tic = ln.get("phi_tic")
        if tic is None:
            continue
        if not blocks or tic <= blocks[-1][-1]["phi_tic"]:
            blocks.append([])
        blocks[-1].append(ln)
    return blocks


def _carryover_evidence(records: list[TraceRecord]) -> dict | None:
    """First φ line at phi_deg == 0 whose k_frac and F_latt equal, bit for bit, those of the
    step it reuses (the block's last phi_tic for phi_tic 0, else the previous step), in a block
    of more than one φ step; ``None`` if the trace shows no such line."""
    for block in _phi_blocks(records):
        if len(block) < 2:
            continue
        for pos, ln in enumerate(block):
            if ln.get("phi_deg") != 0.0 or "k_frac" not in ln or "F_latt" not in ln:
                continue
            other = block[-1] if pos == 0 else block[pos - 1]
            if other is ln:
                continue
            if ln["k_frac"] == other.get("k_frac") and ln["F_latt"] == other.get("F_latt"):
                return {"line": ln, "reused": other, "steps": len(block)}
    return None


def _fmt_tic(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def quirk_phi0_carryover(ctx: QuirkContext) -> str | None:
    """nanoBragg.c's φ=0 carryover (docs/differences.md, difference #1)."""
    if not (ctx.row.key in PHI_DEPENDENT_KEYS or ctx.row.key.startswith("PHI.")):
        return None
    ev = _carryover_evidence(ctx.c_records)
    if ev is None:
        return None
    ln, other = ev["line"], ev["reused"]
    return (
        f"Known nanoBragg.c quirk (phi=0 carryover, #1 in docs/differences.md): the C trace "
        f"shows TRACE_C_PHI phi_tic={_fmt_tic(ln['phi_tic'])} at phi_deg=0 with k_frac and "
        f"F_latt bit-for-bit equal to phi_tic={_fmt_tic(other['phi_tic'])} "
        f"(k_frac={ln['k_frac']:.15g}, F_latt={ln['F_latt']:.15g}; {ev['steps']} phi steps). "
        f"nanoBragg.c skips the rotation when phi is exactly 0.0 and reuses the crystal "
        f"orientation of the previous phi step it computed, so the divergence at "
        f"'{ctx.row.key}' is expected in the default (physically correct) mode. Rerun the "
        f"Python side with --c-parity to reproduce it (or run C with -phi 1e-30 for a "
        f"reference without it)."
    )


def quirk_scattering_vec_units(ctx: QuirkContext) -> str | None:
    """``scattering_vec_A_inv`` is printed in m⁻¹ by nanoBragg.c despite its label."""
    row = ctx.row
    if row.key != "scattering_vec_A_inv" or not row.c_values or not row.py_values:
        return None
    if len(row.c_values) != len(row.py_values):
        return None
    big = max(range(len(row.c_values)), key=lambda i: abs(row.c_values[i]))
    c, p = row.c_values[big], row.py_values[big]
    if p == 0 or not math.isfinite(c / p):
        return None
    if abs(c / p / 1e10 - 1.0) < 1e-6:
        return ("Known nanoBragg.c quirk: TRACE_C scattering_vec_A_inv is labelled in 1/Angstrom "
                "but printed in 1/m (e.g. 7.25e7 = 0.725 1/A); the Python trace prints 1/A, so "
                "its values are 1e10 times smaller. The trace contract requires printing what "
                "C prints (1/m) under this key.")
    return None


#: Detector functions tried in order on a divergence; each returns an explanation or None.
QUIRK_DETECTORS: list[Callable[[QuirkContext], str | None]] = [
    quirk_phi0_carryover,
    quirk_scattering_vec_units,
    known_differences.quirk_per_source_polarization,
    known_differences.quirk_oversample_factors,
    known_differences.quirk_sensor_layers,
    known_differences.quirk_water_background,
    known_differences.quirk_sincg_next_to_integer,
    known_differences.quirk_oversample_thick_without_sensor,
    known_differences.quirk_interpolation_kill_switch,
    known_differences.quirk_hkl_read_by_fscanf,
    known_differences.quirk_polarization_along_the_beam,
]
