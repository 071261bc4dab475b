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
5. **report**: :func:`stdout_report` is the stdout report (nanoBragg.c's lines, built by
   :mod:`nanobragg_cli.c_stdout` and printed as they are known by :func:`simulate_command`,
   with the TRACE_PY lines of -trace_pixel); :func:`trace_json_record` the --trace-json record;
   :func:`notes` the stderr notes (warnings, time-based seeds).

:func:`simulate_command` chains them for the command line.
"""

from dataclasses import dataclass
import os
import sys
import time

import numpy as np

from .config import Config, resolve
from .errors import FlagError, NanoBraggError
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
    preflight.check_header_inputs(nb_argv, tool.max_memory)
    try:
        cfg = prepare(nb_argv)
    except FlagError as err:  # a value an -img/-mask header set: name the file and key
        from .image_headers import blame_header
        raise blame_header(err, nb_argv) from None
    from .series import check_no_templates
    check_no_templates(nb_argv, tool)   # a '#' template without --frames
    inputs = preflight.input_files(cfg)
    preflight.check_inputs(inputs)
    preflight.check_outputs(planned_outputs(cfg, tool), inputs)
    preflight.check_memory(cfg, tool.max_memory)
    from .validate import check_inputs
    check_inputs(cfg, tool.c_parity, argv=nb_argv)
    return PreparedRun(list(argv), nb_argv, tool, cfg, inputs)


def _warn(message: str) -> None:
    print(f"nanobragg: warning: {message}", file=sys.stderr)


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
    rendered: object    # numpy index of the rendered pixels in the flat image (chunks.rendered_selection)
    omega_sum: float
    seconds: float
    kernel: str = "eager"   # the kernel that rendered the image: "eager" or "fused"


def run_simulation(cfg: Config, tool: ToolOptions, progress=None,
                   extra_trace_pixels: list = (), window: tuple | None = None,
                   prepared: tuple | None = None, on_setup=None,
                   on_rendered=None) -> SimulationResult:
    """Build the scene, render, and compute every output in memory. ``extra_trace_pixels``:
    more (slow, fast) pixels to trace in the same render (``traces`` holds every traced pixel's
    (lines, record)); ``trace_lines``/``trace_record`` are those of -trace_pixel. ``window``:
    compute only that (slow_min, slow_max, fast_min, fast_max) block (see render.render).
    ``prepared``: (scene, random state, setup messages) built earlier (a frame of a series),
    used instead of building the scene from ``cfg``.
    ``on_setup(scene, messages)`` is called once the scene is built, before rendering starts
    (the CLI prints nanoBragg.c's set-up block there); ``on_rendered(result)`` once the image and
    its statistics are known, before the noise image is drawn (its noise fields still empty)."""
    import torch
    from . import rng
    from .outputs import image_stats, int_scale, pgm_scale
    from .preflight import check_kernel_memory
    from .chunks import (BYTES_PER_EVAL, BYTES_PER_EVAL_INTERP, DEFAULT_MAX_MEMORY,
                         rendered_selection)
    from .render import render
    from .mode import Mode
    from .scene import build_scene
    from .trace import printout_lines, trace_records

    t0 = time.perf_counter()
    if tool.threads:
        torch.set_num_threads(tool.threads)
    if tool.device.startswith("cuda") and not torch.cuda.is_available():
        raise NanoBraggError("--device cuda: no CUDA device is available (torch "
                             f"{torch.__version__} sees none); use --device cpu")
    if prepared is not None:
        scene, random, messages = prepared
    else:
        messages = []
        random = rng.NanoRandom()
        scene = build_scene(cfg, mode=Mode.from_tool(tool), messages=messages, random=random)
    check_kernel_memory(scene, BYTES_PER_EVAL_INTERP if scene.interpolate else BYTES_PER_EVAL,
                        cfg=cfg)
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
    rendered = rendered_selection(scene)
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
        rendered=rendered, omega_sum=result.omega_sum, seconds=time.perf_counter() - t0,
        kernel=result.kernel)
    if on_rendered is not None:
        on_rendered(res)
    if out.calculate_noise:
        if hasattr(progress, "stage"):
            progress.stage("noise image")
        res.noise, res.noise_photons, res.overloads = random.noise_image(image, out.seed, out.adc,
                                                                         scene.roi)
        res.seconds = time.perf_counter() - t0
    return res


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
    """What the command prints (nanoBragg.c's stdout, :mod:`nanobragg_cli.c_stdout`) with, for
    -trace_pixel, a TRACE_CONFIG line and the TRACE_PY lines before the solid-angle line."""
    from .c_stdout import report_lines as c_report_lines
    return c_report_lines(res)


def notes(cfg: Config, messages: list = ()) -> list:
    """The stderr notes before a render: flag warnings, our warnings among the scene's
    ``messages``, and the time-based seeds this run uses (so that it can be repeated exactly)."""
    from .c_stdout import OWN_WARNING, own_warnings
    lines = [f"warning: {w}" for w in cfg.warnings]
    lines += [f"warning: {m[len(OWN_WARNING):]}" for m in own_warnings(list(messages))]
    out, c = cfg.output, cfg.crystal
    if out.calculate_noise and not out.seed_given:
        lines.append(f"noise seed: {out.seed} (repeat with -seed {-out.seed})")
    if c.misset == "random" and not c.misset_seed_given:
        lines.append(f"random misset seed: {c.misset_seed} "
                     f"(repeat with -misset_seed {-c.misset_seed})")
    return lines


def report_lines(res: SimulationResult) -> list:
    """nanoBragg.c's stdout for this run (see :mod:`nanobragg_cli.c_stdout`), without trace lines."""
    from .c_stdout import setup_lines, statistics_lines
    return setup_lines(res.cfg, res.scene, res.messages) + list(res.printout) + statistics_lines(res)


# ---- 4. writing, and the whole command -------------------------------------------------------
def write_outputs(run: PreparedRun, res: SimulationResult, written: list, *,
                  input_records: list | None = None, started: float = 0.0,
                  t0: float = 0.0, deferred: list = ()) -> list:
    """Commit every file of :func:`run_files`, the ``deferred`` [(path, bytes)] of
    :func:`io.atomic.collect_deferred_writes` (the -hkl run's Fdump.bin) and the --manifest as
    one transaction (:func:`io.atomic.commit_outputs`: all new files or all old ones).
    ``written`` receives every path once all are in place. Returns the [(flag, path, bytes)]
    the manifest records."""
    from .io.atomic import commit_outputs
    tool, cfg = run.tool, run.cfg
    with _quiet():
        files = run_files(res, tool, run.argv)
    files += [("-dump", path, data) for path, data in deferred]
    if tool.manifest:
        from .manifest import file_record, manifest, manifest_bytes
        outputs = [file_record(flag, path, data) for flag, path, data in files]
        dump = cfg.crystal.dumpfile
        if cfg.crystal.hklfile is not None and not deferred and os.path.isfile(dump):
            outputs.append(file_record("-dump", dump))
        record = manifest(list(run.argv), cfg, tool, res, input_records, outputs, started,
                          time.perf_counter() - t0)
        files = files + [("--manifest", tool.manifest, manifest_bytes(record))]
    # no fsync: like nanoBragg.c's own writes, durability against power loss is left to the
    # file system (a sync costs as much as writing a 6 Mpixel image)
    commit_outputs([(path, data) for _, path, data in files], committed=written, fsync=False,
                   optional=[path for flag, path, _ in files if flag == "-dump"],
                   warn=lambda w: print(f"nanobragg: WARNING: {w}", file=sys.stderr))
    return [f for f in files if f[0] != "--manifest"]


def _quiet():
    from .validate import quiet_numpy
    return quiet_numpy()


def simulate_command(argv: list, written: list | None = None) -> int:
    """The command line's simulation: prepare, render one frame, write, report. ``written`` (a
    list) receives each output path once it is in place, so that an interrupted caller can say
    which files exist."""
    started, t0 = time.time(), time.perf_counter()
    written = [] if written is None else written
    run = prepare_run(argv)
    input_records = None
    if run.tool.manifest:
        from .manifest import file_record
        input_records = [file_record(flag, path) for flag, path in run.inputs]

    from .c_stdout import after_render_lines, noise_lines, setup_lines
    from .io.atomic import collect_deferred_writes
    from .progress import RenderProgress
    from .validate import check_image, quiet_numpy
    show = run.cfg.output.progress if run.tool.progress is None else run.tool.progress
    bar = RenderProgress(show, plain=run.tool.progress)

    def on_setup(scene, messages):
        # printed once the inputs are read: a bad input file fails alone on stderr
        for line in notes(run.cfg, messages):
            print(f"nanobragg: {line}", file=sys.stderr)
        sys.stderr.flush()
        bar.print_stdout(setup_lines(run.cfg, scene, messages))   # before the render starts

    try:  # Fdump.bin waits for the commit; no raw numpy warnings (check_image reports)
        with collect_deferred_writes() as deferred, quiet_numpy():
            res = run_simulation(run.cfg, run.tool, progress=bar, on_setup=on_setup,
                                 on_rendered=lambda r: bar.print_stdout(after_render_lines(r, False)))
        check_image(res, run.tool.c_parity, warn=_warn)   # nothing written if refused
        res.image_tensor = None   # the work-dtype image: the files need only the float32 one
        bar.print_stdout(noise_lines(res))
        bar.stage("writing files")
        write_outputs(run, res, written, input_records=input_records, started=started, t0=t0,
                      deferred=deferred)
    finally:
        bar.close()
    return 0
