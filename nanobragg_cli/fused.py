"""The fused kernel: :func:`nanobragg_cli.kernel.render_chunk` compiled ahead of time by
TorchInductor (``torch.export`` + AOTInductor) into a package kept in :func:`cache_dir`, used
where the work pays for the compilation.

Compiling fuses the kernel's ~40 elementwise passes per evaluation (Miller indices, reduced
indices, lattice factor, structure factor, the sum over φ and mosaic domains) into a few loops
that keep their operands in registers: ~3x the eager kernel's throughput here
(docs/performance.md). It is the same Python function, traced: no second copy of the physics.
The scene's tensors are the package's inputs and everything else it reads is its key
(:mod:`nanobragg_cli.scene_flat`), so another frame of a series or another distance reuses a
package. Compiling one costs ~15-40 s the first time its key is met on a machine; loading it
from the cache takes milliseconds and imports nothing of the compiler. Chunks run one after the
other, each spread over torch's threads by the compiled code.

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
import functools
import hashlib
import os
import platform
from pathlib import Path
import sys

import torch
from torch import Tensor

from .kernel import ChunkOutput, render_chunk
from .scene import Scene
from .scene_flat import Flat, flatten, rebuild

# Work (sub-pixel evaluations of a run) from which ``--compile auto`` fuses: at ~63 M eager and
# ~150 M fused evaluations/s end to end (B2, 2 cores, float64), 2.5e9 evaluations save ~23 s,
# about what a first compilation costs (~15-40 s; a cached package loads in milliseconds).
AUTO_MIN_EVALS = 2.5e9


@dataclass
class CompilePolicy:
    """Process-wide state of the fused kernel: ``run_images``, the images of the whole run the
    current image belongs to (a series' frames, a batch's shots, over all ranks; 1 for one
    image; set by :func:`images_of_run`), which ``auto`` multiplies its work by; the loaded
    kernels by package path; why compiling failed, once it has."""
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
    """Where compiled kernel packages are kept: $NANOBRAGG_KERNEL_CACHE if set, else
    $XDG_CACHE_HOME/nanobragg_cli/kernels (~/.cache/...). Safe to delete (kernels compile again)."""
    if os.environ.get("NANOBRAGG_KERNEL_CACHE"):
        return Path(os.environ["NANOBRAGG_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nanobragg_cli" / "kernels"


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
    return None


def wanted(scene: Scene, n_pixels: int, tracing: bool) -> bool:
    """Whether this render of ``n_pixels`` pixels goes through the fused kernel."""
    choice = scene.mode.compile
    if choice == "off" or POLICY.failed:
        return False
    work = scene.evals_per_pixel() * n_pixels * POLICY.run_images
    if choice != "on" and work < AUTO_MIN_EVALS:
        return False
    return ineligible(scene, tracing) is None


@functools.cache
def _source_hash() -> str:
    """sha256 of this package's Python sources: a package compiled by other code is not used."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def _machine(device: torch.device) -> str:
    """What compiled code is specific to: the CPU's model and instruction set (packages are
    built for the native one), or the GPU's name and compute capability."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} {torch.cuda.get_device_capability(index)}"
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def package_path(flat: Flat, scene: Scene, chunk: int) -> Path:
    """The cache file of the package that renders chunks of ``chunk`` pixels of scenes with
    ``flat``'s key, for this torch, this package's code and this machine."""
    words = (flat.key, str(chunk), torch.__version__, _source_hash(), _machine(scene.device))
    key = hashlib.sha256("\n".join(words).encode()).hexdigest()[:40]
    return cache_dir() / f"{key}.pt2"


class _ChunkModule(torch.nn.Module):
    """The traced function: (pix, killed, *scene tensors) -> (values, I, Σ solid angles), each
    (P,), of one chunk, by :func:`nanobragg_cli.kernel.render_chunk` on the rebuilt scene."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def forward(self, pix, killed, *tensors):
        out = render_chunk(rebuild(self.spec, tensors), pix, killed)
        return out.values, out.I, out.omega_px


