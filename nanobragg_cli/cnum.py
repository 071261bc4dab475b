"""Strict number parsing for flag values (C's atof/atoi accept garbage silently; we do not)."""

import math
import re

from .errors import FlagError

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_float(flag: str, text: str, *, allow_inf: bool = False) -> float:
    """Parse a decimal number the way a user means it; refuse NaN, inf and non-numbers."""
    t = text.strip()
    if allow_inf and t.lower().lstrip("+") in ("inf", "infinity"):
        return math.inf
    if not _FLOAT_RE.match(t):
        raise FlagError(f"{flag}: expected a number, got {text!r}")
    value = float(t)
    if not math.isfinite(value):
        raise FlagError(f"{flag}: value {text!r} is out of range")
    return value


def parse_int(flag: str, text: str) -> int:
    """Parse an integer; '3.7' is refused rather than truncated as C's atoi would."""
    t = text.strip()
    if not _INT_RE.match(t):
        raise FlagError(f"{flag}: expected an integer, got {text!r}")
    if len(t.lstrip("+-").lstrip("0")) > 12:  # before int(): 5000 digits would raise ValueError
        raise FlagError(f"{flag}: value {t[:20]}... ({len(t)} digits) is out of range")
    value = int(t)
    if abs(value) > 2**31 - 1:
        raise FlagError(f"{flag}: value {text!r} is out of range")
    return value


def looks_numeric(text: str) -> bool:
    """True if ``text`` is a number (so that '-5' after a flag is a value, not a flag)."""
    return bool(_FLOAT_RE.match(text.strip()))
