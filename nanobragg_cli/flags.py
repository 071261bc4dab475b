"""The nanoBragg.c flag table: one entry per flag, the single source of truth for parsing and help.

Each entry says how the flag is spelled (exact names, plus prefixes where nanoBragg.c matches a
prefix such as ``-mosaic_dom*``), how many values it takes, its unit and default, and what it writes
into :class:`~nanobragg_cli.options.RawOptions` -- converted to SI exactly once, here, as
nanoBragg.c does. Flags are applied in argv order, so "last one wins" and order-dependent side
effects (convention, pivot, ``-nonoise`` vs ``-noisefile``) behave as in C.

Unknown flags, missing or non-numeric values are errors (exit 9, one line naming the flag), where
nanoBragg.c would silently ignore them.
"""

from dataclasses import dataclass
import math
from typing import Callable

from .cnum import looks_numeric, parse_float, parse_int
from .constants import RTD
from .errors import FlagError
from .options import RawOptions

GROUPS = ("Crystal", "Beam", "Detector", "Sampling", "Sensor", "Output", "Noise", "Trace",
          "No effect")


@dataclass(frozen=True)
class Flag:
    names: tuple            # exact spellings, first is canonical
    nargs: object           # int, or "cell" (0-6 values), "misset" (random | 3 values)
    group: str
    unit: str
    default: str
    help: str
    apply: Callable         # (opts, name_as_typed, values: list[str]) -> None
    prefixes: tuple = ()    # spellings matched as a prefix, as nanoBragg.c's strstr does

    def matches(self, token: str) -> bool:
        return token in self.names or any(token.startswith(p) for p in self.prefixes)


def _vec(name, vals):
    return tuple(parse_float(name, v) for v in vals[:3])


def _checked(name, text, value, lower):
    """Refuse values below ``lower``: "pos" (> 0), "nonneg" (>= 0) or an integer minimum.

    nanoBragg.c reads a negative or zero value of these flags as "not given" (its sentinel) or
    computes NaN/inf from it; a user who types one has made a mistake, so say so.
    """
    if lower == "pos" and not value > 0:
        raise FlagError(f"{name}: must be positive, got {text!r}")
    if lower == "nonneg" and value < 0:
        raise FlagError(f"{name}: must not be negative, got {text!r}")
    if isinstance(lower, int) and value < lower:
        raise FlagError(f"{name}: must be at least {lower}, got {text!r}")
    return value


class Div(float):
    """A unit conversion nanoBragg.c makes by division (``atof(v)/1000.0``): ``_value`` divides
    by it instead of multiplying. x/1000.0 and x*1e-3 can differ in the last bit, which shows
    where a beam centre and a pixel centre should cancel exactly (a pixel on the direct beam)."""


MM = Div(1000.0)          # mm -> m (also mrad -> rad): C divides by 1000
DEG = Div(180.0 * 0.31830988618379067154)   # C's RTD = 180.0*M_1_PI
ANGSTROM = Div(1e10)      # -lambda: C divides by 1e10
PERCENT = Div(100.0)
UM_WATER = Div(1e6)       # -water: C divides by 1e6 (sensor thicknesses it multiplies by 1e-6)


def _value(name, text, scale, integer, lower):
    value = parse_int(name, text) if integer else parse_float(name, text)
    if lower is not None:
        _checked(name, text, value, lower)
    if integer:
        return value
    return value / scale if isinstance(scale, Div) else value * scale


def _set(attr, scale=1.0, integer=False, lower=None):
    def apply(o, name, vals):
        setattr(o, attr, _value(name, vals[0], scale, integer, lower))
    return apply


def _set_many(attrs, scale=1.0, integer=False, lower=None):
    def apply(o, name, vals):
        value = _value(name, vals[0], scale, integer, lower)
        for a in attrs:
            setattr(o, a, value)
    return apply


def _true(attr, value=True):
    def apply(o, name, vals):
        setattr(o, attr, value)
    return apply


def _ignored(reason):
    def apply(o, name, vals):
        o.warn(f"{name} has no effect: {reason}")
    return apply


