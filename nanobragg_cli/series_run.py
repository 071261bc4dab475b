"""Render the frames of a series or shot list: set up once, render many, write each frame as soon
as it is done.

:class:`FrameRenderer` builds the scene (detector, sources, structure factors, mosaic domains,
crystal shape) once; each frame only turns the crystal to its own φ range
(:func:`nanobragg_cli.scene.rotated_scene`) and starts the noise from the random state a fresh
single-image process would have at that point, with the frame's own seed. :func:`run_frames`
drives the loop: atomic per-frame commits, the manifest after each frame, progress and ETA on
stderr, one line per finished frame on stdout.
"""

import copy
import sys
import time

from .errors import NanoBraggError
from .io.atomic import atomic_write_bytes, collect_deferred_writes, commit_outputs


def commit_frame(files: list, written: list, cache: list = ()) -> None:
    """Put one frame's files [(path, bytes)] in place, all or nothing (the one place a frame is
    committed; ``written`` receives each path once it is in place). ``cache``: [(path, bytes)]
    the set-up deferred (the -hkl run's Fdump.bin), committed with the frame but dropped with a
    warning if it cannot be written, like the single-image run's."""
    commit_outputs(list(files) + list(cache), committed=written, fsync=False,
                   optional=[path for path, _ in cache],
                   warn=lambda w: print(f"nanobragg: WARNING: {w}", file=sys.stderr))


def tool_argv(tool) -> list:
    """The tool options (double dash) that decide a frame's bytes, as a command line repeats them."""
    out = []
    if tool.c_parity:
        out.append("--c-parity")
    if tool.dtype != "float64":
        out += ["--dtype", tool.dtype]
    if tool.device != "cpu":
        out += ["--device", tool.device]
    if tool.png:
        out += ["--png-scale", tool.png_scale] if tool.png_scale != "log" else []
    if tool.compile != "auto":
        out += ["--compile", tool.compile]
    return out


def kernel_argv(tool, kernel: str) -> list:
    """What a frame's single-image command line adds to :func:`tool_argv` so that it renders
    with the same kernel (bytes differ by ~1e-14 between them): ``--compile on`` for a frame
    that ``--compile auto`` fused, since the series' work decided it, not the frame's."""
    return ["--compile", "on"] if kernel == "fused" and tool.compile == "auto" else []


class FrameRenderer:
    """Shared set-up of the frames of one run (all frames share everything but the φ range).

    ``cfg``: the resolved Config of the first frame to render; ``tool``: ToolOptions;
    ``structure_factors``: reuse these instead of reading the file again.
    """

    def __init__(self, cfg, tool, structure_factors=None):
        import torch
        from . import rng
        from .mode import Mode
        from .scene import build_scene
        if tool.threads:
            torch.set_num_threads(tool.threads)
        if tool.device.startswith("cuda") and not torch.cuda.is_available():
            raise NanoBraggError("--device cuda: no CUDA device is available (torch "
                                 f"{torch.__version__} sees none); use --device cpu")
        self.tool = tool
        self.messages = []
        self.random = rng.NanoRandom()
        self.scene = build_scene(cfg, mode=Mode.from_tool(tool), messages=self.messages,
                                 random=self.random, structure_factors=structure_factors)

    def render(self, cfg):
        """The SimulationResult of the frame whose resolved Config is ``cfg`` (its φ range)."""
        from .scene import rotated_scene
        from .simulate import run_simulation
        scene = rotated_scene(self.scene, cfg)
        # the random state after set-up is the same for every frame (misset and mosaic draws
        # come before the noise); each frame starts from a copy, as its own process would
        prepared = (scene, copy.deepcopy(self.random), list(self.messages))
        return run_simulation(cfg, self.tool, prepared=prepared)


def frame_files(res, frame, tool) -> list:
    """[(flag, path, bytes)] of the files ``frame`` writes, from its result."""
    from .simulate import output_files
    out = res.cfg.output
    flag_of = {out.floatfile: "-floatfile", out.intfile: "-intfile", out.pgmfile: "-pgmfile",
               out.noisefile: "-noisefile"}
    wanted = dict(frame.outputs)
    files = []
    for path, data in output_files(res):
        flag = flag_of.get(path)
        if flag in wanted and wanted[flag] == path:
            files.append((flag, path, data))
    if "--png" in wanted:
        from .io.png import image_png_bytes
        files.append(("--png", wanted["--png"],
                      image_png_bytes(res.image, tool.png_scale, res.rendered)))
    return files


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


