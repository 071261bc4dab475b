"""nanoBragg.c's first argv pass: geometry from the SMV headers of -mask and -img.

Both files are read before any other flag, so explicit flags override their header values. The
mask's BEAM_CENTER_Y is flipped (Ybeam = detsize_s - value), as in nanoBragg.c.
"""

import math

from .constants import RTD
from .errors import FlagError, InputFileError
from .options import RawOptions


def _finite(image, src: str, key: str) -> float:
    """A header value (NaN if absent); an infinite one is refused naming the file and key."""
    v = image.value(key)
    if math.isinf(v):
        raise InputFileError(f"{src}: header value {key}={v:g} is not a finite number")
    return v


def _apply_header(o: RawOptions, image, flip_y: bool, src: str = "image header") -> None:
    o.fpixels, o.spixels = image.width, image.height
    v = _finite(image, src, "PIXEL_SIZE")
    if not math.isnan(v):
        o.pixel_size = v / 1000.0
    o.detsize_f = o.pixel_size * o.fpixels
    o.detsize_s = o.pixel_size * o.spixels
    for key, attr, divisor in (("DISTANCE", "distance", 1000.0),
                               ("CLOSE_DISTANCE", "close_distance", 1000.0),
                               ("WAVELENGTH", "lambda0", 1e10),
                               ("BEAM_CENTER_X", "Xbeam", 1000.0)):
        v = _finite(image, src, key)
        if not math.isnan(v):
            setattr(o, attr, v / divisor)  # divided, as nanoBragg.c does (bit for bit)
    v = _finite(image, src, "BEAM_CENTER_Y")
    if not math.isnan(v):
        o.Ybeam = o.detsize_s - v / 1000.0 if flip_y else v / 1000.0
    for key, attr in (("ORGX", "ORGX"), ("ORGY", "ORGY")):
        v = _finite(image, src, key)
        if not math.isnan(v):
            setattr(o, attr, v)
    v = _finite(image, src, "PHI")
    if not math.isnan(v):
        o.phi0 = v / RTD
    v = _finite(image, src, "OSC_RANGE")
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
        _apply_header(o, image, flip_y=True, src=f"-mask {mask}")
        o.mask = image.data
    img = value_after("-img")
    if img is not None:
        image = read_smv(img)
        o.imgfile = img
        _apply_header(o, image, flip_y=False, src=f"-img {img}")


# flag named by a config error -> the header keys that set the same value
_HEADER_KEYS = {"-distance": ("DISTANCE",), "-close_distance": ("CLOSE_DISTANCE",),
                "-pixel": ("PIXEL_SIZE",), "-lambda": ("WAVELENGTH",),
                "-Xbeam": ("BEAM_CENTER_X",), "-Ybeam": ("BEAM_CENTER_Y",),
                "-ORGX": ("ORGX",), "-ORGY": ("ORGY",), "-phi": ("PHI",), "-osc": ("OSC_RANGE",),
                "-detpixels": ("SIZE1", "SIZE2")}


def blame_header(err: FlagError, argv: list) -> FlagError:
    """A config error about a value that no typed flag set but an -img/-mask header did is
    re-worded to name the file and header key (else ``err`` unchanged)."""
    from .io.smv import read_smv
    flag, sep, rest = str(err).partition(": ")
    keys = _HEADER_KEYS.get(flag)
    if not sep or keys is None or flag in argv:
        return err
    for opt in ("-img", "-mask"):
        if opt not in argv or argv.index(opt) + 1 >= len(argv):
            continue
        path = argv[len(argv) - 1 - argv[::-1].index(opt) + 1]
        try:
            image = read_smv(path)
        except Exception:
            continue
        for key in keys:
            v = image.value(key)
            if not math.isnan(v):
                return InputFileError(f"{opt} {path}: header value {key}={v:g}: {rest} "
                                      f"(set by the header; {flag} overrides it)")
    return err
