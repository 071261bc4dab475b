"""Render a scene's image: the chunk plan (:mod:`nanobragg_cli.chunks`) driven without
gradients, or, when autograd records, through :mod:`nanobragg_cli.render_grad`.

Pixels are visited in raster order (slow-major) inside the ROI and the mask, as nanoBragg.c's
single thread does, which the c-parity quirks with state (φ=0 carryover, interpolation
kill-switch; :mod:`nanobragg_cli.c_order`) rely on.
"""

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .allocator import keep_freed_memory, release_freed_memory
from .chunks import DEFAULT_MAX_MEMORY, as_tensor, forward_chunks, plan_chunks
from .scene import Scene


@dataclass
class RenderResult:
    """image: (slow, fast) intensities (photons) on the scene's device and dtype, 0 outside the
    ROI/mask; omega_sum: Σ of solid angles over rendered sub-pixels (sr); traces: the
    :class:`~nanobragg_cli.trace.PixelTrace` of each traced pixel, keyed by (slow, fast);
    kernel: "eager" or "fused" (:mod:`nanobragg_cli.fused`), the kernel that rendered it."""
    image: Tensor
    omega_sum: float
    traces: dict
    kernel: str = "eager"


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

    When autograd records (a differentiable scene outside ``torch.no_grad()``) the image is the
    output of :class:`nanobragg_cli.render_grad.ChunkedRender`: the forward pass is this
    no-grad render, and the backward pass renders each chunk again to differentiate it, so
    memory stays that of one chunk per worker whatever the detector size.
    """
    if scene.device.type == "cpu":
        keep_freed_memory()
    plan = plan_chunks(scene, max_memory, window, grad=scene.mode.recording)
    if scene.mode.recording:
        from .render_grad import chunked_render
        values, omega_sum, traces = chunked_render(plan, trace_pixels, progress)
        flat_image = torch.zeros(scene.spixels * scene.fpixels, dtype=values.dtype,
                                 device=scene.device).index_put((as_tensor(plan.pix),), values)
    else:
        flat_image = torch.zeros(scene.spixels * scene.fpixels, dtype=scene.dtype,
                                 device=scene.device)
        omega_sum, traces, _ = forward_chunks(plan, trace_pixels, progress, flat_image, plan.pix)
    if plan.outside is not None:
        flat_image = flat_image.index_fill(0, plan.outside, 0.0)
    if scene.device.type == "cpu":
        release_freed_memory()
    return RenderResult(image=flat_image.reshape(scene.spixels, scene.fpixels).to(scene.work_dtype),
                        omega_sum=float(omega_sum), traces=traces, kernel=plan.kernel)