# ---- handlers with side effects -------------------------------------------------------------

def _cell_count(name, text):
    n = parse_int(name, text)
    if n < 0:
        raise FlagError(f"{name}: the number of unit cells must not be negative, got {text!r} "
                        "(0 and 1 both mean one cell, as in nanoBragg.c)")
    return float(n)


def _cells(attr):
    def apply(o, name, vals):
        setattr(o, attr, _cell_count(name, vals[0]))
    return apply


def _N(o, name, vals):
    o.Na = o.Nb = o.Nc = _cell_count(name, vals[0])


def _cell(o, name, vals):
    if not vals:
        raise FlagError(f"{name}: expected 1 to 6 numbers (a b c alpha beta gamma)")
    o.user_cell = True
    for k, v in enumerate(vals):
        x = parse_float(name, v)
        if k < 3 and not x > 0:
            raise FlagError(f"{name}: cell lengths must be positive, got {v!r}")
        if k >= 3 and not 0 < x < 180:
            raise FlagError(f"{name}: cell angles must lie between 0 and 180 degrees, got {v!r}")
        o.cell[k] = x if k < 3 else x / RTD


def _misset(o, name, vals):
    if len(vals) == 1 and "rand" in vals[0]:
        o.misset = "random"
        return
    o.misset = "angles"
    o.misset_angles = tuple(parse_float(name, v) / RTD for v in vals)


def _pivot_by(attr, scale, pivot, lower=None):
    def apply(o, name, vals):
        setattr(o, attr, _value(name, vals[0], scale, False, lower))
        o.pivot = pivot
        o.pivot_set_by = name
    return apply


def _pivot(o, name, vals):
    v = vals[0]
    if "sample" in v:
        o.pivot = "sample"
    elif "beam" in v:
        o.pivot = "beam"
    else:
        raise FlagError(f"{name}: expected 'sample' or 'beam', got {v!r}")
    o.pivot_set_by = name


def _convention(conv, pivot):
    def apply(o, name, vals):
        o.convention = conv
        o.pivot = pivot
        o.convention_set_by = name
    return apply


def _custom_vector(attr):
    def apply(o, name, vals):
        o.convention = "custom"
        o.custom_set_by = name
        setattr(o, attr, _vec(name, vals))
    return apply


def _twotheta_axis(o, name, vals):
    _custom_vector("twotheta_axis")(o, name, vals)
    # nanoBragg.c's "-twotheta" test is a substring match, so it fires here too
    o.twotheta = parse_float(name, vals[0]) / RTD
    o.pivot = "sample"
    o.pivot_set_by = name
    o.warn(f"{name} also sets the 2theta angle to its first component ({vals[0]} degrees) and the "
           "pivot to sample, as in nanoBragg.c (give -twotheta after it to set the angle)")


def _pix0(o, name, vals):
    _vec(name, vals)
    o.convention = "custom"
    o.custom_set_by = name
    o.warn(f"{name} has no effect on the geometry (nanoBragg.c recomputes the detector origin) "
           "but switches to the CUSTOM convention")


def _twotheta(o, name, vals):
    o.twotheta = parse_float(name, vals[0]) / RTD
    o.pivot = "sample"
    o.pivot_set_by = name


def _detector_abs(o, name, vals):
    v = vals[0]
    x = parse_float(name, v, allow_inf=True)
    if x < 0:
        raise FlagError(f"{name}: must not be negative, got {v!r} (inf or 0: no absorption)")
    if "inf" in v or x == 0.0 or math.isinf(x):
        o.detector_thick = 0.0
        o.detector_mu = 0.0
    else:
        o.detector_mu = 1.0 / (x * 1e-6)


def _detpixels(o, name, vals):
    o.fpixels = o.spixels = _value(name, vals[0], 1, True, 1)


def _curved(o, name, vals):
    o.curved_detector = True


def _polar(o, name, vals):
    o.polarization = parse_float(name, vals[0])
    o.nopolar = False


