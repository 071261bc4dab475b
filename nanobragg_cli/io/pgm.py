"""The 8-bit PGM preview (``-pgmfile``), byte-identical to nanoBragg.c's."""

from __future__ import annotations

import numpy as np

from .smv import Roi, roi_slices


def pgm_bytes(float_img, pgm_scale: float, roi: Roi | None = None) -> bytes:
    """The PGM file C writes for the float image ``float_img`` (float32 [slow, fast]).

    Header ``"P5\\n<fast> <slow>\\n# pixels scaled by %g\\n255\\n"``, then one byte per pixel,
    slow-major: for ROI pixels ``(uint8) min(float * pgm_scale, 255)`` (truncation toward zero,
    computed in double); negative values and NaN give 0; pixels outside the ROI are 0.
    """
    f = np.asarray(float_img, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError(f"float image must be 2-D [slow, fast], got shape {f.shape}")
    slow, fast = f.shape
    out = np.zeros(f.shape, dtype=np.uint8)
    sl = roi_slices(f.shape, roi)
    test = f[sl].astype(np.float64) * float(pgm_scale)
    test = np.nan_to_num(test, nan=0.0)
    np.clip(test, 0.0, 255.0, out=test)
    out[sl] = np.trunc(test).astype(np.uint8)
    head = "P5\n%d %d\n# pixels scaled by %g\n255\n" % (fast, slow, float(pgm_scale))
    return head.encode("ascii") + out.tobytes()
