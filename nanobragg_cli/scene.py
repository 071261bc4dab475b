"""Setup: turn a resolved configuration into the tensors the kernel consumes (computed once).

A :class:`Scene` holds the detector frame, the sources, the crystal orientations for every
(φ step, mosaic domain), the structure-factor grid and the scalar factors of the final scaling, on
one device and dtype. Continuous parameters enter through :class:`SceneParams`, whose fields may be
tensors that require grad (the Python API); the CLI fills them from the flags. Files (HKL, A.mat,
source file, Fdump.bin) are read here, and the decisions nanoBragg.c makes once the crystal is
known (N from the crystal size, automatic oversampling) are made here too.
"""

from dataclasses import dataclass, fields, replace
import math
import os

import numpy as np
import torch
from torch import Tensor

from . import rng
from .arithmetic import Arithmetic, arithmetic
from .config import Config
from .constants import AVOGADRO, R_E_SQR, RTD, WATER_F, WATER_MW
from .errors import FlagError, NanoBraggError
from .geometry.beam import SourceGrid, e_vector, source_file_grid, source_grid
from .c_order import carryover_orientations
from .geometry.crystal import (Lattice, lattice, orientations, phi_angles, reciprocal_from_cell)
from .geometry.detector import DetectorGeometry, detector_geometry
from .geometry.rotation import norm
from .mode import Mode
from .structure_factors import StructureFactors



