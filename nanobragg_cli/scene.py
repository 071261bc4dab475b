"""Setup: turn a resolved configuration into the tensors the kernel consumes (computed once).

A :class:`Scene` holds the detector frame, the sources, the crystal orientations for every
(φ step, mosaic domain), the structure-factor grid and the scalar factors of the final scaling, on
one device and dtype. Continuous parameters enter through :class:`SceneParams`, whose fields may be
tensors that require grad (the Python API); the CLI fills them from the flags. Files (HKL, A.mat,
source file, Fdump.bin) are read here, and the decisions nanoBragg.c makes once the crystal is
known (N from the crystal size, automatic oversampling) are made here too.
"""

from dataclasses import dataclass, field, replace
import math
import os

import numpy as np
import torch
from torch import Tensor

from . import rng
from .config import Config
from .errors import FlagError, NanoBraggError
from .geometry.beam import SourceGrid, source_file_grid, source_grid
from .geometry.crystal import (Lattice, carryover_sources, lattice, orientations, phi_angles,
                               reciprocal_from_cell)
from .geometry.detector import DetectorGeometry, detector_geometry
from .geometry.rotation import norm
from .structure_factors import StructureFactors

R_E_SQR = 7.94079248018965e-30   # Thomson cross section, m²
AVOGADRO = 6.02214179e23
WATER_F = 2.57
WATER_MW = 18.0
RTD = 180.0 / math.pi


@dataclass
class SceneParams:
    """The continuous parameters of a simulation (SI units: m, rad), as tensors or floats.

    Any field may be a tensor with ``requires_grad``; the image is differentiable in it.
    ``cell`` = (a, b, c in Å, alpha, beta, gamma in rad) or None when the crystal comes from an
    A matrix (``amat``: (3, 3) reciprocal vectors a*, b*, c* as rows, in Å⁻¹, before misset).
    ``beam_center`` = (fast, slow) in m: the beam spot (Fbeam, Sbeam) for the BEAM pivot, the
    near point (Fclose, Sclose) for the SAMPLE pivot. ``N`` = (Na, Nb, Nc) cell counts.
    ``fhkl`` overrides the structure-factor grid values (same shape as the file's grid).
    """
    cell: object = None
    amat: object = None
    misset: object = None
    phi0: object = 0.0
    phistep: object = 0.0
    distance: object = 0.1
    close_distance: object = None
    beam_center: object = (0.0, 0.0)
    rotations: object = (0.0, 0.0, 0.0)
    twotheta: object = 0.0
    wavelength: object = 1e-10
    fluence: object = 1.25932015286227e29
    polarization: object = 0.0
    N: object = (1.0, 1.0, 1.0)
    mosaic_spread: object = 0.0
    fhkl: object = None


@dataclass
class Scene:
    """Everything the kernel needs, on one device/dtype. Shapes: Φ φ steps, M mosaic domains,
    S sources, T sensor layers, os sub-pixels per pixel edge."""
    cfg: Config
    c_parity: bool
    dtype: torch.dtype             # geometry, Miller indices and scaling (float64)
    work_dtype: torch.dtype        # lattice transforms and structure factors (the user's --dtype)
    device: torch.device
    det: DetectorGeometry
    fpixels: int
    spixels: int
    oversample: int
    subpixel_size: Tensor
    thicksteps: int
    thickstep: Tensor
    detector_thick: float
    mu: Tensor
    source_dirs: Tensor            # (S, 3) toward the sources
    source_lambda: Tensor          # (S,) m
    sources: SourceGrid
    lattice: Lattice
    N: Tensor                      # (3,) Na, Nb, Nc
    N_values: tuple                # the same as Python floats (for shape decisions, not values)
    phis: Tensor                   # (Φ,) rad
    orient: Tensor                 # (Φ, M, 3, 3) real vectors per step/domain, m
    orient_first: Tensor | None    # same for the first sub-iteration (c-parity carryover)
    umats: Tensor | None           # (M, 3, 3)
    sf: StructureFactors
    interpolate: bool
    shape: str
    fudge: float
    kahn: Tensor
    unpolarized: bool              # Kahn factor exactly 0 and not a differentiable parameter
    nopolar: bool
    polar_vector: Tensor
    fluence: Tensor
    steps: int
    I_bg: Tensor                   # nanoBragg.c's water background term (includes r_e²·fluence)
    water_molecules: float         # for the default-mode background
    dmin: float
    roi: tuple
    mask: np.ndarray | None
    params: SceneParams
    recommended_oversample: int
    hkl_count: int
    info: dict = field(default_factory=dict)

    @property
    def n_phi(self) -> int:
        return self.orient.shape[0]

    @property
    def n_mos(self) -> int:
        return self.orient.shape[1]

    @property
    def n_src(self) -> int:
        return self.source_dirs.shape[0]

    def evals_per_pixel(self) -> int:
        return self.thicksteps * self.oversample ** 2 * self.n_src * self.n_phi * self.n_mos


