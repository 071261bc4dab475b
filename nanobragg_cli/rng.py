"""nanoBragg.c's random numbers, reproduced bit for bit (sequential, CPU only, pure Python + numpy).

All of nanoBragg.c's randomness comes from Numerical Recipes ``ran1`` (Park-Miller minimal
standard with a 32-entry Bays-Durham shuffle).  Its shuffle table (``iy``, ``iv[32]``) is one
C ``static`` shared by every seed (mosaic, misset, noise); each seed is its own C ``long`` that
``ran1`` updates through a pointer, and re-initialises the shared table only when its value is
<= 0 (or the table is still empty, ``iy == 0``).  Here :class:`NanoRandom` is that static state
(plus the statics of ``poidev`` and ``gaussdev``; a fresh object = a fresh C process) and
:class:`Seed` is one ``long``.  Where a seed is only used once a plain int is accepted.

C ``float`` arithmetic is emulated exactly: every float-typed intermediate is rounded with
:func:`f32`, double-typed expressions stay Python floats, and ``math`` calls the same glibc libm
as the C program; ``powf`` is glibc's, through ctypes.  Angles are radians, images photons/pixel.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from array import array

import numpy as np

from .constants import RTD  # noqa: F401  (180.0*M_1_PI, as in nanoBragg.c)

IA, IM, IQ, IR, NTAB = 16807, 2147483647, 127773, 2836, 32
NDIV = 1 + (IM - 1) // NTAB            # = 2**26
AM = 1.0 / IM
RNMX = 1.0 - 1.2e-7                    # ran1's cap, compared in double, returned as float
_SPLIT = 536870913.0                   # 2**29 + 1: a Veltkamp split keeps 24 significant bits
_FLT_MIN, _FLT_MAX = 1.1754943508222875e-38, 3.4028234663852886e38
_BLOCK = 1 << 16                       # largest block of draws generated at once
_POW: list = []                        # cache: IA**1 .. IA**_BLOCK mod IM (int64)
_LGAM: dict = {}                       # cache: em -> gammln(em + 1) for poidev's rejection method


def f32(x: float) -> float:
    """C ``(float)x``: round a double to float32 (nearest-even, subnormals, overflow to inf)."""
    if _FLT_MIN <= abs(x) <= _FLT_MAX:     # normal range: the split rounds exactly (ties to even)
        c = x * _SPLIT
        return c - (c - x)
    return ctypes.c_float(x).value


RNMX_F = f32(RNMX)
_powf = ctypes.CDLL(ctypes.util.find_library("m") or None).powf
_powf.argtypes, _powf.restype = [ctypes.c_float, ctypes.c_float], ctypes.c_float


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:              # C gives inf
        return math.inf


def _cdiv(a: int, b: int) -> int:
    """C integer division of longs (truncates toward zero)."""
    return abs(a) // b if a >= 0 else -(-a // b)


def _schrage(idum: int) -> int:
    """One Park-Miller step (IA*idum mod IM by Schrage's method, as ran1 computes it)."""
    k = _cdiv(idum, IQ)
    idum = IA * (idum - k * IQ) - IR * k
    return idum + IM if idum < 0 else idum


class Seed:
    """One C ``long`` seed (``seed``, ``mosaic_seed``, ``misset_seed``) that ran1 updates in place.
    ``-seed N`` on the command line is the C value -N."""
    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = int(value)

    def __repr__(self):
        return f"Seed({self.value})"


def _as_seed(seed) -> Seed:
    return seed if isinstance(seed, Seed) else Seed(seed)


def gammln(xx: float) -> float:
    """C ``gammln``: ln Gamma(xx) for xx > 0 (NR Lanczos series in double, returned as float)."""
    x = float(xx)
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    y, ser = x, 1.000000000190015
    for c in (76.18009172947146, -86.50532032941677, 24.01409824083091,
              -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5):
        y += 1.0
        ser += c / y
    return f32(-tmp + math.log(2.5066282746310005 * ser / x))


def umat2misset(umat) -> tuple[float, float, float]:
    """C ``umat2misset``: (rotx, roty, rotz) in radians of a row-major 3x3 rotation matrix, after
    C's row normalisation and empty-row repair (twice, from cross products), all in double."""
    u = [float(v) for v in np.asarray(umat, dtype=np.float64).reshape(9)]
    rows = [u[0:3], u[3:6], u[6:9]]

    def unit(v):
        m = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
        return ([v[0] / m, v[1] / m, v[2] / m] if m > 0 else v), m

    def cross(a, b):
        return unit([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])[0]

    rows, m = map(list, zip(*(unit(r) for r in rows)))
    for i in range(3):                 # a single non-empty row: the others become identity rows
        if m[i] >= 0 and all(m[j] <= 0 for j in range(3) if j != i):
            for j in set(range(3)) - {i}:
                rows[j] = [float(j == c) for c in range(3)]
    for _ in range(2):
        subs = (cross(rows[1], rows[2]), cross(rows[2], rows[0]), cross(rows[0], rows[1]))
        rows = [subs[i] if m[i] <= 0 else rows[i] for i in range(3)]
    (uxx, uxy, _), (uyx, uyy, _), (uzx, uzy, uzz) = (unit(r)[0] for r in rows)
    if uzx * uzx < 1.0:
        return (math.atan2(uzy, uzz), math.atan2(-uzx, math.sqrt(uzy * uzy + uzz * uzz)),
                math.atan2(uyx, uxx))
    return math.atan2(1, 1) * 4, math.atan2(1, 1) * 2, math.atan2(uxy, -uyy)


class NanoRandom:
    """The static state of nanoBragg.c's random routines (one object = one C process): ran1's
    shared shuffle table and the poidev (oldm, sq, alxm, g) / gaussdev (iset, gset) statics."""

    def __init__(self):
        self.iy, self.iv = 0, [0] * NTAB
        self.oldm, self.sq, self.alxm, self.g = -1.0, 0.0, 0.0, 0.0
        self.iset, self.gset = 0, 0.0

    def _next_iy(self, seed: Seed) -> int:
        """Integer core of ran1: advance ``seed`` and the shared table, return the new iy."""
        idum, iv = seed.value, self.iv
        if idum <= 0 or not self.iy:
            idum = 1 if -idum < 1 else -idum
            for j in range(NTAB + 7, -1, -1):
                idum = _schrage(idum)
                if j < NTAB:
                    iv[j] = idum
            self.iy = iv[0]
        seed.value = idum = _schrage(idum)
        j = _cdiv(self.iy, NDIV)
        self.iy, iv[j] = iv[j], idum
        return self.iy

    def ran1(self, seed) -> float:
        """C ``ran1(&seed)``: uniform deviate in (0, 1) as a C float, ``(float)(AM*iy)`` capped at
        ``(float)(1-1.2e-7)``.  Pass a :class:`Seed` to continue its stream."""
        t = f32(AM * self._next_iy(_as_seed(seed)))
        return RNMX_F if t > RNMX else t

    def gaussdev(self, seed) -> float:
        """C ``gaussdev``: unit normal deviate (polar Box-Muller in float, spare kept in statics)."""
        seed = _as_seed(seed)
        return self._gaussdev(lambda: self.ran1(seed))

    def poidev(self, xm: float, seed) -> float:
        """C ``poidev((float)xm, &seed)``: Poisson deviate of mean xm (photons), as a C float."""
        seed = _as_seed(seed)
        return self._poidev(f32(float(xm)), lambda: self.ran1(seed))

    def _gaussdev(self, draw) -> float:
        if self.iset:
            self.iset = 0
            return self.gset
        while True:
            v1, v2 = f32(2.0 * draw() - 1.0), f32(2.0 * draw() - 1.0)
            rsq = f32(f32(v1 * v1) + f32(v2 * v2))
            if not (rsq >= 1.0 or rsq == 0.0):
                break
        fac = f32(math.sqrt(-2.0 * math.log(rsq) / rsq))
        self.gset, self.iset = f32(v1 * fac), 1
        return f32(v2 * fac)

    def _poidev(self, xm: float, draw) -> float:
        """poidev of a float32-valued xm, taking ran1 deviates from ``draw()``."""
        if xm > 1.0e6:
            return f32(xm + math.sqrt(xm) * self._gaussdev(draw))
        if xm < 12.0:                                 # direct method
            if xm != self.oldm:
                self.oldm, self.g = xm, f32(_exp(-xm))
            em, t = 0.0, draw()
            while t > self.g:
                em, t = em + 1.0, f32(t * draw())
            return em
        if xm != self.oldm:                           # rejection method (NaN ends up here too)
            self.oldm, self.sq, self.alxm = xm, f32(math.sqrt(2.0 * xm)), f32(math.log(xm))
            self.g = f32(f32(xm * self.alxm) - gammln(f32(xm + 1.0)))
        sq, alxm, g, S = self.sq, self.alxm, self.g, _SPLIT
        while True:            # "v = (c := v * S) - (c - v)" is v = f32(v), exact: v normal or 0
            em = -1.0
            while em < 0.0:
                y = math.tan(math.pi * draw())
                y = (c := y * S) - (c - y)
                v = sq * y
                v = (c := v * S) - (c - v)
                em = v + xm
                em = (c := em * S) - (c - em)
            em = float(math.floor(em)) if math.isfinite(em) else em
            v = em * alxm
            v = (c := v * S) - (c - v)
            lg = _LGAM.get(em)                        # gammln(em+1) is a pure function of em
            if lg is None:
                lg = gammln(f32(em + 1.0))
                if em < 1e7:
                    _LGAM[em] = lg
            v -= lg
            v = (c := v * S) - (c - v)
            v -= g
            v = (c := v * S) - (c - v)
            yy = y * y
            yy = (c := yy * S) - (c - yy)
            t = f32(0.9 * (1.0 + yy) * _exp(v))
            if not draw() > t:
                return em

    def mosaic_axis_angle(self, mosaicity: float, seed) -> tuple:
        """The random part of C ``mosaic_rotation_umat``: an isotropic unit axis (v1, v2, v3) and
        the angle ``(float)mosaicity * powf(1-r3^2, 1/3)`` in radians (three draws)."""
        seed = _as_seed(seed)
        r1, r2, r3 = (2.0 * self.ran1(seed) - 1.0 for _ in range(3))
        xyrad = math.sqrt(1.0 - r2 * r2)
        rot = f32(f32(mosaicity) * _powf(1.0 - r3 * r3, 1.0 / 3.0))
        return (xyrad * math.sin(math.pi * r1), xyrad * math.cos(math.pi * r1), r2), rot

    def mosaic_rotation_umat(self, mosaicity: float, seed) -> list[float]:
        """C ``mosaic_rotation_umat``: a random rotation (row-major, 9 doubles) by
        ``(float)mosaicity * powf(1-r3^2, 1/3)`` radians about an isotropic random axis."""
        (v1, v2, v3), rot = self.mosaic_axis_angle(mosaicity, seed)
        c, s = math.cos(rot), math.sin(rot)
        t2 = 1.0 - c
        t6 = t2 * v1
        t7, t11, t19 = t6 * v2, t6 * v3, t2 * v2 * v3
        return [c + t2 * (v1 * v1), t7 - s * v3, t11 + s * v2,
                t7 + s * v3, c + t2 * (v2 * v2), t19 - s * v1,
                t11 - s * v2, t19 + s * v1, c + t2 * (v3 * v3)]

    def mosaic_axes_angles(self, spread_rad: float, n_domains: int, seed) -> tuple:
        """Axes (n, 3) and angles (n,) of the mosaic domains (domain 0's are drawn but it is the
        identity in nanoBragg.c); for rebuilding the rotations differentiably in the spread."""
        seed = _as_seed(seed)
        draws = [self.mosaic_axis_angle(spread_rad, seed) for _ in range(n_domains)]
        return (np.array([d[0] for d in draws], dtype=np.float64),
                np.array([d[1] for d in draws], dtype=np.float64))

    def mosaic_umats(self, spread_rad: float, n_domains: int, seed) -> np.ndarray:
        """nanoBragg.c's mosaic domains, (n, 3, 3) float64: mosaic_rotation_umat(spread_rad) per
        domain; domain 0 is then forced to the identity (its three draws are still consumed)."""
        seed = _as_seed(seed)
        u = np.array([self.mosaic_rotation_umat(spread_rad, seed) for _ in range(n_domains)],
                     dtype=np.float64).reshape(-1, 3, 3)
        u[:1] = np.eye(3)
        return u

    def random_misset(self, seed) -> tuple[float, float, float]:
        """``-misset random``: mosaic_rotation_umat(90.0 -- radians, as C does) then umat2misset;
        returns (rotx, roty, rotz) in radians."""
        return umat2misset(self.mosaic_rotation_umat(90.0, seed))

    def noise_image(self, float_image, seed, adc: float = 40.0, roi=None):
        """nanoBragg.c's noise image.  For each pixel of the inclusive ROI (xmin, xmax, ymin,
        ymax; x = fast, y = slow; None = all) in raster order: ``test = poidev((float)pixel)``,
        ``sum += test``, ``test += adc``, clamp at 65535 (an overload), store ``(unsigned short)``
        (truncation, x86 rules).  Pixels outside the ROI are 0; no mask (as in C).  ``seed`` is
        the C value (``-seed N`` -> -N).  Returns (uint16 image, photon sum, overloads)."""
        img = np.asarray(float_image, dtype=np.float32)
        ns, nf = img.shape
        x0, x1, y0, y1 = (0, nf - 1, 0, ns - 1) if roi is None else roi
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, nf - 1), min(y1, ns - 1)
        out = np.zeros((ns, nf), dtype=np.uint16)
        if x0 > x1 or y0 > y1:
            return out, 0.0, 0
        em = np.array(self._poidev_stream(img[y0:y1 + 1, x0:x1 + 1].ravel().tolist(),
                                          _as_seed(seed)), dtype=np.float64)
        test = em + float(adc)
        over = test > 65535.0
        test[over] = 65535.0
        test[~((test > -2147483649.0) & (test < 2147483648.0))] = 0.0   # cvttsd2si's 0x80000000
        out[y0:y1 + 1, x0:x1 + 1] = (np.trunc(test).astype(np.int64) & 0xFFFF).reshape(y1 - y0 + 1, -1)
        return out, float(np.cumsum(em)[-1]), int(np.count_nonzero(over))   # sequential sum

    def _poidev_stream(self, xs: list, seed: Seed) -> list:
        """poidev of each float32 value in ``xs``, in order (the hot loop of noise_image): the
        direct method is inlined, the rest goes through :meth:`_poidev`."""
        st, buf, k, out = _Stream(self, seed), [], 0, []
        app, exp, sp = out.append, math.exp, _SPLIT
        oldm, g = self.oldm, self.g
        for xm in xs:
            if xm != oldm:
                fast = 0.0 <= xm < 12.0
                if fast:
                    oldm, e = xm, exp(-xm)
                    c = e * sp
                    g = c - (c - e)                   # f32(exp(-xm)), normal range
            else:                                     # same xm: rejection, or C's unset static g
                fast = xm < 12.0 and g > 0.0
            if fast:
                try:
                    t = buf[k]
                except IndexError:
                    buf, k = st.refill(), 0
                    t = buf[0]
                k += 1
                em = 0.0
                while t > g:                          # t >= g*AM > FLT_MIN: inline f32 is exact
                    try:
                        x = t * buf[k]
                    except IndexError:
                        buf, k = st.refill(), 0
                        x = t * buf[0]
                    k += 1
                    c = x * sp
                    t = c - (c - x)
                    em += 1.0
                app(em)
            else:
                self.oldm, self.g, st.pos = oldm, g, k
                app(self._poidev(xm, st.next))
                oldm, g, buf, k = self.oldm, self.g, st.buf, st.pos
        self.oldm, self.g, st.pos = oldm, g, k
        st.commit()
        return out


