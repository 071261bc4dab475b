"""Structure factors on the integer (h, k, l) grid: nearest-point lookup and tricubic interpolation.

The grid is nanoBragg.c's: indices h_min..h_max (and k, l) with one padding slot per axis, values
outside the grid are ``default_F``. Lookups are gathers on a flattened grid, vectorised over any
leading shape, and differentiable with respect to the grid values.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

# Lagrange denominators for the four consecutive integer nodes x0-1 .. x0+2
_DEN = (-6.0, 2.0, -2.0, 6.0)


@dataclass
class StructureFactors:
    """grid: (H+1, K+1, L+1) tensor of F (electrons); mins/maxs: Python ints of the index range;
    count: number of grid entries C counts as "hkls" (0 when there is no table)."""
    grid: Tensor | None
    h_min: int = 0
    h_max: int = -1
    k_min: int = 0
    k_max: int = -1
    l_min: int = 0
    l_max: int = -1
    count: int = 0
    default_F: float = 0.0

    @property
    def ranges(self) -> tuple:
        return (self.h_max - self.h_min + 1, self.k_max - self.k_min + 1,
                self.l_max - self.l_min + 1)

    def _flat_index(self, h: Tensor, k: Tensor, l: Tensor) -> Tensor:
        K, L = self.grid.shape[1], self.grid.shape[2]
        return ((h - self.h_min) * K + (k - self.k_min)) * L + (l - self.l_min)

    def bordered(self) -> Tensor:
        """The grid's index range framed by one slot of default_F on every side:
        (H+2, K+2, L+2), so a clamped index lands on default_F exactly when it is out of range."""
        cached = getattr(self, "_bordered", None)
        if cached is not None and cached[0] is self.grid:
            return cached[1]
        hr, kr, lr = self.ranges
        core = self.grid[:hr, :kr, :lr]
        framed = torch.nn.functional.pad(core, (1, 1, 1, 1, 1, 1), value=self.default_F)
        if not self.grid.requires_grad:  # a differentiable grid is re-framed on every call
            self._bordered = (self.grid, framed)
        return framed

    def nearest(self, h0: Tensor, k0: Tensor, l0: Tensor) -> Tensor:
        """F at the rounded indices (float tensors of integral values), default_F outside.

        One gather in the bordered grid: each index is clamped to [min-1, max+1], whose ends are
        default_F slots, so no separate in-range mask is needed."""
        if self.grid is None or self.count == 0:
            return torch.full_like(h0, self.default_F)
        framed = self.bordered()
        # indices carry no gradient; detached, the in-place arithmetic below is allowed when the
        # Miller indices they were rounded from require grad
        h0, k0, l0 = h0.detach(), k0.detach(), l0.detach()
        K2, L2 = framed.shape[1], framed.shape[2]
        offset = -((self.h_min - 1) * K2 * L2 + (self.k_min - 1) * L2 + (self.l_min - 1))
        # integral values far below 2**53: every sum is exact, whatever the order (in place)
        idx = h0.clamp(self.h_min - 1, self.h_max + 1).mul_(float(K2 * L2))
        part = k0.clamp(self.k_min - 1, self.k_max + 1)
        idx.add_(part, alpha=float(L2))
        idx.add_(torch.clamp(l0, self.l_min - 1, self.l_max + 1, out=part)).add_(float(offset))
        return framed.reshape(-1).to(h0.dtype)[idx.long()]

    def out_of_range(self, h: Tensor, k: Tensor, l: Tensor) -> Tensor:
        """nanoBragg.c's range test for interpolation, on the fractional indices: True unless
        min+2 <= x <= max-2 on every axis. It keeps one index more margin than the 4x4x4 block
        needs (see :meth:`block_outside`)."""
        hr, kr, lr = self.ranges
        return (((h - self.h_min + 3) > hr) | (h - 2 < self.h_min) |
                ((k - self.k_min + 3) > kr) | (k - 2 < self.k_min) |
                ((l - self.l_min + 3) > lr) | (l - 2 < self.l_min))

    def block_outside(self, h: Tensor, k: Tensor, l: Tensor) -> Tensor:
        """True where the 4x4x4 block floor(x)-1 .. floor(x)+2 that :meth:`tricubic` reads is not
        entirely inside the grid, i.e. unless min+1 <= x < max-1 on every axis."""
        out = torch.zeros_like(h, dtype=torch.bool)
        for x, lo, hi in ((h, self.h_min, self.h_max), (k, self.k_min, self.k_max),
                          (l, self.l_min, self.l_max)):
            base = torch.floor(x)
            out = out | (base - 1 < lo) | (base + 2 > hi)
        return out

    def tricubic(self, h: Tensor, k: Tensor, l: Tensor) -> Tensor:
        """Tricubic Lagrange interpolation on the 4x4x4 block floor(x)-1 .. floor(x)+2.

        Interpolates along l, then k, then h, as nanoBragg.c's polin3. Indices are clamped into the
        grid so that out-of-range points produce finite (unused) values.
        """
        base = [torch.floor(x) - 1.0 for x in (h, k, l)]
        offs = torch.arange(4, dtype=h.dtype, device=h.device)
        hi = (base[0].unsqueeze(-1) + offs).clamp(self.h_min, self.h_max)
        ki = (base[1].unsqueeze(-1) + offs).clamp(self.k_min, self.k_max)
        li = (base[2].unsqueeze(-1) + offs).clamp(self.l_min, self.l_max)
        idx = self._flat_index(hi[..., :, None, None], ki[..., None, :, None],
                               li[..., None, None, :]).long()
        block = self.grid.reshape(-1).to(h.dtype)[idx]            # (..., 4, 4, 4) [h, k, l]
        block = _polint(base[2][..., None, None], l[..., None, None], block)  # (..., 4, 4)
        block = _polint(base[1][..., None], k[..., None], block)              # (..., 4)
        return _polint(base[0], h, block)


def _polint(x0: Tensor, x: Tensor, ya: Tensor) -> Tensor:
    """Cubic Lagrange interpolation at ``x`` through nodes x0, x0+1, x0+2, x0+3 (x0 = floor-1)
    with values ya[..., 0:4]; term order and form follow nanoBragg.c's polint."""
    d = [x - (x0 + j) for j in range(4)]
    t0 = d[1] * d[2] * d[3] * ya[..., 0] / _DEN[0]
    t1 = d[0] * d[2] * d[3] * ya[..., 1] / _DEN[1]
    t2 = d[0] * d[1] * d[3] * ya[..., 2] / _DEN[2]
    t3 = d[0] * d[1] * d[2] * ya[..., 3] / _DEN[3]
    return t0 + t1 + t2 + t3