@dataclass
class SceneParams:
    """The continuous parameters of a simulation (SI units: m, rad), as tensors or floats.

    Any field may be a tensor with ``requires_grad``; the image is differentiable in it.
    ``cell`` = (a, b, c in Å, alpha, beta, gamma in rad) or None when the crystal comes from an
    A matrix (``amat``: (3, 3) reciprocal vectors a*, b*, c* as rows, in Å⁻¹, before misset);
    with both, the matrix gives the directions and the cell the lengths and volume (as C).
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

    def requires_grad(self) -> bool:
        """Any parameter is a tensor that requires grad (tuples of tensors included)."""
        def needs(v):
            if isinstance(v, (tuple, list)):
                return any(needs(x) for x in v)
            return isinstance(v, Tensor) and v.requires_grad
        return any(needs(getattr(self, f.name)) for f in fields(self))


@dataclass
class Scene:
    """Everything the kernel, the renderer and the traces need, on one device/dtype (they read
    nothing else: no Config). Shapes: Φ φ steps, M mosaic domains, S sources, T sensor layers,
    os sub-pixels per pixel edge. ``mode``: c_parity, device, dtype (geometry, Miller indices,
    scaling), work_dtype (the user's --dtype), differentiable; ``arith``: the mode's
    per-evaluation functions (:mod:`nanobragg_cli.arithmetic`)."""
    mode: Mode
    arith: Arithmetic
    det: DetectorGeometry
    curved: bool                   # pixels on a sphere (-curved_det, as the mode reads it)
    point_pixel: bool              # -point_pixel: solid angle 1/R², no obliquity
    fpixels: int
    spixels: int
    oversample: int
    subpixel_size: Tensor
    thicksteps: int
    thickstep: Tensor
    capture_fraction: bool         # model the sensor's capture fraction (else every photon counts)
    mu: Tensor
    source_dirs: Tensor            # (S, 3) toward the sources
    sources: SourceGrid            # positions and weights as nanoBragg.c prints them
    source_lambda: Tensor          # (S,) m
    wavelength: float              # -lambda (m), the nominal wavelength of -printout_pixel
    lattice: Lattice
    N: Tensor                      # (3,) Na, Nb, Nc
    N_values: tuple                # the same as Python floats (for shape decisions, not values)
    phis: Tensor                   # (Φ,) rad
    orient: Tensor                 # (Φ, M, 3, 3) real vectors per step/domain, m
    orient_first: Tensor | None    # same for the first sub-iteration (c-parity carryover)
    umats: Tensor | None           # (M, 3, 3) mosaic rotations (turning the crystal, a series)
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
    water_size: float              # -water (m); 0: no water background
    water_molecules: float         # for the default-mode background
    oversample_thick: bool         # -oversample_thick/_polar/_omega: that factor per sub-pixel
    oversample_polar: bool
    oversample_omega: bool
    dmin: float
    roi: tuple
    mask: np.ndarray | None
    params: SceneParams
    hkl_count: int

    @property
    def c_parity(self) -> bool:
        return self.mode.c_parity

    @property
    def dtype(self) -> torch.dtype:
        return self.mode.dtype

    @property
    def work_dtype(self) -> torch.dtype:
        return self.mode.work_dtype

    @property
    def device(self) -> torch.device:
        return self.mode.device

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
    if c.user_cell:  # with -mat too: the matrix's orientation rescaled to these lengths
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


def load_structure_factors(cfg: Config, messages: list, c_parity: bool = False) -> StructureFactors:
    """-hkl (and write the Fdump cache), else an existing Fdump file, else default_F only.
    ``c_parity``: read -hkl as nanoBragg.c's fscanf passes do (C-parity quirk, io/hkl_c.py)."""
    from .io.hkl import fdump_bytes, hkl_grid, read_fdump, read_hkl
    from .io.hkl_c import read_hkl_like_c
    from .io.atomic import write_or_defer

    c = cfg.crystal
    grid = None
    count = 0
    if c.hklfile is not None and c_parity:
        grid, count = read_hkl_like_c(c.hklfile, c.default_F)
    elif c.hklfile is not None:
        hkl, F = read_hkl(c.hklfile)
        from .preflight import check_hkl_grid
        check_hkl_grid(hkl, c.hklfile)  # before the dense grid is allocated
        grid = hkl_grid(hkl, F, c.default_F, source=c.hklfile)
        count = len(F)
    if c.hklfile is not None:
        try:
            write_or_defer(c.dumpfile, fdump_bytes(grid))  # joins the run's commit (CLI)
            messages.append(f"writing dump file for next time: {c.dumpfile}")
        except Exception as err:  # the cache is a convenience, as in nanoBragg.c
            messages.append(f"WARNING: unable to open dump file: {c.dumpfile}")
            messages.append(f"nanobragg: warning: cannot write the structure-factor cache "
                            f"{c.dumpfile} ({err})")
    elif os.path.exists(c.dumpfile):
        grid = read_fdump(c.dumpfile)
        hr, kr, lr = grid.ranges
        count = hr * kr * lr
        messages.append(f"reading Fs from {c.dumpfile}")
        cfg_warn = (f"no -hkl given: structure factors read from {c.dumpfile} in the current "
                    "directory (written by an earlier -hkl run), as nanoBragg.c does; this replaces "
                    "-default_F inside its index range")
        messages.append("nanobragg: warning: " + cfg_warn)
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
        if p.amat is not None:
            # -mat with -cell: nanoBragg.c takes the directions from the matrix and forces the
            # real vectors to the -cell lengths and volume (in either flag order)
            amat = _t(p.amat, dtype, device)
            a_s, b_s, c_s = amat[0], amat[1], amat[2]
        return lattice(a_s, b_s, c_s, misset, cell_lengths=(a, b, c), V_cell_cell=V)
    amat = _t(p.amat, dtype, device)
    return lattice(amat[0], amat[1], amat[2], misset)


def build_scene(cfg: Config, *, mode: Mode | None = None, c_parity: bool = False,
                dtype=torch.float64, device="cpu", params: SceneParams | None = None,
                structure_factors: StructureFactors | None = None, messages: list | None = None,
                random: "rng.NanoRandom | None" = None) -> Scene:
    """Build the kernel's tensors. ``mode``: the run's :class:`~nanobragg_cli.mode.Mode` (else
    chosen from ``c_parity``, ``dtype``, ``device``); its ``differentiable`` is set here from
    ``params``. ``messages`` collects nanoBragg-style setup lines; ``random`` is the
    process-wide nanoBragg random state (misset, mosaic and noise share its shuffle table).

    Sections, in nanoBragg.c's order (which the messages follow): parameters, detector, crystal
    (lattice, N, oversampling), structure factors, sources, φ and mosaic, scaling."""
    random = random if random is not None else rng.NanoRandom()
    if mode is None:
        mode = Mode.choose(c_parity=c_parity, dtype=dtype, device=device)
    # float32 is mixed precision: geometry and Miller indices stay float64 (h = a·S loses digits
    # to cancellation near the beam), the lattice transform runs in float32 on reduced arguments.
    c_parity, device, dtype = mode.c_parity, mode.device, mode.dtype
    arith = arithmetic(c_parity)
    messages = messages if messages is not None else []
    d, c, b, s = cfg.detector, cfg.crystal, cfg.beam, cfg.sampling
    kw = dict(dtype=dtype, device=device)
    vec = lambda v: torch.tensor(v, **kw)  # noqa: E731

    params = _scene_params(cfg, params, messages, random)
    det = _detector(cfg, params, dtype, device)
    lat = build_lattice(params, dtype, device)
    N, xtal = _crystal_size(cfg, params, lat, kw, messages)
    oversample = _oversample(cfg, xtal, det, messages)

    # structure factors -------------------------------------------------------------------
    sf = structure_factors if structure_factors is not None else load_structure_factors(cfg, messages, c_parity)
    if params.fhkl is not None:
        sf = replace(sf, grid=params.fhkl)
    if sf.grid is not None:
        sf = replace(sf, grid=sf.grid.to(**kw))
    interpolate = bool(c.interpolate) and sf.count > 0

    polar_vector = _polar_vector(cfg, c_parity, messages)
    sources = _sources(cfg, polar_vector, dtype, device)
    lam0 = _t(params.wavelength, dtype, device)

    # φ and mosaic ------------------------------------------------------------------------
    umats = None
    if c.mosaic_spread > 0.0:
        umats = _mosaic_umats(c, params, kw, random)
    else:
        # nanoBragg.c draws its (identity) domain even without a spread; the draw advances the
        # random state the noise image continues from when its seed is positive (-seed -7)
        rng.mosaic_axes_angles(0.0, c.mosaic_domains, c.mosaic_seed, rng=random)
    phis, orient, orient_first = spindle_orientations(cfg, params, lat, umats, c_parity, kw)

    # scaling -----------------------------------------------------------------------------
    n_src = sources.directions.shape[0]
    n_mos = 1 if umats is None else umats.shape[0]
    steps = n_src * n_mos * s.phisteps * oversample * oversample
    fluence = _t(params.fluence, dtype, device)
    water = s.water_size
    molecules = water ** 3 * 1e6 * AVOGADRO / WATER_MW
    # C-parity quirk (water background): nanoBragg.c's I_bg includes r_e²·fluence (the kernel
    # scales it by r_e²·fluence/steps again); the default mode uses the molecule count instead.
    I_bg = WATER_F * WATER_F * R_E_SQR * fluence * water * water * water * 1e6 * AVOGADRO / WATER_MW

    grid = sf.grid
    mode = replace(mode, differentiable=params.requires_grad()
                   or (isinstance(grid, Tensor) and grid.requires_grad))
    # C-parity quirk (-oversample_thick without a sensor): with no thickness nanoBragg.c still
    # computes the capture fraction per sub-pixel, exp(0) - exp(0) = 0, so the image is all 0;
    # the default mode models no sensor then
    capture = s.detector_thick != 0.0 or (c_parity and bool(s.oversample_thick))
    return Scene(
        mode=mode, arith=arith, det=det,
        # C-parity quirk (-curved_det last): nanoBragg.c ignores it as the last argument
        curved=bool(d.curved_c if c_parity else d.curved), point_pixel=bool(d.point_pixel),
        fpixels=d.fpixels,
        spixels=d.spixels, oversample=oversample, subpixel_size=det.pixel_size / oversample,
        thicksteps=s.detector_thicksteps, thickstep=_t(arith.layer_thickness(s), dtype, device),
        capture_fraction=capture, mu=_t(s.detector_mu, dtype, device),
        source_dirs=sources.directions, sources=sources, source_lambda=sources.wavelengths(lam0),
        wavelength=b.lambda0,
        lattice=lat, N=N, N_values=tuple(float(x) for x in N.detach().cpu()), phis=phis,
        orient=orient, orient_first=orient_first, umats=umats, sf=sf, interpolate=interpolate,
        shape=c.shape,
        fudge=c.fudge, kahn=_t(params.polarization, dtype, device),
        unpolarized=not isinstance(params.polarization, Tensor) and params.polarization == 0.0,
        nopolar=b.nopolar,
        polar_vector=vec(polar_vector), fluence=fluence, steps=steps, I_bg=I_bg,
        water_size=water, water_molecules=molecules, oversample_thick=bool(s.oversample_thick),
        oversample_polar=bool(s.oversample_polar), oversample_omega=bool(s.oversample_omega),
        dmin=s.dmin, roi=d.roi, mask=d.mask, params=params,
        hkl_count=sf.count)


def _scene_params(cfg: Config, params: SceneParams | None, messages: list,
                  random: "rng.NanoRandom") -> SceneParams:
    """``params``, or those of the flags: the -mat matrix read (unless the API passes the one it
    read once) and the -misset random angles drawn, in nanoBragg.c's order."""
    c, b = cfg.crystal, cfg.beam
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
    return params


def _detector(cfg: Config, params: SceneParams, dtype, device) -> DetectorGeometry:
    """The detector's geometry from its flags and the continuous parameters."""
    d = cfg.detector
    vec = lambda v: torch.tensor(v, dtype=dtype, device=device)  # noqa: E731
    px = _t(d.pixel_size, dtype, device)
    fc, sc = (_t(x, dtype, device) for x in params.beam_center)
    rx, ry, rz = (_t(x, dtype, device) for x in params.rotations)
    return detector_geometry(
        vec(d.fdet), vec(d.sdet), vec(d.odet), vec(d.beam), vec(d.twotheta_axis), rx, ry, rz,
        _t(params.twotheta, dtype, device), d.pivot, _t(params.distance, dtype, device),
        None if params.close_distance is None else _t(params.close_distance, dtype, device),
        fc, sc, fc, sc, px)


def _crystal_size(cfg: Config, params: SceneParams, lat: Lattice, kw: dict,
                  messages: list) -> tuple:
    """(N (3,) cell counts, crystal size (3,) in m as floats): -N, or -xtalsize over the cell
    (a ceil, at least 1); a differentiable N is kept as given."""
    c = cfg.crystal
    N_in = [_t(x, kw["dtype"], kw["device"]) for x in params.N]
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
            messages.append("nanobragg: warning: N < 1 is treated as N = 1 (nanoBragg.c cannot "
                            "model an isolated cell)")
        N = torch.tensor(Ns, **kw)
    xtal = [float(norm(v).detach()) * float(n) for v, n in zip((lat.a, lat.b, lat.c), N.detach())]
    messages.append("crystal is %g x %g x %g microns" % tuple(x * 1e6 for x in xtal))
    return N, xtal


def _oversample(cfg: Config, xtal: list, det: DetectorGeometry, messages: list) -> int:
    """Sub-pixels per pixel edge: -oversample, or nanoBragg.c's automatic choice (3 x crystal size
    over the reciprocal pixel size), with its warning when the given one is smaller."""
    d, b, s = cfg.detector, cfg.beam, cfg.sampling
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
    return oversample


def _polar_vector(cfg: Config, c_parity: bool, messages: list) -> tuple:
    """The polarization (E-) vector of the beam.

    C-parity quirk (polarization along the beam): nanoBragg.c keeps a polarization vector along
    the beam (zero polarization and divergence axes); the default mode takes the E-vector
    perpendicular to the beam that geometry.beam.e_vector picks."""
    d = cfg.detector
    if c_parity:
        return tuple(d.polar_vector)
    polar_vector = tuple(e_vector(torch.tensor(d.beam, dtype=torch.float64),
                                  torch.tensor(d.polar_vector, dtype=torch.float64)).tolist())
    if polar_vector != tuple(d.polar_vector):
        messages.append("nanobragg: warning: polarization vector %g %g %g lies along the beam: "
                        "using the E-vector %g %g %g perpendicular to it"
                        % (*d.polar_vector, *polar_vector))
    return polar_vector


def _sources(cfg: Config, polar_vector: tuple, dtype, device) -> SourceGrid:
    """The sources: a -sourcefile table, else the divergence x dispersion grid around the
    E-vector ``polar_vector``."""
    d, b = cfg.detector, cfg.beam
    if b.sourcefile is not None:
        from .io.sources import read_sourcefile
        sources = source_file_grid(read_sourcefile(b.sourcefile), d.beam, b.lambda0, dtype, device)
    else:
        sources = source_grid(d.beam, polar_vector, b.hdivrange, b.hdivstep, b.hdivsteps,
                              b.vdivrange, b.vdivstep, b.vdivsteps, b.round_div, b.dispersion,
                              b.dispstep, b.dispsteps, dtype, device)
    if sources.directions.shape[0] == 0:
        raise FlagError("-divergence: the divergence grid keeps no source")
    return sources


def spindle_orientations(cfg: Config, params: SceneParams, lat: Lattice, umats, c_parity: bool,
                         kw: dict) -> tuple:
    """(phis (Φ,) rad, orient (Φ, M, 3, 3) m, orient_first or None) for the φ range that
    ``params.phi0``/``params.phistep`` and ``cfg.sampling.phisteps`` describe (the c-parity φ=0
    carryover included). The only part of a scene that changes between the frames of a series."""
    phis = phi_angles(_t(params.phi0, **kw), _t(params.phistep, **kw), cfg.sampling.phisteps,
                      lat.a)
    spindle = torch.tensor(cfg.detector.spindle, **kw)
    if c_parity:
        orient, orient_first = carryover_orientations(lat.real, spindle, phis, umats)
    else:
        orient, orient_first = orientations(lat.real, spindle, phis, umats), None
    return phis, orient, orient_first


def rotated_scene(scene: Scene, cfg: Config, phi0=None) -> Scene:
    """``scene`` turned to another spindle start angle: the φ range of ``cfg`` (same φ steps),
    or ``phi0`` (rad, float or tensor) when given; everything else (detector, sources, structure
    factors, mosaic domains, crystal shape) is shared, not rebuilt. (SMV headers and reports
    read the frame's φ from ``cfg``, which the caller keeps with the frame's result.)"""
    params = replace(scene.params, phi0=cfg.sampling.phi0 if phi0 is None else phi0)
    kw = dict(dtype=scene.dtype, device=scene.device)
    phis, orient, orient_first = spindle_orientations(cfg, params, scene.lattice, scene.umats,
                                                      scene.c_parity, kw)
    grad = isinstance(params.phi0, Tensor) and params.phi0.requires_grad
    mode = replace(scene.mode, differentiable=scene.mode.differentiable or grad)
    return replace(scene, params=params, phis=phis, orient=orient,
                   orient_first=orient_first, mode=mode)


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
