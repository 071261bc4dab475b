"""The client side of the warm-start server (``NANOBRAGG_SERVER=1``), and its wire protocol.

``cli.main`` calls :func:`run_remote`; the forking server lives in :mod:`nanobragg_cli.server`
(which imports this module, never the reverse). No torch import here.

Protocol (one unix stream socket per run; 4-byte length + JSON): the server greets with
``{"ready"}``; the client sends ``{argv, cwd, env, umask, rlimits}`` with its stdin/stdout/stderr
attached (SCM_RIGHTS; only after the greeting, so a stopped server holds none of them); the
server's child answers ``{"pid"}`` once it has become the caller (or ``{"fallback": why}`` if it
cannot, e.g. a resource limit above the server's), then ``{"commit": paths}`` before each commit
of outputs (the client answers ``{"go": true}``: a commit happens only while the client is alive),
then ``{"exit": code}``; the server itself sends ``{"exit": 128+n, "signal": n}`` when the child
was killed. The client's death or disconnect makes the server kill the job's process group.

The first call finds no server and starts one (under a lock: exactly one server per user and
installation), then runs in-process as usual; a server that does not answer within
``NANOBRAGG_SERVER_TIMEOUT`` seconds (default 10; stopped, hung) is skipped: the run happens
in-process, with a warning.
"""

import array
import fcntl
import hashlib
import json
import os
from pathlib import Path
import resource
import signal
import socket
import struct
import subprocess
import sys

ENV_SWITCH = "NANOBRAGG_SERVER"
ENV_IDLE = "NANOBRAGG_SERVER_IDLE"
ENV_INSIDE = "NANOBRAGG_IN_SERVER"
ENV_TIMEOUT = "NANOBRAGG_SERVER_TIMEOUT"
_MAX_MSG = 1 << 22
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


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


def lock_path(sock: Path) -> Path:
    """The start-up lock: held (flock) by the one server for its whole life; holds its pid."""
    return sock.with_suffix(".lock")


def send(sock, obj, fds=()):
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
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def recv(sock, with_fds=False):
    fds = array.array("i")
    if with_fds:
        msg, anc, _, _ = sock.recvmsg(4, socket.CMSG_LEN(3 * fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        if not msg:
            raise ConnectionError("connection closed")
        if len(msg) < 4:
            msg += _recv_exact(sock, 4 - len(msg))
    else:
        msg = _recv_exact(sock, 4)
    (n,) = struct.unpack("!I", msg)
    if n > _MAX_MSG:
        raise ConnectionError("message too large")
    return json.loads(_recv_exact(sock, n)), list(fds)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def rlimits() -> dict:
    """This process's resource limits {name: [soft, hard]} (ulimit -f, -v, ...)."""
    out = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                out[name] = list(resource.getrlimit(getattr(resource, name)))
            except (ValueError, OSError):
                pass
    return out


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, "10")))
    except ValueError:
        return 10.0


def _say(line: str) -> None:
    print(f"nanobragg: {line}", file=sys.stderr, flush=True)


def run_remote(argv: list) -> int | None:
    """Run ``argv`` in the warm server; None: run it in this process instead (no server yet --
    one is then started for next time --, a server that does not answer, or one that cannot
    honour this process's limits)."""
    try:
        path = socket_path()
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    wait = _timeout()
    sock.settimeout(wait)
    try:
        sock.connect(str(path))
    except socket.timeout:
        sock.close()
        _say(f"warning: the warm-start server did not answer within {wait:g} s; running here")
        return None
    except OSError:
        sock.close()
        start_server(path)
        return None
    with sock:
        try:
            request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                       "umask": _umask(), "rlimits": rlimits()}
            # wait for the server to take the connection before attaching stdio: file
            # descriptors queued to a stopped server would keep the caller's pipes open
            ready, _ = recv(sock)
            if not ready.get("ready"):
                return None
            send(sock, request, fds=(0, 1, 2))
            hello, _ = recv(sock)
        except socket.timeout:
            _say(f"warning: the warm-start server did not answer within {wait:g} s; running here")
            return None
        except (OSError, ConnectionError, ValueError):
            return None
        if "pid" not in hello:
            return None  # {"fallback": why}
        sock.settimeout(None)
        return _follow(sock, int(hello["pid"]))


def _follow(sock, child: int) -> int:
    """Forward Ctrl-C/SIGTERM to the job, approve its commits, return its exit code."""
    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except OSError:
            pass
    old = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            old[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread
            pass
    try:
        while True:
            try:
                msg, _ = recv(sock)
            except (OSError, ConnectionError, ValueError):
                _say("error: the warm-start server's worker for this run ended without an exit "
                     "status (the server was stopped?); run again without NANOBRAGG_SERVER=1")
                return 70
            if "commit" in msg:
                try:
                    send(sock, {"go": True})
                except OSError:
                    pass
                continue
            if msg.get("signal"):
                n = int(msg["signal"])
                try:
                    name = signal.Signals(n).name
                except ValueError:
                    name = f"signal {n}"
                _say(f"error: the run was killed by {name} in the warm-start server (out of "
                     "memory?); no output file was written by it")
            return int(msg.get("exit", 70))
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop() -> bool:
    """Ask this user's server for the installed code to exit; True if one was running."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(_timeout())
            sock.connect(str(socket_path()))
            recv(sock)  # {"ready"}
            send(sock, {"stop": True}, fds=(0, 1, 2))
        return True
    except (OSError, ValueError):
        return False


def start_server(path: Path) -> bool:
    """Start a detached server unless one holds the start-up lock (running or starting);
    True if one was started. Failures only mean no warm start next time."""
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another server is starting or running
        env = {k: v for k, v in os.environ.items() if k != ENV_SWITCH and k not in THREAD_VARS}
        subprocess.Popen([sys.executable, "-m", "nanobragg_cli.server", str(path), str(fd)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                         pass_fds=(fd,), env=env)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # the server's inherited copy keeps the lock


if __name__ == "__main__":
    if sys.argv[1:] == ["--stop"]:
        raise SystemExit(0 if stop() else 1)
