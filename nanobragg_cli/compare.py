"""Compare a nanoBragg.c trace with a Python trace, key by key, and find the first divergence.

Alignment: records are walked in the C file's order; the k-th occurrence of a key on the C
side meets the k-th occurrence of the same key on the Python side. An occurrence present on
one side only is a divergence of its own (a Python-only record is placed just before the C
record that its next aligned Python successor met, or at the end).

Tolerance of a number: ``atol + rtol * scale``, where ``scale`` is the largest finite |C value|
of that key over all its numbers and occurrences (a near-zero component of a vector is judged on
the vector's scale). Integer keys (``hkl_rounded``, ``steps``, ``oversample_*``,
``PHI.phi_tic``, ``SOURCE2.source_index``, ...) must match exactly. Text values must be equal.

When the first divergence matches a known nanoBragg.c quirk, an explanation is attached; the
detectors live in :data:`QUIRK_DETECTORS` (add one function to add an explainer).

No torch import here: ``nanobragg compare`` must start fast.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import click

from .records import json_safe
from .tracefmt import (
    TraceInputError,
    TraceRecord,
    is_integer_key,
    key_stats,
    load_trace,
)

__all__ = [
    "CompareRow",
    "CompareResult",
    "QuirkContext",
    "QUIRK_DETECTORS",
    "TraceInputError",
    "compare_records",
    "compare_traces",
    "render_table",
    "to_json",
    "to_markdown",
    "compare_command",
]

DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12

# status values of a row
OK = "ok"
MISMATCH = "mismatch"  # a number out of tolerance (or text differs)
LENGTH = "length"  # different count of numbers
MISSING_PY = "missing_py"  # occurrence only in the C trace
MISSING_C = "missing_c"  # occurrence only in the Python trace


@dataclass
class CompareRow:
    """One aligned record: ``key`` (its ``occurrence``-th appearance, 0-based) on both sides.

    ``c_values``/``py_values`` are ``None`` where the side lacks this occurrence. ``abs_delta``
    is the largest |C − Py| over the numbers both sides have, ``rel_delta`` that divided by the
    key's ``scale`` (``None`` where nothing numeric was compared). ``tolerance`` is
    ``atol + rtol*scale`` (0 for integer keys).
    """

    key: str
    occurrence: int
    c_values: list[float] | None
    py_values: list[float] | None
    abs_delta: float | None
    rel_delta: float | None
    ok: bool
    status: str
    scale: float = 0.0
    tolerance: float = 0.0
    integer: bool = False
    c_text: str | None = None  # value text of a non-numeric record
    py_text: str | None = None
    c_line: int | None = None  # 1-based line numbers in the logs
    py_line: int | None = None
    c_raw: str | None = None
    py_raw: str | None = None


@dataclass
class CompareResult:
    """Outcome of :func:`compare_traces`.

    ``first_divergence`` is the key of the first row (C order) that is not ok, else ``None``;
    ``first_divergence_index`` its position in ``rows``. ``explanation`` joins the texts of the
    quirk detectors that recognised the divergence (``quirks`` lists them by name). ``counts``:
    rows, ok, mismatch, length, missing_py, missing_c, failed.
    """

    rows: list[CompareRow]
    first_divergence: str | None
    first_divergence_index: int | None
    explanation: str | None
    counts: dict[str, int]
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    c_name: str = "<C>"
    py_name: str = "<PY>"
    quirks: list[dict[str, str]] = field(default_factory=list)

    @property
    def first_row(self) -> CompareRow | None:
        if self.first_divergence_index is None:
            return None
        return self.rows[self.first_divergence_index]


# ---------------------------------------------------------------------------------------------
# comparison


def _num_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b


def _compare_pair(key: str, occ: int, c: TraceRecord, p: TraceRecord, scale: float,
                  rtol: float, atol: float) -> CompareRow:
    integer = is_integer_key(key)
    tol = 0.0 if integer else atol + rtol * scale
    row = CompareRow(key, occ, list(c.values), list(p.values), None, None, True, OK,
                     scale=scale, tolerance=tol, integer=integer, c_text=c.text, py_text=p.text,
                     c_line=c.line_no, py_line=p.line_no, c_raw=c.raw, py_raw=p.raw)
    if c.text is not None or p.text is not None:
        row.ok = c.text == p.text and c.values == p.values
        row.status = OK if row.ok else MISMATCH
        return row
    n = min(len(c.values), len(p.values))
    worst = 0.0
    ok = True
    for a, b in zip(c.values[:n], p.values[:n]):
        if _num_equal(a, b):
            continue
        d = abs(a - b)  # nan if exactly one is nan, inf for inf vs finite
        if math.isnan(d) or math.isnan(worst):
            worst = math.nan
        else:
            worst = max(worst, d)
        if integer or not (d <= tol):
            ok = False
    if n:
        row.abs_delta = worst
        if math.isnan(worst):
            row.rel_delta = math.nan
        elif scale > 0:
            row.rel_delta = worst / scale
        else:
            row.rel_delta = 0.0 if worst == 0 else math.inf
    if len(c.values) != len(p.values):
        row.ok, row.status = False, LENGTH
    elif not ok:
        row.ok, row.status = False, MISMATCH
    return row


def compare_records(c_records: list[TraceRecord], py_records: list[TraceRecord],
                    rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                    c_name: str = "<C>", py_name: str = "<PY>") -> CompareResult:
    """Align two parsed traces and compare them (see the module docstring for the rules)."""
    c_stats = key_stats(c_records)
    py_stats = key_stats(py_records)

    # position of each record among the occurrences of its key
    def occurrence_index(records: list[TraceRecord]) -> list[int]:
        seen: dict[str, int] = {}
        out = []
        for r in records:
            out.append(seen.get(r.key, 0))
            seen[r.key] = out[-1] + 1
        return out

    c_occ = occurrence_index(c_records)
    py_occ = occurrence_index(py_records)

    # (sort position, row): C-order rows at (i, 0, 0); a Python-only row goes just before the C
    # row that its nearest aligned Python successor met (at the end if none), at
    # (anchor, -1, python index): C's own rows, missing or not, keep priority in C order
    placed: list[tuple[tuple[int, int, int], CompareRow]] = []
    py_to_c: dict[int, int] = {}
    for i, (c, occ) in enumerate(zip(c_records, c_occ)):
        ps = py_stats.get(c.key)
        scale = c_stats[c.key].scale
        if ps is not None and occ < ps.count:
            j = ps.occurrences[occ]
            py_to_c[j] = i
            row = _compare_pair(c.key, occ, c, py_records[j], scale, rtol, atol)
        else:
            integer = is_integer_key(c.key)
            row = CompareRow(c.key, occ, list(c.values), None, None, None, False, MISSING_PY,
                             scale=scale, tolerance=0.0 if integer else atol + rtol * scale,
                             integer=integer, c_text=c.text, c_line=c.line_no, c_raw=c.raw)
        placed.append(((i, 0, 0), row))
    anchor = len(c_records)
    for j in range(len(py_records) - 1, -1, -1):
        p, occ = py_records[j], py_occ[j]
        if j in py_to_c:
            anchor = py_to_c[j]
            continue
        cs = c_stats.get(p.key)
        scale = cs.scale if cs is not None else py_stats[p.key].scale
        integer = is_integer_key(p.key)
        row = CompareRow(p.key, occ, None, list(p.values), None, None, False, MISSING_C,
                         scale=scale, tolerance=0.0 if integer else atol + rtol * scale,
                         integer=integer, py_text=p.text, py_line=p.line_no, py_raw=p.raw)
        placed.append(((anchor, -1, j), row))
    placed.sort(key=lambda t: t[0])
    rows = [row for _, row in placed]

    counts = {"rows": len(rows), OK: 0, MISMATCH: 0, LENGTH: 0, MISSING_PY: 0, MISSING_C: 0}
    first_idx = None
    for k, row in enumerate(rows):
        counts[row.status] += 1
        if not row.ok and first_idx is None:
            first_idx = k
    counts["failed"] = counts["rows"] - counts[OK]
    result = CompareResult(rows, rows[first_idx].key if first_idx is not None else None,
                           first_idx, None, counts, rtol=rtol, atol=atol,
                           c_name=c_name, py_name=py_name)
    if first_idx is not None:
        ctx = QuirkContext(result, c_records, py_records)
        for detector in QUIRK_DETECTORS:
            found = detector(ctx)
            if found:
                result.quirks.append({"name": detector.__name__.removeprefix("quirk_"),
                                      "text": found})
        if result.quirks:
            result.explanation = "\n".join(q["text"] for q in result.quirks)
    return result


def compare_traces(c_text_or_path: str | os.PathLike, py_text_or_path: str | os.PathLike,
                   rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> CompareResult:
    """Compare a C trace with a Python trace, each given as log text or as a path.

    Lines of the C argument with the ``TRACE_C`` prefix are used (all trace lines if it has
    none), likewise ``TRACE_PY`` for the Python argument. Raises
    :class:`~nanobragg_cli.tracefmt.TraceInputError` for a missing/unreadable file or one with
    no trace record.
    """
    c_records, c_name = load_trace(c_text_or_path, prefer="C")
    py_records, py_name = load_trace(py_text_or_path, prefer="PY")
    return compare_records(c_records, py_records, rtol=rtol, atol=atol,
                           c_name=c_name, py_name=py_name)


# ---------------------------------------------------------------------------------------------
# quirk explainers


@dataclass
class QuirkContext:
    """What a quirk detector may look at: the result (with its first divergent row) and the
    parsed records of both sides."""

    result: CompareResult
    c_records: list[TraceRecord]
    py_records: list[TraceRecord]

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
    """nanoBragg.c's φ=0 carryover (nanoBragg_c.md §5.1)."""
    if not (ctx.row.key in PHI_DEPENDENT_KEYS or ctx.row.key.startswith("PHI.")):
        return None
    ev = _carryover_evidence(ctx.c_records)
    if ev is None:
        return None
    ln, other = ev["line"], ev["reused"]
    return (
        f"Known nanoBragg.c quirk (phi=0 carryover, nanoBragg_c.md section 5.1): the C trace "
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
]


