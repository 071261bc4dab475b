"""``-hkl`` files read the way nanoBragg.c reads them (``--c-parity``; C-parity quirk: HKL reading).

nanoBragg.c reads the file twice with ``fscanf`` on the whole stream, not line by line: first
``"%lg%lg%lg%lg"`` until a field does not parse (the index ranges and the count of reflections),
then ``"%d%d%d%lg"`` until a field does not parse (the values it stores). So a file whose
indices are written ``1.0 0.0 0.0 100`` has its ranges from the first pass but stores nothing
in the second (``%d`` stops at ``.0``): every reflection gets ``-default_F``. A first line that
is not a number (``# h k l F``) leaves the first pass empty and C exits with "not enough HKL
indices": :func:`read_hkl_like_c` refuses that file with the same reason.

The default mode reads such files generously instead (:func:`nanobragg_cli.io.hkl.read_hkl`:
``#`` comments skipped, ``1.0`` read as 1); see docs/differences.md.
"""

from __future__ import annotations

import math
import os
import re

from ..errors import InputFileError
from ._text import read_text
from .hkl import HKLGrid, _alloc_grid

_SPACE = " \t\n\v\f\r"
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DEC_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFNAN_RE = re.compile(r"[+-]?(?:inf(?:inity)?|nan)", re.IGNORECASE)


class _Stream:
    """A text read field by field as ``fscanf`` reads it (skip C whitespace, then the field)."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def _field(self, pattern):
        n = len(self.text)
        while self.pos < n and self.text[self.pos] in _SPACE:
            self.pos += 1
        m = pattern.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def double(self) -> float | None:
        """``%lg``: a decimal number (or inf/nan), else None."""
        tok = self._field(_DEC_RE) or self._field(_INFNAN_RE)
        return None if tok is None else float(tok)

    def int(self) -> int | None:
        """``%d``: an optional sign and digits, else None."""
        tok = self._field(_INT_RE)
        return None if tok is None else int(tok)

    @property
    def line(self) -> int:
        """1-based line of the next unread character."""
        return self.text.count("\n", 0, self.pos) + 1


def _trunc(x: float) -> int:
    """C's double -> int conversion (truncation toward zero)."""
    return int(x) if math.isfinite(x) else 0


def read_hkl_like_c(path: str | os.PathLike, default_F: float) -> tuple[HKLGrid, int]:
    """nanoBragg.c's two-pass reading of an ``-hkl`` file: ``(grid, count)``.

    count is the number of reflections of the first pass (C's "initialized hkls"); the grid spans
    the first pass' ranges, holds ``default_F`` (when non-zero) except in the padding slots, and
    the values of the second pass. Raises :class:`InputFileError` (naming the file and line) where
    C exits ("not enough HKL indices") or would write outside its table.
    """
    name = os.fspath(path)
    text = read_text(path, "hkl file")
    s = _Stream(text)
    lo, hi, count = [10 ** 9] * 3, [-10 ** 9] * 3, 0
    while True:
        start = s.pos
        row = [s.double() for _ in range(4)]
        if any(v is None for v in row):
            s.pos = start
            break
        for i in range(3):
            if lo[i] > row[i]:
                lo[i] = _trunc(row[i])
            if hi[i] < row[i]:
                hi[i] = _trunc(row[i])
        count += 1
    if count == 0:
        raise InputFileError(f"hkl file {name}, line {s.line}: not four numbers h k l F; "
                             "nanoBragg.c stops reading there and exits with \"not enough HKL "
                             "indices\" (the default mode skips '#' comment lines)")
    ranges = tuple(h - l + 1 for l, h in zip(lo, hi))
    grid = _alloc_grid(ranges, f"hkl file {name}")
    if default_F != 0.0:
        grid[: ranges[0], : ranges[1], : ranges[2]] = default_F
    s = _Stream(text)
    while True:
        start = s.pos
        h, k, l = s.int(), None, None
        if h is not None:
            k = s.int()
        if k is not None:
            l = s.int()
        F = s.double() if l is not None else None
        if F is None:
            break
        idx = (h - lo[0], k - lo[1], l - lo[2])
        if any(not 0 <= i < n for i, n in zip(idx, grid.shape)):
            s.pos = start
            raise InputFileError(f"hkl file {name}, line {s.line}: reflection {h} {k} {l} lies "
                                 "outside the index ranges nanoBragg.c's first reading found "
                                 "(it would write outside its table)")
        grid[idx] = F
    return HKLGrid(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], grid), count
