"""Warm start-up: an optional per-user server that keeps torch imported between runs.

Importing torch costs ~2 s on a small machine, more than nanoBragg.c needs for a whole 1024²
image. With ``NANOBRAGG_SERVER=1`` the ``nanobragg`` command hands its argv, working folder,
environment and its own stdin/stdout/stderr to a background process that has torch imported; the
server forks a child per run, which executes exactly the same ``cli.main`` in the caller's folder
and reports the exit code. The first call finds no server: it starts one in the background and
runs in-process as usual, so no call is ever slower than without the server.

Safety: the socket lives in a 0700 folder of the user (``$XDG_RUNTIME_DIR`` or /tmp), peers must
have the same uid, the socket name includes a fingerprint of the package's source files, Python
and torch (a changed install never talks to an old server), and the server exits after
``NANOBRAGG_SERVER_IDLE`` seconds without a request (default 900). The server never computes
anything itself, so forking it is safe (no thread pool exists yet).
"""

import array
import hashlib
import json
import os
from pathlib import Path
import signal
import socket
import struct
import subprocess
import sys

ENV_SWITCH = "NANOBRAGG_SERVER"
ENV_IDLE = "NANOBRAGG_SERVER_IDLE"
ENV_INSIDE = "NANOBRAGG_IN_SERVER"
_MAX_MSG = 1 << 22


def enabled() -> bool:
    """True when the caller asked for warm start-up and is not itself a server child."""
    return (os.environ.get(ENV_SWITCH, "") in ("1", "on", "yes", "true")
            and not os.environ.get(ENV_INSIDE))


def _fingerprint() -> str:
    """Hash of the package's sources (mtimes and sizes), the interpreter and torch's location."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(sys.executable.encode())
    for path in sorted(pkg.rglob("*.py")):
        st = path.stat()
        h.update(f"{path}:{st.st_mtime_ns}:{st.st_size}".encode())
    try:
        import importlib.util
        spec = importlib.util.find_spec("torch")
        if spec and spec.origin:
            h.update(str(Path(spec.origin).stat().st_mtime_ns).encode() + spec.origin.encode())
    except (ImportError, OSError, ValueError):
        pass
    return h.hexdigest()[:16]


def socket_path() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    if len(base) > 60:  # AF_UNIX paths are limited to ~107 bytes
        base = "/tmp"
    folder = Path(base) / f"nanobragg-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{folder} is not a private folder of this user")
    return folder / f"server-{_fingerprint()}.sock"


def _send(sock, obj, fds=()):
    data = json.dumps(obj).encode()
    msg = struct.pack("!I", len(data)) + data
    if fds:
        sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(msg)


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return buf


def _recv(sock, with_fds=False):
    fds = array.array("i")
    if with_fds:
        msg, anc, _, _ = sock.recvmsg(4, socket.CMSG_LEN(3 * fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        if len(msg) < 4:
            msg += _recv_exact(sock, 4 - len(msg))
    else:
        msg = _recv_exact(sock, 4)
    (n,) = struct.unpack("!I", msg)
    if n > _MAX_MSG:
        raise ConnectionError("message too large")
    return json.loads(_recv_exact(sock, n)), list(fds)


# ---- client ----------------------------------------------------------------------------------

def run_remote(argv: list) -> int | None:
    """Run ``argv`` in a warm server; None if there is none (one is then started for next time)."""
    try:
        path = socket_path()
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        _spawn(path)
        return None
    with sock:
        try:
            request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                       "umask": _umask()}
            _send(sock, request, fds=(0, 1, 2))
            hello, _ = _recv(sock)
        except (OSError, ConnectionError, ValueError):
            return None
        child = hello.get("pid")

        def forward(signum, frame):
            try:
                os.kill(child, signum)
            except OSError:
                pass
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            reply, _ = _recv(sock)
        except (OSError, ConnectionError, ValueError):
            reply = {"exit": 70}
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return int(reply.get("exit", 70))


def stop() -> bool:
    """Ask this user's server for the installed code to exit; True if one was running."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            sock.connect(str(socket_path()))
            _send(sock, {"stop": True}, fds=(0, 1, 2))
        return True
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _spawn(path: Path) -> None:
    """Start a detached server (quietly; failures only mean no warm start next time)."""
    try:
        subprocess.Popen([sys.executable, "-m", "nanobragg_cli.server", str(path)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                         env={k: v for k, v in os.environ.items() if k != ENV_SWITCH})
    except OSError:
        pass


# ---- server ----------------------------------------------------------------------------------

def _child(conn, request: dict, fds: list) -> None:
    """Forked child: become the caller (folder, environment, stdio) and run the CLI."""
    code = 70
    try:
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
        os.chdir(request["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _send(conn, {"pid": os.getpid()})
        from .cli import main
        code = main(list(request["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # never let a child fall back into the server loop
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            _send(conn, {"exit": int(code)})
        except Exception:
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


def serve(path: Path) -> None:
    """Accept requests until idle for NANOBRAGG_SERVER_IDLE seconds."""
    import torch  # noqa: F401  (the point of the server: imported once)
    from . import cli, simulate, scene, kernel, render, outputs  # noqa: F401
    _warm_up()
    idle = float(os.environ.get(ENV_IDLE, "900"))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp))
    os.chmod(tmp, 0o600)
    srv.listen(16)
    os.replace(tmp, path)
    inode = os.stat(path).st_ino
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    srv.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                break
            try:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
                _, uid, _ = struct.unpack("3i", creds)
                if uid != os.getuid():
                    conn.close()
                    continue
                conn.settimeout(10)
                request, fds = _recv(conn, with_fds=True)
                conn.settimeout(None)
            except (OSError, ConnectionError, ValueError):
                conn.close()
                continue
            if request.get("stop"):
                for fd in fds:
                    os.close(fd)
                conn.close()
                break
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                srv.close()
                _child(conn, request, fds)
            for fd in fds:
                os.close(fd)
            conn.close()
    finally:
        try:
            if path.exists() and os.stat(path).st_ino == inode:
                path.unlink()
        except OSError:
            pass
        srv.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--stop"]:
        raise SystemExit(0 if stop() else 1)
    serve(Path(sys.argv[1]))
