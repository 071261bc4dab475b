"""Structure-factor input: ``-hkl`` text files and nanoBragg.c's ``Fdump.bin`` cache.

nanoBragg.c reads ``h k l F`` with ``fscanf`` until the first thing that does not parse, stores F
in a dense grid spanning the min..max of each index (plus one zero padding slot per axis), and
dumps that grid to ``Fdump.bin``.  :func:`read_hkl` is stricter than C (it refuses what C would
silently stop at or misread, naming the line), :func:`hkl_grid` builds C's grid exactly, and
:func:`fdump_bytes`/:func:`read_fdump` write/read C's cache format.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError, NanoBraggError
from ._text import read_bytes, read_text, show_token, strict_float

_INT32_MAX = 2**31 - 1


def _data_lines(text: str):
    """Yield (line_number, tokens) for every line holding data ('#' starts a comment)."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.split("#", 1)[0]
        tokens = line.split()
        if tokens:
            yield lineno, tokens


HEADER_HINT = ("; a column header? nanoBragg.c reads numbers only: delete the line or start it "
               "with '#'")


def _check_line(name: str, lineno: int, tokens: list[str], first: bool = False) -> None:
    """Raise the InputFileError describing what is wrong with one data line (if anything);
    ``first``: the file's first data line (where a column header gets a hint)."""
    where = f"hkl file {name}, line {lineno}"
    hint = HEADER_HINT if first and any(strict_float(t) is None and t[:1].isalpha()
                                        for t in tokens) else ""
    if len(tokens) < 4:
        raise InputFileError(f"{where}: expected 4 columns (h k l F), found {len(tokens)}{hint}")
    if len(tokens) > 4:
        raise InputFileError(
            f"{where}: expected 4 columns (h k l F), found {len(tokens)} "
            "(nanoBragg reads F from the 4th column only; remove the extra columns)"
        )
    for col, token in zip(("h", "k", "l", "F"), tokens):
        value = strict_float(token)
        if value is None:
            raise InputFileError(f"{where}: {col} is not a number: {show_token(token)}{hint}")
        if col != "F":
            if value != round(value):
                raise InputFileError(f"{where}: Miller index {col} = {token} is not an integer")
            if abs(value) > _INT32_MAX:
                raise InputFileError(f"{where}: Miller index {col} = {token} is out of range")


