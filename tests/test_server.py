"""Warm start-up server (NANOBRAGG_SERVER=1): same outputs, exit codes and stderr as a plain run."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "48", "-pixel", "0.1", "-nopgm",
        "-nonoise", "-noprogress"]


def _run(cwd, env, extra):
    return subprocess.run([sys.executable, "-m", "nanobragg_cli", *ARGS, *extra], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the server needs fork()")
def test_server_runs_give_the_same_files_and_errors(tmp_path):
    runtime = Path(tempfile.mkdtemp(prefix="nbsrv", dir="/tmp"))  # short: AF_UNIX path limit
    env = dict(os.environ, NANOBRAGG_SERVER="1", XDG_RUNTIME_DIR=str(runtime),
               NANOBRAGG_SERVER_IDLE="60")
    plain_env = {k: v for k, v in env.items() if k != "NANOBRAGG_SERVER"}
    ref = _run(tmp_path, plain_env, ["-floatfile", "ref.bin", "-intfile", "ref.img"])
    assert ref.returncode == 0, ref.stderr

    first = _run(tmp_path, env, ["-floatfile", "a.bin", "-intfile", "a.img"])  # starts a server
    assert first.returncode == 0, first.stderr
    sockets = []
    for _ in range(600):  # the server imports torch first (slow on a loaded machine)
        sockets = list(runtime.glob("nanobragg-*/server-*.sock"))
        if sockets:
            break
        time.sleep(0.2)
    assert sockets, "no server socket appeared"

    second = _run(tmp_path, env, ["-floatfile", "b.bin", "-intfile", "b.img"])
    assert second.returncode == 0, second.stderr
    for name in ("a", "b"):
        assert np.array_equal(np.fromfile(tmp_path / f"{name}.bin", np.float32),
                              np.fromfile(tmp_path / "ref.bin", np.float32))
        assert (tmp_path / f"{name}.img").read_bytes() == (tmp_path / "ref.img").read_bytes()
    assert second.stdout.splitlines()[-4:-1] == ref.stdout.splitlines()[-4:-1]  # max_I, mean, scale

    bad = _run(tmp_path, env, ["-floatfile", "c.bin", "-pixel", "abc"])
    assert bad.returncode == 9
    assert bad.stderr.strip().count("\n") == 0 and "-pixel" in bad.stderr
    assert not (tmp_path / "c.bin").exists()

    stopped = subprocess.run([sys.executable, "-m", "nanobragg_cli.server", "--stop"], env=env,
                             timeout=60)
    assert stopped.returncode == 0
    for _ in range(100):
        if not any(Path(s).exists() for s in sockets):
            break
        time.sleep(0.1)
    assert not any(Path(s).exists() for s in sockets), "the server did not stop"
    shutil.rmtree(runtime, ignore_errors=True)
