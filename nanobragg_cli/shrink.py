"""Shrink a diverging nanoBragg command line to the flags that cause the divergence.

Delta debugging over flag groups (a flag with its values): remove chunks of groups, halving the
chunk size when no chunk can go, while the *same* first divergent key persists (the
``signature`` of :class:`~nanobragg_cli.cbin_check.BinaryCheck`: first divergent trace key, else
``image``, else ``bytes:<file>``); then simplify values (fewer pixels, phi steps, mosaic domains,
sub-pixels, source steps) and try single removals once more.

A candidate is run only if our flag parser accepts it and it renders no more pixels than the
current command line (removing ``-detpixels 64`` would mean 1024x1024); every distinct candidate
runs at most once. The oracle is any function from flags to signature, so the search is
testable without a binary (:func:`shrink`); :func:`shrink_binary` wires it to
:func:`~nanobragg_cli.cbin_check.check_binary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import shlex

from .errors import NanoBraggError

# flags whose (integer) value can be lowered, and the smallest value tried
SIMPLIFY = {"-detpixels": 8, "-detpixels_x": 8, "-detpixels_y": 8, "-phisteps": 1,
            "-mosaic_domains": 1, "-oversample": 1, "-dispsteps": 1, "-divsteps": 1,
            "-hdivsteps": 1, "-vdivsteps": 1, "-N": 1, "-Na": 1, "-Nb": 1, "-Nc": 1}


def flag_groups(flags: list) -> list:
    """``flags`` split into [flag, values...] groups (arity from the flag table; an unknown flag
    takes the tokens up to the next flag)."""
    from .flags import find_flag, looks_numeric
    groups, i = [], 0
    while i < len(flags):
        tok = flags[i]
        flag = find_flag(tok) if tok.startswith("-") else None
        n = flag.nargs if flag is not None else None
        if n == "misset":
            n = 1 if i + 1 < len(flags) and "rand" in flags[i + 1] else 3
        j = i + 1
        if isinstance(n, int):
            j = min(len(flags), i + 1 + n)
        else:   # "cell" (0-6 values) or unknown: values up to the next flag
            while j < len(flags) and (not flags[j].startswith("-") or looks_numeric(flags[j])):
                j += 1
        groups.append(flags[i:j])
        i = j
    return groups


def _flat(groups: list) -> list:
    return [tok for g in groups for tok in g]


def pixel_count(flags: list) -> int | None:
    """Pixels the flags render (None when our parser rejects them)."""
    from .simulate import prepare
    try:
        cfg = prepare(list(flags))
    except NanoBraggError:
        return None
    return cfg.detector.spixels * cfg.detector.fpixels


@dataclass
class ShrinkResult:
    """original / flags: the command line before and after; signature: the divergence kept;
    runs: oracle calls made; check: the last check of ``flags`` (a BinaryCheck, or None)."""
    original: list
    flags: list
    signature: str | None
    runs: int
    check: object = None
    log: list = field(default_factory=list)

    def report_lines(self) -> list:
        n0, n1 = len(flag_groups(self.original)), len(flag_groups(self.flags))
        lines = [f"shrunk {n0} flags to {n1} ({self.runs} runs); smallest command line that "
                 f"still diverges at {self.signature}:", "  " + shlex.join(self.flags),
                 f"first_divergence={self.signature}"]
        explanation = getattr(self.check, "explanation", None)
        lines.append(f"known quirk: {explanation}" if explanation else
                     "known quirk: none recognised")
        return lines


def shrink(flags: list, oracle, signature: str, *, on_step=None) -> ShrinkResult:
    """Smallest flags (by delta debugging, then value simplification) for which ``oracle(flags)``
    still returns ``signature``. ``on_step(text)`` hears each accepted step."""
    cache = {}
    res = ShrinkResult(list(flags), list(flags), signature, 0)

    def keeps(groups: list, limit: int | None) -> bool:
        cand = _flat(groups)
        key = tuple(cand)
        if key not in cache:
            size = pixel_count(cand)
            if size is None or (limit is not None and size > limit):
                cache[key] = False
            else:
                res.runs += 1
                cache[key] = oracle(cand) == signature
        return cache[key]

    def accept(groups, what):
        res.flags = _flat(groups)
        res.log.append(what)
        if on_step:
            on_step(what)
        return groups

    groups = flag_groups(flags)
    for _round in range(3):
        before = _flat(groups)
        n = 2
        while groups:
            limit = pixel_count(_flat(groups))
            size = max(1, -(-len(groups) // n))
            for k in range(0, len(groups), size):
                cand = groups[:k] + groups[k + size:]
                if keeps(cand, limit):
                    gone = " ".join(" ".join(g) for g in groups[k:k + size])
                    groups = accept(cand, f"removed {gone}")
                    n = max(2, n - 1)
                    break
            else:
                if size == 1:
                    break
                n = min(2 * n, len(groups))
        for idx in range(len(groups)):
            g = groups[idx]
            floor = SIMPLIFY.get(g[0])
            if floor is None or len(g) != 2 or not g[1].isdigit():
                continue
            value = int(g[1])
            while value > floor:
                limit = pixel_count(_flat(groups))
                tried = sorted({floor, value // 2} - {value})
                for v in [v for v in tried if floor <= v < value]:
                    cand = groups[:idx] + [[g[0], str(v)]] + groups[idx + 1:]
                    if keeps(cand, limit):
                        groups = accept(cand, f"{g[0]} {value} -> {v}")
                        value = v
                        break
                else:
                    break
        if _flat(groups) == before:
            break
    res.flags = _flat(groups)
    return res


def shrink_binary(binary: str, chk, *, on_step=None, **check_kw) -> ShrinkResult:
    """Shrink the flags of a diverging :class:`~nanobragg_cli.cbin_check.BinaryCheck` ``chk``,
    tracing only the kind of pixel that diverged (``worst``/``brightest``, or the given pixel)."""
    from .cbin_check import check_binary
    signature = chk.signature
    px = chk.diverging_pixel
    choose, pixels = (), ()
    if px is not None:
        labels = px.label.split("+")
        if "given" in labels:
            pixels = (px.pixel,)
        else:
            choose = tuple(lab for lab in ("worst", "brightest") if lab in labels)
    check_kw = dict(check_kw, choose=choose, pixels=pixels)
    last = {}

    def oracle(flags):
        c = check_binary(binary, flags, chk.base, **check_kw)
        last[tuple(flags)] = c
        return c.signature

    res = shrink(chk.flags, oracle, signature, on_step=on_step)
    res.check = last.get(tuple(res.flags)) or chk
    return res
