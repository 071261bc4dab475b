"""Checks made before any work: input files readable, output paths writable and distinct from the
inputs, and the run's arrays within the machine's memory.

A run that would fail after minutes of rendering (a typo in an output folder, a detector that
cannot be allocated) fails here instead, in well under a second, with one line naming the flag.
No torch import: these run before the simulation starts.
"""

import os
import stat

from .config import Config
from .errors import FlagError, InputFileError

# Bytes per detector pixel held at once by a run: the image in the working dtype (several
# copies while it is assembled), its float32 copy, the statistics' float64 temporaries, the
# integer/noise/PGM images and their file bytes. Measured order of magnitude, rounded up.
BYTES_PER_PIXEL = 64
# a -hkl grid above this size, more than 1000 times larger than its reflections, is refused unless
# --max-memory allows it explicitly (a typo in an index, not a data set)
SPARSE_GRID_BYTES = 1 << 30
# --max-memory of the current run (set by check_memory): also a cap for each large input array
_max_memory: int | None = None


def input_files(cfg: Config) -> list:
    """[(flag, path)] of every file the run reads, in the order nanoBragg.c reads them. The
    structure-factor cache (``-dump``, default Fdump.bin) is an input when no -hkl is given and
    the file exists, as in nanoBragg.c."""
    d, c, b = cfg.detector, cfg.crystal, cfg.beam
    files = [("-mask", d.maskfile), ("-img", d.imgfile), ("-mat", c.matfile),
             ("-hkl", c.hklfile), ("-sourcefile", b.sourcefile)]
    if c.hklfile is None and os.path.exists(c.dumpfile):
        files.append(("-dump", c.dumpfile))
    return [(flag, path) for flag, path in files if path]


def check_inputs(inputs: list) -> None:
    """Every input must be a readable file: one line naming the flag and file otherwise."""
    for flag, path in inputs:
        if not os.path.exists(path):
            raise InputFileError(f"{flag} {path}: no such file")
        if os.path.isdir(path):
            raise InputFileError(f"{flag} {path}: is a folder, not a file")
        if not os.path.isfile(path):  # a device such as /dev/zero would be read forever
            raise InputFileError(f"{flag} {path}: is not a regular file")
        if not os.access(path, os.R_OK):
            raise InputFileError(f"{flag} {path}: cannot be read (permission denied)")


def check_header_inputs(argv: list, max_memory: int | None = None) -> None:
    """-img and -mask are read before the other flags (nanoBragg.c's first pass): refuse a
    device or FIFO there before it is read (a missing file is reported by the reader), and a
    header whose SIZE1 x SIZE2 would not fit in memory before its pixels are read."""
    global _max_memory
    _max_memory = max_memory
    for flag, path in zip(argv, argv[1:]):
        if flag in ("-img", "-mask") and os.path.exists(path) and not os.path.isdir(path) \
                and not os.path.isfile(path):
            raise InputFileError(f"{flag} {path}: is not a regular file")
        if flag in ("-img", "-mask") and os.path.isfile(path):
            _check_image_header_size(flag, path)


def _check_image_header_size(flag: str, path: str) -> None:
    from .io.smv import SMV_HEADER_BYTES, _c_int, smv_value
    try:
        with open(path, "rb") as fh:
            head = fh.read(SMV_HEADER_BYTES).decode("latin-1")
    except OSError:
        return  # the reader reports it
    width = _c_int(smv_value(head, "SIZE1"))
    height = _c_int(smv_value(head, "SIZE2"))
    if not width:
        width = height = _c_int(smv_value(head, "DETECTOR_DIMENSIONS"))
    if not width or not height or width <= 0 or height <= 0:
        return  # the reader says what is wrong
    need = width * height * BYTES_PER_PIXEL + os.path.getsize(path)
    check_allocation(f"{flag} {path}", need, f"its header declares a {width}x{height} detector")


def check_allocation(what: str, need: int, why: str, available: int | None = None) -> None:
    """Refuse, before allocating, ``need`` bytes for ``what`` (flag and file) when they exceed
    the memory available or --max-memory; ``why`` says where the size comes from."""
    available = available_memory() if available is None else available
    limits = [(available, "of memory available")] if available is not None else []
    if _max_memory is not None:
        limits.append((_max_memory, "allowed by --max-memory"))
    for limit, which in limits:
        if need > limit:
            raise InputFileError(f"{what}: {why}, which needs about {_size(need)}, more than the "
                                 f"{_size(limit)} {which}")


def check_hkl_grid(hkl, path: str) -> None:
    """The dense structure-factor grid nanoBragg.c builds from -hkl (min..max of each index,
    float64), with its Fdump.bin bytes and working copies (x3), must fit: refused before it is
    allocated. ``hkl``: int array (n, 3)."""
    import numpy as np
    hkl = np.asarray(hkl, dtype=np.int64)
    if hkl.size == 0:
        return
    spans = [int(x) + 2 for x in hkl.max(axis=0) - hkl.min(axis=0)]
    cells = spans[0] * spans[1] * spans[2]
    need = 3 * 8 * cells
    if _max_memory is None and need > SPARSE_GRID_BYTES and cells > 1000 * len(hkl):
        raise InputFileError(
            f"-hkl {path}: {len(hkl)} reflections span {spans[0] - 1}x{spans[1] - 1}x"
            f"{spans[2] - 1} indices: a grid of {cells} structure factors needing about "
            f"{_size(need)} (and an Fdump cache of {_size(8 * cells)}), almost all empty; "
            "check the indices, or allow it with --max-memory")
    check_allocation(f"-hkl {path}", 3 * 8 * cells,
                     f"its indices span {spans[0] - 1}x{spans[1] - 1}x{spans[2] - 1} "
                     f"(a grid of {cells} structure factors, also written to the Fdump cache)")