def _t(x, dtype, device):
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device)
    return torch.as_tensor(x, dtype=dtype, device=device)


def params_from_config(cfg: Config, random_misset: tuple | None = None,
                       amat: np.ndarray | None = None) -> SceneParams:
    """The SceneParams the flags describe (plain floats)."""
    d, c, b, s = cfg.detector, cfg.crystal, cfg.beam, cfg.sampling
    if d.pivot == "sample":
        center = (d.Fclose, d.Sclose)
    else:
        center = (d.Fbeam, d.Sbeam)
    misset = None
    if c.misset == "angles":
        misset = c.misset_angles
    elif c.misset == "random":
        misset = random_misset
    cell = None
    if c.user_cell and amat is None:
        a, bb, cc, al, be, ga = c.cell
        bb = a if bb <= 0.0 else bb
        cc = a if cc <= 0.0 else cc
        al = math.pi / 2 if al <= 0.0 else al
        be = math.pi / 2 if be <= 0.0 else be
        ga = math.pi / 2 if ga <= 0.0 else ga
        cell = (a, bb, cc, al, be, ga)
    return SceneParams(
        cell=cell, amat=amat, misset=misset, phi0=s.phi0, phistep=s.phistep,
        distance=d.distance,
        close_distance=None if math.isnan(d.close_distance) else d.close_distance,
        beam_center=center, rotations=(d.rotx, d.roty, d.rotz), twotheta=d.twotheta,
        wavelength=b.lambda0, fluence=b.fluence, polarization=b.polarization,
        N=(c.Na, c.Nb, c.Nc), mosaic_spread=c.mosaic_spread)


def load_structure_factors(cfg: Config, messages: list) -> StructureFactors:
    """-hkl (and write the Fdump cache), else an existing Fdump file, else default_F only."""
    from .io.hkl import fdump_bytes, hkl_grid, read_fdump, read_hkl
    from .io.atomic import write_or_defer

    c = cfg.crystal
    grid = None
    count = 0
    if c.hklfile is not None:
        hkl, F = read_hkl(c.hklfile)
        from .preflight import check_hkl_grid
        check_hkl_grid(hkl, c.hklfile)  # before the dense grid is allocated
        grid = hkl_grid(hkl, F, c.default_F, source=c.hklfile)
        count = len(F)
        try:
            write_or_defer(c.dumpfile, fdump_bytes(grid))  # joins the run's commit (CLI)
            messages.append(f"writing dump file for next time: {c.dumpfile}")
        except Exception as err:  # the cache is a convenience, as in nanoBragg.c
            messages.append(f"WARNING: unable to open dump file: {c.dumpfile} ({err})")
    elif os.path.exists(c.dumpfile):
        grid = read_fdump(c.dumpfile)
        hr, kr, lr = grid.ranges
        count = hr * kr * lr
        messages.append(f"reading Fs from {c.dumpfile}")
        cfg_warn = (f"no -hkl given: structure factors read from {c.dumpfile} in the current "
                    "directory (written by an earlier -hkl run), as nanoBragg.c does; this replaces "
                    "-default_F inside its index range")
        messages.append("WARNING: " + cfg_warn)
    elif c.default_F == 0.0:
        raise FlagError("no structure factors: give -hkl FILE or -default_F F "
                        f"(and no {c.dumpfile} cache exists in the current directory)")
    if grid is None:
        return StructureFactors(grid=None, count=0, default_F=c.default_F)
    return StructureFactors(
        grid=torch.from_numpy(np.ascontiguousarray(grid.F)), h_min=grid.h_min, h_max=grid.h_max,
        k_min=grid.k_min, k_max=grid.k_max, l_min=grid.l_min, l_max=grid.l_max, count=count,
        default_F=c.default_F)


