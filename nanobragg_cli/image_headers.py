"""nanoBragg.c's first argv pass: geometry from the SMV headers of -mask and -img.

Both files are read before any other flag, so explicit flags override their header values. The
mask's BEAM_CENTER_Y is flipped (Ybeam = detsize_s - value), as in nanoBragg.c.
"""

import math

from .constants import RTD
from .errors import FlagError
from .options import RawOptions


def _apply_header(o: RawOptions, image, flip_y: bool) -> None:
    o.fpixels, o.spixels = image.width, image.height
    v = image.value("PIXEL_SIZE")
    if not math.isnan(v):
        o.pixel_size = v / 1000.0
    o.detsize_f = o.pixel_size * o.fpixels
    o.detsize_s = o.pixel_size * o.spixels
    for key, attr, divisor in (("DISTANCE", "distance", 1000.0),
                               ("CLOSE_DISTANCE", "close_distance", 1000.0),
                               ("WAVELENGTH", "lambda0", 1e10),
                               ("BEAM_CENTER_X", "Xbeam", 1000.0)):
        v = image.value(key)
        if not math.isnan(v):
            setattr(o, attr, v / divisor)  # divided, as nanoBragg.c does (bit for bit)
    v = image.value("BEAM_CENTER_Y")
    if not math.isnan(v):
        o.Ybeam = o.detsize_s - v / 1000.0 if flip_y else v / 1000.0
    for key, attr in (("ORGX", "ORGX"), ("ORGY", "ORGY")):
        v = image.value(key)
        if not math.isnan(v):
            setattr(o, attr, v)
    v = image.value("PHI")
    if not math.isnan(v):
        o.phi0 = v / RTD
    v = image.value("OSC_RANGE")
    if not math.isnan(v):
        o.osc = v / RTD


def apply_image_headers(argv: list, o: RawOptions) -> None:
    """Read -mask then -img headers (if given) into ``o``, before the flags are applied."""
    from .io.smv import read_smv

    def value_after(flag):
        path = None
        for i, tok in enumerate(argv):
            if tok == flag:
                if i + 1 >= len(argv):
                    raise FlagError(f"{flag}: expected a file name")
                path = argv[i + 1]
        return path

    mask = value_after("-mask")
    if mask is not None:
        image = read_smv(mask)
        o.maskfile = mask
        _apply_header(o, image, flip_y=True)
        o.mask = image.data
    img = value_after("-img")
    if img is not None:
        image = read_smv(img)
        o.imgfile = img
        _apply_header(o, image, flip_y=False)
