"""Lay the rows of a trace comparison out to fit a width, never breaking a number.

Three layouts, the widest that fits ``width`` columns:

* a boxed table with every cell on one line;
* the same table with the key column wrapped (at ``_`` and ``.``) to make room for the numbers;
* a compact layout below that, one block per record, the values wrapped between numbers:

      I_pixel_final #0  FAIL  |Δ| 5.17e-05  rel Δ 4.82e-06
        C   10.7124847015952
        Py  10.7124330192901

Tables longer than ``plain_above`` rows are printed as aligned text (one line per record) when
that fits, else compactly (rich's table layout costs ~1 ms a row).
"""

from __future__ import annotations

import re
import textwrap

HEADERS = ("key", "#", "C", "Py", "|Δ|", "rel Δ", "ok")
RIGHT = {1, 4, 5}
KEY_MIN = 12   # the narrowest key column worth wrapping into


def _table_width(widths: list) -> int:
    """Columns of a rich box table (one space of padding each side, a border between)."""
    return sum(widths) + 3 * len(widths) + 1


def _split_key(key: str, width: int) -> list:
    """A key cut after ``_`` or ``.`` into pieces of at most ``width`` (hard cut if need be)."""
    parts, line = [], ""
    for piece in re.findall(r"[^_.]+[_.]?|[_.]", key):
        while len(piece) > width:
            if line:
                parts.append(line)
                line = ""
            parts.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width:
            parts.append(line)
            line = piece
        else:
            line += piece
    if line:
        parts.append(line)
    return parts or [""]


def _wrap_numbers(text: str, width: int) -> list:
    return textwrap.wrap(text, width=max(width, 1), break_long_words=False,
                         break_on_hyphens=False) or [""]


def compact_lines(cells: list, failed: list, width: int) -> list:
    """One block per record: key, occurrence, status and deltas, then the C and Py values."""
    out = []
    for c, bad in zip(cells, failed):
        key, occ, cv, pv, ad, rd, ok = c
        head = f"{key} #{occ}  {ok}" + ("" if ad == "-" else f"  |Δ| {ad}  rel Δ {rd}")
        out += _wrap_numbers(head, width)
        for label, values in (("C ", cv), ("Py", pv)):
            wrapped = _wrap_numbers(values, width - 6)
            out.append(f"  {label}  {wrapped[0]}")
            out += [f"      {w}" for w in wrapped[1:]]
    return out


def print_rows(console, title: str, cells: list, failed: list, plain_above: int) -> str:
    """Print the rows (lists of 7 cell texts; ``failed`` flags them) in the widest layout that
    fits the console; returns the layout's name ("table", "table-wrapped-key", "plain",
    "compact")."""
    from rich.table import Table
    from rich.text import Text

    width = console.width
    widths = [max(len(c[k]) for c in [list(HEADERS)] + cells) for k in range(len(HEADERS))]
    console.print(Text(title), soft_wrap=True)
    if len(cells) > plain_above:
        plain_width = sum(widths) + 2 * (len(widths) - 1)
        if plain_width <= width:
            def fmt(c):
                return "  ".join(c[k].rjust(widths[k]) if k in RIGHT else c[k].ljust(widths[k])
                                 for k in range(len(c))).rstrip()
            lines = [fmt(list(HEADERS)), "  ".join("-" * w for w in widths)]
            lines += [fmt(c) for c in cells]
            console.print(Text("\n".join(lines)), soft_wrap=True)
            return "plain"
        console.print(Text("\n".join(compact_lines(cells, failed, width))), soft_wrap=True)
        return "compact"
    key_width = widths[0]
    layout = "table"
    if _table_width(widths) > width:
        key_width = widths[0] - (_table_width(widths) - width)
        layout = "table-wrapped-key"
        if key_width < min(KEY_MIN, widths[0]):
            console.print(Text("\n".join(compact_lines(cells, failed, width))), soft_wrap=True)
            return "compact"
    table = Table(title=None, width=None)
    for k, name in enumerate(HEADERS):
        table.add_column(name, justify="right" if k in RIGHT else "left", no_wrap=True,
                         overflow="ignore", min_width=key_width if k == 0 else widths[k],
                         max_width=key_width if k == 0 else widths[k])
    for c, bad in zip(cells, failed):
        key = "\n".join(_split_key(c[0], key_width))
        table.add_row(*(Text(x) for x in [key, *c[1:]]), style="bold red" if bad else None)
    console.print(table)
    return layout
