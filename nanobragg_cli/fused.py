"""The fused kernel: :func:`nanobragg_cli.kernel.render_chunk` compiled by ``torch.compile``
(TorchInductor), used where the work pays for the compilation.

Compiling fuses the kernel's ~40 elementwise passes per evaluation (Miller indices, reduced
indices, lattice factor, structure factor, the sum over φ and mosaic domains) into a few loops
that keep their operands in registers: ~3x the eager kernel's throughput here
(docs/performance.md). It is the same Python function, traced: no second copy of the physics.
The cost is the compilation: ~25-50 s the first time a kernel shape is met on a machine, ~6-7 s
(importing dynamo and inductor, tracing) once TorchInductor's on-disk cache (:func:`cache_dir`)
holds it.

Which runs use it: never with ``--c-parity`` (nanoBragg.c's arithmetic stays the exact eager
path: compiled code contracts multiply-adds and orders sums its own way), a differentiable scene
or a traced run. ``--compile on`` uses it for every other run, ``off`` for none, and ``auto``
(the default) where the run's work -- evaluations per image times the images of the run
(:data:`POLICY`, set by a series or batch) -- is at least :data:`AUTO_MIN_EVALS`, where even a
first, uncached compilation is repaid. The choice depends on the command line only, never on
timings or the cache, so a command always gives the same bytes: a compiled image differs from
the eager one by ~1e-14 relative (it does not depend on the chunk size), and a series frame
rendered compiled records ``--compile on`` in its single-image command line. If compiling
fails (no C++ compiler, an operation the compiler cannot take) the eager kernel renders the
run, after one warning.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import os
from pathlib import Path
import sys

import torch
from torch import Tensor

from .kernel import ChunkOutput, render_chunk
from .scene import Scene

# Work (sub-pixel evaluations of a run) from which ``--compile auto`` fuses: at ~35 M eager and
# ~100 M fused evaluations/s (B2, 2 cores, float64), 2.5e9 evaluations save ~45 s, more than a
# first compilation costs (~25-50 s; ~6-7 s once cached, where ``--compile on`` pays from ~4e8).
AUTO_MIN_EVALS = 2.5e9


@dataclass
class CompilePolicy:
    """Process-wide state of the fused kernel: ``run_images``, the images of the whole run the
    current image belongs to (a series' frames, a batch's shots, over all ranks; 1 for one
    image; set by :func:`images_of_run`), which ``auto`` multiplies its work by; the compiled
    kernels by shape signature; why compiling failed, once it has."""
    run_images: int = 1
    kernels: dict = field(default_factory=dict)
    failed: str | None = None


POLICY = CompilePolicy()


@contextmanager
def images_of_run(n: int):
    """While inside, each render counts as one of the ``n`` images of a run (series frames,
    batch shots) for ``--compile auto``; one image again after."""
    POLICY.run_images = max(1, int(n))
    try:
        yield
    finally:
        POLICY.run_images = 1


def cache_dir() -> Path:
    """TorchInductor's on-disk cache: $TORCHINDUCTOR_CACHE_DIR if set, else
    $XDG_CACHE_HOME/nanobragg_cli/inductor (~/.cache/...), which survives reboots (torch's own
    default lives in /tmp)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nanobragg_cli" / "inductor"


# torch 2.13's Python binding of a compiled CPU kernel calls it with the GIL held, so chunk
# workers on separate cores would take turns. The kernel reads and writes raw buffers only: the
# binding below parses its arguments with the GIL, then releases it for the call (the same
# text otherwise, so it is used only where torch's template is exactly the one it replaces).
_HOLDS_GIL = "kernel({}); Py_RETURN_NONE;"
_RELEASES_GIL = ("auto nb_args = std::make_tuple({}); Py_BEGIN_ALLOW_THREADS "
                 "std::apply(kernel, nb_args); Py_END_ALLOW_THREADS Py_RETURN_NONE;")


def release_gil_in_kernels() -> bool:
    """Make compiled CPU kernels release the GIL while they run; False where this torch's
    binding is not the known one (then they are used only with one thread)."""
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache as bindings
    except ImportError:
        return False
    if bindings.call_entry_function == _HOLDS_GIL:
        bindings.call_entry_function = _RELEASES_GIL
    return bindings.call_entry_function == _RELEASES_GIL


def ineligible(scene: Scene, tracing: bool) -> str | None:
    """Why the fused kernel cannot render ``scene`` (None: it can)."""
    if scene.c_parity:
        return "--c-parity keeps nanoBragg.c's eager arithmetic"
    if scene.mode.differentiable:
        return "gradients are taken through the eager kernel"
    if tracing:
        return "a traced run keeps the eager kernel"
    if scene.device.type not in ("cpu", "cuda"):
        return f"no compiler for device {scene.device.type}"
    if scene.device.type == "cpu" and torch.get_num_threads() > 1 and \
            not release_gil_in_kernels():
        return "this torch's compiled kernels hold the GIL (chunks could not run concurrently)"
    return None


