"""Rotations with nanoBragg.c's conventions and operation order (so traces agree to ~1e-16).

All functions broadcast over leading dimensions: vectors are (..., 3) tensors, angles are
tensors (or floats) broadcastable against ``v[..., 0]``; angles in radians.
"""

import torch
from torch import Tensor


def _cs(angle, like: Tensor):
    a = torch.as_tensor(angle, dtype=like.dtype, device=like.device)
    return torch.cos(a), torch.sin(a)


def rotate_xyz(v: Tensor, rx, ry, rz) -> Tensor:
    """Rotate about x, then y, then z (v' = Rz·Ry·Rx·v), right-handed, as nanoBragg's rotate().

    A zero angle leaves the components bit-identical (cos 0 = 1, sin 0 = 0 exactly), which is what
    C's ``if (phix != 0)`` short-cut achieves, so no branch is needed.
    """
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    c, s = _cs(rx, v)
    y, z = y * c + z * (-s), y * s + z * c
    c, s = _cs(ry, v)
    x, z = x * c + z * s, x * (-s) + z * c
    c, s = _cs(rz, v)
    x, y = x * c + y * (-s), x * s + y * c
    return torch.stack((x, y, z), dim=-1)


def rotate_axis(v: Tensor, axis: Tensor, phi) -> Tensor:
    """Rotate ``v`` by ``phi`` about the unit vector ``axis`` (Rodrigues), as rotate_axis() in C.

    v: (..., 3); axis: (..., 3) unit vector; phi: radians, broadcastable to v[..., 0].
    """
    c, s = _cs(phi, v)
    ax, ay, az = axis[..., 0], axis[..., 1], axis[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    dot = (ax * vx + ay * vy + az * vz) * (1.0 - c)
    return torch.stack((
        ax * dot + vx * c + (-az * vy + ay * vz) * s,
        ay * dot + vy * c + (az * vx - ax * vz) * s,
        az * dot + vz * c + (-ay * vx + ax * vy) * s,
    ), dim=-1)


def rotate_umat(v: Tensor, umat: Tensor) -> Tensor:
    """v' = U·v for a (..., 3, 3) matrix (row-major as nanoBragg stores it), C's summation order."""
    x, y, z = v[..., 0:1], v[..., 1:2], v[..., 2:3]
    return umat[..., 0] * x + umat[..., 1] * y + umat[..., 2] * z


def cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product with C's component formulas."""
    return torch.stack((
        a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
        a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
        a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
    ), dim=-1)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product summed in C's order x + y + z."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def norm(a: Tensor) -> Tensor:
    return torch.sqrt(dot(a, a))


def unitize(a: Tensor) -> Tensor:
    """a / |a| (..., 3); a zero vector stays zero, as nanoBragg.c's unitize() leaves it."""
    n = norm(a)[..., None]
    return a / torch.where(n == 0.0, torch.ones_like(n), n)
