"""``--png FILE``: an 8-bit grayscale PNG picture of the float image (zlib + struct, no new
dependency).

Diffraction images span many decades (Bragg spots are 10^3-10^6 times the inter-Bragg signal), so
the picture is log (default) or sqrt scaled, clipped at a high percentile of the rendered pixels:
the spots come out white, the weak signal between them grey, zero black. Rows are slow, columns
fast, as in the float image and nanoBragg.c's PGM.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLIP_PERCENTILE = 99.9   # of the positive pixels: the brightest 0.1 % saturate
LOG_DECADES = 4.0        # log scale: black at clip / 10^4
SCALES = ("log", "sqrt")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bytes(gray: np.ndarray, text: dict | None = None) -> bytes:
    """A PNG file of ``gray``: uint8 [rows, cols]; ``text``: tEXt key/value pairs (latin-1)."""
    img = np.ascontiguousarray(gray, dtype=np.uint8)
    if img.ndim != 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"PNG image must be 2-D and non-empty, got shape {img.shape}")
    rows, cols = img.shape
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    raw = np.empty((rows, cols + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "None" for every row
    raw[:, 1:] = img
    out = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
    out.append(_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def clip_level(image: np.ndarray, rendered: np.ndarray | None = None) -> float:
    """The value shown as white: the CLIP_PERCENTILE-th percentile of the positive rendered
    pixels (their maximum if that is 0); 0 for an image without positive pixels."""
    vals = np.asarray(image, dtype=np.float64).reshape(-1)
    if rendered is not None:
        vals = vals[rendered]
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return 0.0
    level = float(np.percentile(vals, CLIP_PERCENTILE))
    return level if level > 0 else float(vals.max())


def display_levels(image: np.ndarray, scale: str = "log", clip: float | None = None,
                   rendered: np.ndarray | None = None) -> np.ndarray:
    """uint8 [slow, fast] grey levels of a float image. ``scale``: "log" (LOG_DECADES below the
    clip level map to 0..255) or "sqrt"; ``clip``: the white level (default :func:`clip_level`).
    Negative, zero and non-finite pixels are black."""
    if scale not in SCALES:
        raise ValueError(f"unknown PNG scale {scale!r} (expected one of {', '.join(SCALES)})")
    img = np.asarray(image, dtype=np.float64)
    clip = clip_level(img, rendered) if clip is None else clip
    out = np.zeros(img.shape, dtype=np.float64)
    if clip > 0:
        pos = np.isfinite(img) & (img > 0)
        x = np.minimum(img[pos] / clip, 1.0)
        if scale == "log":
            out[pos] = np.clip(1.0 + np.log10(x) / LOG_DECADES, 0.0, 1.0)
        else:
            out[pos] = np.sqrt(x)
    return np.floor(out * 255.0 + 0.5).astype(np.uint8)


def image_png_bytes(image: np.ndarray, scale: str = "log",
                    rendered: np.ndarray | None = None) -> bytes:
    """The --png file of a float image, with its scaling recorded in tEXt chunks."""
    clip = clip_level(image, rendered)
    gray = display_levels(image, scale, clip)
    comment = (f"{scale} scale; white = {clip:.6g} photons/pixel "
               f"({CLIP_PERCENTILE}th percentile of positive pixels)")
    if scale == "log":
        comment += f"; black below {clip / 10 ** LOG_DECADES:.6g}"
    text = {"Software": "nanobragg_cli", "Comment": comment}
    return png_bytes(gray, text)
