"""Transactional output files: every file of a run is staged under a temporary name, then all are
renamed into place together -- or, if any rename fails, every previous file is put back.

The one entry point is :func:`commit_outputs`; :func:`atomic_write_bytes` is its one-file form.

Guarantees (documented for users in docs/outputs.md):

* Staging (where a full disk, a quota or an interruption usually strikes) writes only hidden
  ``.<name>.<pid>.<random>.part`` files beside the targets; a failure removes them and touches no
  target.
* The commit phase holds an advisory lock (``fcntl.flock``) on every target folder, so concurrent
  runs writing the same paths are serialised and the folder ends up with one run's complete set.
  SIGINT, SIGTERM and SIGHUP are deferred during it (main thread only) and delivered right after.
* Before a target is replaced its previous file is kept as a hard link
  ``.<name>.<pid>.<random>.old`` until every rename has succeeded; if one fails, the renamed ones are rolled back (a target that
  did not exist is removed again) and :class:`CommitError` says so.
* Leftovers of a killed run (``.part``/``.old`` files whose process is gone) are removed by the next
  commit into the same folder.
* A target that is a device or FIFO (/dev/null) is written in place at commit time: it cannot be
  renamed over, so it is outside the all-or-nothing promise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterable

from ..errors import NanoBraggError

BytesLike = bytes | bytearray | memoryview
Writer = Callable  # a callable(fh) that writes the file's bytes to an open binary file
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LEFTOVER = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}\.(part|old)$")

# test seams: the forward rename of the commit phase, and a guard run (under the locks, with
# signals deferred) right before the first rename -- the warm-start server's child uses it to
# commit only while its client is alive (it raises to abort the commit)
_rename = os.replace
_commit_guard: Callable[[list], None] | None = None


class CommitError(NanoBraggError):
    """A failure during the commit; ``restored`` says whether every previous file is back."""

    def __init__(self, message: str, restored: bool = True):
        super().__init__(message)
        self.restored = restored


def set_commit_guard(guard: Callable[[list], None] | None) -> None:
    """Install ``guard(paths)``: called before the renames of every commit; raising aborts it
    (no target touched). Used by the warm-start server's child."""
    global _commit_guard
    _commit_guard = guard


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


def _why(err: OSError) -> str:
    return {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied (is the folder writable?)",
            errno.EPERM: "permission denied (is the folder writable?)",
            errno.ENOENT: "the folder does not exist", errno.EROFS: "read-only file system",
            errno.EISDIR: "a folder of that name exists",
            errno.EFBIG: "file too large (is a file size limit, ulimit -f, set?)",
            errno.ENAMETOOLONG: "file name too long"}.get(err.errno, err.strerror or str(err))


def _write_error(path: str, err: OSError) -> NanoBraggError:
    return NanoBraggError(f"cannot write {path}: {_why(err)}")


def _write_all(fh, data) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        fh.write(data)
    elif callable(data):
        data(fh)
    else:
        for chunk in data:
            fh.write(chunk)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True