def _roi(o, name, vals):
    o.roi = [_value(name, v, 1, True, 0) for v in vals]


def _energy(o, name, vals):
    e = parse_float(name, vals[0])
    if e <= 0:
        raise FlagError(f"{name}: photon energy must be positive, got {vals[0]!r}")
    o.lambda0 = (12398.42 / e) / 1.0e10


def _divergence(o, name, vals):
    o.hdivrange = o.vdivrange = _value(name, vals[0], MM, False, "nonneg")


def _output(attr, switch=None):
    def apply(o, name, vals):
        setattr(o, attr, vals[0])
        if switch:
            setattr(o, switch, True)
    return apply


def _pgmscale(o, name, vals):
    o.pgm_scale = parse_float(name, vals[0])
    o.write_pgm = True


def _seed(o, name, vals):
    o.seed = -parse_int(name, vals[0])
    o.seed_given = True


def _seed_like(attr):
    def apply(o, name, vals):
        # nanoBragg.c's "-seed" test is a substring match, but "-mosaic_seed" and "-misset_seed"
        # do not contain "-seed": the noise seed is left alone
        setattr(o, attr, -parse_int(name, vals[0]))
    return apply


def _trace_pixel(o, name, vals):
    o.trace_pixel = (_value(name, vals[0], 1, True, 0), _value(name, vals[1], 1, True, 0))


def _printout_pixel(o, name, vals):
    o.printout = True
    o.printout_pixel = (_value(name, vals[0], 1, True, 0), _value(name, vals[1], 1, True, 0))


def _oversample(o, name, vals):
    o.oversample = _value(name, vals[0], 1, True, 0)
    if o.oversample == 0:
        o.warn(f"{name} 0 selects the automatic oversampling, as in nanoBragg.c")


def _nothing(o, name, vals):
    """Handled in the first pass (-img, -mask)."""


def _progress(value):
    def apply(o, name, vals):
        o.progress = value
    return apply


def _interp(value):
    def apply(o, name, vals):
        o.interpolate = value
    return apply


