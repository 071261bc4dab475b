"""Warm start-up: an optional per-user server that keeps torch imported between runs.

Importing torch costs ~2 s on a small machine, more than nanoBragg.c needs for a whole 1024²
image. With ``NANOBRAGG_SERVER=1`` the ``nanobragg`` command (:mod:`.server_client`) hands its
argv, working folder, environment, umask, resource limits and its own stdin/stdout/stderr to this
background process; it forks a child per run, which becomes the caller (all of the above, and
``OMP_NUM_THREADS``), runs exactly the same ``cli.main`` and reports the exit code.

The job lives only as long as its client: each child is its own process group, which the server
kills (SIGKILL) as soon as the client's end of the connection closes (the client died, was
killed, or hung up); and before committing its outputs the child asks the client, which must
answer -- so a job whose client is gone never writes. A child killed by a signal (the OOM
killer) is reported to the client, which prints one line.

Safety: the socket lives in a 0700 folder of the user (``$XDG_RUNTIME_DIR`` or /tmp), peers must
have the same uid, the socket name includes a fingerprint of the package's source files, Python
and torch (a changed install never talks to an old server), one server per fingerprint (an flock
held for its whole life), and it exits after ``NANOBRAGG_SERVER_IDLE`` seconds without a request
(default 900). The server never computes anything itself, so forking it is safe.
"""

import os
from pathlib import Path
import resource
import select
import signal
import socket
import struct
import sys
import time

from .server_client import (ENV_IDLE, ENV_INSIDE, THREAD_VARS, lock_path, recv, send,
                            stop)  # noqa: F401  (stop: kept for callers of server.stop)

_HUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
_COMMIT_WAIT = 60.0  # s a child waits for its client's go-ahead before a commit


class ClientGone(BaseException):
    """The client did not approve a commit (it died or disconnected): abort without writing."""


def _apply_limits(limits: dict) -> None:
    """Take on the client's resource limits (ulimit -f, -v, ...); ValueError/OSError if one is
    above what this server may set (then the client runs in-process)."""
    for name, (soft, hard) in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        if tuple(resource.getrlimit(res)) != (soft, hard):
            resource.setrlimit(res, (soft, hard))


def _threads(env: dict, default: int) -> None:
    import torch
    try:
        n = int(env.get("OMP_NUM_THREADS", ""))
    except ValueError:
        n = 0
    torch.set_num_threads(n if n > 0 else default)


def _commit_guard(conn):
    def guard(paths):
        try:
            conn.settimeout(_COMMIT_WAIT)
            send(conn, {"commit": list(paths)})
            reply, _ = recv(conn)
            conn.settimeout(None)
        except (OSError, ConnectionError, ValueError):
            raise ClientGone() from None
        if not reply.get("go"):
            raise ClientGone()
    return guard


def _child(conn, request: dict, fds: list, keep: tuple, default_threads: int) -> None:
    """Forked child: become the caller (limits, folder, environment, stdio) and run the CLI."""
    code = 70
    try:
        os.setpgid(0, 0)
        for fd in keep:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            _apply_limits(request.get("rlimits", {}))
            os.chdir(request["cwd"])
        except (ValueError, OSError) as err:
            send(conn, {"fallback": str(err)})
            os._exit(0)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[ENV_INSIDE] = "1"
        os.umask(int(request.get("umask", 0o022)))
        _threads(request["env"], default_threads)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        from .io.atomic import set_commit_guard
        set_commit_guard(_commit_guard(conn))
        send(conn, {"pid": os.getpid()})
        from .cli import main
        code = main(list(request["argv"]))
    except ClientGone:
        os._exit(137)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # never let a child fall back into the server loop
        code = 70
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        send(conn, {"exit": int(code)})
    except BaseException:
        pass
    os._exit(int(code) if isinstance(code, int) else 70)


