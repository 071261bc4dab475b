"""Source lists (``-sourcefile``), read as nanoBragg.c's ``read_text_file`` does.

One source per non-blank line, up to five columns ``X Y Z I lambda`` separated by any run of the
delimiters `` \\t,;:!``; columns beyond the fifth are ignored; missing columns are NaN (the
caller substitutes C's defaults: position -10 m along the beam, I = 1, lambda = lambda0).
Positions are in metres (only the direction matters) and lambda in metres, as in C.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import InputFileError
from ._text import read_text, show_token, strict_float

SOURCE_COLUMNS = ("X", "Y", "Z", "I", "lambda")

# C's delimiters plus the line-end/format characters C would have turned into bogus zeros.
_SPLIT_RE = re.compile(r"[ \t,;:!\r\v\f]+")


def read_sourcefile(path: str | os.PathLike) -> np.ndarray:
    """Read a source file; returns float64 (n, 5) = X, Y, Z, I, lambda with NaN where missing.

    Blank lines and lines starting with ``#`` are skipped.  Unlike C (whose ``atof`` turns any
    garbage into 0 silently) a token that is not a plain number among the first five columns is
    an :class:`InputFileError` naming the line; so is a file without any source line.
    """
    name = os.fspath(path)
    text = read_text(path, "source file")
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip(" \t,;:!\r\v\f")
        if not stripped or stripped.startswith("#"):
            continue
        row = [np.nan] * 5
        for col, token in enumerate(_SPLIT_RE.split(stripped)[:5]):
            value = strict_float(token)
            if value is None:
                raise InputFileError(
                    f"source file {name}, line {lineno}: column {col + 1} "
                    f"({SOURCE_COLUMNS[col]}) is not a number: {show_token(token)}"
                )
            row[col] = value
        rows.append(row)
    if not rows:
        raise InputFileError(f"source file {name}: contains no sources (expected lines of X Y Z [I [lambda]])")
    return np.array(rows, dtype=np.float64).reshape(-1, 5)