# ---------------------------------------------------------------------------------------------
# rendering


def _g(v: float) -> str:
    return "%.15g" % v


def _values_text(values: list[float] | None, text: str | None, integer: bool) -> str:
    if text is not None:
        return text
    if values is None:
        return "(missing)"
    if not values:
        return "(no value)"
    if integer:
        return " ".join(str(int(v)) if math.isfinite(v) and v.is_integer() else _g(v)
                        for v in values)
    return " ".join(_g(v) for v in values)


def _delta_text(v: float | None) -> str:
    return "-" if v is None else "%.3g" % v


def _row_cells(row: CompareRow) -> list[str]:
    return [
        row.key,
        str(row.occurrence),
        _values_text(row.c_values, row.c_text, row.integer),
        _values_text(row.py_values, row.py_text, row.integer),
        _delta_text(row.abs_delta),
        _delta_text(row.rel_delta),
        "ok" if row.ok else {MISMATCH: "FAIL", LENGTH: "FAIL (count)", MISSING_PY: "missing in Py",
                             MISSING_C: "missing in C"}.get(row.status, "FAIL"),
    ]


def summary_line(result: CompareResult) -> str:
    c = result.counts
    parts = [f"{c['rows']} records: {c[OK]} ok"]
    if c[MISMATCH]:
        parts.append(f"{c[MISMATCH]} out of tolerance")
    if c[LENGTH]:
        parts.append(f"{c[LENGTH]} with a different count of numbers")
    if c[MISSING_PY]:
        parts.append(f"{c[MISSING_PY]} missing in Py")
    if c[MISSING_C]:
        parts.append(f"{c[MISSING_C]} missing in C")
    return ", ".join(parts) + f" (rtol={result.rtol:g}, atol={result.atol:g})"


