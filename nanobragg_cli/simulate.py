"""The simulate command, in one place: nanoBragg.c flags in, image files and a nanoBragg-style
report out. ``cli.simulate_main``, ``parity``, ``golden`` (and so ``suite``) and the Python API
call these stages rather than re-assembling pieces:

1. **prepare** (once per command): :func:`prepare_run` splits this tool's --options from
   nanoBragg.c's flags (:mod:`nanobragg_cli.tool_options`), resolves the flags into a Config
   (:func:`prepare`) and runs the preflight checks on the inputs, the planned outputs and the
   memory; the result is a :class:`PreparedRun`.
2. **render one frame**: :func:`run_simulation` builds the scene, renders, and computes every
   output in memory (statistics, scales, noise image, traces): a :class:`SimulationResult`.
   A series of frames is a loop over this stage, sharing stage 1.
3. **plan outputs**: :func:`planned_outputs` lists every file a run writes, as (flag, path);
   the same list serves the preflight checks, the writing and the manifest. The image files
   come from :data:`IMAGE_OUTPUTS`, this tool's extra files from the tool-option table. A new
   output is one row there and one case of :func:`run_files`.
4. **write outputs**: :func:`write_outputs` writes every file of :func:`run_files` atomically
   (all or nothing, so an error or Ctrl-C never leaves a partial image), then the manifest.
5. **report**: :func:`stdout_report` is the stdout report (nanoBragg-style lines, with the
   TRACE_PY lines of -trace_pixel); :func:`trace_json_record` the --trace-json record;
   :func:`notes` the stderr notes (warnings, time-based seeds).

:func:`simulate_command` chains them for the command line.
"""

from dataclasses import dataclass
import math
import os
import sys
import time

import numpy as np

from .config import Config, resolve
from .constants import RTD
from .errors import NanoBraggError
from .flags import apply_flags
from .image_headers import apply_image_headers
from .options import RawOptions
from .tool_options import TOOL_FLAGS, ToolOptions, output_options, split_tool_options  # noqa: F401


def prepare(argv: list) -> Config:
    """nanoBragg.c flags -> resolved Config (two passes, as the C program)."""
    raw = RawOptions()
    apply_image_headers(argv, raw)
    apply_flags(argv, raw)
    return resolve(raw)


@dataclass
class PreparedRun:
    """A command line, parsed and checked once: nanoBragg.c's flags (``nb_argv``), this tool's
    options, the resolved Config, the input files [(flag, path)] and the full ``argv``."""
    argv: list
    nb_argv: list
    tool: ToolOptions
    cfg: Config
    inputs: list


def prepare_run(argv: list) -> PreparedRun:
    """argv (nanoBragg.c flags plus this tool's --options) -> a checked :class:`PreparedRun`.
    Raises NanoBraggError (one line naming the flag or file) before anything is rendered."""
    from . import preflight
    nb_argv, tool = split_tool_options(list(argv))
    if tool.hdf5:
        from .io.hdf5 import require_h5py
        require_h5py()
    preflight.check_header_inputs(nb_argv)
    cfg = prepare(nb_argv)
    inputs = preflight.input_files(cfg)
    preflight.check_inputs(inputs)
    preflight.check_outputs(planned_outputs(cfg, tool), inputs)
    preflight.check_memory(cfg, tool.max_memory)
    return PreparedRun(list(argv), nb_argv, tool, cfg, inputs)


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
    from .mode import Mode
    from .scene import build_scene
    from .trace import printout_lines, trace_records

    t0 = time.perf_counter()
    if tool.threads:
        torch.set_num_threads(tool.threads)
    if tool.device.startswith("cuda") and not torch.cuda.is_available():
        raise NanoBraggError("--device cuda: no CUDA device is available (torch "
                             f"{torch.__version__} sees none); use --device cpu")
    messages = []
    random = rng.NanoRandom()
    scene = build_scene(cfg, mode=Mode.from_tool(tool), messages=messages, random=random)
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


# ---- 3. the outputs of a run --------------------------------------------------------------
# nanoBragg.c's image files, in its order: (flag, Output field of the path, Output field that
# switches it on or None)
IMAGE_OUTPUTS = (
    ("-floatfile", "floatfile", None),
    ("-intfile", "intfile", None),
    ("-pgmfile", "pgmfile", "write_pgm"),
    ("-noisefile", "noisefile", "calculate_noise"),
)


def image_outputs(cfg: Config) -> list:
    """[(flag, path)] of the image files this run writes, in nanoBragg.c's order."""
    out = cfg.output
    return [(flag, getattr(out, field)) for flag, field, switch in IMAGE_OUTPUTS
            if switch is None or getattr(out, switch)]


def planned_outputs(cfg: Config, tool: ToolOptions | None = None) -> list:
    """[(flag, path)] of every file the run will write: the images, the -hkl cache (-dump), this
    tool's files (--trace-json, --hdf5, --png) and last the --manifest."""
    files = image_outputs(cfg)
    if cfg.crystal.hklfile is not None:
        files.append(("-dump", cfg.crystal.dumpfile))
    if tool is not None:
        extra = output_options(tool)
        files += [f for f in extra if f[0] != "--manifest"] + [f for f in extra
                                                                if f[0] == "--manifest"]
    return files


def output_files(res: SimulationResult) -> list:
    """[(path, bytes)] of every image file the run writes, in nanoBragg.c's order."""
    from .outputs import float_bytes, int_bytes, noise_bytes, pgm_image_bytes
    make = {"-floatfile": lambda: float_bytes(res.image),
            "-intfile": lambda: int_bytes(res.cfg, res.scene, res.image, res.intfile_scale),
            "-pgmfile": lambda: pgm_image_bytes(res.scene, res.image, res.pgm_scale),
            "-noisefile": lambda: noise_bytes(res.cfg, res.scene, res.noise)}
    return [(path, make[flag]()) for flag, path in image_outputs(res.cfg)]