def clean_leftovers(folder: str) -> list:
    """Remove ``.part``/``.old`` files of runs whose process is gone; returns their names."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return removed


def _hidden(target: str, kind: str) -> tuple[int, str]:
    """Create ``.<name>.<pid>.<random>.<kind>`` beside ``target`` (O_EXCL); returns (fd, path)."""
    folder, base = os.path.split(os.path.abspath(target))
    while True:
        # prefix shortened so that a long (but legal) name cannot make the temp name too long
        path = os.path.join(folder, f".{base[:64]}.{os.getpid()}.{secrets.token_hex(4)}.{kind}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue


class _Staged:
    """One planned file: its name as given, the real target, its temporary and backup files."""

    def __init__(self, name: str, target: str, tmp: str | None, data=None):
        self.name, self.target, self.tmp = name, target, tmp
        self.data = data          # only for in-place (device) targets
        self.backup: str | None = None
        self.existed = False
        self.renamed = False


def _stage(name: str, data, fsync: bool) -> _Staged:
    """Write ``data`` to a hidden temporary file beside ``name``. A target that exists and is not a
    regular file (a device, a FIFO) is kept for an in-place write at commit time. On any exception
    the temporary file is removed; OS errors become NanoBraggError naming ``name``."""
    target = os.path.realpath(name) if os.path.islink(name) else name
    try:
        st = os.stat(target)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise NanoBraggError(f"cannot write {name}: a folder of that name exists")
        return _Staged(name, target, None, data)
    try:
        fd, tmp = _hidden(target, "part")
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
    return _Staged(name, target, tmp)


def _discard(path: str | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def deferred_signals(signals=DEFERRED_SIGNALS):
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends, then deliver them (in arrival order) to
    the handlers that were installed before. Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list = []
    old = {}
    try:
        for s in signals:
            old[s] = signal.signal(s, lambda signum, frame: pending.append(signum))
    except (ValueError, OSError):  # pragma: no cover - an embedding that owns the signals
        pass
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in dict.fromkeys(pending):
            handler = old.get(s)
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), s)


@contextlib.contextmanager
def _folder_locks(folders):
    """Exclusive flock on each folder (sorted, so two runs never deadlock)."""
    fds = []
    try:
        for folder in sorted(set(folders)):
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: carry on unserialised
                pass
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing releases the lock


def _backup(item: _Staged) -> None:
    """Keep the previous target (a regular file) under a hidden hard link until the commit ends."""
    if not os.path.isfile(item.target) or os.path.islink(item.target):
        return
    item.existed = True
    fd, path = _hidden(item.target, "old")
    os.close(fd)
    try:
        os.unlink(path)
        os.link(item.target, path)
    except OSError:  # no hard links here: a copy
        import shutil
        shutil.copy2(item.target, path)
    item.backup = path


def _rollback(items: list) -> list:
    """Put every renamed target back as it was; returns the names that could not be restored."""
    failed = []
    for item in reversed(items):
        if not item.renamed:
            continue
        try:
            if item.backup is not None:
                os.replace(item.backup, item.target)
                item.backup = None
            else:
                os.unlink(item.target)
            item.renamed = False
        except OSError:
            failed.append(item.name)
    return failed


def _plan_items(planned) -> list:
    if isinstance(planned, dict):
        planned = planned.items()
    return [(os.fspath(p), d) for p, d in planned]


def commit_outputs(planned, *, fsync: bool = False, committed: list | None = None,
                   optional: Iterable = (), warn: Callable[[str], None] | None = None) -> list:
    """Write a run's outputs all or nothing; returns the paths now in place.

    ``planned``: ``{path: data}`` (or an iterable of ``(path, data)``), in the order the files
    should be renamed; ``data`` is bytes-like, an iterable of bytes-like chunks, or a writer
    ``callable(fh)`` writing to an open binary file. Paths in ``optional`` (e.g. the Fdump.bin
    cache) are dropped with a ``warn(message)`` if they cannot be staged, like nanoBragg.c's
    warning, instead of failing the commit.

    Phases: (1) stage every file under a hidden temporary name (failure or interrupt: temporaries
    removed, nothing touched); (2) under an flock of every target folder and with SIGINT/SIGTERM/
    SIGHUP deferred, remove dead runs' leftovers, run the commit guard (see
    :func:`set_commit_guard`), keep every previous file as a hidden hard link, rename every file
    into place; if a rename fails, roll back and raise :class:`CommitError` (``restored`` False
    only if the rollback itself failed, which its message then says); (3) drop the backups.
    ``committed`` (a list) receives every path once the whole set is in place, before a deferred
    signal is delivered, so an interrupted caller can say truthfully what is on disk.

    A rotation series commits each frame's set with one call (per-frame atomicity).
    """
    items = _plan_items(planned)
    optional = {os.fspath(p) for p in optional}
    staged: list[_Staged] = []
    done: list = []
    try:
        for name, data in items:
            try:
                staged.append(_stage(name, data, fsync))
            except NanoBraggError as err:
                if name not in optional:
                    raise
                if warn is not None:
                    warn(f"unable to write {name}: {err}")
        folders = [os.path.dirname(os.path.abspath(it.target)) for it in staged]
        with deferred_signals(), _folder_locks(folders):
            for folder in set(folders):
                clean_leftovers(folder)
            if _commit_guard is not None:
                _commit_guard([it.name for it in staged])
            _apply(staged)
            done = [it.name for it in staged]
            if committed is not None:
                committed.extend(done)
            for it in staged:
                _discard(it.backup)
                it.backup = None
    finally:
        for it in staged:
            _discard(it.tmp if not it.renamed else None)
    return done


def _apply(staged: list) -> None:
    """The renames (device targets written in place); on a failure roll back and raise."""
    current = None
    try:
        for it in staged:
            current = it
            if it.tmp is None:
                continue
            _backup(it)
            _rename(it.tmp, it.target)
            it.renamed = True
        for it in staged:
            current = it
            if it.tmp is None:
                with open(it.target, "wb") as fh:
                    _write_all(fh, it.data)
    except BaseException as exc:
        failed = _rollback(staged)
        for it in staged:
            _discard(it.backup)
        what = _why(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}"
        if failed:
            raise CommitError(f"cannot write {current.name}: {what}; could not restore the "
                              f"previous {', '.join(failed)}: the outputs are a mix of this run "
                              "and an earlier one", restored=False) from None
        if isinstance(exc, OSError):
            raise CommitError(f"cannot write {current.name}: {what}; no output file was "
                              "changed") from None
        raise


def atomic_write_bytes(path, data, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (:func:`commit_outputs` with one file).

    ``data`` is a bytes-like object, an iterable of bytes-like chunks (if the iterable raises,
    nothing is written) or a writer ``callable(fh)``. The new file gets the permissions an
    ordinary ``fopen(path, "wb")`` would give it (0666 minus the umask). A symbolic link at
    ``path`` is written through (its target is replaced), as C's fopen would. If ``path`` names
    an existing non-regular file (/dev/null, a FIFO) it is written directly. OS errors (unwritable
    folder, missing folder, full disk, ...) are raised as :class:`NanoBraggError` naming ``path``.
    """
    commit_outputs([(path, data)], fsync=fsync)


# ---- deferred writes (the Fdump.bin cache joins the run's commit) ----------------------------

_collector: list | None = None


@contextlib.contextmanager
def collect_deferred_writes():
    """Within the block, :func:`write_or_defer` queues ``(path, data)`` in the yielded list
    instead of writing, so that the caller commits them with the run's other outputs."""
    global _collector
    saved, _collector = _collector, []
    try:
        yield _collector
    finally:
        _collector = saved


def write_or_defer(path, data) -> None:
    """Write ``data`` atomically now, or queue it when a :func:`collect_deferred_writes` is open."""
    if _collector is not None:
        _collector.append((os.fspath(path), data))
    else:
        atomic_write_bytes(path, data)
