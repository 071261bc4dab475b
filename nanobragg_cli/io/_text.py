"""Shared helpers for the text-file readers: file loading, strict number tokens, C's ``atof``.

Private to :mod:`nanobragg_cli.io`; numpy-free and torch-free.
"""

from __future__ import annotations

import math
import os
import re

from ..errors import InputFileError

# A decimal number as a user writes it in a data file: optional sign, digits with an optional
# decimal point (or a leading point), optional exponent.  No inf/nan/hex/underscores: C's
# scanf/atof would take some of those, but in an input file they are almost always a mistake.
_STRICT_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")

# C's strtod()/atof(): leading isspace() characters, then the longest prefix that parses.
_C_SPACE = " \t\n\v\f\r"
_C_DEC_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_C_HEX_RE = re.compile(r"([+-]?)0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+))([pP][+-]?[0-9]+)?")
_C_INFNAN_RE = re.compile(r"([+-]?)(?:(inf(?:inity)?)|(nan(?:\([0-9A-Za-z_]*\))?))", re.IGNORECASE)


def c_atof(text: str) -> float:
    """Reproduce C's ``atof`` (``strtod`` without the end pointer) on ``text``.

    Skips leading C whitespace, then converts the longest leading number (decimal with optional
    exponent, hexadecimal ``0x..p..``, ``inf``/``infinity``/``nan``, all with an optional sign).
    Trailing garbage is ignored; returns 0.0 when no number prefix parses, as C does.
    """
    s = text.lstrip(_C_SPACE)
    m = _C_HEX_RE.match(s)
    if m:
        sign, mant, exp = m.group(1), m.group(2), m.group(3) or "p0"
        try:
            return float.fromhex(f"{sign}0x{mant}{exp}")
        except OverflowError:
            return -math.inf if sign == "-" else math.inf
    m = _C_DEC_RE.match(s)
    if m:
        return float(m.group(0))  # float() overflows to inf exactly like strtod's HUGE_VAL
    m = _C_INFNAN_RE.match(s)
    if m:
        neg = m.group(1) == "-"
        if m.group(2):
            return -math.inf if neg else math.inf
        return math.copysign(math.nan, -1.0 if neg else 1.0)
    return 0.0


def strict_float(token: str) -> float | None:
    """``float(token)`` if ``token`` is a plain finite decimal number, else None."""
    if not _STRICT_FLOAT_RE.match(token):
        return None
    value = float(token)
    if not math.isfinite(value):  # e.g. 1e999
        return None
    return value


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    """Read a whole input file; OS errors become one-line :class:`InputFileError` messages."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputFileError(f"{what} {name}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {name}: is a directory, not a file") from None
    except OSError as err:
        raise InputFileError(f"{what} {name}: cannot read: {err.strerror or err}") from None


def read_text(path: str | os.PathLike, what: str) -> str:
    """Read a text input file.  Undecodable bytes become U+FFFD so that they surface as a
    non-numeric token (with its line number) instead of a UnicodeDecodeError."""
    return read_bytes(path, what).decode("utf-8", errors="replace")


def show_token(token: str) -> str:
    """A token quoted for an error message, shortened if very long."""
    if len(token) > 40:
        token = token[:37] + "..."
    return repr(token)
