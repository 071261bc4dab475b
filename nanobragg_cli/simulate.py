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

RTD = 180.0 / math.pi


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
                import difflib
                near = difflib.get_close_matches(name, list(TOOL_FLAGS), n=1, cutoff=0.75)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise FlagError(f"{name}: unknown option{hint} (see 'nanobragg --help')")
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
                   extra_trace_pixels: list = (), window: tuple | None = None) -> SimulationResult:
    """Build the scene, render, and compute every output in memory. ``extra_trace_pixels``:
    more (slow, fast) pixels to trace in the same render (``traces`` holds every traced pixel's
    (lines, record)); ``trace_lines``/``trace_record`` are those of -trace_pixel. ``window``:
    compute only that (slow_min, slow_max, fast_min, fast_max) block (see render.render)."""
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
    noise, photons, overloads = None, 0.0, 0
    if out.calculate_noise:
        noise, photons, overloads = random.noise_image(image, out.seed, out.adc, scene.roi)
    traces = {px: trace_records(scene, cap) for px, cap in result.traces.items()}
    printout = []
    if out.printout_pixel is not None:
        px = (out.printout_pixel[1], out.printout_pixel[0])
        if px in result.traces:
            printout = printout_lines(scene, result.traces[px], px)
    lines, record = [], None
    if out.trace_pixel is not None and tuple(out.trace_pixel) in traces:
        lines, record = traces[tuple(out.trace_pixel)]
    return SimulationResult(
        cfg=cfg, scene=scene, image=image, image_tensor=result.image, stats=stats,
        intfile_scale=iscale, pgm_scale=pscale, noise=noise, noise_photons=photons,
        overloads=overloads, trace_lines=lines, trace_record=record, traces=traces,
        printout=printout,
        messages=messages,
        rendered=rendered, omega_sum=result.omega_sum, seconds=time.perf_counter() - t0)


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
    """The nanoBragg-style stdout report: setup echo and the summary lines a user reads."""
    cfg, scene, st = res.cfg, res.scene, res.stats
    d, c, s, out = cfg.detector, cfg.crystal, cfg.sampling, cfg.output
    g = scene.det
    L = ["nanoBragg nanocrystal diffraction simulator (nanobragg_cli, PyTorch) "
         + ("--c-parity" if scene.c_parity else "default mode")]
    L.append(f"{d.convention} convention selected.")
    L.append("pivoting detector around " + ("sample" if d.pivot == "sample" else "direct beam spot"))
    L.extend(res.messages)
    L.append("  %d sources, %d mosaic domains, %d phi steps from %g to %g degrees, %dx%d pixel "
             "oversample steps" % (scene.n_src, scene.n_mos, s.phisteps, s.phi0 * RTD,
                                   (s.phi0 + s.osc) * RTD, scene.oversample, scene.oversample))
    L.append("  %s xtal: %.0fx%.0fx%.0f cells" % (
        {"square": "parallelpiped", "round": "ellipsoidal", "gauss": "gaussian",
         "tophat": "tophat-spot"}[c.shape], *[float(x) for x in scene.N.detach()]))
    L.append("  %d initialized hkls (all others =%g)" % (scene.hkl_count, c.default_F))
    L.append("  incident fluence: %g photons/m^2" % float(scene.fluence))
    L.append("  distance=%g detsize=%gx%g  pixel=%g meters (%dx%d pixels)" % (
        float(g.distance), d.detsize_f, d.detsize_s, d.pixel_size, d.fpixels, d.spixels))
    L.append("  Xbeam=%g Ybeam=%g" % (d.Xbeam, d.Ybeam))
    L.append("  Fbeam=%g Sbeam=%g" % (float(g.Fbeam), float(g.Sbeam)))
    L.append("  Fclose=%g Sclose=%g" % (float(g.Fclose), float(g.Sclose)))
    if out.calculate_noise:
        L.append("  seed: %d" % out.seed)
    L.extend(res.printout)
    L.append("")
    L.append("solid angle subtended by detector = %g steradian ( %g%% sphere)" % (
        res.omega_sum / scene.steps, 100 * res.omega_sum / scene.steps / 4 / math.pi))
    L.append("writing %s as %d 4-byte floats" % (out.floatfile, d.fpixels * d.spixels))
    L.append("max_I = %g  at %g %g" % (st.max_I, st.max_x, st.max_y))
    L.append("mean= %g rms= %g rmsd= %g" % (st.mean, st.rms, st.rmsd))
    L.append("intfile_scale = %g" % res.intfile_scale)
    L.append("writing %s as 2-byte integers" % out.intfile)
    if out.write_pgm:
        L.append("pgm_scale = %g" % res.pgm_scale)
        L.append("writing %s as 1-byte integers" % out.pgmfile)
    if out.calculate_noise:
        L.append("%.0f photons on noise image (%d overloads)" % (res.noise_photons, res.overloads))
        L.append("writing %s as 2-byte integers" % out.noisefile)
    return L
