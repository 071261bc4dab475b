"""Compare two ``-printout_pixel F S`` blocks (nanoBragg.c's and ours) at the precision nanoBragg.c
printed them.

nanoBragg.c prints the block with ``%g`` (6 significant digits), ``%f``, ``%15.10g`` and
``%11.8f``; it is the only per-pixel evidence a binary without ``-trace_pixel`` gives. Each value
is allowed a difference of one unit in the last digit the C text carries (both sides are rounded
independently), integers (hkl0) must agree exactly. The result is a
:class:`~nanobragg_cli.compare.CompareResult`, so it renders like a trace comparison.
"""

from __future__ import annotations

import math
import re

from .compare import (LENGTH, MISMATCH, MISSING_C, MISSING_PY, OK, CompareResult, CompareRow,
                      tally_rows)

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_PATTERNS = [
    (re.compile(rf"^\s*\d+\s+\d+\s*:\s*stol = ({_NUM}) or ({_NUM})"), ("stol", "stol_nominal")),
    (re.compile(rf"^at ({_NUM}) ({_NUM}) ({_NUM})"), ("pixel_pos",)),
    (re.compile(rf"^hkl= ({_NUM}) ({_NUM}) ({_NUM})\s+hkl0= ({_NUM}) ({_NUM}) ({_NUM})"),
     ("hkl", "hkl0")),
    (re.compile(rf"^\s*F_cell=({_NUM})\s+F_latt=({_NUM})\s+I = ({_NUM})"),
     ("F_cell", "F_latt", "I")),
    (re.compile(rf"^(I/steps|polar|omega|capfrac|pixel)\s+({_NUM})\s*$"), None),
    (re.compile(rf"^([XYZ]): ({_NUM}) ({_NUM}) ({_NUM})"), None),
]
_WIDTH = {"pixel_pos": 3, "hkl": 3, "hkl0": 3}
INTEGER_KEYS = ("hkl0",)
HEADER = re.compile(r"^\s*(\d+)\s+(\d+)\s*:\s*stol =")


def printout_pixel(lines: list) -> tuple | None:
    """(slow, fast) of the first printout block in ``lines`` (it prints fast first)."""
    for line in lines:
        m = HEADER.match(line)
        if m:
            return int(m.group(2)), int(m.group(1))
    return None


def parse_printout(lines: list) -> list:
    """[(key, [value texts])] of the first printout block in ``lines`` (stdout lines)."""
    out, started = [], False
    for line in lines:
        if not started:
            started = bool(HEADER.match(line))
            if not started:
                continue
        for pattern, keys in _PATTERNS:
            m = pattern.match(line)
            if not m:
                continue
            groups = list(m.groups())
            if keys is None:
                key = "cell_" + groups[0] if groups[0] in "XYZ" else groups[0]
                out.append((key, groups[1:]))
            else:
                k = 0
                for key in keys:
                    n = _WIDTH.get(key, 1)
                    out.append((key, groups[k:k + n]))
                    k += n
            break
        if line.startswith("Z:"):
            break
    return out


def last_digit_unit(text: str) -> float:
    """One unit in the last digit of a printed number ("5.3033e+06" -> 100, "0.075000" -> 1e-6)."""
    mantissa, _, exp = text.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exp or 0) - decimals)


def compare_printouts(c_lines: list, py_lines: list, c_name: str = "<C printout>",
                      py_name: str = "<PY printout>") -> CompareResult:
    """Compare the printout blocks key by key (C's order); first_divergence is the first key
    out of tolerance, missing on one side, or with a different count of numbers."""
    c = parse_printout(c_lines)
    p = dict(parse_printout(py_lines))
    rows = []
    for key, c_texts in c:
        c_vals = [float(t) for t in c_texts]
        integer = key in INTEGER_KEYS
        units = [0.0 if integer else last_digit_unit(t) for t in c_texts]
        tol = max(units) if units else 0.0
        scale = max((abs(v) for v in c_vals), default=0.0)
        if key not in p:
            rows.append(CompareRow(key, 0, c_vals, None, None, None, False, MISSING_PY,
                                   scale=scale, tolerance=tol, integer=integer))
            continue
        py_vals = [float(t) for t in p.pop(key)]
        row = CompareRow(key, 0, c_vals, py_vals, None, None, True, OK, scale=scale,
                         tolerance=tol, integer=integer)
        if len(py_vals) != len(c_vals):
            row.ok, row.status = False, LENGTH
        else:
            deltas = [abs(a - b) for a, b in zip(c_vals, py_vals)]
            row.abs_delta = max(deltas, default=0.0)
            row.rel_delta = row.abs_delta / scale if scale > 0 else (0.0 if not row.abs_delta
                                                                     else math.inf)
            # one unit of the last digit, plus the rounding of the decimal parse itself
            if any(not (d <= u * (1 + 1e-6) + 1e-15 * abs(v))
                   for d, u, v in zip(deltas, units, c_vals)):
                row.ok, row.status = False, MISMATCH
        rows.append(row)
    for key, texts in p.items():
        rows.append(CompareRow(key, 0, None, [float(t) for t in texts], None, None, False,
                               MISSING_C))
    counts, first = tally_rows(rows)
    return CompareResult(rows, rows[first].key if first is not None else None, first, None,
                         counts, rtol=0.0, atol=0.0, c_name=c_name, py_name=py_name)
