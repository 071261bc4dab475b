"""Sources: directions and wavelengths from divergence/dispersion grids or a source file.

A source direction is a unit vector from the sample toward the source (incident = -direction),
as in nanoBragg.c. Source order: horizontal divergence (outer), vertical, wavelength (inner).
Source weights are all equal (nanoBragg.c normalises through ``steps``; the file's I column is
ignored, as in C).
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .rotation import cross, dot, norm, rotate_axis, unitize

SOURCE_DISTANCE = 10.0  # m, nanoBragg.c's default


@dataclass
class SourceGrid:
    """directions: (S, 3) unit vectors toward the sources; wavelength_factor: (S,) multipliers of
    λ0 (None for a source file); file_lambda: (S,) wavelengths in m from a source file (None for a
    grid); positions (S, 3) m before unitizing and weights (S,) (a file's I column, else 1/S):
    what nanoBragg.c prints of each source (nanobragg_cli.c_stdout)."""
    directions: Tensor
    wavelength_factor: Tensor | None
    file_lambda: Tensor | None
    positions: np.ndarray  # (S, 3) before unitizing, for the printout
    weights: np.ndarray | None = None  # (S,) the I column nanoBragg.c prints (1/S for a grid)

    def wavelengths(self, lambda0: Tensor) -> Tensor:
        """(S,) wavelengths in metres (differentiable in λ0 for a grid)."""
        if self.file_lambda is not None:
            return self.file_lambda
        return lambda0 * self.wavelength_factor


def e_vector(incident: Tensor, polar: Tensor) -> Tensor:
    """The E-vector direction (..., 3) the default mode uses for beams along ``incident``
    (..., 3 unit vectors): ``polar`` (3,) itself, unless it lies along the beam (polar x incident
    = 0 defines no E-vector; nanoBragg.c then works with a zero basis, see docs/differences.md):
    then the coordinate axis least aligned with the beam (the first of equals), made
    perpendicular to it. E.g. (0, 1, 0) for a beam along x, (1, 0, 0) for a beam along z."""
    pol = polar.expand_as(incident)
    b = cross(pol, incident)
    along = dot(b, b) == 0.0
    axis = torch.nn.functional.one_hot(torch.argmin(incident.abs(), dim=-1), 3).to(incident.dtype)
    perp = unitize(axis - dot(axis, incident)[..., None] * incident)
    return torch.where(along[..., None], perp, pol)


def _cut_term(div, step, steps, rng):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(div * div - step * step / 4.0 * (1 - steps % 2)) / np.float64(rng) / np.float64(rng)


def source_grid(beam, polar_vector, hdivrange, hdivstep, hdivsteps, vdivrange, vdivstep,
                vdivsteps, round_div, dispersion, dispstep, dispsteps, dtype, device) -> SourceGrid:
    """The divergence x dispersion grid of nanoBragg.c (angles in radians)."""
    kw = dict(dtype=torch.float64)
    beam_t = torch.tensor(beam, **kw)
    polar_t = torch.tensor(polar_vector, **kw)
    vert = unitize(cross(beam_t, polar_t))  # zero (as in C) for a polarization along the beam
    dirs, factors, positions = [], [], []
    for ih in range(hdivsteps):
        for iv in range(vdivsteps):
            hdiv = hdivstep * ih - hdivrange / 2.0
            vdiv = vdivstep * iv - vdivrange / 2.0
            test = _cut_term(hdiv, hdivstep, hdivsteps, hdivrange) + \
                _cut_term(vdiv, vdivstep, vdivsteps, vdivrange)
            if round_div and test * 4.0 > 1.1:
                continue
            v = -SOURCE_DISTANCE * beam_t
            v = rotate_axis(v, polar_t, vdiv)
            v = rotate_axis(v, vert, hdiv)
            for idisp in range(dispsteps):
                factors.append(1.0 + dispstep * idisp - dispersion / 2.0)
                positions.append(v.numpy().copy())
                dirs.append(v / norm(v))
    return SourceGrid(
        directions=torch.stack(dirs).to(dtype=dtype, device=device),
        wavelength_factor=torch.tensor(factors, dtype=dtype, device=device),
        file_lambda=None, positions=np.array(positions),
        weights=np.full(len(dirs), 1.0 / max(len(dirs), 1)))


def source_file_grid(rows: np.ndarray, beam, lambda0: float, dtype, device) -> SourceGrid:
    """Sources from a -sourcefile table (n, 5) with NaN for missing columns (C's defaults)."""
    rows = rows.copy()
    for k in range(3):
        rows[np.isnan(rows[:, k]), k] = -SOURCE_DISTANCE * beam[k]
    rows[np.isnan(rows[:, 4]), 4] = lambda0
    rows[np.isnan(rows[:, 3]), 3] = 1.0
    pos = torch.tensor(rows[:, :3], dtype=torch.float64)
    n = norm(pos)
    dirs = torch.where(n[:, None] != 0.0, pos / torch.where(n == 0, 1.0, n)[:, None],
                       torch.zeros_like(pos))
    return SourceGrid(directions=dirs.to(dtype=dtype, device=device), wavelength_factor=None,
                      file_lambda=torch.tensor(rows[:, 4], dtype=dtype, device=device),
                      positions=rows[:, :3], weights=rows[:, 3])