class _Stream:
    """ran1 deviates of one seed made in blocks (numpy Park-Miller jump-ahead, Python shuffle,
    numpy float conversion), identical to successive ran1 calls; ``commit()`` leaves the seed and
    shared table exactly as after the ``pos`` deviates consumed from the last block."""

    def __init__(self, rng: NanoRandom, seed: Seed):
        self.rng, self.seed, self.buf, self.pos, self.snap, self.size = rng, seed, [], 0, None, 1024

    def next(self) -> float:
        if self.pos >= len(self.buf):
            self.refill()
        self.pos += 1
        return self.buf[self.pos - 1]

    def refill(self) -> list:
        rng, seed = self.rng, self.seed
        self.snap, self.pos = (seed.value, rng.iy, rng.iv[:]), 0
        if not (0 < seed.value < IM and 0 < rng.iy < IM):   # (re)initialisation or odd state: scalar
            self.buf = [rng.ran1(seed)]
            return self.buf
        n, self.size = self.size, min(2 * self.size, _BLOCK)
        u = (np.frombuffer(array("q", self._advance(n)), dtype=np.int64) * AM).astype(np.float32)
        u[u.astype(np.float64) > RNMX] = RNMX_F
        self.buf = u.tolist()
        return self.buf

    def _advance(self, n: int) -> list:
        """n ran1 integer steps from a valid (initialised) state; returns the n iy values."""
        rng, seed = self.rng, self.seed
        if not _POW:
            p = [IA]
            for _ in range(_BLOCK - 1):
                p.append(p[-1] * IA % IM)
            _POW.append(np.array(p, dtype=np.int64))
        ids = ((seed.value * _POW[0][:n]) % IM).tolist()   # IA**k * idum mod IM (< 2**62)
        iy, iv, iys = rng.iy, rng.iv, []
        app = iys.append
        for d in ids:
            j = iy >> 26                              # iy / NDIV
            iy = iv[j]
            iv[j] = d
            app(iy)
        rng.iy, seed.value = iy, ids[-1]
        return iys

    def commit(self):
        if self.snap is not None and self.pos < len(self.buf):
            self.seed.value, self.rng.iy, self.rng.iv[:] = self.snap
            if self.pos:                              # only after a full (vectorised) refill
                self._advance(self.pos)
        self.buf, self.pos, self.snap = [], 0, None


