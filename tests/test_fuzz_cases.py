"""The parity fuzzer's case generator (nanobragg_cli.fuzz_cases) and ``nanobragg suite --c-bin
--random`` against the stand-in binary (tests/fake_nanobragg.py, rendering through us)."""

from collections import Counter
import math
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from nanobragg_cli.cases_file import read_cases
from nanobragg_cli.cli import main
from nanobragg_cli.errors import NanoBraggError
from nanobragg_cli.fuzz_cases import AREAS, draw_case, draw_cases, write_cases
from nanobragg_cli.io.hkl import read_hkl
from nanobragg_cli.io.mosflm import read_mat
from nanobragg_cli.io.smv import read_smv
from nanobragg_cli.io.sources import read_sourcefile
from nanobragg_cli.shrink import flag_groups
from nanobragg_cli.simulate import prepare

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def drawn():
    return draw_cases(200, 3)


def test_the_same_seed_draws_the_same_cases_and_files():
    a, b = draw_cases(20, 11), draw_cases(20, 11)
    assert [c.flags for c in a] == [c.flags for c in b]
    assert [c.files for c in a] == [c.files for c in b]
    assert draw_cases(5, 11, start=15)[0].flags == a[15].flags      # independent of N
    assert [c.flags for c in draw_cases(20, 12)] != [c.flags for c in a]


def test_every_area_of_the_flag_table_appears_in_200_draws(drawn):
    seen = Counter(area for c in drawn for area in c.areas)
    assert set(AREAS) <= set(seen), set(AREAS) - set(seen)
    # several areas per case, and the command lines mix many flags
    assert min(len(c.areas) for c in drawn) >= 2
    assert np.median([len(flag_groups(c.flags)) for c in drawn]) >= 12


def test_every_flag_group_of_the_table_is_drawn(drawn):
    from nanobragg_cli.flags import FLAGS, find_flag
    used = {find_flag(g[0]).names[0] for c in drawn for g in flag_groups(c.flags)}
    # what the fuzzer leaves out on purpose: outputs, tracing, no-effect flags, Fdump/Fdump-like
    skip = {f.names[0] for f in FLAGS if f.group in ("Output", "Trace", "No effect")}
    skip |= {"-dump", "-noisefile", "-pix0_vector", "-xtal_width", "-xtal_z", "-detsize",
             "-detsize_f", "-detsize_s", "-hdivstep", "-vdivstep", "-mosflm"}
    missing = {f.names[0] for f in FLAGS} - skip - used
    assert not missing, missing


def test_drawn_cases_parse_and_stay_small(drawn, tmp_path):
    write_cases(drawn, tmp_path)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        refused = 0
        for c in drawn:
            try:
                cfg = prepare(list(c.flags))
            except NanoBraggError as err:   # the edge values we refuse on purpose
                assert "no phi step to render" in str(err), (c.name, str(err))
                refused += 1
                continue
            assert 16 <= cfg.detector.fpixels <= 48 and 16 <= cfg.detector.spixels <= 48, c.name
        assert refused < len(drawn) // 20
    finally:
        os.chdir(old)


def test_written_inputs_parse(drawn, tmp_path):
    cases_file = write_cases(drawn, tmp_path)
    assert [c.name for c in read_cases(cases_file)] == [c.name for c in drawn]
    kinds = Counter()
    for c in drawn:
        for rel in c.files:
            path = tmp_path / rel
            if rel.endswith(".hkl"):
                hkl, F = read_hkl(path)
                assert len(hkl) == len(F) > 0 and np.all(hkl == np.round(hkl))
            elif rel.endswith(".mat"):
                A = read_mat(path)
                assert A.shape == (3, 3) and abs(np.linalg.det(A)) > 0
            elif rel.endswith("_sources.txt"):
                src = read_sourcefile(path)
                assert 1 <= len(src) <= 5
            else:
                img = read_smv(path)
                assert 16 <= img.data.shape[0] <= 48 and 16 <= img.data.shape[1] <= 48
            kinds[Path(rel).suffix] += 1
    assert set(kinds) == {".hkl", ".mat", ".txt", ".img"}


