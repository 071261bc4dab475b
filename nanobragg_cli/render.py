"""Drive the kernel over the detector in pixel chunks sized from a memory budget.

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

from .allocator import keep_freed_memory
from .c_order import first_executed_subiteration
from .kernel import pixel_geometry, render_chunk, scattering_vectors
from .scene import Scene
from .trace import trace_pixel

DEFAULT_MAX_MEMORY = 256 * 2 ** 20   # bytes of kernel temporaries per chunk
BYTES_PER_EVAL = 400                  # measured order of magnitude of live temporaries per eval
BYTES_PER_EVAL_INTERP = 2400          # tricubic interpolation gathers 64 neighbours per eval


@dataclass
class RenderResult:
    """image: (slow, fast) intensities (photons) on the scene's device and dtype, 0 outside the
    ROI/mask; omega_sum: Σ of solid angles over rendered sub-pixels (sr); traces: the
    :class:`~nanobragg_cli.trace.PixelTrace` of each traced pixel, keyed by (slow, fast)."""
    image: Tensor
    omega_sum: float
    traces: dict


def rendered_pixels(scene: Scene) -> Tensor:
    """(N,) flat indices (slow·fpixels + fast) of the pixels nanoBragg.c renders, raster order."""
    xmin, xmax, ymin, ymax = scene.roi
    F, S = scene.fpixels, scene.spixels
    keep = np.zeros((S, F), dtype=bool)
    keep[max(ymin, 0):min(ymax, S - 1) + 1, max(xmin, 0):min(xmax, F - 1) + 1] = True
    if scene.mask is not None:
        keep &= scene.mask != 0
    return torch.from_numpy(np.flatnonzero(keep.reshape(-1))).to(scene.device)


def chunk_pixels(scene: Scene, max_memory: int) -> int:
    """Pixels per chunk so that the kernel's temporaries stay within ``max_memory`` bytes."""
    per_eval = BYTES_PER_EVAL_INTERP if scene.interpolate else BYTES_PER_EVAL
    per_pixel = max(1, scene.evals_per_pixel()) * per_eval
    return max(1, int(max_memory // per_pixel))


def _chunk_workers(scene: Scene, n_chunks: int) -> int:
    """Chunks rendered concurrently: torch's thread count on the CPU, unless a chunk needs the
    previous one's state (--c-parity interpolation kill-switch) or autograd records the graph."""
    if scene.device.type != "cpu" or n_chunks < 2 or scene.mode.recording:
        return 1
    if scene.c_parity and scene.interpolate:
        # C-parity quirk (thread count): the kill-switch runs through the chunks in raster order,
        # as on nanoBragg.c's single thread, so they are rendered one after the other
        return 1
    return min(torch.get_num_threads(), n_chunks)


def render(scene: Scene, *, max_memory: int = DEFAULT_MAX_MEMORY,
           trace_pixels: list | tuple = (), window: tuple | None = None,
           progress: Callable[[int, int], None] | None = None) -> RenderResult:
    """Render the image; capture the kernel's intermediates for ``trace_pixels``, a list of
    (slow, fast) (pixels outside the ROI/mask are not rendered, hence not traced).

    ``window`` = (slow_min, slow_max, fast_min, fast_max), inclusive, computes only those pixels
    of the run (others stay 0) while keeping the run's state as if the whole ROI were rendered:
    the φ=0 carryover of --c-parity still starts at the run's first pixel, and under the
    interpolation kill-switch of --c-parity every pixel before the window's last one is
    evaluated in raster order (then cleared), since any of them may switch interpolation off.
    """
    if scene.device.type == "cpu":
        keep_freed_memory()
    pix = rendered_pixels(scene)
    chunk = chunk_pixels(scene, max_memory // max(1, torch.get_num_threads()))
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
    n = pix.numel()
    trace_at = {}
    for s, f in trace_pixels:
        hits = (pix == s * scene.fpixels + f).nonzero()
        if hits.numel():
            trace_at[int(hits[0, 0])] = (s, f)

    killed = torch.zeros((), dtype=torch.bool, device=scene.device)
    values, omega_sum, traces = [], 0.0, {}
    starts = list(range(0, n, chunk))

    def job(start, killed):
        stop = min(start + chunk, n)
        first_local = None
        if first is not None and start <= first[0] < stop:
            first_local = (first[0] - start,) + tuple(first[1:])
        out = render_chunk(scene, pix[start:stop], killed, first_local)
        found = {px: trace_pixel(scene, pix[k:k + 1], out, k - start, killed, first_local)
                 for k, px in trace_at.items() if start <= k < stop}
        return out, found, stop

    grad = scene.mode.recording
    flat_image = torch.zeros(scene.spixels * scene.fpixels, dtype=scene.dtype, device=scene.device)

    def collect(result):
        nonlocal omega_sum
        out, found, stop = result
        traces.update(found)
        if grad:   # keep the graph: assemble once at the end
            values.append(out.values)
        else:      # write in place: no list of chunks, no concatenated copy
            flat_image[pix[stop - out.values.shape[0]:stop]] = out.values
        omega_sum = omega_sum + out.omega_sum.detach()  # a report figure, not differentiated
        if progress is not None:
            progress(stop, n)
        return out

    workers = _chunk_workers(scene, len(starts))
    if workers > 1:
        # independent chunks on separate cores: each op runs single-threaded on its own chunk,
        # which scales far better than splitting every small op across threads
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                pending = deque()
                for start in starts:   # a bounded window of chunks in flight, collected in order
                    pending.append(pool.submit(job, start, killed))
                    if len(pending) > 2 * workers:
                        collect(pending.popleft().result())
                while pending:
                    collect(pending.popleft().result())
        finally:
            torch.set_num_threads(threads)
    else:
        for start in starts:
            killed = collect(job(start, killed)).killed
    if values:
        flat_image = flat_image.index_put((pix,), torch.cat(values))
    if outside is not None:
        flat_image = flat_image.index_fill(0, outside, 0.0)
    return RenderResult(image=flat_image.reshape(scene.spixels, scene.fpixels).to(scene.work_dtype),
                        omega_sum=float(omega_sum), traces=traces)