def _shown_rows(result: CompareResult, show_all: bool) -> list[CompareRow]:
    if show_all or result.first_divergence_index is None:
        return result.rows
    return result.rows[: result.first_divergence_index + 1]


#: Above this many rows the table is printed as plain aligned text (one line per record):
#: rich's layout costs about 1 ms a row, too slow for traces with thousands of records.
RICH_TABLE_MAX_ROWS = 400

_HEADERS = ("key", "#", "C", "Py", "|Δ|", "rel Δ", "ok")
_RIGHT = {1, 4, 5}


def _plain_table(rows: list[CompareRow]) -> str:
    cells = [list(_HEADERS)] + [_row_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(_HEADERS))]

    def fmt(c: list[str]) -> str:
        return "  ".join(c[k].rjust(widths[k]) if k in _RIGHT else c[k].ljust(widths[k])
                         for k in range(len(c))).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(c) for c in cells[1:]]
    return "\n".join(lines)


def render_table(result: CompareResult, console=None, show_all: bool = False) -> None:
    """Print the comparison as a rich table, then the summary and any explanation.

    By default the rows up to and including the first divergence are shown (all rows when
    there is none); ``show_all`` shows every row. Tables longer than
    :data:`RICH_TABLE_MAX_ROWS` are printed as plain aligned text, one line per record. The
    ``first_divergence=`` line is *not* printed here (the command prints it last).
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console(highlight=False)
    rows = _shown_rows(result, show_all)
    title = f"C: {result.c_name}   Py: {result.py_name}"
    if len(rows) > RICH_TABLE_MAX_ROWS:
        console.print(Text(title), soft_wrap=True)
        console.print(Text(_plain_table(rows)), soft_wrap=True)
    else:
        table = Table(title=title, title_justify="left")
        for k, name in enumerate(_HEADERS):
            table.add_column(name, justify="right" if k in _RIGHT else "left", overflow="fold")
        for row in rows:
            style = None if row.ok else "bold red"
            table.add_row(*(Text(cell) for cell in _row_cells(row)), style=style)
        console.print(table)
    hidden = len(result.rows) - len(rows)
    if hidden:
        console.print(Text(f"({hidden} further records not shown; use --all to show them)"))
    console.print(Text(summary_line(result)), soft_wrap=True)
    if result.first_row is not None:
        r = result.first_row
        where = f"C line {r.c_line}" if r.c_line else "not in C"
        where += f", Py line {r.py_line}" if r.py_line else ", not in Py"
        console.print(Text(f"first divergence: {r.key} (occurrence {r.occurrence}; {where})"),
                      soft_wrap=True)
    if result.explanation:
        console.print(Text(result.explanation), soft_wrap=True)


def _json_values(values: list[float] | None):
    return None if values is None else json_safe(list(values))


def to_json(result: CompareResult) -> dict:
    """The result as a JSON-ready dict (non-finite numbers as the strings nan/inf/-inf)."""
    first = result.first_row
    return {
        "c_trace": result.c_name,
        "py_trace": result.py_name,
        "rtol": result.rtol,
        "atol": result.atol,
        "first_divergence": result.first_divergence,
        "first_divergence_occurrence": first.occurrence if first else None,
        "first_divergence_row": result.first_divergence_index,
        "explanation": result.explanation,
        "quirks": list(result.quirks),
        "counts": dict(result.counts),
        "rows": [
            {
                "key": r.key,
                "occurrence": r.occurrence,
                "c": r.c_text if r.c_text is not None else _json_values(r.c_values),
                "py": r.py_text if r.py_text is not None else _json_values(r.py_values),
                "abs_delta": json_safe(r.abs_delta),
                "rel_delta": json_safe(r.rel_delta),
                "scale": json_safe(r.scale),
                "tolerance": json_safe(r.tolerance),
                "ok": r.ok,
                "status": r.status,
                "c_line": r.c_line,
                "py_line": r.py_line,
            }
            for r in result.rows
        ],
    }


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(result: CompareResult, show_all: bool = True) -> str:
    """The result as a Markdown report: header, summary, explanation, table of rows (all rows
    by default; ``show_all=False`` stops at the first divergence)."""
    lines = [
        "# Trace comparison",
        "",
        f"- C trace: `{result.c_name}`",
        f"- Py trace: `{result.py_name}`",
        f"- tolerance: atol + rtol × scale, rtol = {result.rtol:g}, atol = {result.atol:g} "
        "(scale = largest |C value| of the key)",
        f"- {summary_line(result)}",
        f"- first divergence: `{result.first_divergence}`"
        + (f" (occurrence {result.first_row.occurrence})" if result.first_row else ""),
        "",
    ]
    if result.explanation:
        lines += ["## Explanation", ""] + [f"> {t}" for t in result.explanation.splitlines()]
        lines.append("")
    rows = _shown_rows(result, show_all)
    lines += ["## Records", "", "| key | # | C | Py | abs Δ | rel Δ | ok |",
              "|---|---:|---|---|---:|---:|---|"]
    for row in rows:
        cells = _row_cells(row)
        if not row.ok:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    lines.append(f"first_divergence={result.first_divergence}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# command


def _fail_input(ctx: click.Context, message: str) -> None:
    click.echo(f"nanobragg compare: error: {message}", err=True)
    ctx.exit(2)


@click.command("compare", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("c_trace", metavar="C_TRACE", type=click.Path())
@click.argument("py_trace", metavar="PY_TRACE", type=click.Path())
@click.option("--rtol", type=float, default=DEFAULT_RTOL, show_default=True,
              help="Relative tolerance, times the largest |C value| of the key.")
@click.option("--atol", type=float, default=DEFAULT_ATOL, show_default=True,
              help="Absolute tolerance.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the full comparison as JSON to this file.")
@click.option("--markdown", "md_path", type=click.Path(), default=None,
              help="Write the full comparison as Markdown to this file.")
@click.option("--all", "show_all", is_flag=True, default=False,
              help="Show every record, not only those up to the first divergence.")
@click.pass_context
def compare_command(ctx, c_trace, py_trace, rtol, atol, json_path, md_path, show_all):
    """Compare a nanoBragg.c trace (TRACE_C) with a Python trace (TRACE_PY), key by key.

    Prints a table and, as the last line, first_divergence=<key> or first_divergence=None.
    Exit status: 0 no divergence, 1 divergence, 2 unusable input.
    """
    from pathlib import Path

    from rich.console import Console

    if not (rtol >= 0 and atol >= 0):
        _fail_input(ctx, "--rtol and --atol must be non-negative numbers")
    try:
        # Path objects: the arguments are always file names, never trace text
        c_records, c_name = load_trace(Path(c_trace), prefer="C")
        py_records, py_name = load_trace(Path(py_trace), prefer="PY")
    except TraceInputError as err:
        _fail_input(ctx, str(err))
    result = compare_records(c_records, py_records, rtol=rtol, atol=atol,
                             c_name=c_name, py_name=py_name)

    out = sys.stdout
    width = None if out.isatty() else max(160, int(os.environ.get("COLUMNS", "0") or 0))
    console = Console(file=out, highlight=False, width=width, soft_wrap=False)
    render_table(result, console, show_all=show_all)
    for path, write in ((json_path, lambda fh: (json.dump(to_json(result), fh, indent=1,
                                                          allow_nan=False), fh.write("\n"))),
                        (md_path, lambda fh: fh.write(to_markdown(result)))):
        if not path:
            continue
        try:
            with open(path, "w", encoding="utf-8") as fh:
                write(fh)
        except OSError as err:
            out.flush()
            _fail_input(ctx, f"{path}: cannot write ({err.strerror or err})")
    out.flush()
    click.echo(f"first_divergence={result.first_divergence}")
    ctx.exit(0 if result.first_divergence is None else 1)
