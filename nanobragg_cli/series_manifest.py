"""The manifest of a series or shot list (``--manifest FILE``), and what ``--resume`` reads back.

One JSON document, rewritten atomically after every finished frame, so that it always describes
exactly the frames whose files are complete::

    {"manifest_version": 1, "tool": "nanobragg_cli", "kind": "series" | "batch",
     "argv": [...], "cwd": ..., "started_utc": ..., "versions": {...},
     "mode": "default" | "c-parity", "dtype": ..., "device": ...,
     "configuration_sha256": sha256 of what decides the bytes (see configuration_key),
     "noise_seed": S (frame i uses -seed S+i) or null, "misset_seed": ... or null,
     "inputs": [file records], "messages": [...],
     "frames": [{"index", "number", "id", "phi_deg", "seed",
                 "command": [argv of the single-image nanobragg run],
                 "command_line": the same as one shell line,
                 "nanoBragg_c": the same flags for nanoBragg.c, as one shell line,
                 "files": [{"flag", "path", "abspath", "bytes", "sha256"}], "seconds"}]}
"""

import datetime
import hashlib
import json
import os
import shlex

from .errors import InputFileError
from .manifest import MANIFEST_VERSION, file_record, versions_record
from .records import sha256_file


def configuration_key(kind: str, base_argv: list, tool_argv: list, inputs: list) -> str:
    """sha256 over what decides a frame's bytes besides its own command line: the kind of run,
    the run's flags (frame-independent), the tool options and the input files' contents."""
    record = {"kind": kind, "argv": list(base_argv), "tool": list(tool_argv),
              "inputs": [[r["flag"], r.get("sha256")] for r in inputs]}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def frame_record(frame, tool_argv: list, files: list, seconds: float | None) -> dict:
    """The manifest entry of a finished frame; ``files``: [(flag, path, bytes)]."""
    return {
        "index": frame.index, "number": frame.number, "id": frame.shot_id,
        "phi_deg": frame.phi_deg, "seed": frame.seed,
        "command": frame.command(tool_argv), "command_line": frame.command_line(tool_argv),
        "nanoBragg_c": shlex.join(frame.c_command()),
        "files": [file_record(flag, path, data) for flag, path, data in files],
        "seconds": seconds,
    }


def series_manifest(kind: str, argv: list, started: float, head: dict, frames: list) -> dict:
    """The whole manifest; ``head``: mode, dtype, device, configuration_sha256, seeds, inputs,
    messages; ``frames``: frame records in frame order."""
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    record = {"manifest_version": MANIFEST_VERSION, "tool": "nanobragg_cli", "kind": kind,
              "argv": list(argv), "cwd": os.getcwd(),
              "started_utc": stamp.isoformat(timespec="seconds"), "versions": versions_record()}
    record.update(head)
    record["frames"] = sorted(frames, key=lambda r: r["number"])
    return record


def manifest_bytes(record: dict) -> bytes:
    return (json.dumps(record, indent=1, allow_nan=False) + "\n").encode("utf-8")


def read_previous(path: str, kind: str) -> dict | None:
    """The manifest a ``--resume`` continues, or None when the file does not exist yet."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise InputFileError(f"--manifest {path}: cannot resume from it ({err})") from None
    if not isinstance(record, dict) or record.get("kind") != kind \
            or not isinstance(record.get("frames"), list):
        raise InputFileError(f"--manifest {path}: not the manifest of a {kind} run, "
                             "cannot resume from it")
    return record


def _without_kernel_choice(command, tool_argv: list):
    """A recorded frame command without the ``--compile on`` that ``--compile auto`` added to
    it (:func:`nanobragg_cli.series_run.kernel_argv`), for comparing with a planned command."""
    if not isinstance(command, list) or "--compile" in tool_argv:
        return command
    for i in range(len(command) - 1):
        if command[i] == "--compile" and command[i + 1] == "on":
            return command[:i] + command[i + 2:]
    return command


def complete_frames(previous: dict | None, frames: list, tool_argv: list, key: str) -> dict:
    """{number: record} of the previous run's frames that need no rendering: same configuration,
    same single-image command, and every file present with the recorded sha256."""
    if not previous or previous.get("configuration_sha256") != key:
        return {}
    wanted = {f.number: f.command(tool_argv) for f in frames}
    done = {}
    for rec in previous["frames"]:
        number = rec.get("number")
        if wanted.get(number) != _without_kernel_choice(rec.get("command"), tool_argv):
            continue
        files = rec.get("files") or []
        if files and all(r.get("sha256") and os.path.isfile(r["path"])
                         and sha256_file(r["path"]) == r["sha256"] for r in files):
            done[number] = rec
    return done