class FrameProgress:
    """Frames done / total and the ETA on stderr (a terminal, or when asked)."""

    def __init__(self, enabled: bool, total: int):
        self.stream = sys.stderr
        self.enabled = enabled
        self.total = total
        self.t0 = time.perf_counter()
        self.done = 0

    def frame_done(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        left = (self.total - self.done) * elapsed / self.done
        eta = f", ETA {_duration(left)}" if self.done < self.total else ""
        print(f"nanobragg: frames {self.done}/{self.total} done{eta}", file=self.stream,
              flush=True)


def _what(frame) -> str:
    return f"frame {frame.number}" if frame.shot_id is None else f"shot {frame.shot_id}"


def failures_error(failed: list, total: int, manifest: str | None,
                   kind: str = "series") -> NanoBraggError:
    """The one-line error of a run whose frames ``failed`` (exit 9; rerun with --resume); a
    batch names its shots (``id``), a series its frame numbers."""
    first = failed[0]
    where = f"; each error is in {manifest}" if manifest else ""
    unit = "shot(s)" if kind == "batch" else "frame(s)"
    name = f"shot {first['id']}" if first.get("id") is not None else f"frame {first['number']}"
    return NanoBraggError(f"{len(failed)} of {total} {unit} failed ({name}: "
                          f"{first['error']}){where}; rerun with --resume to render what is "
                          "missing")


def frame_line(frame, res, files: list, seconds: float) -> str:
    """The stdout line of a finished frame."""
    what = _what(frame)
    phi = f" phi={frame.phi_deg}" if frame.phi_deg is not None and frame.shot_id is None else ""
    names = " ".join(path for _, path, _ in files)
    return f"{what}{phi}: {names} max_I={res.stats.max_I:g} ({seconds:.2f} s)"


def run_frames(todo: list, configs, renderer_for, tool, written: list, records: dict, *,
               write_manifest=None, store_image=None, progress: bool = False,
               where: dict | None = None, failed: list | None = None,
               deferred: list = (), run_images: int | None = None) -> dict:
    """Render the frames ``todo``, committing each one as soon as it is done.

    ``configs(frame)`` -> the frame's Config; ``renderer_for(frame, cfg)`` -> its FrameRenderer;
    ``records``: {number: manifest frame record}, pre-filled with frames already complete, and
    updated here; ``write_manifest(records)``: called after every committed frame;
    ``store_image(frame, res)``: called with every rendered frame (the NXmx series file);
    ``where``: fields added to each record (rank, host, device); ``failed``: a list receiving
    {number, index, id, error, ...where} of each frame whose rendering or writing raised (the
    other frames go on); without it the first such error ends the run; ``deferred``: the
    [(path, bytes)] the set-up queued (:func:`io.atomic.collect_deferred_writes`: the Fdump.bin
    cache), committed with the first frame that is committed (set-up done while rendering is
    queued the same way): a run whose frames all fail or are interrupted leaves none of it.
    ``run_images``: the images of the whole run (every rank's, complete ones included), which
    ``--compile auto`` weighs (:mod:`nanobragg_cli.fused`); default: ``len(todo)``.
    """
    from .fused import images_of_run
    from .series_manifest import frame_record
    bar = FrameProgress(progress, len(todo))
    targv = tool_argv(tool)

    def record(frame, files, seconds, kernel):
        return {**frame_record(frame, targv + kernel_argv(tool, kernel), files, seconds),
                **(where or {})}
    try:
        with images_of_run(run_images or len(todo)):
            _frames_loop(todo, configs, renderer_for, tool, written, records, write_manifest,
                         store_image, bar, record, failed, where or {}, list(deferred))
    except BaseException:   # Ctrl-C, SIGTERM, an error: say which frames are complete
        if records:
            extra = [p for p in written if p not in _frame_paths(records)]
            written[:] = [f"the files of {len(records)} complete frame(s) "
                          f"({_ranges(sorted(records))})"] + extra
        raise
    return records


def _frame_paths(records: dict) -> set:
    return {f["path"] for rec in records.values() for f in rec["files"]}


def _ranges(numbers: list) -> str:
    """'1-3, 7' for [1, 2, 3, 7]."""
    out, start, prev = [], None, None
    for n in numbers + [None]:
        if start is not None and (n is None or n != prev + 1):
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(out)


def _frames_loop(todo, configs, renderer_for, tool, written, records, write_manifest,
                 store_image, bar, frame_record, failed, where, pending) -> None:
    from .validate import check_image, quiet_numpy  # a frame with NaN/inf/negative pixels fails
    for frame in todo:
        t0 = time.perf_counter()
        try:
            cfg = configs(frame)
            with collect_deferred_writes() as queued, quiet_numpy():
                res = renderer_for(frame, cfg).render(cfg)
            pending += queued
            check_image(res, tool.c_parity, warn=lambda w: print(f"nanobragg: warning: frame "
                                                                    f"{frame.number}: {w}",
                                                                    file=sys.stderr))
            files = frame_files(res, frame, tool)
            commit_frame([(path, data) for _, path, data in files], written,
                         list(dict(pending).items()))
            pending.clear()
        except Exception as err:   # Ctrl-C and SIGTERM are not Exceptions: they end the run
            if failed is None:
                raise
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            failed.append({"index": frame.index, "number": frame.number, "id": frame.shot_id,
                           "error": message, **where})
            _note(f"{_what(frame)} failed: {message}")
            if write_manifest is not None:
                write_manifest(records)
            bar.frame_done()
            continue
        seconds = time.perf_counter() - t0
        records[frame.number] = frame_record(frame, files, seconds, res.kernel)
        if write_manifest is not None:
            write_manifest(records)
        if store_image is not None:
            store_image(frame, res)
        print(frame_line(frame, res, files, seconds), flush=True)
        bar.frame_done()


def _note(message: str) -> None:
    print(f"nanobragg: {message}", file=sys.stderr)


def progress_wanted(cfg, tool) -> bool:
    """Frame progress on stderr: --progress forces it, --no-progress/-noprogress stop it, else
    shown when stderr is a terminal."""
    if tool.progress is not None:
        return tool.progress
    return cfg.output.progress and sys.stderr.isatty()


def announce(cfg, tool, frames: list, renderer) -> None:
    """Warnings and the seeds a time-seeded run uses (so that it can be repeated), on stderr."""
    for w in cfg.warnings:
        _note(f"warning: {w}")
    for m in renderer.messages if renderer is not None else ():
        if m.startswith("WARNING:"):
            _note("warning:" + m[len("WARNING:"):])
    seeded = [f for f in frames if f.seed is not None]
    if seeded and not cfg.output.seed_given:
        s0 = seeded[0].seed
        _note(f"noise seed: frame i uses -seed {s0}+i (repeat with -seed {s0})")
    c = cfg.crystal
    if c.misset == "random" and not c.misset_seed_given and frames:
        from .series import last_value
        _note("random misset seed: "
              f"{last_value(list(frames[0].argv), '-misset_seed')} (repeat with -misset_seed)")


def resumable(path: str, kind: str, key: str) -> dict | None:
    """The manifest ``--resume`` continues (its seeds and complete frames), or None: none yet,
    or one of another configuration (then every frame is rendered again, as said on stderr)."""
    from .manifest_parts import read_all
    previous = read_all(path, kind, key)
    if previous is not None and previous.get("configuration_sha256") != key:
        _note(f"--resume: {path} records another configuration (flags, tool options or input "
              "files changed): rendering every frame")
        return None
    return previous


def run_key(kind: str, argv: list, tool, sopts, inputs: list) -> tuple:
    """(input_records, key, previous) of a ``kind`` ("series"/"batch") run: its input files'
    records, its configuration key (flags, tool options, inputs) and the manifest ``--resume``
    continues (None without --resume or when it records another configuration)."""
    from .manifest import file_record
    from .series_manifest import configuration_key
    input_records = [file_record(flag, path) for flag, path in inputs]
    key = configuration_key(kind, argv, tool_argv(tool), input_records)
    previous = resumable(tool.manifest, kind, key) if sopts.resume else None
    return input_records, key, previous


def series_main(argv: list, written: list) -> int:
    """``nanobragg <flags> --frames N [--first-frame K] [--resume]``: a rotation series."""
    from . import preflight
    from .errors import FlagError
    from .run_share import Share
    from .series import (SeriesOptions, base_seed, frame_config, frames_to_render, misset_seed,
                         plan_series, series_templates)
    from .series_manifest import complete_frames
    from .simulate import prepare, split_tool_options

    started, t0 = time.time(), time.perf_counter()
    nb_argv, tool = split_tool_options(argv)
    sopts = SeriesOptions.from_tool(tool)
    if sopts.frames is None:
        raise FlagError("--first-frame/--resume/--rank/--world-size: only for a series, give "
                        "--frames N")
    if tool.trace_json:
        raise FlagError("--trace-json: traces one image, not a series (trace one frame with the "
                        "command line its --manifest records)")
    if sopts.resume and not tool.manifest:
        raise FlagError("--resume: needs --manifest FILE (the record of the complete frames)")
    if tool.hdf5:
        from .io.hdf5 import require_h5py
        require_h5py()
        if "#" in tool.hdf5:
            raise FlagError(f"--hdf5 {tool.hdf5}: one file holds the whole series (no '#')")
    share = Share(tool, "series")
    preflight.check_header_inputs(nb_argv)
    cfg = prepare(nb_argv)
    templates = series_templates(nb_argv, tool)
    inputs = preflight.input_files(cfg)
    preflight.check_inputs(inputs)
    input_records, key, previous = run_key("series", nb_argv, tool, sopts, inputs)
    targv = tool_argv(tool)
    share.start()
    noise = cfg.output.calculate_noise and "-noisefile" in templates
    seeds = share.agree_seeds(
        {"noise_seed": base_seed(cfg, previous) if noise else None,
         "misset_seed": misset_seed(cfg, previous)},
        _time_seeded(previous, noise and not cfg.output.seed_given,
                     cfg.crystal.misset == "random" and not cfg.crystal.misset_seed_given))
    frames = plan_series(nb_argv, cfg, sopts, templates, seeds)
    mine = frames_to_render(frames, (), share.rank, share.world)
    done = complete_frames(previous, mine, targv, key)
    if tool.hdf5 and "-floatfile" not in templates:
        done = {}   # the NXmx file needs every frame's image: without float files, render all
    todo = frames_to_render(mine, set(done))
    part = share.manifest_path(tool.manifest)
    planned = [(flag, path) for f in mine for flag, path in f.outputs]
    if cfg.crystal.hklfile is not None:
        planned.append(("-dump", cfg.crystal.dumpfile))
    planned += [(flag, p) for flag, p in (("--manifest", part), ("--hdf5", tool.hdf5)) if p]
    preflight.check_outputs(planned, inputs)
    preflight.check_memory(cfg, tool.max_memory)

    first_cfg = frame_config(cfg, (todo or frames)[0])
    with collect_deferred_writes() as deferred:   # Fdump.bin joins the first frame's commit
        renderer = FrameRenderer(first_cfg, share.render_tool()) if (todo or tool.hdf5) else None
    announce(cfg, tool, frames, renderer)
    print(f"series: {len(frames)} frames ({frames[0].number} to {frames[-1].number}), "
          f"{share_text(share, len(mine))}{len(todo)} to render, {len(mine) - len(todo)} "
          "already complete", flush=True)

    head = {**share.head(), "frames_total": len(frames),
            "mode": "c-parity" if tool.c_parity else "default", "dtype": tool.dtype,
            "device": tool.device, "configuration_sha256": key,
            "noise_seed": frames[0].seed,
            "misset_seed": _misset_value(frames[0]),
            "inputs": input_records,
            "messages": [] if renderer is None else list(renderer.messages)}
    write_manifest = manifest_writer(part, "series", argv, started, head, written)
    store_image, nxs = None, None
    if tool.hdf5:
        nxs = _series_file(cfg, frames, renderer, argv, done)
        store_image = nxs.store

    def config_of(frame):
        return frame_config(cfg, frame)

    records = dict(done)
    failed = head["failed"] = []
    if write_manifest is not None and (not todo or share.world > 1):
        write_manifest(records)   # a part at once: it replaces the part of an earlier run
    t_frames = time.perf_counter()
    run_frames(todo, config_of, lambda frame, c: renderer, tool, written, records,
               write_manifest=write_manifest, store_image=store_image,
               progress=progress_wanted(cfg, tool), where=share.where(), failed=failed,
               deferred=deferred, run_images=len(frames))
    if nxs is not None and not failed:
        commit_frame([(tool.hdf5, nxs.file.finish())], written)
    return finish_run(share, "series", head, records, write_manifest, tool.manifest, written,
                      len(todo), t0, t_frames)


def _time_seeded(previous: dict | None, noise: bool, misset: bool) -> list:
    """The seed flags whose value would come from the clock: [-seed, -misset_seed] (those the
    flags do not give and the manifest being resumed does not record)."""
    out = []
    if noise and not (previous and previous.get("noise_seed") is not None):
        out.append("-seed")
    if misset and not (previous and previous.get("misset_seed") is not None):
        out.append("-misset_seed")
    return out


def share_text(share, n: int) -> str:
    """'rank 1 of 4 renders 25: ' in the plan line of a multi-rank run, else ''."""
    return f"rank {share.rank} of {share.world} renders {n}: " if share.world > 1 else ""


def finish_run(share, kind: str, head: dict, records: dict, write_manifest, manifest, written,
               n_todo: int, t0: float, t_frames: float) -> int:
    """The end of a series or batch: this rank's manifest (part) marked finished, the parts
    merged (:meth:`Share.finish`), the summary line; failed frames: one error line, exit 9."""
    failed = head["failed"]
    head["status"] = "finished"
    if write_manifest is not None:
        write_manifest(records)
    share.finish(manifest, written)
    print(summary_line(kind, n_todo - len(failed), t0, t_frames), flush=True)
    if failed:
        raise failures_error(failed, n_todo, manifest and share.manifest_path(manifest), kind)
    return 0


def summary_line(kind: str, n: int, t0: float, t_frames: float) -> str:
    """``series: N frames rendered in T s (set-up S s, F s per frame)``: T from the start of the
    command (torch import included), S until the first frame starts (flags, inputs, scene)."""
    now = time.perf_counter()
    per = (now - t_frames) / n if n else 0.0
    what = "frames" if kind == "series" else "shots"
    return (f"{kind}: {n} {what} rendered in {now - t0:.2f} s (set-up {t_frames - t0:.2f} s, "
            f"{per:.3g} s per {what[:-1]})")


def _misset_value(frame):
    from .series import last_value
    value = last_value(list(frame.argv), "-misset_seed")
    return None if value is None else int(value)


class _SeriesFile:
    """The NXmx file of a series being filled: ``store(frame, res)`` puts a rendered frame at its
    place; frames complete from an earlier run are read back from their float files."""

    def __init__(self, nxs, frames: list, shape: tuple, done: dict):
        from .io.floatimage import read_float_image
        self.file = nxs
        self.position = {f.number: k for k, f in enumerate(frames)}
        for f in frames:
            if f.number in done:
                nxs.put(self.position[f.number],
                        read_float_image(dict(f.outputs)["-floatfile"], shape))

    def store(self, frame, res) -> None:
        self.file.put(self.position[frame.number], res.image)


def _series_file(cfg, frames, renderer, argv, done) -> _SeriesFile:
    """The NXmx series file (geometry of the set-up scene), ready to receive the frames."""
    import math
    import numpy as np
    from types import SimpleNamespace
    from .io.hdf5 import NXmxSeries, nxmx_from_result
    d = cfg.detector
    stub = SimpleNamespace(scene=renderer.scene, cfg=cfg,
                           image=np.zeros((d.spixels, d.fpixels), dtype=np.float32))
    nx = nxmx_from_result(stub)
    nx.title = " ".join(["nanobragg", *argv])
    angles = [float(f.phi_deg) for f in frames]
    nxs = NXmxSeries(nx, angles, cfg.sampling.osc * 180.0 / math.pi, tuple(d.spindle))
    return _SeriesFile(nxs, frames, (d.spixels, d.fpixels), done)


def manifest_writer(path: str | None, kind: str, argv: list, started: float, head: dict,
                    written: list):
    """None without --manifest, else callable(records) rewriting the manifest atomically."""
    if not path:
        return None
    from .series_manifest import manifest_bytes, series_manifest

    def write(records: dict) -> None:
        record = series_manifest(kind, argv, started, head, list(records.values()))
        atomic_write_bytes(path, manifest_bytes(record), fsync=False)
        if path not in written:
            written.append(path)
    return write
