"""Parse per-pixel trace logs of nanoBragg.c (``TRACE_C``) and of this port (``TRACE_PY``).

A trace log is whatever the program printed: the trace lines are mixed with the ordinary
output, with ``TRACE:`` blocks and ``TRACE_CONFIG:`` lines, none of which are compared. This
module keeps only the per-pixel trace records and gives each a key that is the same on both
sides, so that ``TRACE_C: F_latt`` and ``TRACE_PY: F_latt`` meet.

Line forms understood (``<S>`` is ``C`` or ``PY``; see nanoBragg_c.md §3):

==========================================================  =====================================
line                                                        record key(s)
==========================================================  =====================================
``TRACE_<S>: key v1 [v2 v3 ...]``                           ``key``
``TRACE_<S>:key=v1 v2 v3`` / ``key=[a b c; d e f; ...]``    ``key``  (brackets, ``;`` ``,`` and
``TRACE_<S>:key=name:v1 name:v2``                                    ``name:`` labels dropped;
``TRACE_<S>:detector_convention=MOSFLM``                             non-numbers kept as text)
``TRACE_<S>_PHI phi_tic=0 phi_deg=0 k_frac=.. F_latt_b=..``  ``PHI.phi_tic``, ``PHI.phi_deg``,
``    F_latt=..``                                           ``PHI.k_frac``, ``PHI.F_latt_b``,
                                                            ``PHI.F_latt`` (one record per field)
``TRACE_<S>_SOURCE2: key value``                            ``SOURCE2.key``
``TRACE_<S>_TAP5: key v1 [v2]``                             ``TAP5.key``
``TRACE_<S>_TAP5_HKL: subpixel=0 0 hkl_frac=a b c h0=..``   ``TAP5_HKL.subpixel``,
                                                            ``TAP5_HKL.hkl_frac``, ... (per field)
``TRACE_<S>_<NS>: ...`` (any other namespace)               ``<NS>.key`` / ``<NS>.field``
==========================================================  =====================================

A record starts at its ``TRACE_C``/``TRACE_PY`` token wherever that stands in the line (text
glued in front, such as nanoBragg.c's newline-less "WARNING: further warnings will not be
printed! ", is dropped).

No torch here: ``nanobragg compare`` must start fast.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TraceRecord",
    "TraceInputError",
    "parse_trace",
    "read_trace_text",
    "load_trace",
    "is_integer_key",
    "INTEGER_KEYS",
]

#: Keys (the part after the namespace dot) whose values are integers and compare exactly.
INTEGER_KEYS = frozenset(
    {
        "hkl_rounded",
        "steps",
        "oversample_thick",
        "oversample_polar",
        "oversample_omega",
        "phi_tic",
        "source_index",
        # TAP5 / TAP5_HKL diagnostics
        "pixel",
        "subpixel",
        "h0",
        "k0",
        "l0",
        "out_of_bounds",
    }
)

# TRACE_C / TRACE_PY, an optional _NAMESPACE, then ':' or blank. TRACE_CONFIG: and TRACE: do
# not match (after "TRACE_C" must come '_', ':' or a blank).
# The token may stand anywhere in a line: nanoBragg.c prints "WARNING: further warnings will not
# be printed! " without a newline, so the next TRACE_C line is glued behind it.
_LINE_RE = re.compile(r"TRACE_(C|PY)(?:_([A-Za-z0-9_]+?))?(?::|(?=\s)|$)(.*)$")
_KEY_EQ_RE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)=(.*)$")
_LABEL_RE = re.compile(r"^[A-Za-z_][\w]*:(.+)$")
_FIELD_RE = re.compile(r"^([A-Za-z_][\w.\-]*)=(.*)$")


class TraceInputError(Exception):
    """A trace file that cannot be used: missing, unreadable, or without any trace line.

    ``str(err)`` is one line naming the file and the problem.
    """

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class TraceRecord:
    """One normalised trace value: ``key`` (namespace-qualified), its numbers, the raw line.

    ``values`` holds the numbers of the record in order (empty if there are none, e.g. a line
    cut short after its key). ``text`` is ``None`` for a numeric record, else the value text as
    printed (``detector_convention=MOSFLM``), which then compares as a string. ``side`` is
    ``"C"`` or ``"PY"`` (the prefix it came with), ``line_no`` its 1-based line in the log.
    """

    key: str
    values: tuple[float, ...]
    raw: str
    side: str
    line_no: int
    text: str | None = None

    @property
    def is_numeric(self) -> bool:
        return self.text is None


def is_integer_key(key: str) -> bool:
    """True for keys whose values are integers (compared exactly): ``steps``, ``PHI.phi_tic``..."""
    return key.rsplit(".", 1)[-1] in INTEGER_KEYS


def _to_float(token: str) -> float | None:
    """A number as C's printf writes it (``%.15g``, ``%d``, ``nan``, ``-nan``, ``inf``)."""
    try:
        return float(token)
    except ValueError:
        return None


