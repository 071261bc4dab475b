"""The simulate command: nanoBragg.c flags in, images and a nanoBragg-style report out.

``prepare`` parses and resolves flags into a Config; ``run_simulation`` builds the scene, renders
and computes every output in memory; ``write_outputs`` writes the files atomically (so an error
or Ctrl-C never leaves a partial image); ``main`` wires them to the console.
"""

from dataclasses import dataclass
import math
import time

import numpy as np

from .config import Config, resolve
from .errors import FlagError, NanoBraggError
from .flags import apply_flags
from .image_headers import apply_image_headers
from .options import RawOptions


@dataclass
class ToolOptions:
    """Options of this tool (double dash), not of nanoBragg.c."""
    c_parity: bool = False
    device: str = "cpu"
    dtype: str = "float64"
    trace_json: str | None = None
    max_memory: int | None = None
    threads: int | None = None
    progress: bool | None = None
    manifest: str | None = None
    hdf5: str | None = None
    png: str | None = None
    png_scale: str = "log"


def _parse_size(flag, text):
    units = {"k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}
    t = text.strip().lower().rstrip("b")
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise FlagError(f"{flag}: expected a size like 512M or 2G, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise FlagError(f"{flag}: the size must be positive")
    return int(value)


TOOL_FLAGS = {
    "--c-parity": 0, "--device": 1, "--dtype": 1, "--trace-json": 1, "--max-memory": 1,
    "--threads": 1, "--progress": 0, "--no-progress": 0, "--manifest": 1, "--hdf5": 1, "--png": 1,
    "--png-scale": 1,
}


def split_tool_options(argv: list) -> tuple:
    """Separate this tool's --options from nanoBragg.c's -flags."""
    tool = ToolOptions()
    rest = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--"):
            name, _, inline = tok.partition("=")
            if name not in TOOL_FLAGS:
                raise FlagError(f"{name}: unknown option (see 'nanobragg --help')")
            nargs = TOOL_FLAGS[name]
            if nargs and not inline:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    raise FlagError(f"{name}: expected a value")
                inline = argv[i + 1]
                i += 1
            i += 1
            if name == "--c-parity":
                tool.c_parity = True
            elif name == "--device":
                if inline not in ("cpu", "cuda") and not inline.startswith("cuda:"):
                    raise FlagError(f"--device: expected cpu or cuda, got {inline!r}")
                tool.device = inline
            elif name == "--dtype":
                if inline not in ("float64", "float32"):
                    raise FlagError(f"--dtype: expected float64 or float32, got {inline!r}")
                tool.dtype = inline
            elif name == "--max-memory":
                tool.max_memory = _parse_size(name, inline)
            elif name == "--threads":
                if not inline.isdigit() or int(inline) < 1:
                    raise FlagError(f"--threads: expected a positive integer, got {inline!r}")
                tool.threads = int(inline)
            elif name == "--progress":
                tool.progress = True
            elif name == "--no-progress":
                tool.progress = False
            elif name == "--png-scale":
                if inline not in ("log", "sqrt"):
                    raise FlagError(f"--png-scale: expected log or sqrt, got {inline!r}")
                tool.png_scale = inline
            else:
                setattr(tool, name[2:].replace("-", "_"), inline)
            continue
        rest.append(tok)
        i += 1
    return rest, tool


def prepare(argv: list) -> Config:
    """nanoBragg.c flags -> resolved Config (two passes, as the C program)."""
    raw = RawOptions()
    apply_image_headers(argv, raw)
    apply_flags(argv, raw)
    return resolve(raw)


@dataclass
class SimulationResult:
    """Everything a run produces, in memory. ``image`` is float32 [slow, fast]."""
    cfg: Config
    scene: object
    image: np.ndarray
    image_tensor: object
    stats: object
    intfile_scale: float
    pgm_scale: float | None
    noise: np.ndarray | None
    noise_photons: float
    overloads: int
    trace_lines: list
    trace_record: dict | None
    traces: dict
    printout: list
    messages: list
    rendered: np.ndarray
    omega_sum: float
    seconds: float


def run_simulation(cfg: Config, tool: ToolOptions, progress=None,
                   extra_trace_pixels: list = (), window: tuple | None = None,
                   on_setup=None, on_rendered=None) -> SimulationResult:
    """Build the scene, render, and compute every output in memory. ``extra_trace_pixels``:
    more (slow, fast) pixels to trace in the same render (``traces`` holds every traced pixel's
    (lines, record)); ``trace_lines``/``trace_record`` are those of -trace_pixel. ``window``:
    compute only that (slow_min, slow_max, fast_min, fast_max) block (see render.render).
    ``on_setup(scene, messages)`` is called once the scene is built, before rendering starts
    (the CLI prints nanoBragg.c's set-up block there); ``on_rendered(result)`` once the image and
    its statistics are known, before the noise image is drawn (its noise fields still empty)."""
    import torch
    from . import rng
    from .outputs import image_stats, int_scale, pgm_scale
    from .preflight import check_kernel_memory
    from .render import (BYTES_PER_EVAL, BYTES_PER_EVAL_INTERP, DEFAULT_MAX_MEMORY, render,
                         rendered_pixels)
    from .scene import build_scene
    from .trace import printout_lines, trace_records

    t0 = time.perf_counter()
    if tool.threads:
        torch.set_num_threads(tool.threads)
    if tool.device.startswith("cuda") and not torch.cuda.is_available():
        raise NanoBraggError("--device cuda: no CUDA device is available (torch "
                             f"{torch.__version__} sees none); use --device cpu")
    dtype = torch.float64 if tool.dtype == "float64" else torch.float32
    messages = []
    random = rng.NanoRandom()
    scene = build_scene(cfg, c_parity=tool.c_parity, dtype=dtype, device=tool.device,
                        messages=messages, random=random)
    check_kernel_memory(scene, BYTES_PER_EVAL_INTERP if scene.interpolate else BYTES_PER_EVAL)
    if on_setup is not None:
        on_setup(scene, messages)
    out = cfg.output
    wanted = list(extra_trace_pixels)
    if out.trace_pixel is not None:
        wanted.append(tuple(out.trace_pixel))
    if out.printout_pixel is not None:  # given fast, slow
        wanted.append((out.printout_pixel[1], out.printout_pixel[0]))
    result = render(scene, max_memory=tool.max_memory or DEFAULT_MAX_MEMORY,
                    trace_pixels=wanted, window=window, progress=progress)
    image = result.image.detach().to("cpu").to(torch.float32).numpy()
    rendered = rendered_pixels(scene).cpu().numpy()
    stats = image_stats(image, rendered, scene.roi, float(scene.subpixel_size),
                        scene.oversample, scene.fpixels)
    iscale = int_scale(out.intfile_scale, stats.max_I)
    pscale = pgm_scale(out.pgm_scale, iscale, stats.rmsd) if out.write_pgm else None
    traces = {px: trace_records(scene, cap) for px, cap in result.traces.items()}
    printout = []
    if out.printout_pixel is not None:
        px = (out.printout_pixel[1], out.printout_pixel[0])
        if px in result.traces:
            printout = printout_lines(scene, result.traces[px], px)
    lines, record = [], None
    if out.trace_pixel is not None and tuple(out.trace_pixel) in traces:
        lines, record = traces[tuple(out.trace_pixel)]
    res = SimulationResult(
        cfg=cfg, scene=scene, image=image, image_tensor=result.image, stats=stats,
        intfile_scale=iscale, pgm_scale=pscale, noise=None, noise_photons=0.0,
        overloads=0, trace_lines=lines, trace_record=record, traces=traces,
        printout=printout,
        messages=messages,
        rendered=rendered, omega_sum=result.omega_sum, seconds=time.perf_counter() - t0)
    if on_rendered is not None:
        on_rendered(res)
    if out.calculate_noise:
        if hasattr(progress, "stage"):
            progress.stage("noise image")
        res.noise, res.noise_photons, res.overloads = random.noise_image(image, out.seed, out.adc,
                                                                         scene.roi)
        res.seconds = time.perf_counter() - t0
    return res


def output_files(res: SimulationResult) -> list:
    """[(path, bytes)] of every image file the run writes, in nanoBragg.c's order."""
    from .outputs import float_bytes, int_bytes, noise_bytes, pgm_image_bytes
    out = res.cfg.output
    files = [(out.floatfile, float_bytes(res.image)),
             (out.intfile, int_bytes(res.scene, res.image, res.intfile_scale))]
    if out.write_pgm:
        files.append((out.pgmfile, pgm_image_bytes(res.scene, res.image, res.pgm_scale)))
    if out.calculate_noise:
        files.append((out.noisefile, noise_bytes(res.scene, res.noise)))
    return files


def report_lines(res: SimulationResult) -> list:
    """nanoBragg.c's stdout for this run (see :mod:`nanobragg_cli.c_stdout`), without trace lines."""
    from .c_stdout import setup_lines, statistics_lines
    return setup_lines(res.cfg, res.scene, res.messages) + list(res.printout) + statistics_lines(res)
