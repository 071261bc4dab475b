"""nanobragg_cli: nanoBragg.c's diffraction simulator in PyTorch, with the same command line.

Importing the package is cheap (torch is imported only when a simulation runs). The
differentiable Python API (:class:`Simulator`, :func:`to_si`, :func:`from_si`, ``UNITS``) lives in
:mod:`nanobragg_cli.api` and is loaded on first use of one of these names.
"""

__version__ = "0.1.0"

_API_NAMES = ("Simulator", "SceneParams", "UNITS", "PARAMETER_NAMES", "to_si", "from_si")
__all__ = ["__version__", *_API_NAMES]


def __getattr__(name):
    if name in _API_NAMES:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API_NAMES))
