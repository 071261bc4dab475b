"""Random nanoBragg.c command lines for the parity fuzzer (``nanobragg suite --c-bin PATH
--random N --seed S``), with the input files they name.

:func:`draw_case` draws one case from ``random.Random(f"{seed}:{index}")``, so case ``index`` of
seed ``S`` is the same command line whatever N is, and the same seed always gives the same cases.
A case is a small base (a crystal, a structure factor, a small detector of 16-48 pixels a side)
plus a random subset of the areas of the flag table (:data:`AREAS`), each contributing one to
several flags with valid and edge values; the flag groups are then shuffled, since nanoBragg.c
applies some flags in argv order (conventions reset the vectors, ``-pivot``, ``-curved_det`` last).
Sizes are bounded (pixels x sub-pixels x phi x mosaic x sources x thickness steps) so a case
takes well under a second in nanoBragg.c.

Input files the case names (``inputs/<case>_*``: HKL grids, MOSFLM A matrices, source files,
SMV images for ``-img`` and ``-mask``) are returned as bytes in :attr:`FuzzCase.files`, and
:func:`write_cases` writes them with a cases file (:mod:`nanobragg_cli.cases_file` format) that
``nanobragg suite --c-bin PATH --cases FILE`` reruns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
import random
import shlex

# every area of the flag table the generator draws from (the coverage test checks each appears)
AREAS = ("cell", "matrix", "hkl", "misset", "N", "xtal_size", "phi", "mosaic", "divergence",
         "sourcefile", "dispersion", "oversample", "sensor", "shape", "polarization",
         "convention", "detector_rotation", "pivot", "beam_centre", "distance", "water", "roi",
         "noise", "intensity", "output_scale", "img", "mask", "interpolation", "dmin")

# per-case cost bound: sub-pixels^2 x phi x mosaic x sources x thickness steps
MAX_STEPS = 192


@dataclass
class FuzzCase:
    """One drawn case: name (``r<seed>_<index>``), nanoBragg flags, the areas drawn, and the
    input files it names (path relative to the cases folder -> bytes)."""
    name: str
    flags: list
    areas: tuple
    files: dict = field(default_factory=dict)

    @property
    def command(self) -> str:
        return shlex.join(self.flags)


def _num(x: float, digits: int = 6) -> str:
    """A short decimal for a flag value (``%g`` with ``digits`` significant digits)."""
    return f"{x:.{digits}g}"


class _Draw:
    """The state of one case being drawn: the rng, flag groups, files and the cost so far."""

    def __init__(self, rng: random.Random, name: str):
        self.rng, self.name = rng, name
        self.groups, self.files, self.areas = [], {}, []
        self.pixels = (32, 32)          # (fast, slow) of the detector
        self.beam_x = True              # the beam runs along +x (MOSFLM/DENZO) or +z
        self.cell_max = 120.0           # longest cell edge (Å), for the automatic oversampling
        self.header = {}                # keys of a -img/-mask header
        self.steps = {"sub": 1, "phi": 1, "mosaic": 1, "div": 1, "disp": 1, "thick": 1}

    def add(self, *tokens) -> None:
        self.groups.append([str(t) for t in tokens])

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def cost(self) -> int:
        s = self.steps
        return math.prod(s.values()) * s["sub"]

    def budget(self, key: str, wanted: int) -> int:
        """``wanted`` lowered so the per-case cost stays under MAX_STEPS (``sub`` counts
        squared)."""
        self.steps[key] = 1
        room = max(1, MAX_STEPS // self.cost())
        if key == "sub":
            room = math.isqrt(room)
        self.steps[key] = value = max(1, min(wanted, room))
        return value

    def pick(self, *choices):
        return self.rng.choice(choices)

    def uniform(self, lo: float, hi: float, digits: int = 5) -> str:
        return _num(self.rng.uniform(lo, hi), digits)

    def vector(self, near=None, spread: float = 1.0) -> list:
        """Three components of a direction (a random one, or ``near`` plus noise), unnormalised."""
        if near is None:
            v = [self.rng.gauss(0, 1) for _ in range(3)]
        else:
            v = [c + self.rng.gauss(0, spread) for c in near]
        return [_num(c, 5) for c in v]


# ---- input files ---------------------------------------------------------------------------


def _cell_vectors(a, b, c, al, be, ga):
    """Real-space cell vectors (Å) of a cell, a along x, b in the xy plane."""
    al, be, ga = (math.radians(x) for x in (al, be, ga))
    va = (a, 0.0, 0.0)
    vb = (b * math.cos(ga), b * math.sin(ga), 0.0)
    cx = c * math.cos(be)
    cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz = math.sqrt(max(c * c - cx * cx - cy * cy, 1e-6))
    return va, vb, (cx, cy, cz)


def _cross(u, v):
    return (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])


def _dot(u, v):
    return sum(x * y for x, y in zip(u, v))


def _rotation(rng):
    """A random rotation matrix (rows), from a random unit quaternion."""
    q = [rng.gauss(0, 1) for _ in range(4)]
    n = math.sqrt(sum(x * x for x in q)) or 1.0
    w, x, y, z = (t / n for t in q)
    return ((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
            (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
            (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)))


def mat_file(rng, cell, lambda_A: float = 1.0) -> bytes:
    """A MOSFLM A matrix (3 lines: x, y, z components of a*, b*, c* times the wavelength) of
    ``cell`` in a random orientation, optionally followed by the lines MOSFLM writes after it."""
    va, vb, vc = _cell_vectors(*cell)
    vol = _dot(va, _cross(vb, vc))
    stars = [[x / vol for x in _cross(vb, vc)], [x / vol for x in _cross(vc, va)],
             [x / vol for x in _cross(va, vb)]]
    rot = _rotation(rng)
    stars = [[_dot(row, s) * lambda_A for row in rot] for s in stars]
    lines = [" ".join(f"{stars[j][i]:12.8f}" for j in range(3)) for i in range(3)]
    if rng.random() < 0.4:
        lines += ["       0.000       0.000       0.000", " ".join(_num(x) for x in cell)]
    return ("\n".join(lines) + "\n").encode()


def hkl_file(rng, name: str) -> bytes:
    """An HKL list ``h k l F`` of integer indices on a grid (a few reflections left out, some F
    zero), as nanoBragg.c reads it."""
    hmax = [rng.randint(1, 5) for _ in range(3)]
    lines = []
    for h in range(-hmax[0], hmax[0] + 1):
        for k in range(-hmax[1], hmax[1] + 1):
            for l in range(-hmax[2], hmax[2] + 1):
                if rng.random() < 0.05:
                    continue
                F = 0.0 if rng.random() < 0.05 else rng.uniform(1, 500)
                lines.append(f"{h:4d} {k:4d} {l:4d} {F:10.2f}")
    return ("\n".join(lines) + "\n").encode()


def source_file(rng, beam_x: bool, lambda_A: float) -> bytes:
    """1-5 sources ``X Y Z weight lambda`` (metres) near the incident direction; some lines give
    only the first 3 or 4 columns (nanoBragg.c fills the rest in)."""
    lines = []
    for _ in range(rng.randint(1, 5)):
        d = [rng.gauss(0, 0.003) for _ in range(3)]
        pos = (-10.0, d[1], d[2]) if beam_x else (d[0], d[1], -10.0)
        cols = [_num(x) for x in pos] + [_num(rng.uniform(0.2, 1.5)),
                                         _num(lambda_A * rng.uniform(0.98, 1.02) * 1e-10)]
        lines.append(" ".join(cols[:rng.choice((3, 4, 5, 5, 5))]))
    return ("\n".join(lines) + "\n").encode()


def smv_file(rng, fast: int, slow: int, mask: bool, keys: dict) -> bytes:
    """An SMV image (512-byte header, little-endian unsigned shorts) with the header ``keys``;
    for a mask, pixel values 0 (masked) or 1, else arbitrary counts."""
    head = ["{", "HEADER_BYTES=512;", "DIM=2;", "BYTE_ORDER=little_endian;",
            "TYPE=unsigned_short;", f"SIZE1={fast};", f"SIZE2={slow};"]
    head += [f"{k}={v};" for k, v in keys.items()]
    text = "\n".join(head) + "\n}\f"
    header = text.encode().ljust(512, b" ")[:512]
    if mask:
        vals = [0 if rng.random() < 0.15 else 1 for _ in range(fast * slow)]
    else:
        vals = [rng.randint(0, 1000) for _ in range(fast * slow)]
    import struct
    return header + struct.pack(f"<{len(vals)}H", *vals)


# ---- the areas -------------------------------------------------------------------------------


def _crystal(d: _Draw, lambda_A: float) -> None:
    """-cell and/or -mat (always a lattice), the structure factors (-default_F, -hkl)."""
    rng = d.rng
    kind = rng.choice(("cubic", "ortho", "hex", "mono", "tric"))
    a = rng.uniform(30, 120)
    cell = {"cubic": (a, a, a, 90, 90, 90),
            "ortho": (a, rng.uniform(30, 120), rng.uniform(30, 120), 90, 90, 90),
            "hex": (a, a, rng.uniform(30, 150), 90, 90, 120),
            "mono": (a, rng.uniform(30, 120), rng.uniform(30, 120), 90, rng.uniform(92, 120), 90),
            "tric": (a, rng.uniform(30, 120), rng.uniform(30, 120), rng.uniform(70, 110),
                     rng.uniform(70, 110), rng.uniform(70, 110))}[kind]
    cell_tokens = ["-cell"] + [_num(x, 5) for x in cell]
    d.cell_max = max(cell[:3]) * 1.05
    use_mat = d.chance(0.3)
    if use_mat:
        d.areas.append("matrix")
        path = f"inputs/{d.name}_A.mat"
        d.files[path] = mat_file(rng, cell, lambda_A)
        d.add("-mat", path)
        if d.chance(0.3):             # -cell rescales the matrix' lattice (issue 12 cause 4)
            other = [x * rng.uniform(0.95, 1.05) for x in cell[:3]] + list(cell[3:])
            d.add("-cell", *[_num(x, 5) for x in other])
    else:
        d.areas.append("cell")
        d.add(*cell_tokens)
    if d.chance(0.4):
        d.areas.append("hkl")
        path = f"inputs/{d.name}.hkl"
        d.files[path] = hkl_file(rng, path)
        d.add("-hkl", path)
        if d.chance(0.5):
            d.add("-default_F", d.pick("0", "10", "100"))
    else:
        d.add("-default_F", d.pick("1", "100", "250.5", "1000"))


def _area_misset(d):
    if d.chance(0.3):
        # always seeded: without -misset_seed both programs seed from the clock
        d.add("-misset", "random")
        d.add("-misset_seed", d.rng.randint(1, 99999))
    else:
        d.add("-misset", *[d.uniform(-180, 180, 5) for _ in range(3)])


def _area_N(d):
    if d.chance(0.5):
        d.add("-N", d.pick(*range(1, 16), 0))       # -N 0: one cell, as in nanoBragg.c
    else:
        for f in d.rng.sample(("-Na", "-Nb", "-Nc"), d.rng.randint(1, 3)):
            d.add(f, d.rng.randint(1, 15))


def _area_xtal_size(d):
    # mm: a few unit cells to a micron
    d.add(d.pick("-xtalsize", "-xtal_size", "-samplesize"), d.pick("0.0002", "0.0005", "0.001"))
    if d.chance(0.3):
        d.add(d.pick("-xtal_thick", "-sample_thick"), d.pick("0.0003", "0.0008"))


def _area_phi(d):
    r = d.rng
    if d.chance(0.7):
        d.add("-phi", d.uniform(-90, 90, 4))
    if d.chance(0.7):
        d.add("-osc", d.pick("0", "0.1", "0.5", "1", d.uniform(0, 3, 3)))
    if d.chance(0.6):
        n = r.randint(0, 4)
        d.add("-phisteps", d.budget("phi", n) if n else 0)      # 0 means 1
    elif d.chance(0.3):
        d.add("-phistep", d.pick("0.05", "0.2", "0.5"))
        d.steps["phi"] = 4
    if d.chance(0.3):
        d.add("-spindle_axis", *d.vector())


def _area_mosaic(d):
    d.add("-mosaic", d.pick("0", "0.05", "0.3", "1", d.uniform(0, 2, 3)))
    d.add("-mosaic_domains", d.budget("mosaic", d.rng.randint(1, 4)))
    if d.chance(0.5):
        d.add("-mosaic_seed", d.rng.randint(1, 10 ** 6))


def _area_divergence(d):
    r = d.rng
    if d.chance(0.4):
        d.add("-divergence", d.pick("0", "0.1", "0.5", d.uniform(0, 2, 3)))
    else:
        d.add("-hdivrange", d.pick("0", "0.2", d.uniform(0, 2, 3)))
        if d.chance(0.7):
            d.add("-vdivrange", d.pick("0", "0.3", d.uniform(0, 2, 3)))
    n = d.budget("div", r.randint(1, 9))
    steps = max(1, math.isqrt(n))
    if d.chance(0.5):
        d.add("-divsteps", steps)
        d.steps["div"] = steps * steps
    else:
        d.add("-hdivsteps", steps)
        d.add("-vdivsteps", max(1, n // steps))
    if d.chance(0.4):
        d.add(d.pick("-round_div", "-square_div"))


def _area_sourcefile(d, lambda_A):
    path = f"inputs/{d.name}_sources.txt"
    d.files[path] = source_file(d.rng, d.beam_x, lambda_A)
    d.add("-sourcefile", path)
    d.steps["div"] = max(d.steps["div"], 5)


def _area_dispersion(d):
    d.add("-dispersion", d.pick("0", "0.5", "2", d.uniform(0, 5, 3)))
    d.add("-dispsteps", d.budget("disp", d.rng.randint(1, 4)))


def _area_oversample(d):
    d.add("-oversample", d.budget("sub", d.rng.randint(1, 3)) if d.chance(0.9) else 0)
    for f in ("-oversample_polar", "-oversample_omega"):
        if d.chance(0.3):
            d.add(f)
    if d.chance(0.15):
        d.add("-point_pixel")


def _area_sensor(d):
    r = d.rng
    if d.chance(0.85):
        d.add("-detector_thick", d.pick("0", "50", "100", "320", d.uniform(1, 1000, 4)))
    if d.chance(0.6):
        d.add("-detector_abs", d.pick("inf", "0", "200", "500", d.uniform(10, 1000, 4)))
    if d.chance(0.85):
        d.add(d.pick("-detector_thicksteps", "-thicksteps"), d.budget("thick", r.randint(1, 4)))
    else:
        d.steps["thick"] = 4
    if d.chance(0.2):
        d.add("-oversample_thick")


def _area_shape(d):
    d.add(d.pick("-square_xtal", "-round_xtal", "-gauss_xtal", "-tophat_spots", "-binary_spots"))
    if d.chance(0.3):
        d.add("-fudge", d.pick("0.5", "1", "2"))


def _area_polarization(d):
    what = d.rng.random()
    if what < 0.4:
        d.add("-polar", d.pick("0", "0.5", "0.9", "1", d.uniform(-1, 1, 3)))
    elif what < 0.6:
        d.add("-nopolar")
    if d.chance(0.5):
        # sometimes along the beam (nanoBragg.c's zero-vector unitize, issue 12 cause 2)
        along = ["1", "0", "0"] if d.beam_x else ["0", "0", "1"]
        d.add("-polar_vector", *(along if d.chance(0.15) else d.vector()))


def _area_convention(d):
    conv = d.pick("-mosflm", "-xds", "-adxv", "-denzo", "-dials", "custom")
    if conv == "custom":
        # an orthonormal detector frame, optionally with a beam vector
        rot = _rotation(d.rng)
        for flag, row in zip(("-fdet_vector", "-sdet_vector", "-odet_vector"), rot):
            d.add(flag, *[_num(x, 8) for x in row])
        d.add("-beam_vector", *[_num(x, 8) for x in rot[2]])
        d.beam_x = False
        return
    d.beam_x = conv in ("-mosflm", "-denzo")
    d.add(conv)
    if d.chance(0.2):
        d.add("-beam_vector", *d.vector([1, 0, 0] if d.beam_x else [0, 0, 1], 0.02))


def _area_detector_rotation(d):
    for f in ("-detector_rotx", "-detector_roty", "-detector_rotz"):
        if d.chance(0.5):
            d.add(f, d.uniform(-10, 10, 4))
    if d.chance(0.5):
        d.add("-twotheta", d.pick("0", "5", "15", d.uniform(-30, 30, 4)))
        if d.chance(0.3):
            d.add("-twotheta_axis", *d.vector([0, 0, -1], 0.05))
    if d.chance(0.2):
        d.add("-curved_det")


def _area_pivot(d):
    d.add("-pivot", d.pick("beam", "sample"))


def _area_beam_centre(d):
    f, s = d.pixels
    what = d.rng.random()
    px = 0.1
    if what < 0.5:
        d.add("-Xbeam", _num(d.rng.uniform(0, f * px), 4))
        d.add("-Ybeam", _num(d.rng.uniform(0, s * px), 4))
    elif what < 0.75:
        d.add("-Xclose", _num(d.rng.uniform(0, f * px), 4))
        d.add("-Yclose", _num(d.rng.uniform(0, s * px), 4))
    else:
        d.add("-ORGX", _num(d.rng.uniform(0, f), 4))
        d.add("-ORGY", _num(d.rng.uniform(0, s), 4))


def _area_distance(d):
    if d.chance(0.7):
        d.add("-distance", d.pick("50", "80", "100", "150", d.uniform(30, 300, 4)))
    else:
        d.add("-close_distance", d.pick("60", "100", d.uniform(30, 300, 4)))


def _area_water(d):
    d.add("-water", d.pick("0", "10", "100", d.uniform(1, 500, 4)))


def _area_roi(d):
    f, s = d.pixels
    x0, y0 = d.rng.randint(0, f - 2), d.rng.randint(0, s - 2)
    d.add("-roi", x0, d.rng.randint(x0, f - 1), y0, d.rng.randint(y0, s - 1))


def _area_noise(d):
    d.add("-seed", d.pick(str(d.rng.randint(1, 10 ** 6)), "1", "0", "-7",
                          str(-d.rng.randint(1, 999))))


def _area_intensity(d):
    what = d.rng.random()
    if what < 0.4:
        d.add("-flux", d.pick("1e10", "1e12", "3.3e13"))
        if d.chance(0.6):
            d.add("-exposure", d.pick("0.1", "1", "10"))
        if d.chance(0.6):
            d.add("-beamsize", d.pick("0.01", "0.05", "0.1", "1"))
    elif what < 0.7:
        d.add("-fluence", d.pick("1e20", "1e24", "1.25932e29"))
    else:
        d.add("-exposure", d.pick("0.5", "2"))


def _area_output_scale(d):
    if d.chance(0.6):
        d.add("-scale", d.pick("1", "10", "1e3", d.uniform(0.01, 100, 3)))
    if d.chance(0.5):
        d.add("-adc", d.pick("0", "10", "40", "100"))


def _header_keys(d) -> dict:
    keys = {"PIXEL_SIZE": d.pick("0.1", "0.172", "0.05")}
    f, s = d.pixels
    for k, v in (("DISTANCE", d.uniform(50, 200, 4)), ("WAVELENGTH", d.uniform(0.8, 1.5, 4)),
                 ("BEAM_CENTER_X", _num(d.rng.uniform(0.3, 0.7) * f * 0.1, 4)),
                 ("BEAM_CENTER_Y", _num(d.rng.uniform(0.3, 0.7) * s * 0.1, 4)),
                 ("PHI", d.uniform(0, 90, 3)), ("OSC_RANGE", d.pick("0", "0.1", "0.5")),
                 ("TWOTHETA", d.pick("0", "5"))):
        if d.chance(0.6):
            keys[k] = v
    d.header.update(keys)
    return keys


def _area_img(d):
    f, s = d.pixels
    path = f"inputs/{d.name}_header.img"
    d.files[path] = smv_file(d.rng, f, s, False, _header_keys(d))
    d.add("-img", path)


def _area_mask(d):
    f, s = d.pixels
    path = f"inputs/{d.name}_mask.img"
    d.files[path] = smv_file(d.rng, f, s, True, _header_keys(d) if d.chance(0.5) else {})
    d.add("-mask", path)


def _area_interpolation(d):
    d.add(d.pick("-interpolate", "-nointerpolate"))


def _area_dmin(d):
    d.add("-dmin", d.pick("0", "1", "2.5", "5", d.uniform(0.5, 10, 3)))


_SIMPLE = {"misset": _area_misset, "N": _area_N, "xtal_size": _area_xtal_size,
           "phi": _area_phi, "mosaic": _area_mosaic, "divergence": _area_divergence,
           "dispersion": _area_dispersion, "oversample": _area_oversample,
           "sensor": _area_sensor, "shape": _area_shape, "polarization": _area_polarization,
           "detector_rotation": _area_detector_rotation, "pivot": _area_pivot,
           "beam_centre": _area_beam_centre, "distance": _area_distance, "water": _area_water,
           "roi": _area_roi, "noise": _area_noise, "intensity": _area_intensity,
           "output_scale": _area_output_scale, "img": _area_img, "mask": _area_mask,
           "interpolation": _area_interpolation, "dmin": _area_dmin}
# how often each optional area is drawn
_P = {"misset": 0.5, "N": 0.8, "xtal_size": 0.1, "phi": 0.5, "mosaic": 0.4, "divergence": 0.35,
      "sourcefile": 0.12, "dispersion": 0.3, "oversample": 0.5, "sensor": 0.35, "shape": 0.35,
      "polarization": 0.5, "convention": 0.5, "detector_rotation": 0.35, "pivot": 0.3,
      "beam_centre": 0.45, "distance": 0.6, "water": 0.2, "roi": 0.2, "noise": 0.4,
      "intensity": 0.3, "output_scale": 0.25, "img": 0.08, "mask": 0.1, "interpolation": 0.25,
      "dmin": 0.15}


def _auto_oversample(d: _Draw) -> int:
    """An upper estimate of nanoBragg.c's automatic oversampling, ceil(3·crystal size·pixel /
    (λ·distance)), from the flags and header drawn (the smallest distance and wavelength, the
    largest pixel, crystal size and cell named anywhere)."""
    vals = {}
    for g in d.groups:
        vals.setdefault(g[0], []).append(g[1:])
    first = lambda flags: [float(v[0]) for f in flags for v in vals.get(f, []) if v]
    N = max(first(("-N", "-Na", "-Nb", "-Nc")) + [1.0])
    size_m = max([N * d.cell_max * 1e-10]
                 + [x * 1e-3 for x in first(("-xtalsize", "-xtal_size", "-samplesize",
                                              "-xtal_thick", "-sample_thick"))])
    pixel = max(first(("-pixel",)) + [float(d.header.get("PIXEL_SIZE", 0.1)), 0.1]) * 1e-3
    dist = min(first(("-distance", "-close_distance"))
               + [float(d.header.get("DISTANCE", 100)), 100.0]) * 1e-3
    lam = min(first(("-lambda",)) + [12398.42 / e for e in first(("-energy",))]
              + [float(d.header.get("WAVELENGTH", 1.0)), 1.0]) * 1e-10
    return max(1, math.ceil(3.0 * size_m * pixel / (lam * dist)))


def _bound_auto_oversample(d: _Draw) -> None:
    """Keep nanoBragg.c's automatic oversampling (no -oversample, or 0) only where it stays
    within the per-case cost; else give an explicit small one."""
    d.steps["sub"] = 1
    if _auto_oversample(d) ** 2 * d.cost() <= MAX_STEPS:
        return
    d.groups = [g for g in d.groups if g[0] != "-oversample"]
    d.add("-oversample", d.budget("sub", d.rng.randint(1, 2)))


def draw_case(seed: int, index: int) -> FuzzCase:
    """Case ``index`` of ``seed`` (independent of how many cases are drawn)."""
    rng = random.Random(f"nanobragg-fuzz:{seed}:{index}")
    d = _Draw(rng, f"r{seed}_{index}")
    side = rng.choice((16, 24, 32, 48))
    d.pixels = (side, side) if rng.random() < 0.7 else (rng.choice((16, 24, 32, 48)), side)
    lambda_A = 1.0
    areas = [a for a in _P if rng.random() < _P[a]]
    if "img" in areas and "mask" in areas:
        areas.remove("mask")
    # the detector size: from the -img/-mask header, else flags
    if "img" not in areas and "mask" not in areas:
        f, s = d.pixels
        if f == s and rng.random() < 0.7:
            d.add("-detpixels", f)
        else:
            d.add("-detpixels_x", f)
            d.add("-detpixels_y", s)
        d.add("-pixel", d.pick("0.1", "0.1", "0.172", "0.05", "0.2"))
    if rng.random() < 0.5:
        if rng.random() < 0.7:
            lambda_A = float(d.pick("0.9", "1", "1.2", "1.54", "0.7749"))
            d.add("-lambda", _num(lambda_A))
        else:
            d.add("-energy", d.pick("8000", "12398.42", "15000"))
    if "convention" in areas:      # set before the source file, which must follow the beam
        _area_convention(d)
        d.areas.append("convention")
    _crystal(d, lambda_A)
    for area in areas:
        if area == "convention":
            continue
        d.areas.append(area)
        if area == "sourcefile":
            _area_sourcefile(d, lambda_A)
        else:
            _SIMPLE[area](d)
    if "oversample" not in areas and rng.random() < 0.7:
        d.add("-oversample", 1)
    if not any(g[0] == "-oversample" and g[1] != "0" for g in d.groups):
        _bound_auto_oversample(d)
    if "noise" not in areas and rng.random() < 0.5:
        d.add("-nonoise")
    groups = d.groups
    rng.shuffle(groups)
    return FuzzCase(d.name, [t for g in groups for t in g], tuple(sorted(set(d.areas))), d.files)


def draw_cases(n: int, seed: int, start: int = 0) -> list:
    """Cases ``start .. start+n-1`` of ``seed``."""
    return [draw_case(seed, i) for i in range(start, start + n)]


def write_cases(cases: list, folder: Path) -> Path:
    """Write every case's input files under ``folder`` and ``folder/cases.txt`` (one ``NAME:
    FLAGS`` line per case); returns the cases file's path."""
    folder = Path(folder)
    for case in cases:
        for rel, data in case.files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    path = folder / "cases.txt"
    path.write_text("".join(f"{c.name}: {c.command}\n" for c in cases))
    return path
