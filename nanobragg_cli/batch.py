"""``nanobragg batch SHOTS.jsonl [-- <base flags>]``: a shot list, one image per line.

Each line of SHOTS.jsonl is a JSON object ``{"id": ..., "flags": "<nanoBragg.c flags>"}``
(``flags`` may also be a list of strings). Shot i (0-based, numbered K + i, K = 1 unless
``--first-frame`` says otherwise) is the single image of the base flags followed by the shot's
flags (so the shot's override the base's). Output names are templates: ``{id}`` becomes the
shot's id, a run of ``#`` its zero-padded number. Its noise seed is the shot's ``-seed``, else
S + i (S from the base ``-seed``, else the time seed). Outputs no flag names are not written.

Every line is read and every shot's flags resolved before anything is rendered: a malformed line
or a bad flag names the file and line, and nothing is written. Shots share what they can: the
structure factors are read once per file, and consecutive shots that differ only in ``-phi``
share the whole scene. ``--manifest``/``--resume`` work as for a series
(:mod:`nanobragg_cli.series_run`).
"""

import json
import re
import shlex
import sys
import time

import click

from .errors import FlagError, InputFileError, NanoBraggError

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def read_shots(path: str) -> list:
    """[(line number, id, [flags])] of SHOTS.jsonl; errors name the file and line."""
    try:
        with open(path, "rb") as fh:
            lines = fh.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"{path}: cannot read it ({err})") from None
    shots, seen = [], {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise InputFileError(f"{where}: not valid JSON ({err.args[0].split(':')[0]})") from None
        if not isinstance(obj, dict):
            raise InputFileError(f"{where}: expected a JSON object {{\"id\": ..., \"flags\": ...}}")
        unknown = set(obj) - {"id", "flags"}
        if unknown:
            raise InputFileError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                 "(a shot has \"id\" and \"flags\")")
        if "id" not in obj or isinstance(obj["id"], bool) or \
                not isinstance(obj["id"], (str, int)):
            raise InputFileError(f"{where}: \"id\" must be a string or an integer")
        shot_id = str(obj["id"])
        if not _ID.fullmatch(shot_id):
            raise InputFileError(f"{where}: id {shot_id!r}: use letters, digits, '.', '_', '-' "
                                 "(it becomes part of file names)")
        if shot_id in seen:
            raise InputFileError(f"{where}: id {shot_id!r} repeats line {seen[shot_id]}")
        seen[shot_id] = n
        flags = obj.get("flags", "")
        if isinstance(flags, str):
            try:
                flags = shlex.split(flags)
            except ValueError as err:
                raise InputFileError(f"{where}: \"flags\": {err}") from None
        elif not (isinstance(flags, list) and all(isinstance(f, str) for f in flags)):
            raise InputFileError(f"{where}: \"flags\" must be a string or a list of strings")
        for f in flags:
            if f.startswith("--"):
                raise InputFileError(f"{where}: {f}: options of this tool go in the base flags, "
                                     "after '--'")
        shots.append((n, shot_id, flags))
    if not shots:
        raise InputFileError(f"{path}: no shots (one JSON object a line)")
    return shots


