"""Pure physics functions of the kernel: lattice transforms, polarization, solid angle, absorption.

Shapes broadcast; lengths in metres, angles in radians, reciprocal vectors in Å⁻¹ where noted.
"""

import math

import torch
from torch import Tensor

ROUND_XTAL_SCALE = 0.723601254558268  # sqrt of the cube/sphere volume ratio (nanoBragg.c)
GAUSS_WIDTH = 0.63
TOPHAT_CUT = 0.3969


def sincg_reduced(frac: Tensor, index: Tensor, n: Tensor) -> Tensor:
    """sin(N·π·h) / sin(π·h) for integer N, evaluated on the reduced argument.

    frac: h − h0 with h0 = ceil(h − 0.5) (so |frac| ≤ ½); index: h0 (integral values);
    n: cell count (integral values), broadcastable. Since sin(Nπ(h0+f)) = (−1)^{N·h0} sin(Nπf)
    and sin(π(h0+f)) = (−1)^{h0} sin(πf), the result is (−1)^{(N−1)h0} sin(Nπf)/sin(πf): the
    transcendental arguments stay small, so float32 keeps its digits at high-order reflections.
    At f = 0 the limit N·(−1)^{(N−1)h0} is used. For a continuous N (a tensor that requires grad)
    the sign is that of round(N), so it stays ±1 and carries no gradient.
    """
    sign = 1.0 - 2.0 * torch.remainder(index * (torch.round(n) - 1.0), 2.0)
    x = math.pi * frac
    safe = torch.where(frac == 0.0, torch.ones_like(x), x)
    ratio = torch.sin(n * safe) / torch.sin(safe)
    return sign * torch.where(frac == 0.0, n * torch.ones_like(ratio), ratio)


def sincg_ratio(frac: Tensor, n: float) -> Tensor:
    """±sin(N·π·f)/sin(π·f) on a reduced argument f (|f| ≤ ½), N at f = 0, for the image's
    squared lattice factor (the sign (−1)^{(N−1)·h0} is not applied). ``frac`` is overwritten
    (it is the caller's scratch tensor). The smallest normal number added to π·f turns f = 0
    into the limit N without a branch and changes no other value."""
    tiny = torch.tensor(torch.finfo(frac.dtype).tiny, dtype=frac.dtype, device=frac.device)
    x = torch.add(tiny, frac, alpha=math.pi, out=frac)
    return torch.mul(x, n).sin_().div_(x.sin_())


# sin(π·g) = g·P(g²) for |g| ≤ ½: a least-squares fit of P (degree 7 in g²) on Chebyshev nodes,
# relative error ≤ 4.5e-16 against the float64 sine over the interval.
_SIN_PI_COEFFS = (3.1415926535897927, -5.167712780049753, 2.550164039859758,
                  -0.5992645287752849, 0.08214587825182912, -0.007370361044587664,
                  0.00046597753966745733, -2.1122865974926816e-05)


def sin_pi_small(g: Tensor) -> Tensor:
    """sin(π·g) for |g| ≤ ½ by the polynomial above: eight multiply-adds, which compiled code
    (:mod:`nanobragg_cli.fused`) keeps in registers; eagerly, torch.sin is one pass instead."""
    g2 = g * g
    p = g2 * _SIN_PI_COEFFS[-1] + _SIN_PI_COEFFS[-2]
    for c in reversed(_SIN_PI_COEFFS[:-2]):
        p = p * g2 + c
    return g * p


def sincg_small_sines(frac: Tensor, n: float) -> Tensor:
    """±sin(N·π·f)/sin(π·f) on a reduced argument f (|f| ≤ ½), N at f = 0, with both sines by
    :func:`sin_pi_small`: N·f is reduced by its nearest integer k first (sin(π(g + k)) =
    ±sin(π·g); the sign is not tracked, the image squares it). The smallest normal number added
    to f turns f = 0 into the limit N. Rounding N·f costs ~N·eps/2 of g: 1.2e-14 at N = 47 in
    float64, ~3e-6 of the peak in float32."""
    f = frac + torch.finfo(frac.dtype).tiny
    nf = f * n
    return sin_pi_small(nf - torch.round(nf)) / sin_pi_small(f)


def sincg_chebyshev(frac: Tensor, n: int) -> Tensor:
    """±sin(N·π·f)/sin(π·f) = ±U_{N−1}(cos π·f) for an integer N ≥ 2, for the image's squared
    lattice factor (the sign is not tracked).

    The Chebyshev polynomial of the second kind comes from its three-term recurrence
    U_{k+1} = 2c·U_k − U_{k−1} (U_0 = 1, U_1 = 2c), one multiply-add per order, so the factor
    costs one cosine and N − 1 elementwise passes instead of two sines and a division, and needs
    no special case at f = 0 (U_{N−1}(1) = N). Each step writes into the older buffer and
    flips that buffer's sign, which the square makes irrelevant. The forward recurrence's
    rounding error stays below ~N²·eps/2 of the peak value N (measured at N = 12: 4e-15 in
    float64, 2e-6 in float32; the ratio of sines: 4e-16 and 2e-7). ``frac`` (reduced indices, |f| ≤ ½) is overwritten.
    """
    if torch.compiler.is_compiling():
        # traced (nanobragg_cli.fused): out of place, so the compiler keeps every order in
        # registers instead of storing the two buffers the in-place form overwrites
        c = torch.cos(frac * math.pi)
        prev, cur = torch.ones_like(c), 2.0 * c
        for _ in range(n - 2):
            prev, cur = cur, 2.0 * c * cur - prev
        return cur
    c = frac.mul_(math.pi).cos_()
    if n == 2:
        return c.mul_(2.0)
    minus_one = torch.tensor(-1.0, dtype=c.dtype, device=c.device)
    prev = c * 2.0                                     # +U_1
    cur = torch.addcmul(minus_one, c, c, value=4.0)    # +U_2 = 4c² − 1
    s_prev, s_cur = 1.0, 1.0                           # signs of the buffers' contents
    for _ in range(n - 3):
        # prev holds s_prev·U_{k-1}, cur s_cur·U_k: prev + v·c·cur = −s_prev·U_{k+1}
        prev.addcmul_(c, cur, value=-2.0 * s_prev * s_cur)
        prev, cur, s_prev, s_cur = cur, prev, s_cur, -s_prev
    return cur


