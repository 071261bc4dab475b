"""A scene as the fused kernel's package sees it: its tensors as a flat list of inputs, and
everything else (Python numbers, flags, the arithmetic's functions) as a key.

The ahead-of-time compiled kernel (:mod:`nanobragg_cli.fused`) bakes every non-tensor value the
traced code reads into the compiled code, and takes every tensor as an input. So the package is
looked up by :func:`flatten`'s key (a different cell count, detector size or flag compiles a
new one), and a scene whose tensors differ (another frame's orientations, another distance)
reuses it. Attributes the kernel never reads (the parameters, mask and report fields below, the
``--compile`` choice) are left out of the key and replaced by :data:`NOT_FOR_THE_KERNEL` in the
traced copy, where reading one fails the compilation instead of baking a stale value.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import types

import numpy as np
import torch
from torch import Tensor

# (class name, attribute): not read by kernel.render_chunk, so not part of the key.
UNREAD = {("Scene", "params"), ("Scene", "mask"), ("Scene", "roi"), ("Scene", "sources"),
          ("Scene", "wavelength"), ("Scene", "hkl_count"), ("Mode", "compile")}


class _NotForTheKernel:
    """Stands in for an attribute the kernel must not read; any use of it raises."""

    def __getattr__(self, name):
        raise AttributeError(f"the fused kernel read an attribute left out of its key ({name})")

    def __bool__(self):
        raise AttributeError("the fused kernel read an attribute left out of its key")


NOT_FOR_THE_KERNEL = _NotForTheKernel()


class Unflattenable(TypeError):
    """A scene holds a value the key cannot describe (then the eager kernel renders it)."""


@dataclasses.dataclass
class Flat:
    """tensors: the scene's distinct tensors, in walk order; key: sha256 of the description of
    everything else (and of each tensor's shape, dtype and device), which ``description``
    spells out; spec: how to rebuild."""
    tensors: list
    key: str
    spec: object
    description: str


def _fields(obj) -> list:
    return sorted(vars(obj).items())


def flatten(scene) -> Flat:
    """Walk ``scene``: tensors become inputs (each distinct tensor once), the rest the key."""
    tensors, index = [], {}
    words = []

    def walk(v, owner=None, name=None):
        if isinstance(v, Tensor):
            if id(v) not in index:
                index[id(v)] = len(tensors)
                tensors.append(v)
            words.append(f"T{index[id(v)]}{tuple(v.shape)}{v.dtype}{v.device.type}")
            return ("tensor", index[id(v)])
        if v is None or isinstance(v, (bool, int, float, str, complex)):
            words.append(repr(v))
            return ("value", v)
        if isinstance(v, (torch.dtype, torch.device, enum.Enum)):
            words.append(str(v))
            return ("value", v)
        if isinstance(v, (types.FunctionType, types.BuiltinFunctionType)):
            words.append(f"{v.__module__}.{v.__qualname__}")
            return ("value", v)
        if isinstance(v, np.ndarray):
            words.append(hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest())
            return ("value", v)
        if isinstance(v, (tuple, list)):
            words.append(f"{type(v).__name__}[")
            parts = [walk(x) for x in v]
            words.append("]")
            return ("seq", type(v), parts)
        if isinstance(v, dict):
            words.append("{")
            parts = [(k, walk(x)) for k, x in sorted(v.items(), key=lambda kv: repr(kv[0]))]
            words.append("}")
            return ("dict", parts)
        if hasattr(v, "__dict__") and type(v).__module__.startswith("nanobragg_cli"):
            cls = type(v).__name__
            words.append(f"{cls}(")
            parts = []
            for attr, x in _fields(v):
                if (cls, attr) in UNREAD:
                    parts.append((attr, ("unread",)))
                    continue
                words.append(attr + "=")
                parts.append((attr, walk(x)))
            words.append(")")
            return ("object", v, parts)
        raise Unflattenable(f"{type(v).__name__} in the scene")

    spec = walk(scene)
    description = " ".join(words)
    key = hashlib.sha256(description.encode()).hexdigest()
    return Flat(tensors=tensors, key=key, spec=spec, description=description)


def rebuild(spec, tensors):
    """A copy of the flattened scene with ``tensors`` (the same order as :attr:`Flat.tensors`)
    in place of its own, and :data:`NOT_FOR_THE_KERNEL` for the attributes left out."""
    kind = spec[0]
    if kind == "tensor":
        return tensors[spec[1]]
    if kind == "value":
        return spec[1]
    if kind == "unread":
        return NOT_FOR_THE_KERNEL
    if kind == "seq":
        return spec[1](rebuild(p, tensors) for p in spec[2])
    if kind == "dict":
        return {k: rebuild(p, tensors) for k, p in spec[1]}
    obj = copy.copy(spec[1])
    for attr, part in spec[2]:
        object.__setattr__(obj, attr, rebuild(part, tensors))
    return obj
