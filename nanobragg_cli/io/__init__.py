"""File formats read and written by nanoBragg (numpy only; no torch here).

* :mod:`.atomic`     -- ``atomic_write_bytes``: temp file + rename, never a partial output
* :mod:`.floatimage` -- raw float32 image (``-floatfile``)
* :mod:`.smv`        -- SMV images: C-exact header/int conversion, ``GetFrame``/``ValueOf`` reader
* :mod:`.pgm`        -- 8-bit PGM preview (``-pgmfile``)
* :mod:`.hkl`        -- ``-hkl`` text files, C's dense F grid, ``Fdump.bin``
* :mod:`.mosflm`     -- ``-mat`` orientation matrices
* :mod:`.sources`    -- ``-sourcefile`` source lists

Readers raise :class:`nanobragg_cli.errors.InputFileError` (one line, naming the file and line)
for unreadable or malformed input; writers raise :class:`nanobragg_cli.errors.NanoBraggError`.
"""

from .atomic import atomic_write_bytes
from .floatimage import float_image_bytes, read_float_image
from .hkl import HKLGrid, fdump_bytes, hkl_grid, read_fdump, read_hkl
from .mosflm import read_mat
from .pgm import pgm_bytes
from .smv import SMVHeader, SMVImage, format_smv_header, int_image, read_smv, smv_bytes, smv_value
from .sources import read_sourcefile

__all__ = [
    "atomic_write_bytes",
    "float_image_bytes",
    "read_float_image",
    "SMVHeader",
    "SMVImage",
    "format_smv_header",
    "int_image",
    "smv_bytes",
    "read_smv",
    "smv_value",
    "pgm_bytes",
    "read_hkl",
    "HKLGrid",
    "hkl_grid",
    "fdump_bytes",
    "read_fdump",
    "read_mat",
    "read_sourcefile",
]