def _numbers(text: str, *, allow_labels: bool) -> tuple[tuple[float, ...], str | None]:
    """Numbers of a value text; ``(values, None)`` if all of it is numeric, else ``((), text)``.

    ``[``, ``]``, ``;`` and ``,`` separate numbers (matrix forms); with ``allow_labels``
    a token ``name:number`` counts as its number (``rotx:0.1 roty:0``).
    """
    cleaned = re.sub(r"[\[\];,]", " ", text)
    values: list[float] = []
    for token in cleaned.split():
        v = _to_float(token)
        if v is None and allow_labels:
            m = _LABEL_RE.match(token)
            if m:
                v = _to_float(m.group(1))
        if v is None:
            return (), text.strip()
        values.append(v)
    return tuple(values), None


def _fields(body: str) -> list[tuple[str, str]]:
    """Split ``a=1 b=2 3 c=4`` into ``[(a, '1'), (b, '2 3'), (c, '4')]``."""
    out: list[tuple[str, list[str]]] = []
    for token in body.split():
        m = _FIELD_RE.match(token)
        if m:
            out.append((m.group(1), [m.group(2)] if m.group(2) else []))
        elif out:
            out[-1][1].append(token)
        else:  # stray leading token: keep it under an anonymous field rather than lose it
            out.append(("_", [token]))
    return [(name, " ".join(parts)) for name, parts in out]


def _parse_line(line: str, line_no: int) -> list[TraceRecord]:
    m = _LINE_RE.search(line)
    if not m:
        return []
    side, namespace, body = m.group(1), m.group(2), m.group(3)
    raw = line[m.start():].strip()
    prefix = f"{namespace}." if namespace else ""

    def rec(key: str, value_text: str, *, labels: bool = False) -> TraceRecord:
        values, text = _numbers(value_text, allow_labels=labels)
        return TraceRecord(prefix + key, values, raw, side, line_no, text)

    if namespace is None:
        # TRACE_C:key=value (the #ifdef TRACING detector lines) or TRACE_C: key v1 v2 v3
        kv = _KEY_EQ_RE.match(body)
        if kv and " " not in body.split("=", 1)[0].strip():
            return [rec(kv.group(1), kv.group(2), labels=True)]
        tokens = body.split(None, 1)
        if not tokens:
            return []
        return [rec(tokens[0], tokens[1] if len(tokens) > 1 else "")]

    tokens = body.split(None, 1)
    if not tokens:
        return []
    if "=" in tokens[0]:
        # field form: TRACE_C_PHI phi_tic=0 phi_deg=0 ..., TRACE_C_TAP5_HKL: subpixel=0 0 ...
        return [rec(name, value) for name, value in _fields(body)]
    # TRACE_C_SOURCE2: key value, TRACE_C_TAP5: key v1 [v2]
    return [rec(tokens[0], tokens[1] if len(tokens) > 1 else "")]