def build_lattice(p: SceneParams, dtype, device) -> Lattice:
    """Real/reciprocal vectors from the cell or A matrix, with the misset applied."""
    misset = None if p.misset is None else tuple(_t(m, dtype, device) for m in p.misset)
    if p.cell is not None:
        a, b, c, al, be, ga = (_t(x, dtype, device) for x in p.cell)
        a_s, b_s, c_s, V = reciprocal_from_cell(a, b, c, al, be, ga)
        return lattice(a_s, b_s, c_s, misset, cell_lengths=(a, b, c), V_cell_cell=V)
    amat = _t(p.amat, dtype, device)
    return lattice(amat[0], amat[1], amat[2], misset)


def build_scene(cfg: Config, *, c_parity: bool = False, dtype=torch.float64, device="cpu",
                params: SceneParams | None = None, structure_factors: StructureFactors | None = None,
                messages: list | None = None, random: "rng.NanoRandom | None" = None) -> Scene:
    """Build the kernel's tensors. ``messages`` collects nanoBragg-style setup lines; ``random``
    is the process-wide nanoBragg random state (misset, mosaic and noise share its shuffle table)."""
    random = random if random is not None else rng.NanoRandom()
    device = torch.device(device)
    # float32 is mixed precision: geometry and Miller indices stay float64 (h = a·S loses digits
    # to cancellation near the beam), the lattice transform runs in float32 on reduced arguments.
    work_dtype = dtype
    dtype = torch.float64 if dtype == torch.float32 else dtype
    messages = messages if messages is not None else []
    d, c, b, s = cfg.detector, cfg.crystal, cfg.beam, cfg.sampling
    kw = dict(dtype=dtype, device=device)

    amat = None
    if c.matfile is None:
        if not c.user_cell or c.cell[0] <= 0.0:
            raise FlagError("-cell: the cell length a must be positive")
    elif params is None or params.amat is None:  # the API passes the matrix it read once
        from .io.mosflm import check_basis, read_mat
        amat = read_mat(c.matfile)
        check_basis(c.matfile, amat)
        amat = amat * (1e-10 / b.lambda0)
        messages.append(f"reading {c.matfile}")
    random_misset = None
    if c.misset == "random":
        random_misset = rng.random_misset(c.misset_seed, rng=random)
        messages.append("random orientation misset angles: %f %f %f deg" %
                        tuple(x * RTD for x in random_misset))
    if params is None:
        params = params_from_config(cfg, random_misset, amat)

    # detector ----------------------------------------------------------------------------
    vec = lambda v: torch.tensor(v, **kw)  # noqa: E731
    px = _t(d.pixel_size, dtype, device)
    fc, sc = (_t(x, dtype, device) for x in params.beam_center)
    rx, ry, rz = (_t(x, dtype, device) for x in params.rotations)
    det = detector_geometry(
        vec(d.fdet), vec(d.sdet), vec(d.odet), vec(d.beam), vec(d.twotheta_axis), rx, ry, rz,
        _t(params.twotheta, dtype, device), d.pivot, _t(params.distance, dtype, device),
        None if params.close_distance is None else _t(params.close_distance, dtype, device),
        fc, sc, fc, sc, px)

    # crystal -----------------------------------------------------------------------------
    lat = build_lattice(params, dtype, device)
    N_in = [_t(x, dtype, device) for x in params.N]
    if any(isinstance(x, Tensor) and x.requires_grad for x in params.N):
        N = torch.stack(N_in)
    else:
        Ns = []
        for n_given, size, vecn in ((c.Na, c.sample_x, lat.a), (c.Nb, c.sample_y, lat.b),
                                    (c.Nc, c.sample_z, lat.c)):
            n = float(N_in[len(Ns)])
            if size > 0:
                n = float(math.ceil(size / float(norm(vecn))))
            Ns.append(max(n, 1.0))
        if min(c.Na, c.Nb, c.Nc) < 1 and not any(sz > 0 for sz in (c.sample_x, c.sample_y, c.sample_z)):
            messages.append("WARNING: N < 1 is treated as N = 1 (nanoBragg.c cannot model an "
                            "isolated cell)")
        N = torch.tensor(Ns, **kw)
    N_values = tuple(float(x) for x in N.detach().cpu())
    xtal = [float(norm(v).detach()) * float(n) for v, n in zip((lat.a, lat.b, lat.c), N.detach())]
    messages.append("crystal is %g x %g x %g microns" % tuple(x * 1e6 for x in xtal))
    reciprocal_pixel = b.lambda0 * float(det.distance.detach()) / d.pixel_size
    if not all(math.isfinite(x) for x in xtal + [reciprocal_pixel]):
        # the flags refuse such values; through the Python API an optimiser step can reach them
        raise NanoBraggError("the cell, orientation or detector distance parameters give a "
                             "non-finite crystal or detector geometry")
    recommended = math.ceil(3.0 * max(xtal) / reciprocal_pixel)
    recommended = max(recommended, 1)
    oversample = s.oversample
    if oversample <= 0:
        oversample = recommended
        messages.append(f"auto-selected {oversample}-fold oversampling")
    elif oversample < recommended:
        messages.append(f"WARNING: maximum dimension of sample is {max(xtal) * 1e10:g} A")
        messages.append(f"         but reciprocal pixel size is {reciprocal_pixel * 1e10:g} A")
        messages.append("         intensity may vary significantly across a pixel!")
        messages.append(f"         recommend -oversample {recommended} to work around this")

    # structure factors -------------------------------------------------------------------
    sf = structure_factors if structure_factors is not None else load_structure_factors(cfg, messages)
    if params.fhkl is not None:
        sf = replace(sf, grid=params.fhkl)
    if sf.grid is not None:
        sf = replace(sf, grid=sf.grid.to(**kw))
    interpolate = bool(c.interpolate) and sf.count > 0

    # sources -----------------------------------------------------------------------------
    lam0 = _t(params.wavelength, dtype, device)
    if b.sourcefile is not None:
        from .io.sources import read_sourcefile
        sources = source_file_grid(read_sourcefile(b.sourcefile), d.beam, b.lambda0, dtype, device)
    else:
        sources = source_grid(d.beam, d.polar_vector, b.hdivrange, b.hdivstep, b.hdivsteps,
                              b.vdivrange, b.vdivstep, b.vdivsteps, b.round_div, b.dispersion,
                              b.dispstep, b.dispsteps, dtype, device)
    if sources.directions.shape[0] == 0:
        raise FlagError("-divergence: the divergence grid keeps no source")

    # φ and mosaic ------------------------------------------------------------------------
    phis = phi_angles(_t(params.phi0, dtype, device), _t(params.phistep, dtype, device),
                      s.phisteps, lat.a)
    umats = None
    if c.mosaic_spread > 0.0:
        umats = _mosaic_umats(c, params, kw, random)
    spindle = vec(d.spindle)
    orient_first = None
    step_map = None
    if c_parity:
        phi_values = [float(x) for x in phis.detach().cpu()]
        first, rest = carryover_sources(phi_values)
        if rest != list(range(len(phi_values))):
            step_map = rest
        if first != rest:
            orient_first = orientations(lat.real, spindle, phis, umats, first)
    orient = orientations(lat.real, spindle, phis, umats, step_map)

    # scaling -----------------------------------------------------------------------------
    n_src = sources.directions.shape[0]
    n_mos = 1 if umats is None else umats.shape[0]
    steps = n_src * n_mos * s.phisteps * oversample * oversample
    fluence = _t(params.fluence, dtype, device)
    water = s.water_size
    molecules = water ** 3 * 1e6 * AVOGADRO / WATER_MW
    I_bg = WATER_F * WATER_F * R_E_SQR * fluence * water * water * water * 1e6 * AVOGADRO / WATER_MW

    return Scene(
        cfg=cfg, c_parity=c_parity, dtype=dtype, work_dtype=work_dtype, device=device, det=det, fpixels=d.fpixels,
        spixels=d.spixels, oversample=oversample, subpixel_size=px / oversample,
        thicksteps=s.detector_thicksteps, thickstep=_t(_layer_thickness(s, c_parity), dtype, device),
        detector_thick=s.detector_thick, mu=_t(s.detector_mu, dtype, device),
        source_dirs=sources.directions, source_lambda=sources.wavelengths(lam0), sources=sources,
        lattice=lat, N=N, N_values=N_values, phis=phis, orient=orient,
        orient_first=orient_first, umats=umats, sf=sf, interpolate=interpolate, shape=c.shape,
        fudge=c.fudge, kahn=_t(params.polarization, dtype, device),
        unpolarized=not isinstance(params.polarization, Tensor) and params.polarization == 0.0,
        nopolar=b.nopolar,
        polar_vector=vec(d.polar_vector), fluence=fluence, steps=steps, I_bg=I_bg,
        water_molecules=molecules, dmin=s.dmin, roi=d.roi, mask=d.mask, params=params,
        recommended_oversample=recommended, hkl_count=sf.count)