def sincg_like_c(h: Tensor, n) -> Tensor:
    """nanoBragg.c's sincg(π·h, N) = sin(N·x)/sin(x) on the full argument x = π·h (N at x = 0).

    C-parity quirk (sincg near integers): on the full argument both sines lose their relative
    accuracy as h approaches a non-zero integer -- sin(π·h) is then mostly the rounding error of
    fl(π·h) -- so nanoBragg.c's value there is noise (e.g. 8.88 or 29.3 instead of 10 for N = 10
    at |h − round(h)| < 1e-14). --c-parity computes it the same way (same operations, correctly
    rounded sines) to reproduce those values; the default mode uses :func:`sincg_reduced`.
    h: (...) float64 fractional indices; n: cell count. The smallest normal number added to x
    turns x = 0 into C's limit N without a branch and changes no other x.
    """
    tiny = torch.finfo(h.dtype).tiny
    x = torch.add(torch.tensor(tiny, dtype=h.dtype, device=h.device), h, alpha=math.pi)
    return torch.sin(x * n) / torch.sin(x)


def sincg_direct(h: Tensor, n: Tensor) -> Tensor:
    """The lattice transform straight from the fractional index h (..., ) for a continuous cell
    count n (a tensor that may require grad): :func:`sincg_reduced` on f = h − ceil(h − ½).

    For integral N it is sin(Nπh)/sin(πh). For a non-integral N the bare ratio sin(Nπh)/sin(πh)
    is not periodic in h: it grows away from h = 0, and its derivative in N, πh·cos(Nπh)/sin(πh),
    diverges at every Bragg peak but the origin. The periodic continuation sin(Nπf)/sin(πf) keeps
    the lattice's periodicity, equals the integral-N transform, and is smooth in N and h.
    """
    h0 = torch.ceil(h - 0.5)
    return sincg_reduced(h - h0, h0, n)


def sinc3(x: Tensor) -> Tensor:
    """3(sin x / x − cos x)/x², the transform of a sphere (1 at x = 0)."""
    safe = torch.where(x == 0.0, torch.ones_like(x), x)
    val = 3.0 * (torch.sin(safe) / safe - torch.cos(safe)) / (safe * safe)
    return torch.where(x == 0.0, torch.ones_like(x), val)


def _unitize(v: Tensor) -> Tensor:
    """v / |v| over the last axis; a zero vector stays zero (nanoBragg.c's unitize), so an
    incident beam along the polarization axis gives ψ = 0 as in C instead of 0/0."""
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return v / torch.where(n == 0.0, torch.ones_like(n), n)


def polarization_factor(kahn: float | Tensor, incident: Tensor, diffracted: Tensor,
                        polar_axis: Tensor) -> Tensor:
    """Kahn polarization factor 0.5·(1 + cos²2θ − K·cos2ψ·sin²2θ).

    incident, diffracted: (..., 3) unit vectors; polar_axis: (3,) or (..., 3) unit E-vector;
    ψ is the azimuth of the diffracted ray about the beam, measured from the E-vector.
    kahn: a float, or a tensor (then the full formula is always evaluated, so the derivative in
    K exists at K = 0 too).
    """
    cos2t = (incident * diffracted).sum(-1)
    cos2t_sq = cos2t * cos2t
    sin2t_sq = 1.0 - cos2t_sq
    if not isinstance(kahn, Tensor) and kahn == 0.0:
        return 0.5 * (1.0 + cos2t_sq)
    B_in = _unitize(torch.linalg.cross(polar_axis.expand_as(incident), incident))
    E_in = _unitize(torch.linalg.cross(incident, B_in))
    along_B = (diffracted * B_in).sum(-1)
    along_E = (diffracted * E_in).sum(-1)
    # along the beam ψ is undefined and sin²2θ = 0; atan2(0, 1) = atan2(0, 0) keeps the
    # gradient finite there (atan2's derivative at the origin is NaN)
    along_E = torch.where((along_B == 0.0) & (along_E == 0.0), torch.ones_like(along_E), along_E)
    psi = -torch.atan2(along_B, along_E)
    return 0.5 * (1.0 + cos2t_sq - kahn * torch.cos(2 * psi) * sin2t_sq)


def solid_angle(pixel_size: Tensor, airpath: Tensor, close_distance: Tensor,
                point_pixel: bool) -> Tensor:
    """Solid angle of a pixel seen from the sample: (px/R)²·(close_distance/R), or 1/R² for
    -point_pixel (steradian; R = airpath in m)."""
    if point_pixel:
        return 1.0 / airpath / airpath
    return pixel_size * pixel_size / airpath / airpath * close_distance / airpath


def capture_fraction(layer: Tensor, thickstep: Tensor, mu: Tensor, parallax: Tensor) -> Tensor:
    """Fraction of photons absorbed in sensor layer ``layer`` (0-based) of thickness
    ``thickstep`` (m), attenuation coefficient ``mu`` (1/m), ray obliquity ``parallax`` = d̂·n̂."""
    return torch.exp(-layer * thickstep * mu / parallax) - \
        torch.exp(-(layer + 1) * thickstep * mu / parallax)