def parse_trace(text: str) -> list[TraceRecord]:
    """All trace records of a log, in order, from both ``TRACE_C`` and ``TRACE_PY`` lines.

    Everything else (program output, ``TRACE:`` blocks, ``TRACE_CONFIG:``) is ignored.
    """
    records: list[TraceRecord] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if "TRACE_" in line:
            records.extend(_parse_line(line, i))
    return records


#: nanoBragg.c's warning when an evaluation leaves the interpolation range: from then on it
#: interpolates nothing (the kill-switch, #6 in docs/differences.md)
INTERPOLATION_WARNING = "WARNING: out of range for three point interpolation"


def trace_notes(text: str) -> tuple[str, ...]:
    """nanoBragg.c's ``WARNING:`` lines in a trace log (text glued behind one, such as a
    ``TRACE_C`` record, cut off): facts the trace records cannot show, e.g. that the
    interpolation kill-switch (:data:`INTERPOLATION_WARNING`) tripped at or before the traced
    pixel, which :mod:`nanobragg_cli.known_differences` uses to explain an F_cell divergence."""
    notes = []
    for line in text.splitlines():
        if line.startswith("WARNING:"):
            notes.append(line.split("TRACE_", 1)[0].strip())
    return tuple(notes)


def _looks_like_text(obj: str) -> bool:
    if "\n" in obj:
        return True
    if os.path.exists(obj):
        return False
    return obj.lstrip().startswith("TRACE_")


def read_trace_text(text_or_path: str | os.PathLike) -> tuple[str, str]:
    """``(text, name)`` of a trace given as text or as a path.

    A ``str`` is taken as trace text when it holds a newline, or when it names no existing
    file and starts with ``TRACE_``; otherwise it is a path. Raises :class:`TraceInputError`
    for a missing or unreadable file.
    """
    if isinstance(text_or_path, str) and _looks_like_text(text_or_path):
        return text_or_path, "<text>"
    path = Path(text_or_path)
    name = str(path)
    if not path.exists():
        raise TraceInputError(name, "no such file")
    if path.is_dir():
        raise TraceInputError(name, "is a directory, not a trace file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TraceInputError(name, f"cannot read ({err.strerror or err})") from None
    return data.decode("utf-8", errors="replace"), name


def load_trace(text_or_path: str | os.PathLike, prefer: str | None = None) -> tuple[list[TraceRecord], str]:
    """Parse a trace (text or path) into records; ``(records, name)``.

    ``prefer`` (``"C"`` or ``"PY"``): if the log holds lines of that side, keep only those (a
    log holding both C and Python lines can then be given for either side); otherwise keep all.
    Raises :class:`TraceInputError` if the file is unusable or holds no trace record.
    """
    text, name = read_trace_text(text_or_path)
    records = parse_trace(text)
    if prefer is not None:
        mine = [r for r in records if r.side == prefer]
        if mine:
            records = mine
    if not records:
        what = "empty file" if not text.strip() else "no TRACE_C/TRACE_PY trace lines found"
        raise TraceInputError(name, what)
    return records, name


def _finite_abs(values: tuple[float, ...]) -> list[float]:
    return [abs(v) for v in values if math.isfinite(v)]


@dataclass
class KeyStats:
    """Per-key summary used for tolerances: occurrence count and the largest finite |value|."""

    count: int = 0
    scale: float = 0.0
    occurrences: list[int] = field(default_factory=list)


def key_stats(records: list[TraceRecord]) -> dict[str, KeyStats]:
    """Occurrence counts and scales (largest finite |value| over all numbers) per key."""
    stats: dict[str, KeyStats] = {}
    for idx, r in enumerate(records):
        s = stats.setdefault(r.key, KeyStats())
        s.count += 1
        s.occurrences.append(idx)
        mags = _finite_abs(r.values)
        if mags:
            s.scale = max(s.scale, max(mags))
    return stats