FLAGS: tuple = (
    # ---- Crystal ----
    Flag(("-cell",), "cell", "Crystal", "Å, deg", "none",
         "unit cell a b c alpha beta gamma (missing b,c = a; missing angles = 90)", _cell),
    Flag(("-mat",), 1, "Crystal", "file", "none",
         "MOSFLM orientation matrix (wavelength-scaled reciprocal vectors)",
         _output("matfile")),
    Flag(("-misset",), "misset", "Crystal", "deg", "0 0 0",
         "rotations of the reciprocal cell about x, y, z, or 'random'", _misset),
    Flag(("-misset_seed",), 1, "Crystal", "int", "time", "seed of -misset random",
         _seed_like("misset_seed")),
    Flag(("-N",), 1, "Crystal", "cells", "1", "unit cells along a, b and c (N<=1 means 1)", _N),
    Flag(("-Na",), 1, "Crystal", "cells", "1", "unit cells along a", _cells("Na")),
    Flag(("-Nb",), 1, "Crystal", "cells", "1", "unit cells along b", _cells("Nb")),
    Flag(("-Nc",), 1, "Crystal", "cells", "1", "unit cells along c", _cells("Nc")),
    Flag(("-xtalsize", "-xtal_size", "-samplesize", "-sample_size"), 1, "Crystal", "mm", "0",
         "crystal size along x, y, z (sets N from the cell)",
         _set_many(("sample_x", "sample_y", "sample_z"), MM, lower="nonneg")),
    Flag(("-xtal_thick", "-xtal_x", "-sample_thick", "-sample_x"), 1, "Crystal", "mm", "0",
         "crystal size along x", _set("sample_x", MM, lower="nonneg")),
    Flag(("-xtal_width", "-xtal_y", "-sample_width", "-sample_y", "-width"), 1, "Crystal", "mm",
         "0", "crystal size along y (clipped to the beam size)",
         _set("sample_y", MM, lower="nonneg")),
    Flag(("-xtal_z", "-sample_z"), 1, "Crystal", "mm", "0",
         "crystal size along z (clipped to the beam size)", _set("sample_z", MM, lower="nonneg"),
         prefixes=("-xtal_heigh", "-sample_heigh", "-heigh")),
    Flag(("-hkl",), 1, "Crystal", "file", "none", "structure factors: h k l F per line",
         _output("hklfile")),
    Flag(("-default_F",), 1, "Crystal", "electrons", "0",
         "structure factor of reflections not in -hkl", _set("default_F")),
    Flag(("-dump",), 1, "Crystal", "file", "Fdump.bin",
         "cache file of the structure factors (read when -hkl is absent)", _output("dumpfile")),
    Flag(("-interpolate",), 0, "Crystal", "", "auto (on if any N<=2)",
         "tricubic interpolation of structure factors between Bragg peaks", _interp(1)),
    Flag(("-nointerpolate",), 0, "Crystal", "", "", "nearest-neighbour structure factors",
         _interp(0)),
    Flag(("-square_xtal",), 0, "Crystal", "", "on", "parallelepiped crystal (sincg)",
         _true("xtal_shape", "square")),
    Flag(("-round_xtal",), 0, "Crystal", "", "off", "ellipsoidal crystal (sinc3)",
         _true("xtal_shape", "round")),
    Flag(("-gauss_xtal",), 0, "Crystal", "", "off", "Gaussian spots, no inter-Bragg maxima",
         _true("xtal_shape", "gauss")),
    Flag(("-tophat_spots", "-binary_spots"), 0, "Crystal", "", "off",
         "flat-top spots clipped at the FWHM", _true("xtal_shape", "tophat")),
    Flag(("-fudge",), 1, "Crystal", "", "1", "spot-shape factor for round/gauss/tophat",
         _set("fudge")),
    Flag(("-mosaic",), 1, "Crystal", "deg", "0", "isotropic mosaic spread",
         _set("mosaic_spread", DEG, lower="nonneg"), prefixes=("-mosaici", "-mosaic_spr")),
    Flag(("-mosaic_domains",), 1, "Crystal", "int", "1 (10 if -mosaic)",
         "number of mosaic domains", _set("mosaic_domains", integer=True, lower=1),
         prefixes=("-mosaic_dom",)),
    Flag(("-mosaic_seed",), 1, "Crystal", "int", "12345678", "seed of the mosaic domains",
         _seed_like("mosaic_seed")),
    # ---- Beam ----
    Flag(("-lambda",), 1, "Beam", "Å", "1", "wavelength", _set("lambda0", ANGSTROM, lower="pos"),
         prefixes=("-wave",)),
    Flag(("-energy",), 1, "Beam", "eV", "12398.42", "photon energy (sets the wavelength)",
         _energy),
    Flag(("-fluence",), 1, "Beam", "photons/m²", "1.25932e29", "integrated incident fluence",
         _set("fluence", lower="nonneg")),
    Flag(("-flux",), 1, "Beam", "photons/s", "0", "flux (fluence = flux*exposure/beamsize²)",
         _set("flux", lower="nonneg")),
    Flag(("-exposure",), 1, "Beam", "s", "1", "exposure time", _set("exposure", lower="pos")),
    Flag(("-beamsize",), 1, "Beam", "mm", "0.1", "beam size (also clips the crystal)",
         _set("beamsize", MM, lower="pos")),
    Flag(("-dispersion",), 1, "Beam", "%", "0", "spectral dispersion Δλ/λ",
         _set("dispersion", PERCENT, lower="nonneg")),
    Flag(("-dispsteps",), 1, "Beam", "int", "auto", "number of wavelengths",
         _set("dispsteps", integer=True, lower=1)),
    Flag(("-divergence",), 1, "Beam", "mrad", "0", "horizontal and vertical divergence",
         _divergence),
    Flag(("-hdivrange",), 1, "Beam", "mrad", "0", "horizontal divergence",
         _set("hdivrange", MM, lower="nonneg")),
    Flag(("-vdivrange",), 1, "Beam", "mrad", "0", "vertical divergence",
         _set("vdivrange", MM, lower="nonneg")),
    Flag(("-hdivstep",), 1, "Beam", "mrad", "auto", "horizontal divergence step",
         _set("hdivstep", MM, lower="nonneg")),
    Flag(("-vdivstep",), 1, "Beam", "mrad", "auto", "vertical divergence step",
         _set("vdivstep", MM, lower="nonneg")),
    Flag(("-hdivsteps",), 1, "Beam", "int", "auto", "horizontal divergence steps",
         _set("hdivsteps", integer=True, lower=1)),
    Flag(("-vdivsteps",), 1, "Beam", "int", "auto", "vertical divergence steps",
         _set("vdivsteps", integer=True, lower=1)),
    Flag(("-divsteps",), 1, "Beam", "int", "auto", "divergence steps (both directions)",
         _set_many(("hdivsteps", "vdivsteps"), integer=True, lower=1)),
    Flag(("-round_div",), 0, "Beam", "", "on", "cut the divergence grid to an ellipse",
         _true("round_div", True)),
    Flag(("-square_div",), 0, "Beam", "", "off", "full rectangular divergence grid",
         _true("round_div", False)),
    Flag(("-sourcefile",), 1, "Beam", "file", "none",
         "sources: X Y Z (m, direction only) I (ignored) lambda (m) per line",
         _output("sourcefile")),
    Flag(("-polar",), 1, "Beam", "", "0 (unpolarized)", "Kahn polarization factor", _polar),
    Flag(("-nopolar",), 0, "Beam", "", "off", "turn off the polarization correction",
         _true("nopolar")),
    Flag(("-polar_vector",), 3, "Beam", "unit vector", "per convention",
         "E-vector of the incident beam (switches to CUSTOM)", _custom_vector("polar_vector")),
    Flag(("-beam_vector",), 3, "Beam", "unit vector", "per convention",
         "direction of the incident beam (switches to CUSTOM)", _custom_vector("beam_vector")),
    # ---- Detector ----
    Flag(("-distance",), 1, "Detector", "mm", "100", "sample to beam spot distance (pivot=beam)",
         _pivot_by("distance", MM, "beam", "pos")),
    Flag(("-close_distance",), 1, "Detector", "mm", "from -distance",
         "sample to nearest point of the detector plane (pivot=sample)",
         _pivot_by("close_distance", MM, "sample", "pos")),
    Flag(("-pixel",), 1, "Detector", "mm", "0.1", "pixel size", _set("pixel_size", MM, lower="pos")),
    Flag(("-detpixels",), 1, "Detector", "pixels", "1024", "pixels along fast and slow",
         _detpixels),
    Flag(("-detpixels_f", "-detpixels_x"), 1, "Detector", "pixels", "1024", "fast pixels",
         _set("fpixels", integer=True, lower=1)),
    Flag(("-detpixels_s", "-detpixels_y"), 1, "Detector", "pixels", "1024", "slow pixels",
         _set("spixels", integer=True, lower=1)),
    Flag(("-detsize",), 1, "Detector", "mm", "102.4", "detector size (fast and slow)",
         _set_many(("detsize_f", "detsize_s"), MM, lower="pos")),
    Flag(("-detsize_f",), 1, "Detector", "mm", "102.4", "detector size along fast",
         _set("detsize_f", MM, lower="pos")),
    Flag(("-detsize_s",), 1, "Detector", "mm", "102.4", "detector size along slow",
         _set("detsize_s", MM, lower="pos")),
    Flag(("-Xbeam",), 1, "Detector", "mm", "centre", "direct beam position (MOSFLM: slow)",
         _pivot_by("Xbeam", MM, "beam")),
    Flag(("-Ybeam",), 1, "Detector", "mm", "centre", "direct beam position (MOSFLM: fast)",
         _pivot_by("Ybeam", MM, "beam")),
    Flag(("-Xclose",), 1, "Detector", "mm", "centre", "nearest point of the detector (pivot=sample)",
         _pivot_by("Xclose", MM, "sample")),
    Flag(("-Yclose",), 1, "Detector", "mm", "centre", "nearest point of the detector (pivot=sample)",
         _pivot_by("Yclose", MM, "sample")),
    Flag(("-ORGX",), 1, "Detector", "pixels", "centre", "XDS origin, fast (pivot=sample)",
         _pivot_by("ORGX", 1.0, "sample")),
    Flag(("-ORGY",), 1, "Detector", "pixels", "centre", "XDS origin, slow (pivot=sample)",
         _pivot_by("ORGY", 1.0, "sample")),
    Flag(("-pivot",), 1, "Detector", "sample|beam", "beam",
         "detector rotation pivot (effective only in the CUSTOM convention)", _pivot),
    Flag(("-mosflm",), 0, "Detector", "", "on", "MOSFLM convention (pivot=beam)",
         _convention("mosflm", "beam")),
    Flag(("-xds",), 0, "Detector", "", "off", "XDS convention (pivot=sample)",
         _convention("xds", "sample")),
    Flag(("-adxv",), 0, "Detector", "", "off", "ADXV convention (pivot=beam)",
         _convention("adxv", "beam")),
    Flag(("-denzo",), 0, "Detector", "", "off", "DENZO convention (pivot=beam)",
         _convention("denzo", "beam")),
    Flag(("-dials",), 0, "Detector", "", "off", "DIALS convention (pivot=sample)",
         _convention("dials", "beam")),
    Flag(("-fdet_vector",), 3, "Detector", "unit vector", "per convention",
         "fast pixel direction (switches to CUSTOM)", _custom_vector("fdet_vector")),
    Flag(("-sdet_vector",), 3, "Detector", "unit vector", "per convention",
         "slow pixel direction (switches to CUSTOM)", _custom_vector("sdet_vector")),
    Flag(("-odet_vector",), 3, "Detector", "unit vector", "per convention",
         "detector normal (switches to CUSTOM)", _custom_vector("odet_vector")),
    Flag(("-pix0_vector",), 3, "Detector", "m", "computed",
         "accepted for compatibility: no effect except switching to CUSTOM", _pix0,
         prefixes=("-pix0_vector",)),
    Flag(("-twotheta",), 1, "Detector", "deg", "0", "detector swing about the 2theta axis",
         _twotheta),
    Flag(("-twotheta_axis",), 3, "Detector", "unit vector", "per convention",
         "2theta rotation axis (switches to CUSTOM; also sets 2theta, as in nanoBragg.c)",
         _twotheta_axis),
    Flag(("-detector_rotx",), 1, "Detector", "deg", "0", "detector rotation about x",
         _set("rotx", DEG)),
    Flag(("-detector_roty",), 1, "Detector", "deg", "0", "detector rotation about y",
         _set("roty", DEG)),
    Flag(("-detector_rotz",), 1, "Detector", "deg", "0", "detector rotation about z",
         _set("rotz", DEG)),
    Flag(("-curved_det",), 0, "Detector", "", "off", "pixels on a sphere of radius distance",
         _curved),
    Flag(("-point_pixel",), 0, "Detector", "", "off", "solid angle 1/R² (no obliquity)",
         _true("point_pixel")),
    Flag(("-img",), 1, "Detector", "file", "none", "read geometry from an SMV header",
         _nothing),
    Flag(("-mask",), 1, "Detector", "file", "none",
         "SMV mask: pixels that are 0 are skipped (geometry read from its header)", _nothing),
    # ---- Sampling ----
    Flag(("-oversample",), 1, "Sampling", "int", "auto", "sub-pixels per pixel edge (0 = auto)",
         _oversample),
    Flag(("-phi",), 1, "Sampling", "deg", "0", "starting spindle angle", _set("phi0", DEG)),
    Flag(("-osc",), 1, "Sampling", "deg", "auto", "oscillation range", _set("osc", DEG, lower="nonneg")),
    Flag(("-phistep",), 1, "Sampling", "deg", "auto", "spindle step",
         _set("phistep", DEG, lower="nonneg")),
    Flag(("-phisteps",), 1, "Sampling", "int", "auto", "number of spindle steps (0 = 1)",
         _set("phisteps", integer=True, lower=0)),
    Flag(("-spindle_axis",), 3, "Sampling", "unit vector", "per convention",
         "spindle rotation axis (switches to CUSTOM)", _custom_vector("spindle_vector")),
    Flag(("-roi",), 4, "Sampling", "pixels", "whole detector",
         "render only xmin xmax ymin ymax (fast, slow; inclusive)", _roi),
    Flag(("-dmin",), 1, "Sampling", "Å", "0", "skip scattering beyond this resolution",
         _set("dmin", 1e-10, lower="nonneg")),
    # ---- Sensor ----
    Flag(("-detector_thick",), 1, "Sensor", "µm", "0", "sensor thickness",
         _set("detector_thick", 1e-6, lower="nonneg")),
    Flag(("-detector_abs",), 1, "Sensor", "µm | inf", "inf",
         "sensor attenuation length (inf or 0: no absorption)", _detector_abs,
         prefixes=("-detector_abs",)),
    Flag(("-detector_thicksteps", "-thicksteps"), 1, "Sensor", "int", "auto",
         "sensor layers", _set("detector_thicksteps", integer=True, lower=1)),
    Flag(("-oversample_thick",), 0, "Sensor", "", "off",
         "recompute the capture fraction per sub-pixel", _true("oversample_thick")),
    Flag(("-oversample_polar",), 0, "Sensor", "", "off",
         "recompute the polarization factor per sub-pixel", _true("oversample_polar")),
    Flag(("-oversample_omega",), 0, "Sensor", "", "off",
         "recompute the solid angle per sub-pixel", _true("oversample_omega")),
    Flag(("-water",), 1, "Sensor", "µm", "0", "water background thickness",
         _set("water_size", UM_WATER, lower="nonneg")),
    # ---- Output ----
    Flag(("-floatfile", "-floatimage"), 1, "Output", "file", "floatimage.bin",
         "raw float32 image", _output("floatfile")),
    Flag(("-intfile", "-intimage"), 1, "Output", "file", "intimage.img",
         "SMV image, scaled (always written)", _output("intfile")),
    Flag(("-pgmfile", "-pgmimage"), 1, "Output", "file", "image.pgm", "8-bit PGM image",
         _output("pgmfile", "write_pgm")),
    Flag(("-nopgm",), 0, "Output", "", "", "do not write the PGM image",
         _true("write_pgm", False)),
    Flag(("-scale",), 1, "Output", "", "55000/max", "int image scale factor",
         _set("intfile_scale")),
    Flag(("-pgmscale",), 1, "Output", "", "250/(5*rmsd)", "PGM scale factor", _pgmscale),
    Flag(("-adc",), 1, "Output", "ADU", "40", "offset added to int and noise images",
         _set("adc")),
    # ---- Noise ----
    Flag(("-noisefile", "-noiseimage"), 1, "Noise", "file", "noiseimage.img",
         "SMV image with Poisson noise", _output("noisefile", "calculate_noise")),
    Flag(("-nonoise",), 0, "Noise", "", "", "do not write the noise image",
         _true("calculate_noise", False)),
    Flag(("-seed",), 1, "Noise", "int", "time", "random seed of the noise image", _seed),
    # ---- Trace ----
    Flag(("-trace_pixel", "-dump_pixel"), 2, "Trace", "slow fast", "none",
         "print TRACE_PY lines for one pixel", _trace_pixel),
    Flag(("-printout",), 0, "Trace", "", "off",
         "print every pixel's values (not reproduced: a warning; see -printout_pixel)",
         _true("printout")),
    Flag(("-printout_pixel",), 2, "Trace", "fast slow", "none",
         "print one pixel's values as nanoBragg.c does",
         _printout_pixel),
    Flag(("-progress",), 0, "Trace", "", "on", "progress meter", _progress(True)),
    Flag(("-noprogress",), 0, "Trace", "", "", "no progress meter", _progress(False)),
    # ---- accepted, no effect (in nanoBragg.c either) ----
    Flag(("-coherent",), 0, "No effect", "", "", "no effect in nanoBragg.c",
         _ignored("nanoBragg.c never uses it")),
    Flag(("-density",), 1, "No effect", "g/cm³", "", "no effect in nanoBragg.c",
         _ignored("nanoBragg.c overwrites the density"), prefixes=("-sample_den",)),
    Flag(("-MW",), 1, "No effect", "g/mol", "", "no effect in nanoBragg.c",
         _ignored("nanoBragg.c overwrites the molecular weight"), prefixes=("-molec",)),
    Flag(("-stol",), 1, "No effect", "file", "", "read but unused by nanoBragg.c",
         _ignored("nanoBragg.c reads the file but never uses it")),
    Flag(("-4stol",), 1, "No effect", "file", "", "read but unused by nanoBragg.c",
         _ignored("nanoBragg.c reads the file but never uses it")),
    Flag(("-Q",), 1, "No effect", "file", "", "read but unused by nanoBragg.c",
         _ignored("nanoBragg.c reads the file but never uses it")),
    Flag(("-stolout",), 1, "No effect", "file", "", "never written by nanoBragg.c",
         _ignored("nanoBragg.c never writes it")),
)


