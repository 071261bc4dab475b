"""Case lists for ``nanobragg suite --c-bin`` and ``nanobragg golden make``: one nanoBragg.c
command line per line.

Format: ``[NAME:] FLAGS...`` per line, shell quoting, ``#`` starts a comment (whole line or the
rest of one), blank lines are ignored. A case without ``NAME:`` is called ``line<N>`` after its
line number. Input paths in the flags (``-mat``, ``-hkl``, ``-sourcefile``, ``-img``, ``-mask``)
are relative to the folder of the cases file, wherever the command is run from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
import shlex

from .errors import NanoBraggError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+:$")


@dataclass
class ListedCase:
    """One line of a cases file: its name, nanoBragg flags and line number."""
    name: str
    flags: list
    line: int


def read_cases(path: Path) -> list:
    """The cases of ``path``; NanoBraggError (exit 2) naming the file and line when unusable."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise NanoBraggError(f"--cases {path}: cannot read ({getattr(err, 'strerror', None) or err})",
                             exit_code=2) from None
    cases, names = [], set()
    for no, line in enumerate(text.splitlines(), 1):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as err:
            raise NanoBraggError(f"--cases {path}:{no}: {err}", exit_code=2) from None
        if not tokens:
            continue
        name = f"line{no}"
        if _NAME.match(tokens[0]):
            name, tokens = tokens[0][:-1], tokens[1:]
        if name in names:
            raise NanoBraggError(f"--cases {path}:{no}: case name {name!r} used twice",
                                 exit_code=2)
        if not tokens:
            raise NanoBraggError(f"--cases {path}:{no}: no flags after the case name",
                                 exit_code=2)
        names.add(name)
        cases.append(ListedCase(name, tokens, no))
    if not cases:
        raise NanoBraggError(f"--cases {path}: no command line in the file", exit_code=2)
    return cases
