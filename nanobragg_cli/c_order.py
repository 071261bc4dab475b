"""nanoBragg.c's execution order, for the --c-parity quirks that carry state from one
evaluation to the next (docs/differences.md #1, #6, #10). Everything stateful about C's loop
order lives here; the default mode never calls it.

- :class:`COrder`: the permutation between the kernel's layout (Φ·M, T, SS, S, P) and C's loop
  order (P, T, SS, S, Φ·M).
- :func:`interpolation_kill_switch`: C-parity quirk (interpolation kill-switch), the first
  out-of-range neighbourhood in loop order switches interpolation off for all that follows.
- :func:`first_executed_subiteration`: where C's single thread starts, the one sub-iteration that
  sees the unrotated crystal under the φ=0 carryover.
- :func:`carryover_sources` / :func:`carryover_orientations`: C-parity quirk (φ=0 carryover),
  which φ step's rotation each step reuses. (:func:`nanobragg_cli.kernel.miller_indices` puts
  the first sub-iteration's orientation in place.)

The renderer keeps this state across chunks in raster order, one chunk at a time where it
matters (:func:`nanobragg_cli.render.render`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .geometry.crystal import orientations


class COrder:
    """Permutation between the kernel's layout (Φ·M, T, SS, S, P) and nanoBragg.c's loop order
    (P, T, SS, S, Φ·M), for the c-parity quirks that depend on execution order."""

    def __init__(self, T, SS, S, P, PM):
        self.shape = (PM, T, SS, S, P)
        self.P = P

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(self.shape).permute(4, 1, 2, 3, 0).reshape(self.P, -1)

    def inverse(self, y: Tensor) -> Tensor:
        PM, T, SS, S, P = self.shape
        return y.reshape(P, T, SS, S, PM).permute(4, 1, 2, 3, 0).reshape(PM, -1)


def interpolation_kill_switch(hit: Tensor, killed: Tensor, c_order: COrder) -> tuple:
    """C-parity quirk (interpolation kill-switch): the first out-of-range neighbourhood in loop
    order switches interpolation off for everything after it, itself included.

    hit: (Φ·M, K) evaluations whose neighbourhood is out of range (and executed); killed: bool
    scalar, the switch before this chunk. Returns (off (Φ·M, K): evaluations that use the nearest
    F, killed after the chunk, (P,) the switch before each pixel)."""
    per_pixel = c_order(hit)                                           # (P, E) in C's order
    running = torch.cumsum(per_pixel.to(torch.int32).reshape(-1), 0).reshape(per_pixel.shape) > 0
    off_c = killed | running
    any_row = per_pixel.any(1).to(torch.int32)
    before_row = killed | ((torch.cumsum(any_row, 0) - any_row) > 0)
    return c_order.inverse(off_c), killed | hit.any(), before_row


def first_executed_subiteration(scene, pix: Tensor, chunk: int,
                                valid_of: Callable[[Tensor], Tensor | None]) -> tuple | None:
    """(index in pix, layer, sub-pixel, source) of the first sub-iteration nanoBragg.c's single
    thread executes (the first whose source passes -dmin), or None if none does.
    ``valid_of(pixels)``: the (T, SS, S, P) -dmin mask of those pixels (None: all pass)."""
    if pix.numel() == 0:
        return None
    if scene.dmin <= 0.0:
        return (0, 0, 0, 0)
    with torch.no_grad():
        for start in range(0, pix.numel(), chunk):
            valid = valid_of(pix[start:start + chunk])               # (T, SS, S, P)
            flat = valid.permute(3, 0, 1, 2).reshape(-1).nonzero()  # C's order
            if flat.numel():
                k = int(flat[0, 0])
                T, SS, S = valid.shape[:3]
                p, rest = divmod(k, T * SS * S)
                t, rest = divmod(rest, SS * S)
                ss, s = divmod(rest, S)
                return (start + p, t, ss, s)
    return None


def carryover_sources(phis: list) -> tuple:
    """nanoBragg.c's φ=0 carryover as two index maps over φ steps (c-parity only).

    When φ is exactly 0.0, nanoBragg.c skips the spindle rotation and keeps the orientation of the
    last φ step it rotated to -- earlier in the same sub-iteration, else the last rotated step of
    the previous sub-iteration on the same thread. Returns (first, rest): for each step k the step
    whose orientation is used, or -1 for the unrotated crystal; ``first`` applies to the first
    sub-iteration a thread executes, ``rest`` to every later one.
    """
    rotated = [k for k, p in enumerate(phis) if p != 0.0]
    last_any = rotated[-1] if rotated else -1
    first, rest = [], []
    for k, p in enumerate(phis):
        if p != 0.0:
            first.append(k)
            rest.append(k)
            continue
        earlier = [j for j in rotated if j < k]
        first.append(earlier[-1] if earlier else -1)
        rest.append(earlier[-1] if earlier else last_any)
    return first, rest


def carryover_orientations(real: Tensor, spindle: Tensor, phis: Tensor,
                           umats: Tensor | None) -> tuple:
    """C-parity quirk (φ=0 carryover): (orient, orient_first), the (Φ, M, 3, 3) rotated cells of
    every sub-iteration and, where it differs, of the first one C executes (else None). Arguments
    as :func:`nanobragg_cli.geometry.crystal.orientations`."""
    phi_values = [float(x) for x in phis.detach().cpu()]
    first, rest = carryover_sources(phi_values)
    step_map = rest if rest != list(range(len(phi_values))) else None
    orient_first = None
    if first != rest:
        orient_first = orientations(real, spindle, phis, umats, first)
    return orientations(real, spindle, phis, umats, step_map), orient_first