def read_hkl(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an ``h k l F`` structure-factor file.

    Returns ``(hkl, F)``: int32 array (n, 3) and float64 array (n,), in file order.
    Whitespace-separated columns; blank lines and ``#`` comments are skipped.  Refused with an
    :class:`InputFileError` naming the file and line: a line without exactly 4 columns, a value
    that is not a plain decimal number (inf/nan included), a non-integer h, k or l (``2.0`` is
    accepted as 2), and a file with no reflections.
    """
    name = os.fspath(path)
    text = read_text(path, "hkl file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, comments="#", ndmin=2)
    except ValueError as err:
        for row, (lineno, tokens) in enumerate(_data_lines(text)):
            _check_line(name, lineno, tokens, first=row == 0)
        raise InputFileError(f"hkl file {name}: cannot be read: {err}") from None

    if table.shape[0] == 0:
        raise InputFileError(f"hkl file {name}: contains no reflections (expected lines of h k l F)")

    idx = table[:, :3] if table.shape[1] >= 3 else table
    bad_shape = table.shape[1] != 4
    bad_rows = np.zeros(table.shape[0], dtype=bool)
    if not bad_shape:
        bad_rows = ~np.isfinite(table).all(axis=1)
        bad_rows |= (idx != np.round(idx)).any(axis=1)
        bad_rows |= (np.abs(idx) > _INT32_MAX).any(axis=1)
    if bad_shape or bad_rows.any():
        first_bad = 0 if bad_shape else int(np.argmax(bad_rows))
        for row, (lineno, tokens) in enumerate(_data_lines(text)):
            if row >= first_bad:
                _check_line(name, lineno, tokens, first=row == 0)
        raise InputFileError(f"hkl file {name}: malformed reflection at data row {first_bad + 1}")

    hkl = table[:, :3].astype(np.int32)
    F = np.ascontiguousarray(table[:, 3])
    return hkl, F


@dataclass
class HKLGrid:
    """nanoBragg.c's dense structure-factor table ``Fhkl[h-h_min][k-k_min][l-l_min]``.

    ``F`` has shape ``(h_range+1, k_range+1, l_range+1)`` with ``h_range = h_max-h_min+1`` etc.:
    C allocates one extra (zero) slot per axis, and it is part of the Fdump.bin format.
    """

    h_min: int
    h_max: int
    k_min: int
    k_max: int
    l_min: int
    l_max: int
    F: np.ndarray

    @property
    def ranges(self) -> tuple[int, int, int]:
        """(h_range, k_range, l_range) = max - min + 1 per axis."""
        return (self.h_max - self.h_min + 1, self.k_max - self.k_min + 1, self.l_max - self.l_min + 1)

    def lookup(self, h: int, k: int, l: int) -> float | None:  # noqa: E741
        """F at integer (h, k, l) if inside [min, max] on every axis, else None."""
        if self.h_min <= h <= self.h_max and self.k_min <= k <= self.k_max and self.l_min <= l <= self.l_max:
            return float(self.F[h - self.h_min, k - self.k_min, l - self.l_min])
        return None


# Refuse grids that could not sensibly be allocated (C would calloc and crash or thrash).
MAX_GRID_ELEMENTS = 1 << 31


def _alloc_grid(ranges: tuple[int, int, int], what: str) -> np.ndarray:
    hr, kr, lr = ranges
    n = (hr + 1) * (kr + 1) * (lr + 1)
    if n > MAX_GRID_ELEMENTS:
        raise NanoBraggError(
            f"{what}: Miller index ranges {hr} x {kr} x {lr} need a table of {n} values "
            f"({8 * n / 2**30:.1f} GiB); are the indices correct?"
        )
    from ..preflight import check_allocation  # the memory available and --max-memory (x3:
    check_allocation(what, 3 * 8 * n,          # the grid, its Fdump bytes, a working copy)
                     f"Miller index ranges {hr} x {kr} x {lr} make a table of {n} values")
    try:
        return np.zeros((hr + 1, kr + 1, lr + 1), dtype=np.float64)
    except MemoryError:
        raise NanoBraggError(f"{what}: not enough memory for a {hr} x {kr} x {lr} structure-factor table") from None


def hkl_grid(hkl, F, default_F: float = 0.0, *, source: str = "hkl table") -> HKLGrid:
    """Build C's dense grid from reflections, exactly as nanoBragg.c does after reading ``-hkl``.

    Bounds are the min/max of each index; every slot ``[0:h_range, 0:k_range, 0:l_range]`` is
    set to ``default_F`` when it is non-zero, the padding slots stay 0; then each listed reflection
    is stored (a later duplicate overwrites an earlier one).
    """
    hkl = np.asarray(hkl)
    Fv = np.asarray(F, dtype=np.float64)
    if hkl.ndim != 2 or hkl.shape[1] != 3 or Fv.shape != (hkl.shape[0],):
        raise ValueError(f"hkl must be (n, 3) and F (n,), got {hkl.shape} and {Fv.shape}")
    if hkl.shape[0] == 0:
        raise NanoBraggError(f"{source}: no reflections")
    hkl = hkl.astype(np.int64)
    lo = hkl.min(axis=0)
    hi = hkl.max(axis=0)
    ranges = tuple(int(v) for v in hi - lo + 1)
    grid = _alloc_grid(ranges, source)
    if default_F != 0.0:
        grid[: ranges[0], : ranges[1], : ranges[2]] = default_F

    rel = hkl - lo
    shape = grid.shape
    flat = (rel[:, 0] * shape[1] + rel[:, 1]) * shape[2] + rel[:, 2]
    # last occurrence of each slot wins: unique over the reversed list gives last indices
    rev_unique, rev_first = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - rev_first
    grid.reshape(-1)[rev_unique] = Fv[last]
    return HKLGrid(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]), grid)


def fdump_bytes(grid: HKLGrid) -> bytes:
    """The bytes nanoBragg.c writes to Fdump.bin for ``grid``.

    ``"%d %d %d %d %d %d\\n\\f"`` (h_min h_max k_min k_max l_min l_max), then all
    ``(h_range+1)(k_range+1)(l_range+1)`` values as little-endian float64, l fastest.
    """
    hr, kr, lr = grid.ranges
    if grid.F.shape != (hr + 1, kr + 1, lr + 1):
        raise ValueError(f"grid.F shape {grid.F.shape} does not match ranges {(hr, kr, lr)} + 1")
    head = "%d %d %d %d %d %d\n\f" % (grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max)
    return head.encode("ascii") + np.ascontiguousarray(grid.F, dtype="<f8").tobytes()


def read_fdump(path: str | os.PathLike) -> HKLGrid:
    """Read an Fdump.bin cache written by nanoBragg.c (or :func:`fdump_bytes`).

    The text header (six integers) ends at the first form feed; the doubles start right after it.
    (C's ``fscanf("...\\n\\f")`` would also swallow data bytes that look like whitespace; we do not.)
    The file must hold exactly the number of doubles the bounds imply.
    """
    name = os.fspath(path)
    what = f"Fdump file {name}"
    raw = read_bytes(path, "Fdump file")
    ff = raw.find(b"\f", 0, 256)
    if ff < 0:
        raise InputFileError(f"{what}: not an Fdump file (no header ending in a form feed)")
    fields = raw[:ff].decode("latin-1").split()
    values = [strict_float(t) for t in fields]
    if len(fields) != 6 or any(v is None or v != int(v) for v in values):
        raise InputFileError(f"{what}: header must be six integers 'h_min h_max k_min k_max l_min l_max'")
    h_min, h_max, k_min, k_max, l_min, l_max = (int(v) for v in values)
    ranges = (h_max - h_min + 1, k_max - k_min + 1, l_max - l_min + 1)
    if min(ranges) < 1:
        raise InputFileError(f"{what}: header bounds are inverted (a max is below its min)")
    grid = _alloc_grid(ranges, what)
    count = grid.size
    have = len(raw) - (ff + 1)
    if have != 8 * count:
        state = "truncated" if have < 8 * count else "has extra bytes"
        raise InputFileError(
            f"{what}: {state}: bounds {h_min}..{h_max}, {k_min}..{k_max}, {l_min}..{l_max} need "
            f"{8 * count} data bytes, found {have}"
        )
    grid[...] = np.frombuffer(raw, dtype="<f8", count=count, offset=ff + 1).reshape(grid.shape)
    return HKLGrid(h_min, h_max, k_min, k_max, l_min, l_max, grid)
