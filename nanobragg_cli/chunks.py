"""The kernel over the detector in pixel chunks sized from a memory budget: which pixels are
rendered, the chunk plan, the concurrent map over chunks and the no-grad forward pass (used by
:mod:`nanobragg_cli.render` and, for gradients, :mod:`nanobragg_cli.render_grad`).

Pixels are visited in raster order (slow-major) inside the ROI and the mask, as nanoBragg.c's
single thread does, which the c-parity quirks with state (φ=0 carryover, interpolation
kill-switch; :mod:`nanobragg_cli.c_order`) rely on.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .c_order import first_executed_subiteration
from .fused import run_chunks as run_fused_chunks
from .kernel import pixel_geometry, render_chunk, scattering_vectors
from .scene import Scene
from .trace import trace_pixel

DEFAULT_MAX_MEMORY = 256 * 2 ** 20   # bytes of kernel temporaries per chunk
BYTES_PER_EVAL = 400                  # measured order of magnitude of live temporaries per eval
BYTES_PER_EVAL_INTERP = 2400          # tricubic interpolation gathers 64 neighbours per eval
BYTES_PER_EVAL_GRAD = 1600            # a chunk's autograd graph (saved tensors) per eval, measured
# pixels per chunk on the CPU at most, whatever the budget: where a pixel is one or a few
# evaluations, larger chunks only make every per-pixel tensor outgrow the cache (measured
# slower) and raise the peak RSS; smaller ones pay the per-chunk cost of ~100 tensor operations
# (docs/performance.md, "Peak memory")
MAX_CHUNK_PIXELS = 1 << 17


def _rendered_keep(scene: Scene) -> np.ndarray:
    """(slow·fast,) bool: the pixels nanoBragg.c renders (inside the ROI and the mask)."""
    xmin, xmax, ymin, ymax = scene.roi
    F, S = scene.fpixels, scene.spixels
    keep = np.zeros((S, F), dtype=bool)
    keep[max(ymin, 0):min(ymax, S - 1) + 1, max(xmin, 0):min(xmax, F - 1) + 1] = True
    if scene.mask is not None:
        keep &= scene.mask != 0
    return keep.reshape(-1)


def _roi_rectangle(scene: Scene) -> tuple:
    """(first slow row, first fast column, rows, columns) of the ROI clipped to the detector."""
    xmin, xmax, ymin, ymax = scene.roi
    F, S = scene.fpixels, scene.spixels
    s0, f0 = max(ymin, 0), max(xmin, 0)
    return s0, f0, max(0, min(ymax, S - 1) + 1 - s0), max(0, min(xmax, F - 1) + 1 - f0)


class RasterPixels:
    """The rendered pixels of an unmasked ROI rectangle, without a per-pixel index list: behaves
    as the (N,) int64 tensor of their flat indices (slow·fpixels + fast, raster order) for
    ``numel()`` and slicing ``[a:b]``, which builds only that chunk's indices. Pixel k is
    (s0 + k // cols)·fpixels + f0 + k % cols."""

    def __init__(self, s0: int, f0: int, rows: int, cols: int, fpixels: int, device):
        self.s0, self.f0, self.rows, self.cols = s0, f0, rows, cols
        self.fpixels, self.device = fpixels, device
        n = rows * cols if rows and cols else 0
        self.n = n

    def numel(self) -> int:
        return self.n

    @property
    def contiguous(self) -> bool:
        """Whole rows: pixel k is flat index base + k."""
        return self.cols == self.fpixels

    @property
    def base(self) -> int:
        return self.s0 * self.fpixels + self.f0

    def __getitem__(self, sl: slice) -> Tensor:
        start, stop, step = sl.indices(self.n)
        k = torch.arange(start, stop, step, device=self.device)
        if self.contiguous:
            return k + self.base
        return (k // self.cols + self.s0) * self.fpixels + (k % self.cols + self.f0)

    def position(self, flat: int) -> int | None:
        """Index k of the pixel with flat index ``flat``, or None if it is not rendered."""
        s, f = divmod(flat, self.fpixels)
        if self.s0 <= s < self.s0 + self.rows and self.f0 <= f < self.f0 + self.cols:
            return (s - self.s0) * self.cols + (f - self.f0)
        return None

    def tensor(self) -> Tensor:
        return self[0:self.n]


def rendered_pixels(scene: Scene) -> Tensor:
    """(N,) flat indices (slow·fpixels + fast) of the pixels nanoBragg.c renders, raster order."""
    return torch.from_numpy(np.flatnonzero(_rendered_keep(scene))).to(scene.device)


def pixel_list(scene: Scene):
    """The rendered pixels as :func:`rendered_pixels` lists them: a :class:`RasterPixels` (no
    per-pixel array) where there is no mask, else the (N,) int64 tensor."""
    if scene.mask is None:
        return RasterPixels(*_roi_rectangle(scene), scene.fpixels, scene.device)
    return rendered_pixels(scene)


def as_tensor(pix) -> Tensor:
    """The (N,) int64 flat indices of ``pix`` (a tensor or a :class:`RasterPixels`)."""
    return pix.tensor() if isinstance(pix, RasterPixels) else pix


def rendered_selection(scene: Scene):
    """The rendered pixels as a numpy index into the flat (slow·fast,) image, raster order: a
    slice where they are whole rows without a mask, else a (slow·fast,) bool mask. Either
    selects the same values, in the same order, as :func:`rendered_pixels` without its 8 bytes
    per pixel."""
    if scene.mask is None:
        s0, f0, rows, cols = _roi_rectangle(scene)
        if cols == scene.fpixels or rows == 0 or cols == 0:
            base = s0 * scene.fpixels if rows and cols else 0
            return slice(base, base + rows * cols)
    return _rendered_keep(scene)


def chunk_pixels(scene: Scene, max_memory: int) -> int:
    """Pixels per chunk so that the kernel's temporaries stay within ``max_memory`` bytes, on the
    CPU at most :data:`MAX_CHUNK_PIXELS`."""
    per_eval = BYTES_PER_EVAL_INTERP if scene.interpolate else BYTES_PER_EVAL
    per_pixel = max(1, scene.evals_per_pixel()) * per_eval
    chunk = max(1, int(max_memory // per_pixel))
    return min(chunk, MAX_CHUNK_PIXELS) if scene.device.type == "cpu" else chunk


@dataclass
class ChunkPlan:
    """The pixels of a render and how they are cut into chunks: pix (N,) flat indices in raster
    order (a tensor, or a :class:`RasterPixels` that builds each chunk's indices); chunk: pixels
    per chunk; first: the --c-parity first sub-iteration (index in pix, layer, sub-pixel,
    source) or None; starts: index in pix of each chunk's first pixel;
    outside: flat indices of pixels rendered only for the run's state (cleared after);
    kernel: which kernel rendered it, "eager" or "fused" (:mod:`nanobragg_cli.fused`)."""
    scene: Scene
    pix: "Tensor | RasterPixels"
    chunk: int
    first: tuple | None
    starts: list
    outside: Tensor | None = None
    kernel: str = "eager"

    def stop(self, start: int) -> int:
        return min(start + self.chunk, self.pix.numel())

    def first_local(self, start: int) -> tuple | None:
        """The first sub-iteration relative to the chunk starting at ``start``, if it holds it."""
        f = self.first
        if f is not None and start <= f[0] < self.stop(start):
            return (f[0] - start,) + tuple(f[1:])
        return None


def plan_chunks(scene: Scene, max_memory: int, window: tuple | None = None,
                grad: bool = False) -> ChunkPlan:
    """The rendered pixels (inside ROI, mask and ``window``) in chunks that keep each worker's
    temporaries -- and with ``grad`` one chunk's autograd graph -- within its share of
    ``max_memory`` (bytes, shared by torch's threads)."""
    pix = pixel_list(scene) if window is None else rendered_pixels(scene)
    budget = max_memory // max(1, torch.get_num_threads())
    if grad:
        per_pixel = max(1, scene.evals_per_pixel()) * max(
            BYTES_PER_EVAL_GRAD, BYTES_PER_EVAL_INTERP if scene.interpolate else 0)
        chunk = max(1, int(budget // per_pixel))
    else:
        chunk = chunk_pixels(scene, budget)
    first = outside = None
    if scene.orient_first is not None:
        first = first_executed_subiteration(
            scene, pix, chunk,
            lambda sel: scattering_vectors(scene, pixel_geometry(scene, sel).diffracted)[1])
    if window is not None:
        s0, s1, f0, f1 = window
        sp, fp = pix // scene.fpixels, pix % scene.fpixels
        inside = (sp >= s0) & (sp <= s1) & (fp >= f0) & (fp <= f1)
        keep = inside.nonzero()[:, 0]
        if scene.c_parity and scene.interpolate and keep.numel():
            # C-parity quirk (interpolation kill-switch): the pixels before the window count
            keep = torch.arange(int(keep[-1]) + 1, device=pix.device)
            outside = pix[:keep.numel()][~inside[:keep.numel()]]
        if first is not None:
            hit = (keep == first[0]).nonzero()
            first = (int(hit[0, 0]),) + tuple(first[1:]) if hit.numel() else None
        pix = pix[keep]
    return ChunkPlan(scene, pix, chunk, first, list(range(0, pix.numel(), chunk)), outside)


def chunk_workers(scene: Scene, n_chunks: int, sequential: bool) -> int:
    """Chunks rendered concurrently: torch's thread count on the CPU, unless ``sequential`` (a
    chunk needs the previous one's state) or on another device."""
    if scene.device.type != "cpu" or n_chunks < 2 or sequential:
        return 1
    return min(torch.get_num_threads(), n_chunks)


def sequential_state(scene: Scene) -> bool:
    """A chunk needs the state the previous one leaves (--c-parity interpolation kill-switch)."""
    # C-parity quirk (thread count): the kill-switch runs through the chunks in raster order, as
    # on nanoBragg.c's single thread, so they are rendered one after the other
    return bool(scene.c_parity and scene.interpolate)


def map_chunks(plan: ChunkPlan, job: Callable, collect: Callable, *, sequential: bool,
               state=None) -> None:
    """Run ``job(start, state)`` for each chunk start and ``collect(result)`` on each result in
    chunk order. Sequential: each job gets the state the previous collect returned. Otherwise
    independent chunks run on separate cores, each op single-threaded on its own chunk (which
    scales far better than splitting every small op across threads), with a bounded window of
    chunks in flight."""
    starts = plan.starts
    workers = chunk_workers(plan.scene, len(starts), sequential)
    if workers <= 1:
        for start in starts:
            out = collect(job(start, state))
            if sequential:
                state = out
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            pending = deque()
            for start in starts:
                pending.append(pool.submit(job, start, state))
                if len(pending) > 2 * workers:
                    collect(pending.popleft().result())
            while pending:
                collect(pending.popleft().result())
    finally:
        torch.set_num_threads(threads)


def forward_chunks(plan: ChunkPlan, trace_pixels, progress, dest: Tensor, where: Tensor) -> tuple:
    """The no-grad render of ``plan``: each chunk's values written into ``dest[where[k]]`` for
    its pixels k (``where``: (N,) indices into dest). Returns (Σ solid angles as a 0-dim tensor,
    traces {(slow, fast): intermediates}, {chunk start: kill-switch state before the chunk})."""
    scene, pix = plan.scene, plan.pix
    n = pix.numel()
    trace_at = {}
    for s, f in trace_pixels:
        if isinstance(pix, RasterPixels):
            k = pix.position(s * scene.fpixels + f)
            if k is not None:
                trace_at[k] = (s, f)
            continue
        hits = (pix == s * scene.fpixels + f).nonzero()
        if hits.numel():
            trace_at[int(hits[0, 0])] = (s, f)
    traces, states = {}, {}
    omega_sum = torch.zeros((), dtype=scene.dtype, device=scene.device)

    def job(start, killed, kernel=render_chunk):
        stop = plan.stop(start)
        first_local = plan.first_local(start)
        with torch.no_grad():
            out = kernel(scene, pix[start:stop], killed, first_local)
            found = {px: trace_pixel(scene, pix[k:k + 1], out, k - start, killed, first_local)
                     for k, px in trace_at.items() if start <= k < stop}
        return start, killed, out, found

    def collect(result):
        nonlocal omega_sum
        start, killed, out, found = result
        stop = plan.stop(start)
        states[start] = killed
        traces.update(found)
        if isinstance(where, RasterPixels) and where.contiguous:
            dest[where.base + start:where.base + stop] = out.values
        else:   # in place: no list of chunks, no concatenated copy
            dest[where[start:stop]] = out.values
        omega_sum = omega_sum + out.omega_sum  # a report figure, not differentiated
        if progress is not None:
            progress(stop, n)
        return out.killed

    killed = torch.zeros((), dtype=torch.bool, device=scene.device)

    if not run_fused_chunks(plan, job, collect, killed, bool(trace_at)):
        map_chunks(plan, job, collect, sequential=sequential_state(scene), state=killed)
    return omega_sum, traces, states
