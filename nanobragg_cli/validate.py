"""Refuse physically impossible runs and images: one line naming the input responsible.

Two checks, each called at one point of the command line run (cli.simulate_main):

* :func:`check_inputs` (before the render, no torch): the inputs that are known to give NaN,
  infinite or negative intensities -- a zero or negative wavelength in a -sourcefile, a
  -dispersion of 100 % or more, scale factors whose product overflows.
* :func:`check_image` (after the render, before anything is written): the float image
  [slow, fast] must be finite and non-negative; otherwise the message names the likeliest
  culprit (a detector facing away from the sample gives negative solid angles, ...).

Default mode: an error (exit 9, nothing written). ``--c-parity``: nanoBragg.c writes such images,
so the run goes on with a ``nanobragg: warning:`` line.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from .constants import R_E_SQR
from .errors import NanoBraggError

FLOAT32_MAX = 3.4028234663852886e38


@contextlib.contextmanager
def quiet_numpy():
    """No raw numpy RuntimeWarnings on stderr: overflow/NaN are reported by check_image."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _report(message: str, c_parity: bool, warn) -> None:
    if c_parity:
        if warn is not None:
            warn(f"{message} (--c-parity goes on and writes it, as nanoBragg.c does)")
        return
    raise NanoBraggError(message)


def _source_problem(cfg) -> str | None:
    b = cfg.beam
    if b.sourcefile is None:
        return None
    from .io.sources import read_sourcefile
    rows = read_sourcefile(b.sourcefile)
    for i, lam in enumerate(rows[:, 4], start=1):
        if not math.isnan(lam) and not lam > 0.0:
            what = "a zero" if lam == 0.0 else ("a negative" if lam < 0 else "an infinite")
            return (f"source {i} of {b.sourcefile} has {what} wavelength ({lam:g} m); "
                    "wavelengths must be positive")
        if math.isinf(lam):
            return f"source {i} of {b.sourcefile} has an infinite wavelength"
    return None


def _dispersion_problem(cfg) -> str | None:
    b = cfg.beam
    if b.dispsteps > 1 and b.dispersion >= 1.0:
        return (f"-dispersion {b.dispersion * 100:g}: a spread of 100 % or more gives zero or "
                "negative wavelengths; use less than 100")
    return None


def _overflow_problem(cfg) -> str | None:
    """The peak intensity's order of magnitude, r_e² fluence F² (Na Nb Nc)², above float32's."""
    b, c = cfg.beam, cfg.crystal
    terms = {"-default_F": 2 * math.log10(abs(c.default_F)) if c.default_F else 0.0,
             "-fluence": math.log10(b.fluence) if b.fluence > 0 else 0.0}
    n = abs(c.Na * c.Nb * c.Nc)
    terms["-N"] = 2 * math.log10(n) if n > 0 and math.isfinite(n) else 0.0
    total = math.log10(R_E_SQR) + sum(terms.values())
    if total <= math.log10(FLOAT32_MAX) or c.hklfile is not None and terms["-default_F"] > 0 \
            and total - terms["-default_F"] <= math.log10(FLOAT32_MAX):
        return None
    worst = max(terms, key=terms.get)
    value = {"-default_F": c.default_F, "-fluence": b.fluence, "-N": n}[worst]
    return (f"{worst} {value:g}: the intensities would overflow (about 1e{total:.0f} photons per "
            "pixel, more than a 4-byte float holds); use a smaller value")


def _given(argv, *flags) -> str:
    """The last of ``flags`` that appears in argv (the one whose value won), else the first."""
    seen = [a for a in argv if a in flags]
    return seen[-1] if seen else flags[0]


def check_extremes(cfg, argv=()) -> None:
    """Values that no computation survives (overflow, division by ~0), in both modes: one line
    naming the flag. Limits are far outside any physical use."""
    b, d, s = cfg.beam, cfg.detector, cfg.sampling
    if not 1e-15 <= b.lambda0 <= 1e-3:
        flag = _given(argv, "-lambda", "-energy", "-wavelength")
        shown = (f"an energy of {12398.42 / (b.lambda0 * 1e10):g} eV" if flag == "-energy"
                 else f"a wavelength of {b.lambda0 * 1e10:g} A")
        raise NanoBraggError(f"{flag}: {shown} is out of range (the wavelength must lie between "
                             "1e-5 A and 1e7 A)")
    if not 1e-9 <= d.distance <= 1e6:
        flag = _given(argv, "-distance", "-close_distance")
        raise NanoBraggError(f"{flag}: {d.distance * 1e3:g} mm is out of range (between 1e-6 mm "
                             "and 1e9 mm)")
    if not 1e-12 <= d.pixel_size <= 10:
        raise NanoBraggError(f"-pixel: {d.pixel_size * 1e3:g} mm is out of range")
    if s.water_size > 1.0:
        raise NanoBraggError(f"-water: {s.water_size * 1e6:g} um is out of range (at most 1 m)")


def check_inputs(cfg, c_parity: bool, argv=()) -> None:
    """Before the render: refuse extreme values (:func:`check_extremes`) and inputs known to give
    NaN, infinite or negative intensities."""
    check_extremes(cfg, argv)
    if c_parity:  # nanoBragg.c renders them: check_image warns once about the image it gets
        return
    for find in (_source_problem, _dispersion_problem, _overflow_problem):
        problem = find(cfg)
        if problem:
            raise NanoBraggError(problem)


def _culprit(res, negative: bool) -> str:
    cfg = res.cfg
    for find in (_source_problem, _dispersion_problem, _overflow_problem):
        problem = find(cfg)
        if problem:
            return problem
    if negative:
        det = res.scene.det
        try:
            faces_away = float(det.close_distance) < 0.0
        except (AttributeError, TypeError, ValueError):
            faces_away = False
        if faces_away or res.omega_sum < 0:
            d = cfg.detector
            return ("the detector faces away from the sample (-twotheta "
                    f"{math.degrees(d.twotheta):g}, -detector_rot*, -distance): its solid angles "
                    "are negative")
        return "negative intensities (check -fluence, -default_F, the -hkl amplitudes, -polar)"
    return "check -fluence, -default_F, -N, the -hkl amplitudes and -lambda"


def check_image(res, c_parity: bool, warn=None) -> None:
    """After the render: NaN, ±inf or negative pixels in the rendered part of ``res.image``
    (float32 [slow, fast]) stop the run with one line naming the likeliest input."""
    vals = res.image.reshape(-1)[res.rendered]
    with quiet_numpy():
        if vals.size == 0 or (vals.min() >= 0.0 and vals.max() < np.inf):   # NaN fails both
            return   # the usual case: two passes, no image-sized bool arrays
        nan = int(np.count_nonzero(np.isnan(vals)))
        inf = int(np.count_nonzero(np.isinf(vals)))
        neg = int(np.count_nonzero(vals < 0))
    if not (nan or inf or neg):
        return
    what = ", ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "infinite"),
                                                   (neg, "negative")) if n)
    culprit = _culprit(res, bool(neg) and not (nan or inf))
    _report(f"the image has {what} pixels of {vals.size}: {culprit}", c_parity, warn)
