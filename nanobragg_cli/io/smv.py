"""SMV (ADSC) images: nanoBragg.c's ``-intfile``/``-noisefile`` writer and ``-img``/``-mask`` reader.

Writing reproduces C byte for byte: the 512-byte text header printed with ``%g`` (see
:func:`format_smv_header`) followed by unsigned 16-bit little-endian pixels, slow-major.

Reading follows C's ``GetFrame``/``ValueOf``: header values are looked up by *substring* (last
occurrence wins) and converted with C ``atof``, see :func:`smv_value`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError, NanoBraggError
from ._text import c_atof, read_bytes

SMV_HEADER_BYTES = 512
INT_IMAGE_BLOCK = 1 << 16   # pixels converted at a time by int_image

Roi = tuple[int, int, int, int]


@dataclass
class SMVHeader:
    """The values nanoBragg.c prints into an SMV header, in the units it prints them.

    The caller computes them (e.g. ``adxv_center_y = (detsize_s - Sbeam) * 1000``);
    :func:`format_smv_header` only formats.  Lengths in mm, wavelength in Å, angles in degrees.
    """

    size1: int  # fast pixels
    size2: int  # slow pixels
    pixel_size: float  # mm
    distance: float  # mm
    wavelength: float  # Å
    beam_center_x: float  # mm
    beam_center_y: float  # mm
    adxv_center_x: float
    adxv_center_y: float
    mosflm_center_x: float
    mosflm_center_y: float
    denzo_x_beam: float
    denzo_y_beam: float
    dials_origin: tuple[float, float, float]
    xds_orgx: float
    xds_orgy: float
    close_distance: float  # mm
    phi: float  # deg
    osc_start: float  # deg
    osc_range: float  # deg
    twotheta: float  # deg


def _g(x: float) -> str:
    """C's ``printf("%g", x)`` (Python's %g agrees for finite values; glibc signs its NaN)."""
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return "%g" % x


def _d(x: int) -> str:
    if isinstance(x, float) and not x.is_integer():
        raise ValueError(f"SMV SIZE value must be an integer, got {x!r}")
    return "%d" % int(x)


def format_smv_header(h: SMVHeader, overflow: str = "error") -> bytes:
    """The exact 512-byte header nanoBragg.c writes before an SMV image's pixels.

    Text lines as C prints them (``%g`` numbers, ``DIALS_ORIGIN`` without ``;``), then ``}\\f``,
    then spaces up to byte 512.  BYTE_ORDER is always ``little_endian`` (the byte order we write).
    If the text does not fit in 512 bytes, ``overflow`` decides: "error" raises
    :class:`NanoBraggError`; "like_c" returns the longer text unpadded, as nanoBragg.c writes it
    (the file then claims HEADER_BYTES=512 but its pixels start later: corrupt for readers);
    "grow" writes a valid header of the next multiple of 512 bytes with HEADER_BYTES updated.
    """
    o = h.dials_origin
    if len(o) != 3:
        raise ValueError("dials_origin needs 3 values")
    text = (
        "{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
        f"SIZE1={_d(h.size1)};\nSIZE2={_d(h.size2)};\n"
        f"PIXEL_SIZE={_g(h.pixel_size)};\nDISTANCE={_g(h.distance)};\n"
        f"WAVELENGTH={_g(h.wavelength)};\n"
        f"BEAM_CENTER_X={_g(h.beam_center_x)};\nBEAM_CENTER_Y={_g(h.beam_center_y)};\n"
        f"ADXV_CENTER_X={_g(h.adxv_center_x)};\nADXV_CENTER_Y={_g(h.adxv_center_y)};\n"
        f"MOSFLM_CENTER_X={_g(h.mosflm_center_x)};\nMOSFLM_CENTER_Y={_g(h.mosflm_center_y)};\n"
        f"DENZO_X_BEAM={_g(h.denzo_x_beam)};\nDENZO_Y_BEAM={_g(h.denzo_y_beam)};\n"
        f"DIALS_ORIGIN={_g(o[0])},{_g(o[1])},{_g(o[2])}\n"
        f"XDS_ORGX={_g(h.xds_orgx)};\nXDS_ORGY={_g(h.xds_orgy)};\n"
        f"CLOSE_DISTANCE={_g(h.close_distance)};\n"
        f"PHI={_g(h.phi)};\nOSC_START={_g(h.osc_start)};\nOSC_RANGE={_g(h.osc_range)};\n"
        f"TWOTHETA={_g(h.twotheta)};\n"
        "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    ).encode("ascii")
    if len(text) > SMV_HEADER_BYTES and overflow == "like_c":
        return text
    if len(text) > SMV_HEADER_BYTES and overflow == "grow":
        size = SMV_HEADER_BYTES
        while len(text) + 1 > size:
            size += SMV_HEADER_BYTES
        text = text.replace(b"HEADER_BYTES=512;", b"HEADER_BYTES=%d;" % size, 1)
        return text + b" " * (size - len(text))
    if len(text) > SMV_HEADER_BYTES:
        raise NanoBraggError(
            f"SMV header text is {len(text)} bytes, more than the {SMV_HEADER_BYTES} bytes "
            "nanoBragg's format allows (are some geometry values extreme?)"
        )
    return text + b" " * (SMV_HEADER_BYTES - len(text))


def roi_slices(shape: tuple[int, int], roi: Roi | None) -> tuple[slice, slice]:
    """(slow, fast) slices selecting C's ROI: ``xmin<=fast<=xmax and ymin<=slow<=ymax``.

    ``roi`` = (xmin, xmax, ymin, ymax), inclusive, fast then slow indices (nanoBragg's ``-roi``);
    None selects every pixel.  Bounds outside the image are clipped; an empty ROI gives empty
    slices.
    """
    slow, fast = shape
    if roi is None:
        return slice(0, slow), slice(0, fast)
    xmin, xmax, ymin, ymax = (int(v) for v in roi)

    def one(lo: int, hi: int, n: int) -> slice:
        start = min(max(lo, 0), n)
        stop = max(min(hi, n - 1) + 1, start)
        return slice(start, stop)

    return one(ymin, ymax, slow), one(xmin, xmax, fast)


def int_image(float_img, scale: float, adc: float, roi: Roi | None = None) -> np.ndarray:
    """C's integer image: uint16 [slow, fast] from the float image, bit-exact.

    For every ROI pixel: ``test = (double)float * scale + adc``, clamped to [0, 65535], then
    ``(uint16) floorf((float)(test + 0.5))`` -- the sum is rounded to float32 *before* the floor,
    as C's ``floorf`` call does.  NaN pixels become 0 (what the x86 conversion yields).
    Pixels outside the ROI are 0.
    """
    f = np.asarray(float_img, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError(f"float image must be 2-D [slow, fast], got shape {f.shape}")
    out = np.zeros(f.shape, dtype=np.uint16)
    rows, cols = roi_slices(f.shape, roi)
    step = max(1, INT_IMAGE_BLOCK // max(1, cols.stop - cols.start))
    for r0 in range(rows.start, rows.stop, step):   # blocks of rows: bounded float64 temporaries
        sl = (slice(r0, min(r0 + step, rows.stop)), cols)
        test = f[sl].astype(np.float64)
        test *= float(scale)
        test += float(adc)
        np.clip(test, 0.0, 65535.0, out=test)
        test += 0.5
        rounded = np.floor(test.astype(np.float32))
        rounded[np.isnan(rounded)] = 0.0
        out[sl] = rounded
    return out


def smv_bytes(header: SMVHeader, data, overflow: str = "error") -> bytearray:
    """A complete SMV file: :func:`format_smv_header` + ``data`` (uint16 [slow, fast]) little-endian.
    ``overflow``: see :func:`format_smv_header`."""
    arr = np.asarray(data)
    if arr.shape != (int(header.size2), int(header.size1)):
        raise ValueError(
            f"image shape {arr.shape} does not match header SIZE2 x SIZE1 = "
            f"({header.size2}, {header.size1})"
        )
    if arr.dtype != np.uint16:
        raise ValueError(f"SMV pixels must be uint16, got {arr.dtype}")
    head = format_smv_header(header, overflow)
    out = bytearray(len(head) + 2 * arr.size)   # one buffer: no pixel bytes, then a joined copy
    out[:len(head)] = head
    np.frombuffer(out, dtype="<u2", offset=len(head)).reshape(arr.shape)[...] = arr
    return out


# ------------------------------------------------------------------------------------ reading


@dataclass
class SMVImage:
    """An SMV image as read by :func:`read_smv`."""

    header_text: str  # the header bytes up to HEADER_BYTES (or the first NUL), latin-1 decoded
    width: int  # SIZE1, fast pixels
    height: int  # SIZE2, slow pixels
    data: np.ndarray  # uint16 [slow, fast], native byte order

    def value(self, keyword: str) -> float:
        """:func:`smv_value` on this image's header."""
        return smv_value(self.header_text, keyword)


def _last_after(text: str, keyword: str) -> int:
    """C's loop ``while(strstr(s, kw)) s = strstr(s, kw) + strlen(kw)``: the index just after the
    last (non-overlapping, scanned left to right) occurrence of ``keyword``, or -1."""
    if not keyword:
        raise ValueError("empty SMV keyword")
    pos = -1
    start = 0
    while True:
        i = text.find(keyword, start)
        if i < 0:
            return pos
        pos = start = i + len(keyword)


def smv_value(header_text: str, keyword: str) -> float:
    """C's ``ValueOf``: the number after the ``=`` that follows the LAST occurrence of ``keyword``.

    ``keyword`` is matched as a plain substring, so ``"ORGX"`` finds ``XDS_ORGX=...`` and
    ``"DISTANCE"`` finds ``CLOSE_DISTANCE=...`` when that line comes after ``DISTANCE=...``.
    Returns NaN if the keyword does not occur, 0.0 if no ``=`` follows it, else C ``atof`` of the
    text after the ``=`` (leading number prefix, 0.0 if none).
    """
    end = header_text.find("\0")
    if end >= 0:  # C string semantics
        header_text = header_text[:end]
    pos = _last_after(header_text, keyword)
    if pos < 0:
        return math.nan
    eq = header_text.find("=", pos)
    if eq < 0:
        return 0.0
    return c_atof(header_text[eq + 1 :])


def _c_int(x: float) -> int | None:
    """C's ``(int)`` conversion of a double (truncation); None where C's result is undefined."""
    if not math.isfinite(x) or abs(x) >= 2**31:
        return None
    return int(x)


def read_smv(path: str | os.PathLike) -> SMVImage:
    """Read an SMV image the way nanoBragg.c's ``GetFrame`` does, with clear errors.

    * the file must start with the 12 characters ``{\\nHEADER_BYT`` (C's test; in practice the
      ``{\\nHEADER_BYTES=`` prefix);
    * ``HEADER_BYTES`` gives the header length (512 usually, other values allowed); the header
      text is those bytes, cut at the first NUL as C's string functions see it;
    * the last ``BYTE_ORDER=`` decides the pixel byte order (``little_endian`` or anything else =
      big-endian); pixels are returned in native order;
    * ``SIZE1`` x ``SIZE2`` pixels (or ``DETECTOR_DIMENSIONS`` square if SIZE1 is 0 or absent);
    * ``TYPE``, if present, must be ``unsigned_short`` (C ignores it and would misread others);
    * the file must hold all ``2*SIZE1*SIZE2`` data bytes after the header (C silently zero-fills).
    """
    name = os.fspath(path)
    raw = read_bytes(path, "SMV image")
    what = f"SMV image {name}"
    if len(raw) < 12 or raw[:12] != b"{\nHEADER_BYTES=  512;"[:12]:
        raise InputFileError(f"{what}: not an SMV (ADSC) image: it does not start with '{{\\nHEADER_BYTES='")
    first = raw[:SMV_HEADER_BYTES].decode("latin-1")
    size = _c_int(smv_value(first, "HEADER_BYTES"))
    if size is None or size < 12:
        raise InputFileError(f"{what}: invalid HEADER_BYTES value")
    if size > len(raw):
        raise InputFileError(f"{what}: truncated: HEADER_BYTES={size} but the file has only {len(raw)} bytes")
    header = raw[:size].decode("latin-1")
    nul = header.find("\0")
    if nul >= 0:
        header = header[:nul]

    pos = _last_after(header, "BYTE_ORDER=")
    if pos < 0:
        raise InputFileError(f"{what}: header has no BYTE_ORDER")
    little = header[pos : pos + 10] == "little_endian"[:10]

    tpos = _last_after(header, "\nTYPE=")  # whole key only (not e.g. DETECTOR_TYPE=)
    if tpos >= 0:
        tval = header[tpos:].split(";", 1)[0].split("\n", 1)[0].strip()
        if tval != "unsigned_short":
            raise InputFileError(f"{what}: pixel TYPE={tval} is not supported (only unsigned_short)")

    width = _c_int(smv_value(header, "SIZE1"))
    height = _c_int(smv_value(header, "SIZE2"))
    if not width:  # C: (int)ValueOf("SIZE1") == 0 -> try DETECTOR_DIMENSIONS
        width = height = _c_int(smv_value(header, "DETECTOR_DIMENSIONS"))
    if width is None or height is None or width <= 0 or height <= 0:
        raise InputFileError(f"{what}: header lacks valid SIZE1/SIZE2 image dimensions")

    need = size + 2 * width * height
    if len(raw) < need:
        raise InputFileError(
            f"{what}: truncated: {width} x {height} 16-bit pixels after a {size}-byte header need "
            f"{need} bytes, the file has {len(raw)}"
        )
    dtype = "<u2" if little else ">u2"
    data = np.frombuffer(raw, dtype=dtype, count=width * height, offset=size)
    data = data.astype(np.uint16).reshape(height, width)
    return SMVImage(header_text=header, width=width, height=height, data=data)
