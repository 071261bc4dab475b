"""Render a trace comparison: a rich (or plain) table, its summary line, JSON and Markdown."""

from __future__ import annotations

import math

from .compare_model import LENGTH, MISMATCH, MISSING_C, MISSING_PY, OK, CompareResult, CompareRow
from .records import json_safe


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

def render_table(result: CompareResult, console=None, show_all: bool = False) -> None:
    """Print the comparison as a rich table, then the summary and any explanation.

    By default the rows up to and including the first divergence are shown (all rows when
    there is none); ``show_all`` shows every row. The layout fits the console's width without
    breaking a number (:mod:`nanobragg_cli.compare_layout`); tables longer than
    :data:`RICH_TABLE_MAX_ROWS` are printed as plain aligned text, one line per record. The
    ``first_divergence=`` line is *not* printed here (the command prints it last).
    """
    from rich.console import Console
    from rich.text import Text

    from .compare_layout import print_rows

    if console is None:
        console = Console(highlight=False)
    rows = _shown_rows(result, show_all)
    title = f"C: {result.c_name}   Py: {result.py_name}"
    print_rows(console, title, [_row_cells(r) for r in rows], [not r.ok for r in rows],
               RICH_TABLE_MAX_ROWS)
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
