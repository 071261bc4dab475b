"""The differentiable Python API: nanoBragg.c flags in, a torch image out, gradients in every
continuous parameter.

A :class:`Simulator` parses the flags once (the CLI's own code path: ``simulate.prepare`` then
``scene.build_scene`` and ``render.render``), reads the input files once (HKL/Fdump, A matrix),
fixes the decisions nanoBragg.c makes from the crystal (automatic oversampling, N from
``-xtalsize``), and then renders the image for any :class:`~nanobragg_cli.scene.SceneParams`:
the scene's tensors are rebuilt from the parameters on every call (cheap next to the kernel), so
the image is a differentiable function of each parameter tensor that requires grad.

Parameters live in SI units (m, rad) with two crystallographic exceptions, the cell lengths (Å)
and the A matrix (Å⁻¹); :func:`to_si` / :func:`from_si` convert from/to the units of the
matching nanoBragg.c flag (mm, degrees, Å), see :data:`UNITS`.

    sim = Simulator.from_flags("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 "
                               "-distance 100 -detpixels 64 -pixel 0.1")
    x = sim.parameters(["distance"], units="flag")       # {'distance': 100 mm, requires grad}
    image = sim.render(x, units="flag")                  # (64, 64) photons/pixel
    image.sum().backward()                               # x["distance"].grad: photons per mm
"""

from dataclasses import dataclass, fields, replace
import math
import shlex
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from . import rng
from .config import Config
from .errors import NanoBraggError
from .mode import Mode
from .render import DEFAULT_MAX_MEMORY, render as render_scene
from .scene import Scene, SceneParams, build_scene
from .structure_factors import StructureFactors

_DEG = math.pi / 180.0


@dataclass(frozen=True)
class Unit:
    """How one parameter is stored (``si``) and how its nanoBragg.c flag writes it (``flag``);
    ``factor``: the SI value of one flag unit (a tuple for mixed vectors such as the cell)."""
    si: str
    flag: str
    factor: float | tuple
    shape: str
    meaning: str


UNITS = {
    "cell": Unit("Å ×3, rad ×3", "Å ×3, deg ×3", (1.0, 1.0, 1.0, _DEG, _DEG, _DEG), "(6,)",
                 "a, b, c, α, β, γ (-cell); None when the crystal comes from -mat"),
    "amat": Unit("Å⁻¹", "Å⁻¹", 1.0, "(3, 3)",
                 "rows a*, b*, c* before misset, already scaled by λ/1 Å as nanoBragg.c does "
                 "(-mat); None for -cell"),
    "misset": Unit("rad", "deg", _DEG, "(3,)", "rotations about x, y, z of the reciprocal "
                                              "cell (-misset; zeros when not given)"),
    "phi0": Unit("rad", "deg", _DEG, "()", "spindle angle of the first φ step (-phi)"),
    "phistep": Unit("rad", "deg", _DEG, "()", "spindle increment per φ step (-phistep)"),
    "distance": Unit("m", "mm", 1e-3, "()", "sample to beam spot along the beam (-distance)"),
    "close_distance": Unit("m", "mm", 1e-3, "()", "sample to detector plane along its normal "
                                                  "(-close_distance; None when not given)"),
    "beam_center": Unit("m", "mm", 1e-3, "(2,)",
                        "(fast, slow) detector-frame coordinates: the beam spot (Fbeam, Sbeam) "
                        "for the BEAM pivot, the near point (Fclose, Sclose) for SAMPLE; not "
                        "-Xbeam/-Ybeam, whose axes and ½-pixel offset depend on the convention"),
    "rotations": Unit("rad", "deg", _DEG, "(3,)", "detector rotations about x, y, z "
                                                  "(-detector_rotx/y/z)"),
    "twotheta": Unit("rad", "deg", _DEG, "()", "detector swing about the 2θ axis (-twotheta)"),
    "wavelength": Unit("m", "Å", 1e-10, "()", "central wavelength (-lambda)"),
    "fluence": Unit("photons/m²", "photons/m²", 1.0, "()", "incident fluence (-fluence)"),
    "polarization": Unit("1", "1", 1.0, "()", "Kahn polarization factor (-polar)"),
    "N": Unit("cells", "cells", 1.0, "(3,)",
              "Na, Nb, Nc (-N/-Na/-Nb/-Nc or from -xtalsize); continuous when it requires grad"),
    "mosaic_spread": Unit("rad", "deg", _DEG, "()",
                          "mosaic spread (-mosaic); the domains' random axes are kept"),
    "fhkl": Unit("electrons", "electrons", 1.0, "grid",
                 "structure factors on the (h, k, l) grid of the -hkl table; None without one"),
}
PARAMETER_NAMES = tuple(f.name for f in fields(SceneParams))