def run_files(res: SimulationResult, tool: ToolOptions, argv: list = ()) -> list:
    """[(flag, path, bytes)] of every file written before the manifest: the images
    (:func:`output_files`), then --trace-json, --hdf5 and --png as ``tool`` asks. ``argv``: the
    command line, for the HDF5 file's title."""
    files = [(flag, path, data) for (flag, _), (path, data)
             in zip(image_outputs(res.cfg), output_files(res))]
    for flag, path in output_options(tool):
        if flag == "--trace-json":
            files.append((flag, path, trace_json_bytes(res, tool)))
        elif flag == "--hdf5":
            from .io.hdf5 import hdf5_bytes
            files.append((flag, path, hdf5_bytes(res, title=" ".join(["nanobragg", *argv]))))
        elif flag == "--png":
            from .io.png import image_png_bytes
            files.append((flag, path, image_png_bytes(res.image, tool.png_scale, res.rendered)))
    return files


# ---- 5. the report ---------------------------------------------------------------------------
def trace_json_record(res: SimulationResult, tool: ToolOptions) -> dict:
    """The --trace-json record of -trace_pixel: lines, per_phi, final, pixel and mode."""
    record = res.trace_record or {"lines": [], "per_phi": [], "final": {}}
    pixel = res.cfg.output.trace_pixel
    return dict(record, pixel={"slow": pixel[0] if pixel else None,
                               "fast": pixel[1] if pixel else None},
                mode="c-parity" if tool.c_parity else "default")


def trace_json_bytes(res: SimulationResult, tool: ToolOptions) -> bytes:
    import json
    return json.dumps(trace_json_record(res, tool), indent=1).encode()


def stdout_report(res: SimulationResult) -> list:
    """What the command prints: :func:`report_lines` with, for -trace_pixel, a TRACE_CONFIG
    line and the TRACE_PY lines before the solid-angle line."""
    from .trace import format_lines
    lines = report_lines(res)
    if res.cfg.output.trace_pixel is not None:
        at = next((i for i, ln in enumerate(lines) if ln.startswith("solid angle")), len(lines))
        s, f = res.cfg.output.trace_pixel
        lines[at:at] = [f"TRACE_CONFIG: tracing pixel (spixel={s}, fpixel={f})",
                        *format_lines(res.trace_lines)]
    return lines


def notes(cfg: Config) -> list:
    """The stderr notes before a render: flag warnings, and the time-based seeds this run uses
    (so that it can be repeated exactly)."""
    lines = [f"warning: {w}" for w in cfg.warnings]
    out, c = cfg.output, cfg.crystal
    if out.calculate_noise and not out.seed_given:
        lines.append(f"noise seed: {out.seed} (repeat with -seed {-out.seed})")
    if c.misset == "random" and not c.misset_seed_given:
        lines.append(f"random misset seed: {c.misset_seed} "
                     f"(repeat with -misset_seed {-c.misset_seed})")
    return lines


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


# ---- 4. writing, and the whole command -------------------------------------------------------
def write_outputs(run: PreparedRun, res: SimulationResult, written: list, *,
                  input_records: list | None = None, started: float = 0.0,
                  t0: float = 0.0) -> list:
    """Write every file of :func:`run_files` atomically (renamed into place together once all
    are complete), then the --manifest. ``written`` receives each path once it is in place.
    Returns the [(flag, path, bytes)] written before the manifest."""
    from .io.atomic import atomic_write_bytes, atomic_write_many
    tool, cfg = run.tool, run.cfg
    files = run_files(res, tool, run.argv)
    # all-or-nothing through renames; no fsync: like nanoBragg.c's own writes, durability against
    # power loss is left to the filesystem (a sync costs as much as writing a 6 Mpixel image)
    atomic_write_many([(path, data) for _, path, data in files], committed=written, fsync=False)
    if tool.manifest:
        from .manifest import file_record, manifest, manifest_bytes
        outputs = [file_record(flag, path, data) for flag, path, data in files]
        dump = cfg.crystal.dumpfile
        if cfg.crystal.hklfile is not None and os.path.isfile(dump):
            outputs.append(file_record("-dump", dump))
        record = manifest(list(run.argv), cfg, tool, res, input_records, outputs, started,
                          time.perf_counter() - t0)
        atomic_write_bytes(tool.manifest, manifest_bytes(record))
        written.append(tool.manifest)
    return files


def simulate_command(argv: list, written: list | None = None) -> int:
    """The command line's simulation: prepare, render one frame, write, report. ``written`` (a
    list) receives each output path once it is in place, so that an interrupted caller can say
    which files exist."""
    started, t0 = time.time(), time.perf_counter()
    written = [] if written is None else written
    run = prepare_run(argv)
    for line in notes(run.cfg):
        print(f"nanobragg: {line}", file=sys.stderr)
    input_records = None
    if run.tool.manifest:
        from .manifest import file_record
        input_records = [file_record(flag, path) for flag, path in run.inputs]

    from .progress import RenderProgress
    show = run.cfg.output.progress if run.tool.progress is None else run.tool.progress
    bar = RenderProgress(show)
    try:
        res = run_simulation(run.cfg, run.tool, progress=bar)
    finally:
        bar.close()
    lines = stdout_report(res)
    write_outputs(run, res, written, input_records=input_records, started=started, t0=t0)
    print("\n".join(lines))
    return 0
