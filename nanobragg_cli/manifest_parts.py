"""The manifest of a run split over several processes: one part per rank, merged into one.

Rank r of W writes ``sweep.rank<r>-of-<W>.json`` beside ``--manifest sweep.json`` (atomically,
after every frame, as a one-process run writes its manifest), with ``status`` "running" until its
share is done, then "finished". Its ``frames`` list only the frames of its own share.
:func:`merge` joins the W parts of a run into ``sweep.json``: the same document a one-process run
writes, every frame once, each with its ``rank``, ``host``, ``device``, ``seconds`` and files'
``sha256``, plus ``failed`` (frames whose rendering raised, with the error) and ``missing``.
:func:`read_all` gives ``--resume`` the union of the merged manifest and every part beside it.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from .errors import InputFileError, NanoBraggError
from .ranks import existing_parts, part_paths

# what must agree between the parts of one run
_SAME = ("kind", "configuration_sha256", "noise_seed", "misset_seed", "frames_total")
_WORLD = re.compile(r"\.rank(\d+)-of-(\d+)[^/]*$")


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: cannot read this manifest part ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("frames"), list):
        raise InputFileError(f"{path}: not a manifest part of a series or batch run")
    return record


def read_all(path: str, kind: str, key: str) -> dict | None:
    """The manifest ``--resume`` continues: ``path`` (if any) joined with every part beside it
    that has configuration ``key`` (frames of all of them; seeds of the first). None: none."""
    from .series_manifest import read_previous
    records = []
    main = read_previous(path, kind)
    if main is not None:
        records.append(main)
    for part in existing_parts(path):
        rec = _read(part)
        if rec.get("kind") == kind and rec.get("configuration_sha256") == key:
            records.append(rec)
    if not records:
        return None
    same = [r for r in records if r.get("configuration_sha256") == key]
    if not same:
        return records[0]   # another configuration: the caller says so and renders all
    combined = dict(same[0])
    frames = {}
    for rec in same:
        for f in rec["frames"]:
            frames.setdefault(f.get("number"), f)
    combined["frames"] = [frames[n] for n in sorted(frames, key=lambda n: (n is None, n))]
    return combined


def _worlds(path: str) -> dict:
    """{world size: [part paths present]} of the parts beside ``path``."""
    out = {}
    for p in existing_parts(path):
        m = _WORLD.search(p)
        if m:
            out.setdefault(int(m.group(2)), []).append(p)
    return out


def merged_record(parts: list) -> dict:
    """One manifest from the part records ``parts`` (rank order): checks that they belong to one
    run, keeps each frame once (a frame in two parts must have the same files)."""
    first = parts[0]
    for rec in parts[1:]:
        for k in _SAME:
            if rec.get(k) != first.get(k):
                raise NanoBraggError(f"manifest parts disagree on {k} ({first.get(k)!r} and "
                                     f"{rec.get(k)!r}): not parts of one run")
    frames, failed = {}, {}
    for rec in parts:
        for f in rec["frames"]:
            n = f.get("number")
            if n in frames:
                if [x.get("sha256") for x in frames[n]["files"]] != \
                        [x.get("sha256") for x in f["files"]]:
                    raise NanoBraggError(f"frame {n} is in two parts with different files")
                continue
            frames[n] = f
        for f in rec.get("failed", []):
            failed.setdefault(f.get("number"), f)
    record = {k: v for k, v in first.items() if k not in ("ranks", "status", "frames", "failed")}
    record["ranks"] = {"world_size": len(parts),
                       "merged_utc": datetime.datetime.now(datetime.timezone.utc)
                       .isoformat(timespec="seconds"),
                       "parts": [r.get("ranks") for r in parts],
                       "status": [r.get("status") for r in parts]}
    record["frames"] = [frames[n] for n in sorted(frames)]
    record["failed"] = [failed[n] for n in sorted(failed) if n not in frames]
    total = first.get("frames_total")
    record["missing"] = None if total is None else total - len(frames) - len(record["failed"])
    return record


def merge(path: str, world: int, *, only_if_finished: bool = False) -> dict | None:
    """Merge the ``world`` parts of ``--manifest path`` into ``path`` (atomically); returns the
    merged record. ``only_if_finished``: do nothing (None) unless every part is present and
    finished (the last rank to finish merges; two that finish together write the same frames)."""
    from .io.atomic import atomic_write_bytes
    from .series_manifest import manifest_bytes
    paths = part_paths(path, world)
    absent = [p for p in paths if not os.path.exists(p)]
    if absent:
        if only_if_finished:
            return None
        raise InputFileError(f"{absent[0]}: no such manifest part ({len(absent)} of {world} "
                             "missing: has every rank started?)")
    parts = [_read(p) for p in paths]
    if only_if_finished and any(p.get("status") != "finished" for p in parts):
        return None
    record = merged_record(parts)
    atomic_write_bytes(path, manifest_bytes(record), fsync=False)
    return record


def merge_command_main(path: str) -> int:
    """``nanobragg batch --merge MANIFEST``: merge the parts beside MANIFEST (the world size of
    the newest parts), say what the merged manifest holds; exit 0 when every frame is complete,
    1 otherwise (then ``--resume`` renders what is missing)."""
    worlds = _worlds(path)
    if not worlds:
        raise InputFileError(f"--merge {path}: no manifest parts beside it "
                             f"(expected {part_paths(path, 2)[0]} ...)")
    world = max(worlds, key=lambda w: max(os.path.getmtime(p) for p in worlds[w]))
    record = merge(path, world)
    status = record["ranks"]["status"]
    unfinished = [r for r, s in enumerate(status) if s != "finished"]
    print(f"merge: {world} parts -> {path}: {len(record['frames'])} frames complete, "
          f"{len(record['failed'])} failed, {record['missing']} missing"
          + (f"; ranks {unfinished} did not finish" if unfinished else ""), flush=True)
    for f in record["failed"]:
        print(f"failed: frame {f.get('number')} (rank {f.get('rank')}): {f.get('error')}")
    return 0 if not record["failed"] and not record["missing"] else 1
