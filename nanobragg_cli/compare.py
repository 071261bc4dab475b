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
detectors live in :mod:`nanobragg_cli.compare_explain`. The rows and the result are
:mod:`nanobragg_cli.compare_model`; renderers are in :mod:`nanobragg_cli.compare_report`.

No torch import here: ``nanobragg compare`` must start fast.
"""

from __future__ import annotations

import json
import math
import os
import sys

import click

from .compare_explain import QUIRK_DETECTORS, QuirkContext
from .compare_model import (  # noqa: F401  (the model, importable from here too)
    DEFAULT_ATOL, DEFAULT_RTOL, LENGTH, MISMATCH, MISSING_C, MISSING_PY, OK, CompareResult,
    CompareRow)
from .tracefmt import (
    TraceInputError,
    TraceRecord,
    is_integer_key,
    key_stats,
    load_trace,
    read_trace_text,
    trace_notes,
)

__all__ = [
    "CompareRow",
    "CompareResult",
    "TraceInputError",
    "compare_records",
    "compare_traces",
    "compare_command",
]

UNLIMITED_WIDTH = 10000   # a pipe or file without COLUMNS: the natural width


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


def tally_rows(rows: list) -> tuple:
    """(counts, first): the number of rows of each status (plus "rows" and "failed") and the
    index of the first row that is not ok (None when all are)."""
    counts = {"rows": len(rows), OK: 0, MISMATCH: 0, LENGTH: 0, MISSING_PY: 0, MISSING_C: 0}
    first = None
    for k, row in enumerate(rows):
        counts[row.status] += 1
        if not row.ok and first is None:
            first = k
    counts["failed"] = counts["rows"] - counts[OK]
    return counts, first


def compare_records(c_records: list[TraceRecord], py_records: list[TraceRecord],
                    rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                    c_name: str = "<C>", py_name: str = "<PY>",
                    c_notes: tuple = ()) -> CompareResult:
    """Align two parsed traces and compare them (see the module docstring for the rules).
    ``c_notes``: the C log's warnings (:func:`nanobragg_cli.tracefmt.trace_notes`), for the
    explainers."""
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

    counts, first_idx = tally_rows(rows)
    result = CompareResult(rows, rows[first_idx].key if first_idx is not None else None,
                           first_idx, None, counts, rtol=rtol, atol=atol,
                           c_name=c_name, py_name=py_name)
    if first_idx is not None:
        ctx = QuirkContext(result, c_records, py_records, tuple(c_notes))
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
    c_text = read_trace_text(c_text_or_path)[0]
    result = compare_records(c_records, py_records, rtol=rtol, atol=atol,
                             c_name=c_name, py_name=py_name, c_notes=trace_notes(c_text))
    note_different_pixels(result, c_text, read_trace_text(py_text_or_path)[0])
    return result


def note_different_pixels(result: CompareResult, c_text: str, py_text: str) -> str | None:
    """Put the different-pixels message first among the explanations (and return it)."""
    from .known_differences import different_pixels
    message = different_pixels(c_text, py_text)
    if message:
        result.quirks.insert(0, {"name": "different_pixels", "text": message})
        result.explanation = "\n".join(q["text"] for q in result.quirks)
    return message


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

    from .compare_report import render_table, to_json, to_markdown

    if not (rtol >= 0 and atol >= 0):
        _fail_input(ctx, "--rtol and --atol must be non-negative numbers")
    try:
        # Path objects: the arguments are always file names, never trace text
        c_records, c_name = load_trace(Path(c_trace), prefer="C")
        py_records, py_name = load_trace(Path(py_trace), prefer="PY")
    except TraceInputError as err:
        _fail_input(ctx, str(err))
    c_text = read_trace_text(Path(c_trace))[0]
    result = compare_records(c_records, py_records, rtol=rtol, atol=atol,
                             c_name=c_name, py_name=py_name, c_notes=trace_notes(c_text))
    pixels = note_different_pixels(result, c_text, read_trace_text(Path(py_trace))[0])

    out = sys.stdout
    # COLUMNS first (a terminal, or a log of a chosen width), else the terminal's; a pipe or
    # file without COLUMNS gets the natural width (one line per record, for grep and logs)
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else (
        None if out.isatty() else UNLIMITED_WIDTH)
    console = Console(file=out, highlight=False, width=width, soft_wrap=False)
    if pixels:
        click.echo(pixels)
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