def _warm_up() -> None:
    """Render a tiny image once, on one thread, so that forked children start with torch's
    operators already initialised (a child's first render otherwise spends ~0.2 s on lazy
    set-up). One thread keeps the fork safe: no OpenMP thread pool exists in the server."""
    import torch
    from .simulate import ToolOptions, prepare, run_simulation

    threads = torch.get_num_threads()
    try:
        for dtype in ("float64", "float32"):
            cfg = prepare(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100",
                           "-N", "5", "-detpixels", "16", "-nopgm", "-nonoise"])
            run_simulation(cfg, ToolOptions(threads=1, dtype=dtype))
    except Exception:  # a warm-up is an optimisation only
        pass
    finally:
        torch.set_num_threads(threads)


def _hung_up(conn) -> bool:
    p = select.poll()
    p.register(conn, _HUP)
    return bool(p.poll(0))


class _Jobs:
    """Running children: pid -> its connection; kills a job whose client went away, tells a
    client whose job was killed."""

    def __init__(self, poller):
        self.poller, self.by_fd, self.by_pid = poller, {}, {}

    def add(self, pid, conn):
        self.by_fd[conn.fileno()] = pid
        self.by_pid[pid] = conn
        self.poller.register(conn, _HUP)

    def _drop(self, pid):
        conn = self.by_pid.pop(pid, None)
        if conn is not None:
            self.by_fd.pop(conn.fileno(), None)
            self.poller.unregister(conn)
            conn.close()

    def client_gone(self, fd):
        pid = self.by_fd.get(fd)
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        self._drop(pid)  # reaped later by reap()

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.by_pid.get(pid)
            if conn is not None and os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                try:
                    send(conn, {"exit": 128 + sig, "signal": sig})
                except OSError:
                    pass
            self._drop(pid)


def serve(path: Path, lock_fd: int | None = None) -> None:
    """Accept requests until idle (no request, no job) for NANOBRAGG_SERVER_IDLE seconds."""
    if lock_fd is None:  # started by hand: take the start-up lock here
        import fcntl
        lock_fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another server runs
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    for var in THREAD_VARS:
        os.environ.pop(var, None)
    import torch  # noqa: F401  (the point of the server: imported once)
    from . import cli, simulate, scene, kernel, render, outputs  # noqa: F401
    default_threads = torch.get_num_threads()
    _warm_up()
    idle = float(os.environ.get(ENV_IDLE, "900"))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp))
    os.chmod(tmp, 0o600)
    srv.listen(16)
    os.replace(tmp, path)
    inode = os.stat(path).st_ino
    poller = select.poll()
    poller.register(srv, select.POLLIN)
    jobs = _Jobs(poller)
    last = time.monotonic()
    try:
        while True:
            events = poller.poll(250)
            jobs.reap()
            for fd, ev in events:
                if fd != srv.fileno():
                    jobs.client_gone(fd)
                    continue
                last = time.monotonic()
                if _accept(srv, jobs, (lock_fd,), default_threads) == "stop":
                    return
            if not jobs.by_pid and time.monotonic() - last > idle:
                return
    finally:
        try:
            if path.exists() and os.stat(path).st_ino == inode:
                path.unlink()
        except OSError:
            pass
        srv.close()


def _accept(srv, jobs, keep, default_threads):
    try:
        conn, _ = srv.accept()
    except OSError:
        return None
    fds = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():
            conn.close()
            return None
        conn.settimeout(10)
        send(conn, {"ready": True})  # only then does the client attach its stdio
        request, fds = recv(conn, with_fds=True)
        conn.settimeout(None)
    except (OSError, ConnectionError, ValueError):
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    if request.get("stop") or len(fds) != 3 or _hung_up(conn):
        for fd in fds:
            os.close(fd)
        conn.close()
        return "stop" if request.get("stop") else None
    pid = os.fork()
    if pid == 0:
        srv.close()
        for other in list(jobs.by_pid.values()):  # other clients' connections
            other.close()
        _child(conn, request, fds, keep, default_threads)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    jobs.add(pid, conn)
    return None


if __name__ == "__main__":
    if sys.argv[1:] == ["--stop"]:
        raise SystemExit(0 if stop() else 1)
    serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
