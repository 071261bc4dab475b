"""The image statistics' float64 sums taken a piece at a time (nanobragg_cli.pairwise) are
numpy's own: bit-identical to ``np.sum`` over a float64 copy of the whole image (which the
statistics used before), for splits at every level of numpy's pairwise recursion, ROI blocks
that are not contiguous, and the statistics of an image with a ROI and a mask."""

import math

import numpy as np
import pytest

from nanobragg_cli import pairwise
from nanobragg_cli.outputs import image_stats
from nanobragg_cli.pairwise import block_pairwise_sum, pairwise_sum


def _values(rng, n):
    # float32 values over nine decades, so that the order of the additions shows in the sum
    return (rng.random(n) * 10.0 ** rng.uniform(-3, 6, n)).astype(np.float32)


def _square(w):
    return np.multiply(w, w, out=w)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 1000, 4099, 65537, 300_007])
@pytest.mark.parametrize("piece", [64, 1000, 1 << 16])
def test_sums_in_pieces_equal_numpy_sum_of_the_float64_copy(n, piece):
    a = _values(np.random.default_rng(n), n)
    whole = a.astype(np.float64)
    assert pairwise_sum(a, piece=piece) == float(np.sum(whole))
    assert pairwise_sum(a, _square, piece=piece) == float(np.sum(whole * whole))


@pytest.mark.parametrize("rows,cols", [(slice(0, 301), slice(0, 257)), (slice(3, 290), slice(5, 250)),
                                       (slice(10, 11), slice(0, 50)), (slice(0, 301), slice(1, 257))])
@pytest.mark.parametrize("piece", [64, 5000, 1 << 19])
def test_block_sums_equal_numpy_sum_of_the_block_copy(rows, cols, piece):
    img = _values(np.random.default_rng(5), 301 * 257).reshape(301, 257)
    mean = 1234.5

    def deviation_squared(w):
        w -= mean
        return np.multiply(w, w, out=w)

    copy = img[rows, cols].astype(np.float64)
    copy -= mean
    assert block_pairwise_sum(img[rows, cols], deviation_squared, piece) == float(np.sum(copy * copy))


def _stats_of_the_float64_copy(img, keep, roi):
    """mean, rms, rmsd as nanoBragg.c defines them, summed by numpy over float64 copies."""
    vals = img.reshape(-1)[keep].astype(np.float64)
    n = vals.size
    mean = float(np.sum(vals)) / n
    rms = math.sqrt(float(np.sum(vals * vals)) / (n - 1))
    xmin, xmax, ymin, ymax = roi
    block = img[ymin:ymax + 1, xmin:xmax + 1].astype(np.float64) - mean
    return mean, rms, math.sqrt(float(np.sum(block * block)) / (block.size - 1))


@pytest.mark.parametrize("masked", [False, True])
def test_statistics_equal_those_of_the_float64_copy(monkeypatch, masked):
    monkeypatch.setattr(pairwise, "PIECE", 1000)   # many pieces on a small image
    rng = np.random.default_rng(7)
    img = _values(rng, 200 * 180).reshape(200, 180)
    roi = (3, 170, 10, 190)   # xmin, xmax, ymin, ymax
    keep = np.zeros((200, 180), dtype=bool)
    keep[10:191, 3:171] = True
    if masked:
        keep &= rng.random((200, 180)) > 0.3
    rendered = keep.reshape(-1)
    st = image_stats(img, rendered, roi, 1e-4, 1, 180)
    assert (st.mean, st.rms, st.rmsd) == _stats_of_the_float64_copy(img, rendered, roi)
    k = int(np.argmax(np.where(rendered, img.reshape(-1), -np.inf)))
    assert st.max_I == float(img.reshape(-1)[k]) and st.n == int(rendered.sum())
