"""Atomic output files: write to a temporary file beside the target, then rename it into place.

An interrupted run (exception, Ctrl-C, full disk) never leaves a partial image under the
requested name: either the old file (if any) is still there untouched, or the complete new one.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable

from ..errors import NanoBraggError

BytesLike = bytes | bytearray | memoryview


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def _write_error(path: str, err: OSError) -> NanoBraggError:
    if err.errno == errno.ENOSPC:
        why = "no space left on device"
    elif err.errno == errno.EDQUOT:
        why = "disk quota exceeded"
    elif err.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied (is the folder writable?)"
    elif err.errno == errno.ENOENT:
        why = "the folder does not exist"
    elif err.errno == errno.EROFS:
        why = "read-only file system"
    elif err.errno == errno.EISDIR:
        why = "a folder of that name exists"
    else:
        why = err.strerror or str(err)
    return NanoBraggError(f"cannot write {path}: {why}")


def _write_all(fh, data: BytesLike | Iterable[BytesLike]) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        fh.write(data)
    else:
        for chunk in data:
            fh.write(chunk)


def _stage(name: str, data, fsync: bool) -> tuple[str | None, str]:
    """Write ``data`` to a hidden temporary file beside ``name``; returns (temporary, target).

    A target that exists and is not a regular file (a device such as /dev/null or /dev/full, a
    FIFO) is written directly, since renaming over it would be wrong; then temporary is None.
    On any exception the temporary file is removed; OS errors become NanoBraggError naming
    ``name``.
    """
    target = os.path.realpath(name) if os.path.islink(name) else name
    try:
        st = os.stat(target)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise NanoBraggError(f"cannot write {name}: a folder of that name exists")
        try:
            with open(target, "wb") as fh:
                _write_all(fh, data)
        except OSError as err:
            raise _write_error(name, err) from None
        return None, target

    folder = os.path.dirname(os.path.abspath(target))
    try:
        # prefix shortened so that a long (but legal) target name cannot make the temp name too long
        prefix = "." + os.path.basename(target)[:64] + "."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=folder)
    except OSError as err:
        raise _write_error(name, err) from None

    try:
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())
        except (OSError, AttributeError):  # pragma: no cover - fchmod missing on some platforms
            pass
        with os.fdopen(fd, "wb") as fh:
            _write_all(fh, data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise _write_error(name, exc) from None
        raise
    return tmp, target


def _discard(tmp: str | None) -> None:
    if tmp is None:
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _commit(name: str, tmp: str | None, target: str) -> None:
    if tmp is None:
        return
    try:
        os.replace(tmp, target)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise _write_error(name, exc) from None
        raise


def atomic_write_bytes(
    path: str | os.PathLike,
    data: BytesLike | Iterable[BytesLike],
    *,
    fsync: bool = True,
) -> None:
    """Write ``data`` to ``path`` atomically.

    ``data`` is a bytes-like object, or an iterable of bytes-like chunks (written in order; if
    the iterable raises, nothing is written).  The bytes go to a hidden temporary file in the
    target's folder, are flushed (and fsync'ed unless ``fsync=False``), and the temporary file
    is then renamed over ``path`` with :func:`os.replace`.  On any exception, KeyboardInterrupt
    included, the temporary file is removed and the exception propagates; OS errors (unwritable
    folder, missing folder, full disk, ...) are raised as :class:`NanoBraggError` naming ``path``.

    The new file gets the permissions an ordinary ``fopen(path, "wb")`` would give it
    (0666 minus the umask).  A symbolic link at ``path`` is written through (its target is
    replaced), as C's fopen would.  If ``path`` names an existing non-regular file (a device such
    as /dev/null, a FIFO) it is written directly: renaming over it would be wrong.
    """
    name = os.fspath(path)
    tmp, target = _stage(name, data, fsync)
    _commit(name, tmp, target)


def atomic_write_many(files, *, fsync: bool = True, committed: list | None = None) -> None:
    """Write several files all or nothing (as far as a file system allows).

    ``files``: iterable of (path, data) as for :func:`atomic_write_bytes`. Every file is first
    written completely to its temporary name (this is where a full disk or an interruption
    happens); only then are they renamed into place, in order. If staging fails, every
    temporary file is removed and no target is touched. ``committed`` (a list) receives each
    path once it is in place, so a caller interrupted during the renames can say which are.
    """
    staged = []
    try:
        for path, data in files:
            name = os.fspath(path)
            tmp, target = _stage(name, data, fsync)
            staged.append((name, tmp, target))
        while staged:
            name, tmp, target = staged[0]
            _commit(name, tmp, target)
            staged.pop(0)
            if committed is not None:
                committed.append(name)
    finally:
        for _, tmp, _ in staged:
            _discard(tmp)