def plan_batch(path: str, base_argv: list, tool, first: int, previous: dict | None = None) -> tuple:
    """([Frame], {number: Config}, base Config, {"noise_seed": S, "misset_seed": M}) of a shot
    list (shot i's noise: -seed S+i; a random misset: -misset_seed M); resolves every shot first.
    ``previous``: the manifest being resumed (its seeds are kept when the flags give none)."""
    from dataclasses import replace
    from .series import (Frame, base_seed, expand, frame_argv, last_value, misset_seed,
                         named_outputs)
    from .simulate import prepare
    shots = read_shots(path)
    base_cfg = prepare(base_argv)
    seed0 = base_seed(base_cfg, previous)
    misset0 = misset_seed(base_cfg, previous)
    if misset0 is None:   # a shot may still ask for -misset random
        misset0 = -base_cfg.crystal.misset_seed if previous is None or \
            previous.get("misset_seed") is None else int(previous["misset_seed"])
    frames, configs, seen = [], {}, {}
    for i, (line, shot_id, flags) in enumerate(shots):
        where = f"{path}:{line}"
        number = first + i
        argv = list(base_argv) + list(flags)
        try:
            named = named_outputs(argv, tool)
            outputs = [(flag, expand(flag, t, number, shot_id)) for flag, t in named.items()]
            shot_cfg = prepare(argv)     # checks the shot's flags; says which files it writes
            out = shot_cfg.output
            keep = {"-floatfile": True, "-intfile": True, "-pgmfile": out.write_pgm,
                    "-noisefile": out.calculate_noise, "--png": True}
            outputs = [(flag, p) for flag, p in outputs if keep[flag]]
            seed = None
            if out.calculate_noise and "-noisefile" in dict(outputs):
                given = last_value(list(flags), "-seed")
                seed = int(given) if given is not None else seed0 + i
            misset = None
            if shot_cfg.crystal.misset == "random":
                if last_value(list(flags), "-misset_seed") is None:
                    misset = misset0
            fargv = frame_argv(argv, i, [o for o in outputs if not o[0].startswith("--")],
                               None, seed, misset)
            cfg = prepare(fargv)
        except NanoBraggError as err:
            raise FlagError(f"{where}: {err}") from None
        if not outputs:
            raise FlagError(f"{where}: the shot writes no file: name its outputs (e.g. "
                            "-intfile shot_{id}.img) in the base or shot flags")
        for flag, p in outputs:
            if p in seen:
                raise FlagError(f"{where}: {flag} {p}: also written by {seen[p]} (use {{id}} "
                                "or '#' in the name)")
            seen[p] = where
        written = dict(outputs)
        cfg = replace(cfg, output=replace(
            cfg.output, calculate_noise=cfg.output.calculate_noise and "-noisefile" in written,
            write_pgm=cfg.output.write_pgm and "-pgmfile" in written))
        frames.append(Frame(index=i, number=number, argv=tuple(fargv), outputs=tuple(outputs),
                            seed=seed, shot_id=shot_id))
        configs[number] = cfg
    return frames, configs, base_cfg, {"noise_seed": seed0, "misset_seed": misset0}


def _same_scene(a, b) -> bool:
    """Whether configs ``a`` and ``b`` describe the same scene up to the spindle start angle."""
    from dataclasses import replace
    try:
        return replace(a, output=b.output, warnings=b.warnings,
                       sampling=replace(a.sampling, phi0=b.sampling.phi0)) == b
    except (ValueError, TypeError):   # arrays (a mask) do not compare as a whole
        return False


class _Renderers:
    """FrameRenderer per shot, reusing the previous one when only φ differs, and the structure
    factors per (file, default_F) always."""

    def __init__(self, tool):
        self.tool = tool
        self.current = None
        self.current_cfg = None
        self.sf = {}
        self.messages = []

    def __call__(self, frame, cfg):
        from .series_run import FrameRenderer
        if self.current is not None and _same_scene(self.current_cfg, cfg):
            return self.current
        c = cfg.crystal
        key = (c.hklfile, c.dumpfile, c.default_F)
        r = FrameRenderer(cfg, self.tool, structure_factors=self.sf.get(key))
        self.sf[key] = r.scene.sf
        if not self.messages:
            self.messages.extend(r.messages)
        self.current, self.current_cfg = r, cfg
        return r