def find_flag(token: str) -> Flag | None:
    """The table entry for ``token``: an exact spelling first, then the longest matching prefix."""
    for flag in FLAGS:
        if token in flag.names:
            return flag
    best, best_len = None, 0
    for flag in FLAGS:
        for p in flag.prefixes:
            if token.startswith(p) and len(p) > best_len:
                best, best_len = flag, len(p)
    return best


def _take_values(flag: Flag, token: str, argv: list, i: int) -> tuple:
    """Collect the values following argv[i]; returns (values, next index)."""
    rest = argv[i + 1:]
    if flag.nargs == "cell":
        vals = []
        for v in rest[:6]:
            if v.startswith("-"):
                break
            vals.append(v)
        return vals, i + 1 + len(vals)
    if flag.nargs == "misset":
        if rest and "rand" in rest[0]:
            return rest[:1], i + 2
        n = 3
    else:
        n = flag.nargs
    vals = rest[:n]
    if len(vals) < n or any(v.startswith("-") and not looks_numeric(v) for v in vals):
        what = "a value" if n == 1 else f"{n} values"
        raise FlagError(f"{token}: expected {what}")
    return vals, i + 1 + n


def did_you_mean(token: str) -> str:
    """``"; did you mean -distance?"`` for a mistyped flag (closest spellings of the table)."""
    import difflib
    names = [n for flag in FLAGS for n in flag.names]
    close = difflib.get_close_matches(token, names, n=2, cutoff=0.75)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def apply_flags(argv: list, opts: RawOptions | None = None) -> RawOptions:
    """Apply nanoBragg.c flags in order to ``opts`` (a fresh RawOptions by default)."""
    opts = opts if opts is not None else RawOptions()
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-") or looks_numeric(token):
            raise FlagError(f"unexpected argument {token!r} (values must follow their flag)")
        flag = find_flag(token)
        if flag is None:
            raise FlagError(f"{token}: unknown flag{did_you_mean(token)} (see 'nanobragg --help')")
        if flag.nargs == 0:
            vals, nxt = [], i + 1
        else:
            vals, nxt = _take_values(flag, token, argv, i)
        flag.apply(opts, token, vals)
        i = nxt
    # C-parity quirk (-curved_det last): nanoBragg.c reads -curved_det only when another argument
    # follows it (its test is argc > i+1), so as the last argument it is ignored there
    opts.curved_detector_c = "-curved_det" in argv[:-1]
    if opts.curved_detector and not opts.curved_detector_c:
        opts.warn("-curved_det is the last argument: nanoBragg.c ignores it there (so does "
                  "--c-parity); the default mode applies it")
    return opts