def _writable(flag: str, path: str) -> None:
    if not path:
        raise FlagError(f"{flag}: the file name is empty")
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise FlagError(f"{flag} {path}: is a folder, not a file")
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not os.access(path, os.W_OK):
            raise FlagError(f"{flag} {path}: cannot be written (permission denied)")
        return  # a device or FIFO (/dev/null): written in place
    folder = os.path.dirname(os.path.abspath(path))
    try:
        name_max = os.pathconf(folder if os.path.isdir(folder) else "/", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(os.path.basename(path))) > name_max:
        raise FlagError(f"{flag} {path[:40]}...: the file name is too long (more than "
                        f"{name_max} bytes)")
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise FlagError(f"{flag} {path}: cannot write there: {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FlagError(f"{flag} {path}: cannot write there: folder {folder} is not writable")
    _probe(flag, path, folder)


def _probe(flag: str, path: str, folder: str) -> None:
    """Create and remove a hidden file where the output's temporary file will go: a folder that
    refuses new files (/proc, a read-only mount, root squashed by NFS) fails here, before the
    render, not after it."""
    import errno
    from .io.atomic import _hidden, _why
    try:
        fd, tmp = _hidden(path, "part")
    except OSError as err:
        why = (f"folder {folder} does not accept new files (a virtual file system such as /proc?)"
               if err.errno == errno.ENOENT else _why(err))
        raise FlagError(f"{flag} {path}: cannot write there: {why}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def check_outputs(outputs: list, inputs: list) -> None:
    """Outputs must be writable, distinct from each other, and never an input file."""
    real_inputs = {os.path.realpath(p): (flag, p) for flag, p in inputs if p}
    seen = {}
    for flag, path in outputs:
        if flag != "-dump":  # the structure-factor cache: nanoBragg.c only warns if unwritable
            _writable(flag, path)
        rp = os.path.realpath(path)
        if rp in real_inputs:
            iflag, ipath = real_inputs[rp]
            raise FlagError(f"{flag} {path}: refusing to overwrite the input file {ipath} "
                            f"(given to {iflag})")
        if rp in seen and not rp.startswith("/dev/"):
            raise FlagError(f"{flag} {path}: the same file is also written by {seen[rp]}")
        seen[rp] = flag


def available_memory() -> int | None:
    """Bytes of memory this process can still use: MemAvailable, capped by a cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            avail = min(avail, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return avail


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} PiB"


def check_memory(cfg: Config, max_memory: int | None, available: int | None = None) -> None:
    """Refuse, before allocating anything, a detector whose image arrays alone exceed the memory
    available, or a --max-memory kernel budget that does not fit next to them. (Without
    --max-memory the kernel's chunks are sized from render.DEFAULT_MAX_MEMORY and a pixel's own
    needs are checked once the scene is known: :func:`check_kernel_memory`.)"""
    global _max_memory
    _max_memory = max_memory
    available = available_memory() if available is None else available
    if available is None:
        return
    d = cfg.detector
    pixels = d.fpixels * d.spixels
    need = pixels * BYTES_PER_PIXEL
    if need > available:
        raise FlagError(f"-detpixels: a {d.fpixels}x{d.spixels} detector needs about "
                        f"{_size(need)} for its image arrays, more than the {_size(available)} "
                        "of memory available; use fewer or larger pixels")
    if max_memory is not None and need + max_memory > available:
        raise FlagError(f"--max-memory: {_size(max_memory)} for the kernel plus {_size(need)} "
                        f"for the image exceed the {_size(available)} of memory available")


def check_kernel_memory(scene, bytes_per_eval: int, available: int | None = None,
                        cfg=None) -> None:
    """Refuse a run whose single pixel needs more working memory than is available (the kernel
    evaluates all sub-pixels x layers x sources x phi steps x mosaic domains of a pixel at once).
    ``cfg``: the run's Config, to blame -N when the automatic oversampling is the cause."""
    available = available_memory() if available is None else available
    if available is None:
        return
    evals = scene.evals_per_pixel()
    need = evals * bytes_per_eval
    if need > available and cfg is not None and cfg.sampling.oversample <= 0 \
            and scene.oversample * scene.oversample * 2 > evals ** 0.5:
        c = cfg.crystal
        raise FlagError(
            f"-N {c.Na:g} {c.Nb:g} {c.Nc:g} (or -xtalsize): the crystal is so large that the "
            f"automatic oversampling is {scene.oversample}x{scene.oversample} sub-pixels per "
            f"pixel, about {_size(need)} of working memory per pixel, more than the "
            f"{_size(available)} available; use a smaller crystal or give -oversample")
    if need > available:
        raise FlagError(
            f"-oversample/-phisteps/-mosaic_domains: one pixel needs {evals} evaluations "
            f"({scene.oversample}x{scene.oversample} sub-pixels x {scene.thicksteps} layers x "
            f"{scene.n_src} sources x {scene.n_phi} phi steps x {scene.n_mos} mosaic domains), "
            f"about {_size(need)} of working memory, more than the {_size(available)} available")
