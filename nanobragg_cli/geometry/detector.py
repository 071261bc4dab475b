"""Detector frame: conventions' vectors rotated, the pivot, and the origin pix0 (differentiable).

Follows nanoBragg.c's order of operations: the detector normal rotated by rotx/y/z (not 2theta)
gives ``ratio = beam·odet``; SAMPLE pivot places pix0 from the near point (Fclose, Sclose,
close_distance) before rotating it; BEAM pivot places it from the beam spot (Fbeam, Sbeam,
distance) after rotating the axes; finally the near point, beam spot and distance are recomputed
from pix0, so a 2theta swing changes the reported distance.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from ..constants import DBL_MIN
from .rotation import dot, rotate_axis, rotate_xyz


@dataclass
class DetectorGeometry:
    """Detector frame in the lab, all lengths in metres.

    fdet, sdet, odet: (3,) unit vectors of increasing fast/slow pixel index and of the normal;
    pix0: (3,) position of the corner of pixel (0, 0); beam: (3,) incident beam direction;
    Fclose/Sclose/close_distance: near point of the sample on the detector plane;
    Fbeam/Sbeam/distance: beam spot coordinates and the sample-to-spot distance along the beam.
    """
    fdet: Tensor
    sdet: Tensor
    odet: Tensor
    pix0: Tensor
    beam: Tensor
    Fclose: Tensor
    Sclose: Tensor
    close_distance: Tensor
    Fbeam: Tensor
    Sbeam: Tensor
    distance: Tensor
    pixel_size: Tensor

    @property
    def orgx(self) -> Tensor:
        return self.Fclose / self.pixel_size + 0.5

    @property
    def orgy(self) -> Tensor:
        return self.Sclose / self.pixel_size + 0.5

    @property
    def dials_origin_mm(self) -> Tensor:
        p = self.pix0
        return 1000.0 * torch.stack((p[2], p[1], -p[0]))


def _origin(F, S, d, f, s, o):
    return torch.stack([(-F * f[i] - S * s[i]) + d * o[i] for i in range(3)])


def detector_geometry(fdet0: Tensor, sdet0: Tensor, odet0: Tensor, beam: Tensor,
                      twotheta_axis: Tensor, rotx, roty, rotz, twotheta, pivot: str,
                      distance: Tensor, close_distance: Tensor | None,
                      Fbeam: Tensor, Sbeam: Tensor, Fclose: Tensor, Sclose: Tensor,
                      pixel_size: Tensor) -> DetectorGeometry:
    """Place and orient the detector as nanoBragg.c does.

    Vectors are (3,) tensors; angles in radians; lengths in metres. ``close_distance`` None means
    "not given" (then it is |ratio·distance|). ``pivot`` is 'beam' or 'sample'.
    """
    o_rot = rotate_xyz(odet0, rotx, roty, rotz)
    ratio = dot(beam, o_rot)
    ratio = torch.where(ratio == 0.0, torch.full_like(ratio, DBL_MIN), ratio)
    if close_distance is None:
        close_distance = torch.abs(ratio * distance)
    distance = close_distance / ratio

    if pivot == "sample":
        pix0 = _origin(Fclose, Sclose, close_distance, fdet0, sdet0, odet0)
        pix0 = rotate_xyz(pix0, rotx, roty, rotz)
        pix0 = rotate_axis(pix0, twotheta_axis, twotheta)
    fdet = rotate_axis(rotate_xyz(fdet0, rotx, roty, rotz), twotheta_axis, twotheta)
    sdet = rotate_axis(rotate_xyz(sdet0, rotx, roty, rotz), twotheta_axis, twotheta)
    odet = rotate_axis(o_rot, twotheta_axis, twotheta)
    if pivot == "beam":
        pix0 = _origin(Fbeam, Sbeam, distance, fdet, sdet, beam)

    Fclose = -dot(pix0, fdet)
    Sclose = -dot(pix0, sdet)
    close_distance = dot(pix0, odet)
    to_spot = close_distance / ratio * beam - pix0
    return DetectorGeometry(
        fdet=fdet, sdet=sdet, odet=odet, pix0=pix0, beam=beam, Fclose=Fclose, Sclose=Sclose,
        close_distance=close_distance, Fbeam=dot(fdet, to_spot), Sbeam=dot(sdet, to_spot),
        distance=close_distance / ratio, pixel_size=pixel_size)
