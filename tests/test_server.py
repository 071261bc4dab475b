"""Warm start-up server (NANOBRAGG_SERVER=1): same outputs, exit codes and stderr as a plain run,
and a job that never outlives its client.

Every test uses a private runtime folder (a unix socket there, nothing else) and kills every
server it started (the ``server`` fixture's cleanup)."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="the server needs fork() and Linux's /proc")

ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "48", "-pixel", "0.1", "-nopgm",
        "-nonoise", "-noprogress"]
# a render of several seconds even on a fast machine (a job to kill while it runs)
LONG = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "1024", "-pixel", "0.1", "-nopgm",
        "-nonoise", "-noprogress", "-oversample", "6", "-phisteps", "8", "-osc", "1",
        "--threads", "1"]
CMD = [sys.executable, "-m", "nanobragg_cli"]


def _server_pids(runtime: Path) -> list:
    """Live server processes started for this runtime folder (found through /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"nanobragg_cli.server" in cmd and any(
                str(runtime).encode() in part for part in cmd):
            pids.append(int(entry.name))
    return pids


def _children(pid: int) -> list:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _wait(predicate, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Server:
    def __init__(self, runtime: Path):
        self.runtime = runtime
        self.env = dict(os.environ, NANOBRAGG_SERVER="1", XDG_RUNTIME_DIR=str(runtime),
                        NANOBRAGG_SERVER_IDLE="120", NANOBRAGG_SERVER_TIMEOUT="20")
        self.plain_env = {k: v for k, v in self.env.items() if k != "NANOBRAGG_SERVER"}

    def run(self, cwd, extra, env=None, args=ARGS, **kw):
        return subprocess.run([*CMD, *args, *extra], cwd=cwd, env=env or self.env,
                              capture_output=True, text=True, timeout=300, **kw)

    def start(self):
        """Start the server directly (as the first client would) and wait for its socket."""
        code = ("from nanobragg_cli import server_client as c; "
                "import sys; sys.exit(0 if c.start_server(c.socket_path()) else 1)")
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=60)
        assert _wait(self.sockets, 180, 0.2), "no server socket appeared"
        return self.pid()

    def sockets(self):
        return list(self.runtime.glob("nanobragg-*/server-*.sock"))

    def pid(self):
        pids = _server_pids(self.runtime)
        assert len(pids) == 1, pids
        return pids[0]


@pytest.fixture
def server():
    runtime = Path(tempfile.mkdtemp(prefix="nbsrv", dir="/tmp"))  # short: AF_UNIX path limit
    srv = Server(runtime)
    try:
        yield srv
    finally:
        for pid in _server_pids(runtime):
            for child in _children(pid):
                try:
                    os.killpg(child, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(runtime, ignore_errors=True)


def test_server_runs_give_the_same_files_and_errors(tmp_path, server):
    ref = server.run(tmp_path, ["-floatfile", "ref.bin", "-intfile", "ref.img"],
                     env=server.plain_env)
    assert ref.returncode == 0, ref.stderr

    first = server.run(tmp_path, ["-floatfile", "a.bin", "-intfile", "a.img"])  # starts one
    assert first.returncode == 0, first.stderr
    assert _wait(server.sockets, 180, 0.2), "no server socket appeared"

    second = server.run(tmp_path, ["-floatfile", "b.bin", "-intfile", "b.img"])
    assert second.returncode == 0, second.stderr
    assert second.stderr == ref.stderr
    for name in ("a", "b"):
        assert np.array_equal(np.fromfile(tmp_path / f"{name}.bin", np.float32),
                              np.fromfile(tmp_path / "ref.bin", np.float32))
        assert (tmp_path / f"{name}.img").read_bytes() == (tmp_path / "ref.img").read_bytes()
    assert second.stdout.splitlines()[-4:-1] == ref.stdout.splitlines()[-4:-1]  # max_I, mean, scale

    bad = server.run(tmp_path, ["-floatfile", "c.bin", "-pixel", "abc"])
    assert bad.returncode == 9
    assert bad.stderr.strip().count("\n") == 0 and "-pixel" in bad.stderr
    assert not (tmp_path / "c.bin").exists()

    sockets = server.sockets()
    stopped = subprocess.run([*CMD[:-1], "nanobragg_cli.server", "--stop"], env=server.env,
                             timeout=60)
    assert stopped.returncode == 0
    assert _wait(lambda: not any(s.exists() for s in sockets), 10), "the server did not stop"


def test_the_client_environment_is_honoured(tmp_path, server):
    """ulimit -f (RLIMIT_FSIZE), umask and OMP_NUM_THREADS reach the job."""
    server.start()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the float image is 9216 bytes
        os.umask(0o077)
    r = server.run(tmp_path, ["-floatfile", "f.bin", "-intfile", "f.img"],
                   preexec_fn=small_files)
    assert r.returncode == 9, r.stderr
    assert "file too large" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.img").exists()

    r = server.run(tmp_path, ["-floatfile", "g.bin", "-intfile", "g.img"],
                   preexec_fn=lambda: os.umask(0o077))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.bin").stat().st_mode & 0o777 == 0o600

    for threads in ("1", "2"):
        env = dict(server.env, OMP_NUM_THREADS=threads)
        r = server.run(tmp_path, ["-floatfile", "h.bin", "-intfile", "h.img",
                                  "--manifest", f"m{threads}.json"], env=env)
        assert r.returncode == 0, r.stderr
        text = (tmp_path / f"m{threads}.json").read_text()
        json.loads(text)
        assert f'"threads": {threads},' in text


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_a_killed_client_kills_its_job_before_it_writes(tmp_path, server, sig):
    """SIGKILL (or SIGHUP) of the client mid-render: the job's process group dies at once,
    nothing is written (before: the job ran on and overwrote a newer run's files 25 s later)."""
    pid = server.start()
    client = subprocess.Popen([*CMD, *LONG, "-floatfile", "k.bin", "-intfile", "k.img"],
                              cwd=tmp_path, env=server.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        jobs = _wait(lambda: _children(pid), 60, 0.02)
        assert jobs, "the server started no job"
        time.sleep(0.5)
        assert client.poll() is None, "the long run finished too soon for this test"
        client.send_signal(sig)
        client.wait(timeout=30)
        assert _wait(lambda: not _children(pid), 10), "the job outlived its client"
    finally:
        if client.poll() is None:
            client.kill()
    assert sorted(os.listdir(tmp_path)) == []


def test_a_killed_job_gives_one_line(tmp_path, server):
    pid = server.start()
    client = subprocess.Popen([*CMD, *LONG, "-floatfile", "k.bin", "-intfile", "k.img"],
                              cwd=tmp_path, env=server.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        jobs = _wait(lambda: _children(pid), 60, 0.02)
        assert jobs, "the server started no job"
        time.sleep(0.3)
        os.kill(jobs[0], signal.SIGKILL)
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 137
    assert err.strip().splitlines() == [
        "nanobragg: error: the run was killed by SIGKILL in the warm-start server (out of "
        "memory?); no output file was written by it"]
    assert os.listdir(tmp_path) == []


def test_a_stopped_server_is_skipped_after_the_timeout(tmp_path, server):
    pid = server.start()
    os.kill(pid, signal.SIGSTOP)
    try:
        env = dict(server.env, NANOBRAGG_SERVER_TIMEOUT="1")
        t0 = time.monotonic()
        r = server.run(tmp_path, ["-floatfile", "s.bin", "-intfile", "s.img"], env=env)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stderr.splitlines()[0] == ("nanobragg: warning: the warm-start server did not "
                                            "answer within 1 s; running here")
        assert (tmp_path / "s.bin").stat().st_size == 48 * 48 * 4
        assert took < 120
    finally:
        os.kill(pid, signal.SIGCONT)
    # the stale request the resumed server finds is dropped: its client is gone
    time.sleep(1.0)
    assert _wait(lambda: not _children(pid), 10)
    assert sorted(os.listdir(tmp_path)) == ["s.bin", "s.img"]


def test_simultaneous_first_calls_start_one_server(tmp_path, server):
    procs = []
    for i in range(5):
        (tmp_path / str(i)).mkdir()
        procs.append(subprocess.Popen([*CMD, *ARGS, "-detpixels", "8"], cwd=tmp_path / str(i),
                                      env=server.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert _wait(lambda: _server_pids(server.runtime), 60, 0.2), "no server was started"
    time.sleep(1.0)
    assert len(_server_pids(server.runtime)) == 1