def compile_package(flat: Flat, pix: Tensor, killed: Tensor, path: Path) -> None:
    """Export the chunk function for these input shapes and compile it ahead of time into
    ``path`` (written under a temporary name, then renamed: a killed compile leaves no package).
    Imports torch's compiler: seconds, then ~10-40 s of compilation on 2 cores."""
    import warnings
    from torch._inductor import aoti_compile_and_package
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = (pix, killed, *flat.tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(_ChunkModule(flat.spec), inputs, strict=False)
        scene_storage = {t.untyped_storage().data_ptr() for t in flat.tensors}
        baked = [name for name, c in program.constants.items() if isinstance(c, Tensor)
                 and c.untyped_storage().data_ptr() in scene_storage]
        if baked:   # a scene tensor reached the trace by another way than the inputs
            raise RuntimeError("the traced chunk kept scene tensors as constants: "
                               + ", ".join(sorted(baked))[:200])
        part = path.with_name(f"{path.stem}.{os.getpid()}.part.pt2")
        try:
            aoti_compile_and_package(program, package_path=str(part))
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)


def _padded(pix: Tensor, chunk: int) -> Tensor:
    """``pix`` made ``chunk`` long with copies of its last pixel (their results are dropped)."""
    n = pix.numel()
    return pix if n == chunk else torch.cat([pix, pix[-1:].expand(chunk - n)])


class PackagedKernel:
    """A compiled package for chunks of exactly ``chunk`` pixels (shorter ones are padded with
    copies of their last pixel, whose results are dropped); called as render_chunk with the
    scene it was made for. Loading it imports nothing of the compiler (~ms)."""

    def __init__(self, path: Path, device: torch.device, chunk: int):
        index = -1 if device.type == "cpu" else (device.index or 0)
        self.runner = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, index)
        self.chunk = chunk
        self.tensors: list = []

    def __call__(self, scene: Scene, pix: Tensor, killed: Tensor, first_sub=None) -> ChunkOutput:
        n = pix.numel()
        padded = _padded(pix, self.chunk).contiguous()
        values, I, omega_px = self.runner.run([padded, killed, *self.tensors])
        return ChunkOutput(values=values[:n], I=I[:n], omega_sum=omega_px[:n].sum(),
                           killed=killed, killed_rows=None, omega_px=omega_px[:n])


def warn(message: str) -> None:
    print(f"nanobragg: warning: {message}", file=sys.stderr, flush=True)


def _fill_lazy_caches(scene: Scene) -> None:
    """Build what the kernel caches on first use (the framed structure-factor grid) before the
    scene is flattened, so that the cache is one of the package's inputs."""
    sf = scene.sf
    if getattr(sf, "grid", None) is not None and sf.count > 0:
        sf.bordered()


def packaged_kernel(plan, killed: Tensor) -> PackagedKernel:
    """The process's kernel for ``plan``'s scene and chunk size: loaded from the cache, else
    compiled into it first (then loaded)."""
    scene = plan.scene
    _fill_lazy_caches(scene)
    flat = flatten(scene)
    flat.tensors = [t.contiguous() for t in flat.tensors]
    path = package_path(flat, scene, plan.chunk)
    kernel = POLICY.kernels.get(path)
    if kernel is None:
        if not path.is_file():
            first = _padded(plan.pix[0:plan.chunk], plan.chunk).contiguous()
            compile_package(flat, first, killed, path)
        kernel = POLICY.kernels[path] = PackagedKernel(path, scene.device, plan.chunk)
    kernel.tensors = flat.tensors
    return kernel


def run_chunks(plan, job, collect, killed: Tensor, tracing: bool) -> bool:
    """Render ``plan``'s chunks through the fused kernel where :func:`wanted`. ``job(start,
    killed, kernel)`` renders one chunk with ``kernel``, ``collect`` takes its result (as in
    :func:`nanobragg_cli.chunks.map_chunks`). Chunks run one after the other: the compiled code
    spreads each over torch's threads. Returns False, having rendered nothing, where the
    caller's eager map renders the plan; True once every chunk is collected (``plan.kernel``
    then says which kernel rendered it)."""
    scene, starts = plan.scene, plan.starts
    if not starts or not wanted(scene, plan.pix.numel(), tracing):
        return False
    try:
        kernel = packaged_kernel(plan, killed)
        first = job(starts[0], killed, kernel)
    except Exception as err:   # no C++ compiler, an operation it cannot take, ...
        text = str(err).strip().splitlines()
        POLICY.failed = f"{type(err).__name__}: {text[0][:200] if text else ''}"
        warn(f"--compile: the fused kernel could not be compiled ({POLICY.failed}); "
             "rendering with the eager kernel")
        return False
    collect(first)
    for start in starts[1:]:
        collect(job(start, killed, kernel))
    plan.kernel = "fused"
    return True
