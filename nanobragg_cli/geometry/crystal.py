"""Crystal lattice vectors: from a unit cell or a MOSFLM A matrix, misset, φ and mosaic rotations.

Reproduces nanoBragg.c's construction step by step (reciprocal cell from the cell constants,
misset applied to the reciprocal vectors, real vectors from cross products with the volume forced
to the cell's, reciprocal vectors regenerated from the real ones) so that traced vectors agree
with the C program to rounding. Everything is a differentiable function of the cell constants
(or the A matrix), the misset angles and the φ angles.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from ..constants import DBL_MIN
from .rotation import cross, dot, norm, rotate_axis, rotate_umat, rotate_xyz


@dataclass
class Lattice:
    """Real-space vectors a0, b0, c0 in metres (each (3,)), the regenerated reciprocal vectors
    a*, b*, c* in Å⁻¹ (each (3,)), and the cell volume in Å³."""
    a: Tensor
    b: Tensor
    c: Tensor
    a_star: Tensor
    b_star: Tensor
    c_star: Tensor
    V_cell: Tensor

    @property
    def real(self) -> Tensor:
        """(3, 3): rows a, b, c in metres."""
        return torch.stack((self.a, self.b, self.c))


def reciprocal_from_cell(a, b, c, alpha, beta, gamma):
    """nanoBragg.c's default orientation: a* along x, b* in the x-y plane.

    Lengths in Å, angles in radians (tensors). Returns (a*, b*, c*) in Å⁻¹ and V_cell in Å³.
    """
    aavg = (alpha + beta + gamma) / 2
    skew = torch.sin(aavg) * torch.sin(aavg - alpha) * torch.sin(aavg - beta) * torch.sin(aavg - gamma)
    skew = torch.abs(skew)
    V_cell = 2.0 * a * b * c * torch.sqrt(skew)
    V_cell = torch.where(V_cell <= 0.0, torch.full_like(V_cell, DBL_MIN), V_cell)
    V_star = 1.0 / V_cell
    a_len = b * c * torch.sin(alpha) * V_star
    b_len = c * a * torch.sin(beta) * V_star
    c_len = a * b * torch.sin(gamma) * V_star
    cos_as = (torch.cos(beta) * torch.cos(gamma) - torch.cos(alpha)) / (torch.sin(beta) * torch.sin(gamma))
    cos_bs = (torch.cos(gamma) * torch.cos(alpha) - torch.cos(beta)) / (torch.sin(gamma) * torch.sin(alpha))
    cos_gs = (torch.cos(alpha) * torch.cos(beta) - torch.cos(gamma)) / (torch.sin(alpha) * torch.sin(beta))
    sin_gs = torch.clamp(c * V_star / a_len / b_len, -1.0, 1.0)
    one = torch.ones_like(cos_as)
    cos_as = torch.where(cos_as * cos_as > 1.0, one, cos_as)
    cos_bs = torch.where(cos_bs * cos_bs > 1.0, one, cos_bs)
    cos_gs = torch.where(cos_gs * cos_gs > 1.0, one, cos_gs)
    zero = torch.zeros_like(a_len)
    a_star = torch.stack((a_len, zero, zero))
    b_star = torch.stack((b_len * cos_gs, b_len * sin_gs, zero))
    c_star = torch.stack((c_len * cos_bs, c_len * (cos_as - cos_bs * cos_gs) / sin_gs,
                          c_len * V_cell / (a * b * c * sin_gs)))
    return a_star, b_star, c_star, V_cell


def _rescale(v: Tensor, magnitude: Tensor) -> Tensor:
    old = norm(v)
    old = torch.where(old <= 0.0, torch.ones_like(old), old)
    return magnitude / old * v


def lattice(a_star: Tensor, b_star: Tensor, c_star: Tensor, misset=None,
            cell_lengths=None, V_cell_cell=None) -> Lattice:
    """Real and regenerated reciprocal vectors from reciprocal vectors (Å⁻¹), as nanoBragg.c.

    misset: (rx, ry, rz) radians applied to the reciprocal vectors (x then y then z), or None.
    cell_lengths / V_cell_cell: the cell constants' a, b, c (Å) and volume when the crystal came
    from -cell (C then forces the real vectors to those lengths); None for an A matrix.
    """
    if misset is not None:
        a_star = rotate_xyz(a_star, *misset)
        b_star = rotate_xyz(b_star, *misset)
        c_star = rotate_xyz(c_star, *misset)
    axb = cross(a_star, b_star)
    bxc = cross(b_star, c_star)
    cxa = cross(c_star, a_star)
    if cell_lengths is not None:
        a_len, b_len, c_len = cell_lengths
        bxc = _rescale(bxc, a_len / V_cell_cell)
        cxa = _rescale(cxa, b_len / V_cell_cell)
        axb = _rescale(axb, c_len / V_cell_cell)
        V_star = 1.0 / V_cell_cell
    else:
        V_star = dot(a_star, bxc)
    V_cell = 1.0 / V_star
    a = bxc * V_cell
    b = cxa * V_cell
    c = axb * V_cell
    a_star = cross(b, c) * V_star
    b_star = cross(c, a) * V_star
    c_star = cross(a, b) * V_star
    return Lattice(a=a * 1e-10, b=b * 1e-10, c=c * 1e-10, a_star=a_star, b_star=b_star,
                   c_star=c_star, V_cell=V_cell)


def phi_angles(phi0, phistep, phisteps: int, like: Tensor) -> Tensor:
    """(Φ,) spindle angles phi0 + phistep·k in radians, computed as C does."""
    k = torch.arange(phisteps, dtype=like.dtype, device=like.device)
    return torch.as_tensor(phi0, dtype=like.dtype, device=like.device) + \
        torch.as_tensor(phistep, dtype=like.dtype, device=like.device) * k


def orientations(real: Tensor, spindle: Tensor, phis: Tensor, umats: Tensor | None,
                 step_map: list | None = None) -> Tensor:
    """Rotated real-space vectors for every (φ step, mosaic domain).

    real: (3, 3) rows a0, b0, c0 (m); spindle: (3,) unit axis; phis: (Φ,) radians;
    umats: (M, 3, 3) mosaic rotations or None (no mosaic spread); step_map: per φ step, the step
    whose rotation is used (-1 = unrotated), from
    :func:`nanobragg_cli.c_order.carryover_sources`, or None.
    Returns (Φ, M, 3, 3): [φ, domain, a|b|c, xyz].
    """
    rotated = rotate_axis(real.unsqueeze(0), spindle, phis[:, None])  # (Φ, 3, 3)
    if step_map is not None:
        choices = torch.cat((real.unsqueeze(0), rotated), dim=0)
        idx = torch.tensor([k + 1 for k in step_map], device=real.device)
        rotated = choices.index_select(0, idx)
    if umats is None:
        return rotated.unsqueeze(1)
    return rotate_umat(rotated.unsqueeze(1), umats.unsqueeze(0).unsqueeze(2))
