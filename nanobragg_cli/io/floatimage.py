"""The raw float image (``-floatfile``): little-endian float32, slow-major, no header.

nanoBragg.c writes its ``float`` pixel array with one ``fwrite``: ``spixels`` rows of
``fpixels`` values (row = one slow index), native byte order (little-endian on x86-64).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError
from ._text import read_bytes


def float_image_bytes(img) -> bytes:
    """The bytes C writes for the float image ``img`` (float32 array shaped [slow, fast]).

    Values are converted to float32 if needed and written little-endian, slow-major.
    """
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"float image must be 2-D [slow, fast], got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def read_float_image(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a raw float image of ``shape`` = (slow, fast) pixels; returns float32 [slow, fast].

    The file must hold exactly ``4 * slow * fast`` bytes.
    """
    slow, fast = (int(shape[0]), int(shape[1]))
    if slow <= 0 or fast <= 0:
        raise ValueError(f"invalid image shape {shape}")
    raw = read_bytes(path, "float image")
    want = 4 * slow * fast
    if len(raw) != want:
        raise InputFileError(
            f"float image {os.fspath(path)}: {len(raw)} bytes, expected {want} "
            f"({slow} x {fast} float32 pixels)"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(slow, fast)
