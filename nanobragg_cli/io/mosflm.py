"""MOSFLM orientation matrix files (``-mat``).

nanoBragg.c reads the first nine numbers with three ``fscanf("%lg%lg%lg")`` calls into
``a_star[i], b_star[i], c_star[i]`` for i = x, y, z: the file's first three rows are the x, y, z
components and its columns are a*, b*, c* (the MOSFLM "A" matrix, whose columns are the
reciprocal basis vectors multiplied by the wavelength).  Everything after the ninth number
(MOSFLM writes U, cell and missetting lines there) is ignored.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError
from ._text import read_text, show_token, strict_float


def check_basis(name: str, rows: np.ndarray) -> None:
    """a*, b*, c* (rows, as :func:`read_mat` returns them) must be non-zero and span space: else
    no crystal follows from them (InputFileError naming the file)."""
    norms = np.linalg.norm(rows, axis=1)
    if not norms.any():
        raise InputFileError(f"matrix file {name}: all nine numbers are zero (no orientation)")
    for label, n in zip(("a*", "b*", "c*"), norms):
        if n == 0.0:
            raise InputFileError(f"matrix file {name}: the {label} vector is zero")
    volume = abs(float(np.linalg.det(rows)))
    if volume <= 1e-12 * float(np.prod(norms)):
        raise InputFileError(f"matrix file {name}: a*, b*, c* are coplanar (the matrix is "
                             "singular), so they describe no crystal lattice")


def read_mat(path: str | os.PathLike) -> np.ndarray:
    """Read the orientation matrix; returns float64 (3, 3) whose ROWS are a*, b*, c*.

    That is the transpose of the file's leading 3x3 block, still in file units (Å⁻¹ times the
    wavelength in Å, i.e. dimensionless "λ-scaled"); the caller divides by λ in Å as C does.
    Numbers are whitespace separated and need not be three per line.  Raises
    :class:`InputFileError` if fewer than nine numbers come before the end of the file or if one
    of the first nine tokens is not a plain finite number (with its line number).
    """
    name = os.fspath(path)
    text = read_text(path, "matrix file")
    values: list[float] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        for token in line.split():
            value = strict_float(token)
            if value is None:
                raise InputFileError(
                    f"matrix file {name}, line {lineno}: expected a number "
                    f"(value {len(values) + 1} of 9), got {show_token(token)}"
                )
            values.append(value)
            if len(values) == 9:
                block = np.array(values, dtype=np.float64).reshape(3, 3)  # rows x, y, z
                return np.ascontiguousarray(block.T)  # rows a*, b*, c*
    raise InputFileError(
        f"matrix file {name}: expected 9 numbers (3 rows of a* b* c* components), found {len(values)}"
    )