def _rng(rng):
    return NanoRandom() if rng is None else rng


def mosaic_rotation_umat(mosaicity_rad: float, seed, rng: NanoRandom | None = None) -> list[float]:
    """:meth:`NanoRandom.mosaic_rotation_umat`; ``rng=None`` means a fresh C process state."""
    return _rng(rng).mosaic_rotation_umat(mosaicity_rad, seed)


def mosaic_umats(spread_rad: float, n_domains: int, seed, rng: NanoRandom | None = None) -> np.ndarray:
    """:meth:`NanoRandom.mosaic_umats`; ``rng=None`` means a fresh C process state."""
    return _rng(rng).mosaic_umats(spread_rad, n_domains, seed)


def mosaic_axes_angles(spread_rad: float, n_domains: int, seed, rng: NanoRandom | None = None):
    """:meth:`NanoRandom.mosaic_axes_angles`; ``rng=None`` means a fresh C process state."""
    return _rng(rng).mosaic_axes_angles(spread_rad, n_domains, seed)


def random_misset(seed, rng: NanoRandom | None = None) -> tuple[float, float, float]:
    """:meth:`NanoRandom.random_misset`; ``rng=None`` means a fresh C process state."""
    return _rng(rng).random_misset(seed)


def noise_image(float_image, seed, adc: float = 40.0, roi=None, rng: NanoRandom | None = None):
    """:meth:`NanoRandom.noise_image`; ``rng=None`` means a fresh C process state."""
    return _rng(rng).noise_image(float_image, seed, adc, roi)