def batch_main(shots_path: str, argv: list, written: list) -> int:
    from . import preflight
    from .series import SeriesOptions, frames_to_render
    from .series_manifest import complete_frames
    from .run_share import Share
    from .series import base_seed
    from .series_run import (_note, _time_seeded, finish_run, manifest_writer, progress_wanted,
                             run_frames, run_key, share_text, tool_argv)
    from .simulate import split_tool_options

    started, t0 = time.time(), time.perf_counter()
    base_argv, tool = split_tool_options(argv)
    sopts = SeriesOptions.from_tool(tool)
    if sopts.frames is not None:
        raise FlagError("--frames: not in a shot list (each line is one image)")
    for flag, value in (("--trace-json", tool.trace_json), ("--hdf5", tool.hdf5)):
        if value:
            raise FlagError(f"{flag}: not available for a shot list")
    if sopts.resume and not tool.manifest:
        raise FlagError("--resume: needs --manifest FILE (the record of the complete shots)")
    share = Share(tool, "batch")
    preflight.check_header_inputs(base_argv)
    frames, configs, base_cfg, seeds = plan_batch(shots_path, base_argv, tool, sopts.first)
    inputs = [("batch", shots_path)]
    for cfg in configs.values():
        inputs += [i for i in preflight.input_files(cfg) if i not in inputs]
    preflight.check_inputs(inputs)
    input_records, key, previous = run_key("batch", base_argv, tool, sopts, inputs)
    targv = tool_argv(tool)
    share.start()
    noisy = any(f.seed is not None for f in frames)
    agreed = share.agree_seeds(
        {"noise_seed": base_seed(base_cfg, previous), "misset_seed": seeds["misset_seed"]
         if previous is None or previous.get("misset_seed") is None
         else int(previous["misset_seed"])},
        _time_seeded(previous, noisy and not base_cfg.output.seed_given,
                     _random_misset(configs) and not base_cfg.crystal.misset_seed_given))
    if previous is not None or agreed != seeds:   # again, with the seeds all ranks share
        frames, configs, base_cfg, seeds = plan_batch(shots_path, base_argv, tool, sopts.first,
                                                      agreed)
    mine = frames_to_render(frames, (), share.rank, share.world)
    done = complete_frames(previous, mine, targv, key)
    todo = frames_to_render(mine, set(done))
    part = share.manifest_path(tool.manifest)
    planned = [(flag, p) for f in mine for flag, p in f.outputs]
    for cfg in configs.values():
        if cfg.crystal.hklfile is not None and ("-dump", cfg.crystal.dumpfile) not in planned:
            planned.append(("-dump", cfg.crystal.dumpfile))
    if part:
        planned.append(("--manifest", part))
    preflight.check_outputs(planned, inputs)
    for cfg in configs.values():
        preflight.check_memory(cfg, tool.max_memory)
    for w in base_cfg.warnings:
        _note(f"warning: {w}")
    if noisy and not base_cfg.output.seed_given:
        s0 = seeds["noise_seed"]
        _note(f"noise seed: shot i uses -seed {s0}+i unless it gives its own "
              f"(repeat with -seed {s0})")
    print(f"batch: {len(frames)} shots from {shots_path}, {share_text(share, len(mine))}"
          f"{len(todo)} to render, {len(mine) - len(todo)} already complete", flush=True)
    renderers = _Renderers(share.render_tool())
    head = {**share.head(), "frames_total": len(frames), "mode": "c-parity" if tool.c_parity else "default", "dtype": tool.dtype,
            "device": tool.device, "configuration_sha256": key,
            "inputs": input_records, **seeds}
    head["messages"] = renderers.messages   # filled in by the first set-up
    write_manifest = manifest_writer(part, "batch", ["batch", shots_path, "--", *argv],
                                     started, head, written)
    records = dict(done)
    failed = head["failed"] = []
    if write_manifest is not None and (not todo or share.world > 1):
        write_manifest(records)   # a part at once: it replaces the part of an earlier run
    t_frames = time.perf_counter()
    run_frames(todo, lambda f: configs[f.number], renderers, tool, written, records,
               write_manifest=write_manifest, progress=progress_wanted(base_cfg, tool),
               where=share.where(), failed=failed, run_images=len(frames))
    return finish_run(share, "batch", head, records, write_manifest, tool.manifest, written,
                      len(todo), t0, t_frames)


def _random_misset(configs: dict) -> bool:
    return any(c.crystal.misset == "random" for c in configs.values())


@click.command("batch", context_settings={"help_option_names": ["-h", "--help"],
                                          "ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
@click.option("--merge", "merge", metavar="MANIFEST", default=None,
              help="merge the per-rank parts (MANIFEST's .rankR-of-W files) of a series or shot "
              "list run over several processes into MANIFEST, and exit")
@click.argument("shots", required=False)
@click.argument("base", nargs=-1, type=click.UNPROCESSED)
def batch_command(merge, shots, base):
    """Render a shot list: one image per line of SHOTS (JSON lines, {"id": ..., "flags": ...}),
    each with the BASE flags (nanoBragg.c flags and this tool's --options) followed by its own.

    Output names are templates: {id} is the shot's id, a run of '#' its number. Split over
    several processes (torchrun, srun, mpirun, or --rank/--world-size) each renders its share:
    see docs/scale-out.md.
    """
    from .cli import EXIT_INTERRUPT, _err, _interrupted
    base = list(base)
    if base and base[0] == "--":
        base = base[1:]
    written = []
    try:
        if merge is not None:
            if shots or base:
                raise FlagError("--merge: give only the manifest (nanobragg batch --merge FILE)")
            from .manifest_parts import merge_command_main
            sys.exit(merge_command_main(merge))
        if not shots:
            raise FlagError("batch: give the shot list, SHOTS.jsonl (see 'nanobragg batch --help')")
        code = batch_main(shots, base, written)
    except NanoBraggError as err:
        code = _err(str(err), err.exit_code)
    except KeyboardInterrupt:
        print(f"nanobragg: {_interrupted(written, 'interrupted')}", file=sys.stderr)
        code = EXIT_INTERRUPT
    sys.exit(code)