def wanted(scene: Scene, n_pixels: int, tracing: bool) -> bool:
    """Whether this render of ``n_pixels`` pixels goes through the fused kernel."""
    choice = scene.mode.compile
    if choice == "off" or POLICY.failed:
        return False
    work = scene.evals_per_pixel() * n_pixels * POLICY.run_images
    if choice != "on" and work < AUTO_MIN_EVALS:
        return False   # before ineligible(): it imports torch._inductor (~2.5 s, ~77 MiB)
    return ineligible(scene, tracing) is None


def signature(scene: Scene, chunk: int) -> str:
    """The key of a compiled kernel: everything the traced code branches on or specialises."""
    parts = (torch.__version__, scene.device.type, str(scene.dtype), str(scene.work_dtype),
             scene.shape, tuple(scene.N_values), scene.interpolate, scene.sf.count > 0,
             scene.oversample, scene.thicksteps, scene.n_src, scene.n_phi, scene.n_mos,
             scene.dmin > 0.0, scene.water_size != 0.0, scene.curved, scene.capture_fraction,
             scene.nopolar, scene.unpolarized, scene.point_pixel, scene.oversample_thick,
             scene.oversample_polar, scene.oversample_omega, chunk)
    return repr(parts)


def _chunk_values(scene: Scene, pix: Tensor, killed: Tensor) -> tuple:
    """The traced function: (values, I, Σ solid angles), each (P,), of one chunk."""
    out = render_chunk(scene, pix, killed)
    return out.values, out.I, out.omega_px


def _fill_lazy_caches(scene: Scene) -> None:
    """Build what the kernel caches on first use (the framed structure-factor grid) before the
    traced call: traced, building it would be part of the compiled graph, and the cache appearing
    afterwards would make the next call compile again."""
    sf = scene.sf
    if getattr(sf, "grid", None) is not None and sf.count > 0:
        sf.bordered()


class FusedKernel:
    """render_chunk compiled for chunks of exactly ``chunk`` pixels (shorter ones are padded
    with copies of their last pixel, whose results are dropped); called as render_chunk."""

    def __init__(self, chunk: int):
        self.chunk = chunk
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
        self.fn = torch.compile(_chunk_values, dynamic=False)
        self.compiled = False

    def __call__(self, scene: Scene, pix: Tensor, killed: Tensor, first_sub=None) -> ChunkOutput:
        n = pix.numel()
        padded = pix if n == self.chunk else torch.cat([pix, pix[-1:].expand(self.chunk - n)])
        values, I, omega_px = self.fn(scene, padded, killed)
        return ChunkOutput(values=values[:n], I=I[:n], omega_sum=omega_px[:n].sum(),
                           killed=killed, killed_rows=None, omega_px=omega_px[:n])


def warn(message: str) -> None:
    print(f"nanobragg: warning: {message}", file=sys.stderr, flush=True)


def fused_kernel(scene: Scene, chunk: int) -> FusedKernel:
    """The process's compiled kernel for this scene's shape signature (made once)."""
    key = signature(scene, chunk)
    if key not in POLICY.kernels:
        POLICY.kernels[key] = FusedKernel(chunk)
    return POLICY.kernels[key]


def run_chunks(plan, job, collect, killed: Tensor, tracing: bool, rest) -> bool:
    """Render ``plan``'s chunks through the fused kernel where :func:`wanted`. ``job(start,
    killed, kernel)`` renders one chunk with ``kernel``, ``collect`` takes its result (as in
    :func:`nanobragg_cli.chunks.map_chunks`); ``rest(starts, kernel)`` renders the chunks
    ``starts`` with ``kernel`` concurrently, as the plain render does. The chunk that compiles
    runs first, here, with one intra-op thread, so that the compiled code is single-threaded
    like each concurrent chunk worker. Returns False, having rendered nothing, where the caller's
    eager map renders the plan; True once every chunk is collected (``plan.kernel`` then says
    which kernel rendered it)."""
    scene, starts = plan.scene, plan.starts
    if not starts or not wanted(scene, plan.pix.numel(), tracing):
        return False
    kernel = fused_kernel(scene, plan.chunk)
    _fill_lazy_caches(scene)
    done = 0
    if not kernel.compiled:
        with _one_thread(scene):
            try:
                result = job(starts[0], killed, kernel)
            except Exception as err:   # no C++ compiler, an operation it cannot take, ...
                text = str(err).strip().splitlines()
                POLICY.failed = f"{type(err).__name__}: {text[0][:200] if text else ''}"
                warn(f"--compile: the fused kernel could not be compiled ({POLICY.failed}); "
                     "rendering with the eager kernel")
                return False
        kernel.compiled = True
        collect(result)
        done = 1
    rest(starts[done:], kernel)
    plan.kernel = "fused"
    return True


@contextmanager
def _one_thread(scene: Scene):
    """torch's intra-op threads set to one on the CPU for the duration (restored after)."""
    threads = torch.get_num_threads()
    if scene.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