def _layer_thickness(s, c_parity: bool) -> float:
    """Thickness of one sensor layer (m).

    C-parity quirk (sensor layers): with -detector_thicksteps N nanoBragg.c uses thick/(N-1), so
    N layers model N·thick/(N-1) of sensor; the default mode slices the given thickness into N.
    """
    if c_parity or s.detector_thick <= 0.0:
        return s.detector_thickstep
    return s.detector_thick / s.detector_thicksteps


def _mosaic_umats(c, params: SceneParams, kw, random) -> Tensor:
    """Mosaic domain rotations from nanoBragg.c's random sequence (domain 0 = identity).

    When the spread is a tensor (the Python API), each domain's rotation angle is rescaled with it
    (axes and relative angles stay those of the C random draws), so the image is differentiable
    in the mosaic spread and follows its value.
    """
    spread = params.mosaic_spread
    if isinstance(spread, Tensor):
        axes, angles = rng.mosaic_axes_angles(c.mosaic_spread, c.mosaic_domains, c.mosaic_seed,
                                              rng=random)
        rel = torch.tensor(angles / c.mosaic_spread, **kw)
        return umats_from_axis_angle(torch.tensor(axes, **kw), spread.to(**kw) * rel,
                                     identity_first=True)
    return torch.tensor(rng.mosaic_umats(c.mosaic_spread, c.mosaic_domains, c.mosaic_seed,
                                         rng=random), **kw)


def umats_from_axis_angle(v: Tensor, rot: Tensor, identity_first: bool) -> Tensor:
    """(M, 3, 3) rotation matrices about unit axes v (M, 3) by angles rot (M,), nanoBragg's formula."""
    t1 = torch.cos(rot)
    t2 = 1.0 - t1
    t8 = torch.sin(rot)
    v1, v2, v3 = v[:, 0], v[:, 1], v[:, 2]
    t6 = t2 * v1
    t7 = t6 * v2
    t9 = t8 * v3
    t11 = t6 * v3
    t12 = t8 * v2
    t19 = t2 * v2 * v3
    t20 = t8 * v1
    U = torch.stack((t1 + t2 * (v1 * v1), t7 - t9, t11 + t12,
                     t7 + t9, t1 + t2 * (v2 * v2), t19 - t20,
                     t11 - t12, t19 + t20, t1 + t2 * (v3 * v3)), dim=-1).reshape(-1, 3, 3)
    if identity_first:
        eye = torch.eye(3, dtype=U.dtype, device=U.device).unsqueeze(0)
        first = torch.zeros(U.shape[0], 1, 1, dtype=U.dtype, device=U.device)
        first[0] = 1.0
        U = first * eye + (1.0 - first) * U
    return U