def _factor(name: str, like: Tensor) -> Tensor | float:
    f = UNITS[name].factor
    if isinstance(f, tuple):
        return torch.tensor(f, dtype=like.dtype, device=like.device)
    return f


def _check_units(units: str) -> None:
    if units not in ("si", "flag"):
        raise NanoBraggError(f"units: expected 'si' or 'flag', got {units!r}")


def to_si(name: str, value) -> Tensor:
    """``value`` of parameter ``name`` given in its flag's units (mm, deg, Å) → SI (a
    differentiable product, so a leaf in flag units can be optimised directly)."""
    _known(name)
    value = torch.as_tensor(value) if not isinstance(value, Tensor) else value
    return value * _factor(name, value)


def from_si(name: str, value) -> Tensor:
    """``value`` of parameter ``name`` in SI → its flag's units (differentiable)."""
    _known(name)
    value = torch.as_tensor(value) if not isinstance(value, Tensor) else value
    return value / _factor(name, value)


def _known(name: str) -> None:
    if name not in UNITS:
        raise NanoBraggError(f"{name}: not a parameter; expected one of "
                             f"{', '.join(PARAMETER_NAMES)}")


class Simulator:
    """A nanoBragg.c simulation as a differentiable torch function of its parameters.

    Build it with :meth:`from_flags` or :meth:`from_config`. Attributes: ``config`` (the resolved
    :class:`~nanobragg_cli.config.Config`, with the automatic oversampling and N fixed at their
    first values so the image stays a smooth function while parameters move), ``params`` (a
    :class:`~nanobragg_cli.scene.SceneParams` of tensors on ``device``/``dtype``: the values the
    flags describe), ``structure_factors`` (read once), ``c_parity``, ``device``, ``dtype``,
    ``messages`` (nanoBragg-style setup lines of the first build).
    """

    def __init__(self, config: Config, *, c_parity: bool = False, device="cpu",
                 dtype: torch.dtype = torch.float64, max_memory: int = DEFAULT_MAX_MEMORY,
                 compile: str = "auto"):
        device = torch.device(device)
        if compile not in ("auto", "on", "off"):
            raise NanoBraggError(f"compile: expected 'auto', 'on' or 'off', got {compile!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise NanoBraggError(f"device {device}: no CUDA device is available (torch "
                                 f"{torch.__version__} sees none); use device='cpu'")
        if dtype not in (torch.float64, torch.float32):
            raise NanoBraggError(f"dtype: expected torch.float64 or torch.float32, got {dtype}")
        self.mode = Mode.choose(c_parity=c_parity, dtype=dtype, device=device, compile=compile)
        self.c_parity = self.mode.c_parity
        self.device = device
        self.dtype = dtype
        self.max_memory = int(max_memory)
        self.messages = []
        first = build_scene(config, mode=self.mode, messages=self.messages, random=rng.NanoRandom())
        self.structure_factors: StructureFactors = first.sf
        c = config.crystal
        n_eff = tuple(float(x) for x in first.N.detach().cpu())
        # Freeze what nanoBragg.c decides from the crystal: N from -xtalsize (a ceil) and the
        # automatic oversampling would otherwise jump while a refined cell or distance moves.
        self.config = replace(
            config,
            sampling=replace(config.sampling, oversample=first.oversample),
            crystal=replace(c, Na=n_eff[0], Nb=n_eff[1], Nc=n_eff[2],
                            sample_x=0.0, sample_y=0.0, sample_z=0.0))
        self.params = self._as_tensors(first.params, n_eff)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_flags(cls, argv: Sequence[str] | str, *, c_parity: bool | None = None,
                   device=None, dtype: torch.dtype | None = None,
                   max_memory: int = DEFAULT_MAX_MEMORY,
                   compile: str | None = None) -> "Simulator":
        """From nanoBragg.c flags (a list, or one string split like a shell would). Tool options
        ``--c-parity``, ``--device``, ``--dtype``, ``--compile`` are understood too; keyword
        arguments win.
        Output flags (-floatfile, ...) are accepted and ignored: nothing is written, except the
        Fdump.bin cache that -hkl writes in the current folder, as on the command line."""
        from .simulate import prepare, split_tool_options
        if isinstance(argv, str):
            argv = shlex.split(argv)
        flags, tool = split_tool_options(list(argv))
        if dtype is None:
            dtype = torch.float64 if tool.dtype == "float64" else torch.float32
        return cls(prepare(flags), c_parity=tool.c_parity if c_parity is None else c_parity,
                   device=tool.device if device is None else device, dtype=dtype,
                   max_memory=max_memory, compile=tool.compile if compile is None else compile)

    @classmethod
    def from_config(cls, config: Config, **kw) -> "Simulator":
        """From a resolved Config (``simulate.prepare(argv)``); keywords as the constructor."""
        return cls(config, **kw)

    def _tensor(self, value) -> Tensor:
        if isinstance(value, Tensor):
            return value.detach().to(dtype=self.dtype, device=self.device).clone()
        return torch.tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype,
                            device=self.device)

    def _as_tensors(self, p: SceneParams, n_eff: tuple) -> SceneParams:
        t = self._tensor
        sf = self.structure_factors
        return SceneParams(
            cell=None if p.cell is None else t(p.cell),
            amat=None if p.amat is None else t(p.amat),
            misset=t((0.0, 0.0, 0.0) if p.misset is None else p.misset),
            phi0=t(p.phi0), phistep=t(p.phistep), distance=t(p.distance),
            close_distance=None if p.close_distance is None else t(p.close_distance),
            beam_center=t(p.beam_center), rotations=t(p.rotations), twotheta=t(p.twotheta),
            wavelength=t(p.wavelength), fluence=t(p.fluence), polarization=t(p.polarization),
            N=t(n_eff), mosaic_spread=t(p.mosaic_spread),
            fhkl=t(sf.grid) if sf.grid is not None and sf.count > 0 else None)

    # --- parameters -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """(slow, fast) pixel counts of the image."""
        return self.config.detector.shape

    def get(self, name: str, *, units: str = "si", params: SceneParams | None = None) -> Tensor:
        """Parameter ``name`` of ``params`` (default: :attr:`params`) in SI or flag units."""
        _check_units(units)
        _known(name)
        value = getattr(self.params if params is None else params, name)
        if value is None:
            return None
        value = value if isinstance(value, Tensor) else self._tensor(value)
        return from_si(name, value) if units == "flag" else value

    def parameters(self, names: Sequence[str] | str, *, units: str = "si",
                   params: SceneParams | None = None) -> dict:
        """Fresh leaf tensors (``requires_grad=True``) holding the current values of ``names``,
        in SI or in the flags' units (``units="flag"``: mm, deg, Å -- better scaled for an
        optimiser). Give the dict to :meth:`render` (with the same ``units``) and its values to a
        ``torch.optim`` optimiser. ``params`` defaults to :attr:`params`."""
        _check_units(units)
        if isinstance(names, str):
            names = [names]
        base = self.params if params is None else params
        out = {}
        for name in names:
            _known(name)
            value = self.get(name, units=units, params=base)
            if value is None:
                raise NanoBraggError(f"{name}: {_missing_hint(name)}")
            out[name] = value.detach().clone().requires_grad_(True)
        return out

    def with_values(self, values: Mapping, *, units: str = "si",
                    params: SceneParams | None = None) -> SceneParams:
        """A copy of ``params`` (default :attr:`params`) with the fields in ``values`` replaced,
        converted from flag units first when ``units="flag"`` (differentiably)."""
        _check_units(units)
        base = self.params if params is None else params
        changes = {}
        for name, value in values.items():
            _known(name)
            changes[name] = to_si(name, value) if units == "flag" else value
        return replace(base, **changes)

    # --- rendering ------------------------------------------------------------------------------
    def scene(self, params: SceneParams | Mapping | None = None, *, units: str = "si") -> Scene:
        """The kernel's :class:`~nanobragg_cli.scene.Scene` for ``params`` (rebuilt each call)."""
        p = self._resolve(params, units)
        return build_scene(self.config, mode=self.mode, params=p,
                           structure_factors=self.structure_factors, messages=[],
                           random=rng.NanoRandom())

    def render(self, params: SceneParams | Mapping | None = None, *, units: str = "si",
               window: tuple | None = None, roi: tuple | None = None,
               pixels=None) -> Tensor:
        """The float image in photons/pixel, (slow, fast), on ``device`` in ``dtype``:
        what -floatfile holds, before the float32 cast. Differentiable in every tensor of
        ``params`` that requires grad; the backward pass renders each pixel chunk again, so
        memory stays within the ``max_memory`` budget whatever the detector size.

        params: a SceneParams, or a mapping {name: value} of the parameters to change from
        :attr:`params` (in ``units``: "si" or "flag"); None renders :attr:`params`.
        window: (slow_min, slow_max, fast_min, fast_max), inclusive: only those pixels are
        computed, the rest of the image is 0 (run state as for the whole ROI, see render.render).
        roi: (fast_min, fast_max, slow_min, slow_max), inclusive, as -roi xmin xmax ymin ymax:
        replaces the flags' ROI (pixels outside are 0).
        pixels: (P, 2) integer (slow, fast) pairs: only those pixels are computed and a (P,)
        tensor of their values is returned (0 for pixels outside the ROI/mask).
        """
        scene, index = self._selected_scene(params, units, roi, pixels)
        image = render_scene(scene, max_memory=self.max_memory, window=window).image
        if index is not None:
            index = index.to(self.device)
            return image[index[:, 0], index[:, 1]]
        return image

    def render_loss(self, params: SceneParams | Mapping | None = None, *, target=None,
                    weights=None, loss=None, units: str = "si", window: tuple | None = None,
                    roi: tuple | None = None, pixels=None) -> Tensor:
        """A loss summed over pixel chunks, without holding the image or its graph: a 0-dim
        tensor, differentiable in the tensors of ``params`` that require grad (``.backward()``
        works; its gradient is computed with the loss, chunk by chunk, within ``max_memory``).

        target: (slow, fast) image: the loss is ½·Σ weights·(image − target)² over the rendered
        pixels (weights: (slow, fast), default 1; pixels of weight 0 are not rendered).
        loss: instead, a callable ``loss(values, pixels) -> 0-dim tensor`` for one chunk --
        values (P,) photons, pixels (P, 2) long (slow, fast) -- summed over chunks (so it must
        be a sum over pixels, e.g. a Poisson negative log-likelihood); ``weights`` then only
        selects pixels (≠ 0). params, units, window, roi, pixels select as in :meth:`render`.
        Not differentiable twice (use :meth:`render` for Jacobians).
        """
        from .chunks import plan_chunks
        from .render_grad import chunked_loss
        if (target is None) == (loss is None):
            raise NanoBraggError("render_loss: give exactly one of target= (an image) and loss= "
                                 "(a callable)")
        S, F = self.shape
        shape_error = "{}: expected a ({}, {}) image of the detector, got shape {}"
        weight_flat = None
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
            if tuple(weights.shape) != (S, F):
                raise NanoBraggError(shape_error.format("weights", S, F, tuple(weights.shape)))
            weight_flat = weights.reshape(-1)
        select = None if weights is None else (weights.detach() != 0).cpu().numpy()
        scene, _ = self._selected_scene(params, units, roi, pixels, keep=select)
        if target is not None:
            target = torch.as_tensor(target, dtype=self.dtype, device=self.device)
            if tuple(target.shape) != (S, F):
                raise NanoBraggError(shape_error.format("target", S, F, tuple(target.shape)))
            target_flat = target.reshape(-1)

            def loss_of_chunk(values, pix):
                r = values - target_flat[pix]
                if weight_flat is None:
                    return 0.5 * (r * r).sum()
                return 0.5 * (weight_flat[pix] * r * r).sum()
        else:
            def loss_of_chunk(values, pix):
                return loss(values, torch.stack((pix // F, pix % F), dim=1))
        grad = scene.mode.differentiable and torch.is_grad_enabled()
        plan = plan_chunks(scene, self.max_memory, window, grad=grad)
        return chunked_loss(plan, loss_of_chunk)

    def _selected_scene(self, params, units: str, roi, pixels, keep=None) -> tuple:
        """(scene with ``roi`` and a mask keeping only ``pixels`` and ``keep`` (a (slow, fast)
        bool array), the (P, 2) pixel index or None)."""
        scene = self.scene(params, units=units)
        S, F = self.shape
        if roi is not None:
            roi = tuple(int(v) for v in roi)
            if len(roi) != 4 or roi[0] > roi[1] or roi[2] > roi[3] or roi[1] < 0 or roi[3] < 0 \
                    or roi[0] >= F or roi[2] >= S:
                raise NanoBraggError(f"roi {roi}: expected (fast_min, fast_max, slow_min, "
                                     f"slow_max) selecting pixels of the {F}x{S} detector")
            scene = replace(scene, roi=roi)
        index = None
        mask = None
        if pixels is not None:
            index = torch.as_tensor(np.asarray(pixels, dtype=np.int64).reshape(-1, 2))
            if index.numel() and (index.min() < 0 or int(index[:, 0].max()) >= S or
                                  int(index[:, 1].max()) >= F):
                raise NanoBraggError(f"pixels: (slow, fast) pairs must lie inside the {S}x{F} "
                                     "detector")
            mask = np.zeros((S, F), dtype=np.uint8)
            mask[index[:, 0].numpy(), index[:, 1].numpy()] = 1
        if keep is not None:
            keep = np.asarray(keep, dtype=np.uint8)
            mask = keep if mask is None else mask & keep
        if mask is not None:
            if scene.mask is not None:
                mask &= (np.asarray(scene.mask) != 0).astype(np.uint8)
            scene = replace(scene, mask=mask)
        return scene, index

    def render_series(self, frames: int, params: SceneParams | Mapping | None = None, *,
                      osc=None, units: str = "si", window: tuple | None = None) -> Iterator[Tensor]:
        """The float images of a rotation series, one (slow, fast) tensor per frame, lazily.

        Frame i starts at φ0 + i·osc (``osc`` default: the flags' -osc; rad, or deg with
        ``units="flag"``; a tensor is differentiable too) and covers the flags' φ steps, like
        :meth:`render` with ``phi0`` moved. The scene (detector, sources, structure factors,
        mosaic domains) is built once; each frame only turns the crystal. Every frame is
        differentiable in the tensors of ``params`` that require grad, as :meth:`render` is.
        (The command line's --frames computes φ0 + i·osc in decimal, on the flags' text; here
        it is tensor arithmetic, which may differ in the last bit.)
        """
        from .scene import rotated_scene
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise NanoBraggError(f"frames: expected a positive integer, got {frames!r}")
        p = self._resolve(params, units)
        if osc is None:
            step = self._tensor(self.config.sampling.osc)
        else:
            step = to_si("phistep", osc) if units == "flag" else osc
        base = self.scene(p)

        def frames_iter():
            from .fused import images_of_run
            for i in range(frames):
                scene = rotated_scene(base, self.config, phi0=p.phi0 + i * step)
                with images_of_run(frames):     # --compile auto weighs the whole series
                    image = render_scene(scene, max_memory=self.max_memory, window=window).image
                yield image
        return frames_iter()

    def _resolve(self, params, units: str) -> SceneParams:
        if params is None:
            p = self.params
        elif isinstance(params, SceneParams):
            p = params
        elif isinstance(params, Mapping):
            p = self.with_values(params, units=units)
        else:
            raise NanoBraggError("params: expected a SceneParams, a mapping {name: value} or None")
        self._check(p)
        return p

    def _check(self, p: SceneParams) -> None:
        """Refuse parameters the flags give nothing to act on (they would be silently ignored)."""
        c = self.config.crystal
        spread = p.mosaic_spread
        if c.mosaic_spread <= 0.0 and isinstance(spread, Tensor) and \
                spread is not self.params.mosaic_spread and \
                (spread.requires_grad or bool(spread.detach() != 0.0)):
            raise NanoBraggError("mosaic_spread: the flags define no mosaic domains; give "
                                 "-mosaic DEG and -mosaic_domains N to refine the spread")
        if p.fhkl is not None and self.structure_factors.count == 0:
            raise NanoBraggError("fhkl: the flags give no structure-factor table (-hkl FILE)")
        if p.cell is None and p.amat is None:
            raise NanoBraggError("cell/amat: one of them must be given")

    def __repr__(self) -> str:
        S, F = self.shape
        return (f"Simulator({F}x{S} pixels, oversample {self.config.sampling.oversample}, "
                f"{'--c-parity' if self.c_parity else 'default mode'}, {self.device}, "
                f"{str(self.dtype).replace('torch.', '')})")


def _missing_hint(name: str) -> str:
    return {
        "cell": "this crystal comes from an A matrix (-mat); refine 'amat' instead",
        "amat": "this crystal comes from -cell; refine 'cell' instead",
        "close_distance": "not given by the flags (-close_distance); refine 'distance' instead",
        "fhkl": "the flags give no structure-factor table (-hkl FILE)",
    }.get(name, "not set")
