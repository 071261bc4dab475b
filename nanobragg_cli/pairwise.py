"""Float64 sums of a float32 image in pieces, in numpy's own summation order.

``np.sum`` of a contiguous float64 array of n values is numpy's pairwise sum: up to 128 values
are added in eight interleaved partial sums, more are split at n2 = n//2 rounded down to a
multiple of 8 and the two halves' sums added. :func:`pairwise_sum` follows the same splits
down to pieces of at most ``piece`` values and lets ``np.sum`` add each piece, so its result is
bit-identical to ``np.sum(values.astype(np.float64))`` (``f`` applied first) while only one
piece is ever converted to float64: the statistics of a 4096² image then need 2 × 4 MiB of work
arrays instead of a 128 MiB float64 copy. tests/test_pairwise.py checks the identity against
``np.sum`` itself, so a numpy whose order differs is caught.
"""

from typing import Callable

import numpy as np

PW_BLOCK = 128     # numpy's PW_BLOCKSIZE: pieces at most this long are not split further
PIECE = 1 << 19    # values converted to float64 at a time (4 MiB); a multiple of 8


def pairwise_sum(values: np.ndarray, f: Callable | None = None, piece: int | None = None) -> float:
    """Σ f(values.astype(float64)) in ``np.sum``'s order; ``values``: 1-D (n,) float array,
    contiguous or a view; ``f``: elementwise float64 -> float64, may work in place (None: the
    values themselves); ``piece``: values converted at a time (None: :data:`PIECE`)."""
    piece = PIECE if piece is None else piece
    n = values.shape[0]
    if n <= max(piece, PW_BLOCK):
        work = values.astype(np.float64)
        return float(np.sum(work if f is None else f(work)))
    half = n // 2
    half -= half % 8
    return (pairwise_sum(values[:half], f, piece) + pairwise_sum(values[half:], f, piece))


def block_values(block: np.ndarray) -> np.ndarray | None:
    """The values of a 2-D [rows, cols] ``block`` as the 1-D array ``block.ravel()`` would be,
    without a copy when the rows are contiguous to each other (full-width rows of an image);
    None otherwise (then see :func:`block_pairwise_sum`)."""
    if block.size == 0 or block.flags.c_contiguous:
        return block.reshape(-1)
    return None


def block_pairwise_sum(block: np.ndarray, f: Callable | None = None,
                       piece: int | None = None) -> float:
    """Σ f(block.astype(float64)) in ``np.sum``'s order for a 2-D [rows, cols] view (a ROI of an
    image, row-major as ``np.sum`` visits a C-contiguous copy of it): the same splits as
    :func:`pairwise_sum` over the row-major ravel, each piece gathered from its rows."""
    piece = PIECE if piece is None else piece
    flat = block_values(block)
    if flat is not None:
        return pairwise_sum(flat, f, piece)
    rows, cols = block.shape

    def span(lo: int, hi: int) -> np.ndarray:
        r0, r1 = lo // cols, (hi - 1) // cols + 1
        return block[r0:r1].reshape(-1)[lo - r0 * cols:hi - r0 * cols]   # a copy of ≤ piece rows

    def go(lo: int, n: int) -> float:
        if n <= max(piece, PW_BLOCK):
            work = span(lo, lo + n).astype(np.float64)
            return float(np.sum(work if f is None else f(work)))
        half = n // 2
        half -= half % 8
        return go(lo, half) + go(lo + half, n - half)

    return go(0, rows * cols)
