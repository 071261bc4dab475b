"""The per-evaluation functions where ``--c-parity`` computes as nanoBragg.c does, chosen once.

:func:`arithmetic` returns one of two frozen sets, :data:`DEFAULT` (correct physics) or
:data:`C_PARITY` (nanoBragg.c's arithmetic, each function a C-parity quirk listed in
docs/differences.md). :func:`nanobragg_cli.scene.build_scene` picks the set from the run's
:class:`~nanobragg_cli.mode.Mode` and the scene holds it (``scene.arith``); the kernel calls
through it, so no kernel function tests the mode. (The pixel reductions,
``kernel._reduce_c_parity`` / ``kernel._reduce_default``, are chosen the same way in
``kernel.render_chunk``; nanoBragg.c's stateful loop order lives in :mod:`nanobragg_cli.c_order`.)

Shapes: K = T·SS·S·P evaluations per orientation, Φ·M orientations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .c_order import interpolation_kill_switch
from .geometry.beam import e_vector
from .physics import sincg_like_c, sincg_reduced


@dataclass(frozen=True)
class Arithmetic:
    """square_axis(h, h0, N) -> (Φ·M, K): the square shape's signed per-axis lattice factor
    sin(π·N·h)/sin(π·h) for fractional indices h, rounded h0, cell count N (> 1), as a trace
    prints it (the image's squared factor, kernel.lattice_factor_squared, makes the same choice
    on its own fast path). interpolate(sf, hkl, nearest, interp, executed, killed, c_order) -> (F_cell, killed
    after the chunk, killed state before each pixel (P,) or None): which F_cell an -interpolate
    run takes, the tricubic ``interp`` or the ``nearest`` one. polarization_axis(incident (S, 3),
    polar_vector (3,)) -> (3,) or (S, 1, 3): the E-vector of each source for the Kahn factor.
    layer_thickness(sampling) -> m: the thickness of one sensor layer."""
    name: str
    square_axis: Callable
    interpolate: Callable
    polarization_axis: Callable
    layer_thickness: Callable


# ---- default mode ----------------------------------------------------------------------------
def _square_axis_reduced(h: Tensor, h0: Tensor, N: Tensor) -> Tensor:
    """On the reduced argument h − h0 (float32 keeps its digits at high-order reflections)."""
    return sincg_reduced(h - h0, h0, N)


def _interpolate_where_block_fits(sf, hkl: list, nearest: Tensor, interp: Tensor,
                                  executed, killed: Tensor, c_order) -> tuple:
    """Interpolate wherever the 4x4x4 block lies in the grid (C's test refuses a margin more)."""
    return torch.where(sf.block_outside(hkl[0], hkl[1], hkl[2]), nearest, interp), killed, None


def _e_vector_per_source(incident: Tensor, polar_vector: Tensor) -> Tensor:
    """A polarization axis perpendicular to each source's direction (geometry.beam.e_vector)."""
    return e_vector(incident, polar_vector)[:, None, :]


def _layer_thickness_sliced(s) -> float:
    """The given thickness sliced into -detector_thicksteps layers."""
    if s.detector_thick <= 0.0:
        return s.detector_thickstep
    return s.detector_thick / s.detector_thicksteps


DEFAULT = Arithmetic("default", _square_axis_reduced, _interpolate_where_block_fits,
                     _e_vector_per_source, _layer_thickness_sliced)


# ---- --c-parity -----------------------------------------------------------------------------
def _square_axis_like_c(h: Tensor, h0: Tensor, N: Tensor) -> Tensor:
    """C-parity quirk (sincg near integers): nanoBragg.c's full-argument form, see
    :func:`nanobragg_cli.physics.sincg_like_c`."""
    return sincg_like_c(h, N)


def _interpolate_kill_switch(sf, hkl: list, nearest: Tensor, interp: Tensor, executed,
                             killed: Tensor, c_order) -> tuple:
    """C-parity quirk (interpolation kill-switch): the first executed evaluation whose
    neighbourhood leaves the grid switches interpolation off for all that follow, in C's loop
    order (``c_order``; see :func:`nanobragg_cli.c_order.interpolation_kill_switch`)."""
    oob = sf.out_of_range(hkl[0], hkl[1], hkl[2])
    hit = oob & executed if executed is not None else oob
    off, killed_after, before_row = interpolation_kill_switch(hit, killed, c_order)
    return torch.where(off, nearest, interp), killed_after, before_row


def _polar_vector_as_given(incident: Tensor, polar_vector: Tensor) -> Tensor:
    """C-parity quirk (polarization along the beam): nanoBragg.c's zero basis gives psi = 0 for
    a source along the polarization axis (the default mode picks a perpendicular E-vector)."""
    return polar_vector


def _layer_thickness_like_c(s) -> float:
    """C-parity quirk (sensor layers): with -detector_thicksteps N nanoBragg.c uses
    thick/(N-1), so N layers model N·thick/(N-1) of sensor."""
    return s.detector_thickstep


C_PARITY = Arithmetic("c-parity", _square_axis_like_c, _interpolate_kill_switch,
                      _polar_vector_as_given, _layer_thickness_like_c)


def arithmetic(c_parity: bool) -> Arithmetic:
    """The set of functions of a run's mode."""
    return C_PARITY if c_parity else DEFAULT