def test_the_matrix_file_holds_the_drawn_cell():
    """A case's A matrix is the reciprocal cell of a -cell of the generator: its inverse has
    the cell's lengths (times the wavelength) and angles."""
    import random
    from nanobragg_cli.fuzz_cases import mat_file
    cell = (50.0, 60.0, 70.0, 80.0, 95.0, 110.0)
    path = Path(tempfile.mkdtemp()) / "A.mat"
    path.write_bytes(mat_file(random.Random(1), cell, 1.0))
    real = np.linalg.inv(read_mat(path)).T      # rows: a, b, c
    a, b, c = real
    assert np.allclose([np.linalg.norm(v) for v in real], cell[:3], rtol=1e-6)
    angle = lambda u, v: math.degrees(math.acos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    assert np.allclose([angle(b, c), angle(a, c), angle(a, b)], cell[3:], rtol=1e-6)
    shutil.rmtree(path.parent)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The stand-in binary, rendering every command line through ``nanobragg --c-parity``."""
    exe = tmp_path / "fake_nanobragg"
    exe.write_text(f"#!{sys.executable}\n" + (HERE / "fake_nanobragg.py").read_text())
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_NB_CORPUS", str(tmp_path / "no_corpus"))
    monkeypatch.setenv("FAKE_NB_RENDER", "1")
    for var in ("FAKE_NB_PERTURB", "FAKE_NB_PERTURB_IF", "FAKE_NB_NO_TRACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return str(exe)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the stand-in renders through the server")
def test_suite_random_runs_the_drawn_cases_and_prints_each_failure_as_one_command(
        fake, tmp_path, capsys, monkeypatch):
    runtime = Path(tempfile.mkdtemp(prefix="nbfz", dir="/tmp"))    # short: AF_UNIX path limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("NANOBRAGG_SERVER", "1")       # the stand-in's renders stay warm
    # the stand-in diverges on every case with a -cell: its F_latt is off by 1 %
    monkeypatch.setenv("FAKE_NB_PERTURB", "trace:F_latt:1.01")
    monkeypatch.setenv("FAKE_NB_PERTURB_IF", "-cell")
    cases = draw_cases(4, 5)
    try:
        code = main(["suite", "--c-bin", fake, "--random", "4", "--seed", "5",
                     "--out", str(tmp_path / "out")])
    finally:
        subprocess.run([sys.executable, "-m", "nanobragg_cli.server", "--stop"], timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)
    out = capsys.readouterr().out
    lines = out.splitlines()
    with_cell = [c for c in cases if "-cell" in c.flags]
    assert with_cell and len(with_cell) < 4           # seed 5 draws both kinds
    assert lines[-1] == f"{4 - len(with_cell)} passed, {len(with_cell)} failed", out
    folder = tmp_path / "out" / "random_5"
    assert (folder / "cases.txt").is_file()
    for c in cases:
        row = next(ln for ln in lines if ln.startswith(c.name + " "))
        assert (" FAIL " in row) == (c in with_cell), row
    for c in with_cell:
        at = lines.index(next(ln for ln in lines if ln.startswith(f"  FAILED {c.name}:")))
        command = lines[at].split(": ", 1)[1]
        assert command.startswith(f"cd {folder} && nanobragg parity --c-bin {fake} --c-parity -- ")
        assert command.endswith(c.command)
        assert lines[at + 1].strip().startswith("first_divergence=")
    assert f"  {len(with_cell)} failed: first_divergence=" in out


def test_failures_are_counted_by_kind():
    from nanobragg_cli.cbin import BinaryRun
    from nanobragg_cli.cbin_check import BinaryCheck
    from nanobragg_cli.cbin_cli import failure_kind

    def check(error, image):
        chk = BinaryCheck("nb", [], [], Path("."), True, error=error)
        chk.c_run = BinaryRun([], 0, "", "", {"float": np.asarray(image, "<f4").tobytes()})
        return chk

    refused = "our run failed: -osc 0 with -phistep 0.2: no phi step to render"
    assert failure_kind(check(refused, [np.nan, np.nan])) == \
        "refused by validation (the binary's image is NaN/inf)"
    assert failure_kind(check(refused, [0.0, 1.0])).endswith("finite: a real image we refuse)")
    assert failure_kind(check("our run crashed: RuntimeError: x", [0.0])) == "our run crashed"
    assert failure_kind(check("the binary exited with status 9: x", [0.0])) == "binary failed"


def test_suite_random_with_a_missing_binary_is_one_error_line_and_leaves_nothing(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["suite", "--c-bin", str(tmp_path / "nope"), "--random", "2", "--seed", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--c-bin" in err and "no such file" in err
    assert list(tmp_path.iterdir()) == []
