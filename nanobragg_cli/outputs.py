"""Image statistics, output images and the stdout summary, as nanoBragg.c computes them.

Works on the float32 image (numpy, [slow, fast]) after rendering; nothing here is differentiable.
"""

from dataclasses import dataclass
import math

import numpy as np

from .constants import RTD
from .io.floatimage import float_image_bytes
from .io.pgm import pgm_bytes
from .io.smv import SMVHeader, int_image, smv_bytes
from .pairwise import block_pairwise_sum, pairwise_sum


@dataclass
class ImageStats:
    """nanoBragg.c's statistics: over rendered pixels (mean, rms, max and its sub-pixel position)
    and over the ROI (rmsd)."""
    max_I: float
    max_x: float
    max_y: float
    mean: float
    rms: float
    rmsd: float
    n: int


def image_stats(img: np.ndarray, rendered, roi: tuple, subpixel: float,
                oversample: int, fpixels: int) -> ImageStats:
    """img: float32 [slow, fast]; rendered: the rendered pixels as an index into the flat image
    (raster order): a slice, a (slow·fast,) bool mask or (N,) flat indices (see
    :func:`nanobragg_cli.chunks.rendered_selection`). The sums are float64 in ``np.sum``'s order
    over float64 copies (:mod:`nanobragg_cli.pairwise`), converted a piece at a time: no
    image-sized float64 array (a mask or index list copies the selected float32 values once)."""
    vals = img.reshape(-1)[rendered]   # a view for a slice
    n = vals.size
    max_I, max_x, max_y = 0.0, 0.0, 0.0
    if n:
        k = int(np.argmax(vals))   # first occurrence, as C's strict '>' scan (a NaN: the first)
        if vals[k] > 0.0:          # exact in float32: the float64 copy holds the same values
            max_I = float(vals[k])
            s, f = divmod(selected_flat_index(rendered, k), fpixels)
            last = oversample - 1
            max_x = subpixel * (f * oversample + last) + subpixel / 2.0
            max_y = subpixel * (s * oversample + last) + subpixel / 2.0
    total = pairwise_sum(vals)
    sumsq = pairwise_sum(vals, _square)
    del vals
    sumn = n if n > 0 else 1
    mean = total / sumn
    sumn = sumn if sumn > 1 else 2
    rms = math.sqrt(sumsq / (sumn - 1))
    xmin, xmax, ymin, ymax = roi
    block = img[ymin:ymax + 1, xmin:xmax + 1]
    m = block.size if block.size > 1 else 2

    def deviation_squared(w: np.ndarray) -> np.ndarray:
        w -= mean
        return np.multiply(w, w, out=w)

    rmsd = math.sqrt(block_pairwise_sum(block, deviation_squared) / (m - 1))
    return ImageStats(max_I, max_x, max_y, mean, rms, rmsd, n)


def _square(w: np.ndarray) -> np.ndarray:
    return np.multiply(w, w, out=w)


def selected_flat_index(rendered, k: int) -> int:
    """The flat index of the ``k``-th pixel that ``rendered`` (slice, bool mask or flat indices)
    selects."""
    if isinstance(rendered, slice):
        return (rendered.start or 0) + k
    rendered = np.asarray(rendered)
    if rendered.dtype == np.bool_:
        return int(np.flatnonzero(rendered)[k])
    return int(rendered[k])


def smv_header(cfg, scene) -> SMVHeader:
    """The SMV header values nanoBragg.c writes: the flags' values (``cfg``, a Config) and the
    scene's final detector geometry."""
    d = cfg.detector
    g = scene.det
    px = d.pixel_size
    Fbeam, Sbeam = float(g.Fbeam), float(g.Sbeam)
    s = cfg.sampling
    dials = [float(x) for x in g.dials_origin_mm]
    return SMVHeader(
        size1=d.fpixels, size2=d.spixels, pixel_size=px * 1000.0, distance=float(g.distance) * 1000.0,
        wavelength=cfg.beam.lambda0 * 1e10, beam_center_x=d.Xbeam * 1000.0,
        beam_center_y=d.Ybeam * 1000, adxv_center_x=Fbeam * 1000.0,
        adxv_center_y=(d.detsize_s - Sbeam) * 1000, mosflm_center_x=(Sbeam - 0.5 * px) * 1000.0,
        mosflm_center_y=(Fbeam - 0.5 * px) * 1000, denzo_x_beam=(Sbeam - 0.0 * px) * 1000.0,
        denzo_y_beam=(Fbeam - 0.0 * px) * 1000, dials_origin=tuple(dials),
        xds_orgx=float(g.orgx), xds_orgy=float(g.orgy),
        close_distance=float(g.close_distance) * 1000.0, phi=s.phi0 * RTD, osc_start=s.phi0 * RTD,
        osc_range=s.osc * RTD, twotheta=d.twotheta * RTD)


def int_scale(requested: float, max_I: float) -> float:
    if requested > 0.0:
        return requested
    return 55000.0 / max_I if max_I > 0.0 else 1.0


def pgm_scale(requested: float, intfile_scale: float, rmsd: float) -> float:
    if requested > 0.0:
        return requested
    return 250.0 / (5.0 * rmsd) if rmsd > 0.0 else intfile_scale


def float_bytes(img: np.ndarray):
    """The -floatfile bytes of ``img`` (float32 [slow, fast]): a read-only view of its memory when
    it is already little-endian float32 in raster order (no 4-byte-per-pixel copy), else bytes."""
    arr = np.asarray(img)
    if arr.ndim == 2 and arr.dtype == np.dtype("<f4") and arr.flags.c_contiguous:
        return memoryview(arr).cast("B").toreadonly()
    return float_image_bytes(img)


def header_overflow(scene) -> str:
    """How to write an SMV header longer than 512 bytes (rare: long %g numbers). C-parity quirk
    (SMV header overflow): nanoBragg.c writes the longer text anyway, so its pixels start late in a
    file that says HEADER_BYTES=512; the default mode writes a valid, larger header."""
    return "like_c" if scene.c_parity else "grow"


def int_bytes(cfg, scene, img: np.ndarray, scale: float) -> bytes:
    """The -intfile SMV image: ``img`` (float32 [slow, fast]) times ``scale`` plus -adc."""
    return smv_bytes(smv_header(cfg, scene), int_image(img, scale, cfg.output.adc, scene.roi),
                     header_overflow(scene))


def noise_bytes(cfg, scene, noise: np.ndarray) -> bytes:
    """The -noisefile SMV image of the uint16 [slow, fast] ``noise`` counts."""
    return smv_bytes(smv_header(cfg, scene), noise, header_overflow(scene))


def pgm_image_bytes(scene, img: np.ndarray, scale: float) -> bytes:
    return pgm_bytes(img, scale, scene.roi)
