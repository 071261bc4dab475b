"""The transactional commit of a run's outputs (io/atomic.commit_outputs) and what the CLI says.

Before: a SIGINT between the renames left a mix of new and old files while the message said that
no output file was written; an error after the renames began (a 300-character -intfile) replaced
some outputs and exited 9; Fdump.bin was written even by a run that failed."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import nanobragg_cli.io.atomic as atomic
from nanobragg_cli.cli import main
from nanobragg_cli.errors import NanoBraggError

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "16", "-pixel", "0.1", "-noprogress",
        "-seed", "1"]
OUTS = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img", "-pgmfile", "p.pgm"]
NAMES = ["f.bin", "i.img", "n.img", "p.pgm"]


def _state(folder, names):
    out = {}
    for n in names:
        p = os.path.join(folder, n)
        out[n] = open(p, "rb").read() if os.path.exists(p) else None
    return out


def _hidden(folder):
    return [n for n in os.listdir(folder) if n.endswith((".part", ".old"))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=st.lists(st.booleans(), min_size=1, max_size=4),
       fail_at=st.integers(min_value=0, max_value=4),
       kind=st.sampled_from(["oserror", "signal", "exception", "none"]))
def test_commit_is_all_new_or_all_old_and_says_which(old, fail_at, kind):
    """For any point of failure or interruption in the renames: all new or all old, never a mix,
    and what the caller is told agrees (``committed`` lists every file, or none)."""
    with tempfile.TemporaryDirectory() as folder:
        names = [f"out{i}.img" for i in range(len(old))]
        for name, present in zip(names, old):
            if present:
                with open(os.path.join(folder, name), "wb") as fh:
                    fh.write(b"old " + name.encode())
        before = _state(folder, names)
        planned = {os.path.join(folder, n): b"new " + n.encode() for n in names}
        calls = []
        real = atomic._rename

        def rename(src, dst):
            calls.append(dst)
            if len(calls) == fail_at + 1:
                if kind == "oserror":
                    raise OSError(errno.ENAMETOOLONG, "File name too long")
                if kind == "signal":
                    os.kill(os.getpid(), signal.SIGINT)  # deferred until the commit is done
                if kind == "exception":
                    raise KeyboardInterrupt  # not a signal: cannot be deferred, rolled back
            return real(src, dst)
        committed = []
        atomic._rename = rename
        try:
            outcome = "ok"
            atomic.commit_outputs(planned, committed=committed)
        except atomic.CommitError as err:
            outcome = "error"
            assert err.restored and "no output file was changed" in str(err)
        except KeyboardInterrupt:
            outcome = "interrupt"
        finally:
            atomic._rename = real
        after = _state(folder, names)
        new = {n: b"new " + n.encode() for n in names}
        failed = fail_at < len(names) and kind in ("oserror", "exception")
        if failed:
            assert after == before and committed == []
            assert outcome == ("error" if kind == "oserror" else "interrupt")
        else:
            assert after == new and committed == list(planned)
            assert outcome == ("interrupt" if kind == "signal" and fail_at < len(names) else "ok")
        assert _hidden(folder) == []


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _old_outputs(folder):
    for n in NAMES:
        (folder / n).write_bytes(b"old " + n.encode())


def test_signal_during_the_renames_commits_everything_and_says_so(workdir, capsys, monkeypatch):
    _old_outputs(workdir)
    real, calls = atomic._rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(src, dst)
    monkeypatch.setattr(atomic, "_rename", rename)
    assert main(BASE + OUTS) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nanobragg: interrupted after writing every output (f.bin, i.img, p.pgm, n.img)"]
    for n in NAMES:
        assert not (workdir / n).read_bytes().startswith(b"old ")
    assert _hidden(workdir) == []


def test_error_during_the_renames_restores_every_old_file(workdir, capsys, monkeypatch):
    """A 300-character -intfile name is refused before the render; a rename that fails anyway
    (injected: an I/O error at the third rename) puts every earlier output back."""
    _old_outputs(workdir)
    code = main(BASE + ["-floatfile", "f.bin", "-intfile", "x" * 300 + ".img"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 9 and len(err) == 1 and "the file name is too long" in err[0], err
    real, calls = atomic._rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)
    monkeypatch.setattr(atomic, "_rename", rename)
    code = main(BASE + OUTS)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 9
    assert err == ["nanobragg: error: cannot write p.pgm: Input/output error; no output file "
                   "was changed"]
    for n in NAMES:
        assert (workdir / n).read_bytes() == b"old " + n.encode()
    assert _hidden(workdir) == []


def test_fdump_is_not_written_by_a_failing_run(workdir, capsys):
    (workdir / "F.hkl").write_text("0 0 0 100\n1 0 0 50\n")
    (workdir / "Fdump.bin").write_bytes(b"old cache")
    # -twotheta 180 turns the detector away from the sample: refused after the render
    code = main(BASE + ["-hkl", "F.hkl", "-twotheta", "180", "-pivot", "beam",
                        "-floatfile", "f.bin"])
    assert code == 9
    assert "faces away from the sample" in capsys.readouterr().err
    assert (workdir / "Fdump.bin").read_bytes() == b"old cache"
    assert not (workdir / "f.bin").exists()
    # interrupted during the render (after -hkl was read): not written either
    import nanobragg_cli.render as render

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    real_render = render.render
    render.render = interrupt
    try:
        assert main(BASE + ["-hkl", "F.hkl", "-floatfile", "f.bin"]) == 130
    finally:
        render.render = real_render
    assert capsys.readouterr().err.strip() == "nanobragg: interrupted; no output file was written"
    assert (workdir / "Fdump.bin").read_bytes() == b"old cache"
    # a good run writes it with the images, in the same commit
    assert main(BASE + ["-hkl", "F.hkl", "-floatfile", "f.bin"]) == 0
    assert (workdir / "Fdump.bin").read_bytes() != b"old cache" and (workdir / "f.bin").exists()


def test_concurrent_commits_into_one_folder_are_serialised(tmp_path):
    """While one commit holds the folder's lock, another waits; the last one wins whole."""
    inside, release, order = threading.Event(), threading.Event(), []
    paths = [str(tmp_path / n) for n in ("a.bin", "a.img")]

    def guard(names):
        if threading.current_thread().name == "first":
            inside.set()
            assert release.wait(30)
        order.append(threading.current_thread().name)
    atomic.set_commit_guard(guard)
    try:
        first = threading.Thread(name="first", target=atomic.commit_outputs,
                                 args=({p: b"one" for p in paths},))
        second = threading.Thread(name="second", target=atomic.commit_outputs,
                                  args=({p: b"two" for p in paths},))
        first.start()
        assert inside.wait(30)
        second.start()
        second.join(0.5)
        assert second.is_alive(), "the second commit did not wait for the first one's lock"
        release.set()
        first.join(30)
        second.join(30)
    finally:
        release.set()
        atomic.set_commit_guard(None)
    assert order == ["first", "second"]
    assert [open(p, "rb").read() for p in paths] == [b"two", b"two"]


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.bin.{dead.pid}.0123abcd.part"
    stale_old = tmp_path / f".a.img.{dead.pid}.89abcdef.old"
    alive = tmp_path / f".b.bin.{os.getppid()}.0123abcd.part"  # a live process's: kept
    for p in (stale, stale_old, alive):
        p.write_bytes(b"x")
    atomic.commit_outputs({tmp_path / "c.bin": b"c"})
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, "c.bin"])


def test_staging_failure_touches_nothing(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"old")
    real = atomic._write_all

    def full(fh, data):
        if data == b"second":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fh, data)
    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(NanoBraggError, match="b.bin: no space left on device"):
        atomic.commit_outputs({tmp_path / "a.bin": b"first", tmp_path / "b.bin": b"second"})
    assert sorted(os.listdir(tmp_path)) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old"
