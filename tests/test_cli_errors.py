"""Bad input, one test per case: exit code 9, one line on stderr naming the flag or file and the
problem, no traceback, no output file (nor temporary file) left behind. Plus interruption
(SIGINT: exit 130, one line, nothing written) and the staged all-or-nothing writes."""

import errno
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import announce_script
from nanobragg_cli import preflight
from nanobragg_cli.cli import main
from nanobragg_cli.errors import FlagError
from nanobragg_cli.io import atomic
from nanobragg_cli.io.smv import SMVHeader, smv_bytes

REPO = Path(__file__).resolve().parent.parent
BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-detpixels", "8", "-seed", "1", "-noprogress"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working folder holding a few valid input files."""
    monkeypatch.chdir(tmp_path)
    Path("in.hkl").write_text("0 0 0 100\n1 0 0 50\n0 1 0 25\n")
    Path("in.mat").write_text("0.01 0 0\n0 0.01 0\n0 0 0.01\n")
    Path("sources.txt").write_text("-10 0 0 1 1e-10\n")
    Path("header.img").write_bytes(_smv(np.ones((8, 8), dtype=np.uint16)))
    return tmp_path


def _smv(data: np.ndarray) -> bytes:
    s, f = data.shape
    h = SMVHeader(size1=f, size2=s, pixel_size=0.1, distance=100, wavelength=1,
                  beam_center_x=0.4, beam_center_y=0.4, adxv_center_x=0.4, adxv_center_y=0.4,
                  mosflm_center_x=0.4, mosflm_center_y=0.4, denzo_x_beam=0.4,
                  denzo_y_beam=0.4, dials_origin=(0, 0, 100), xds_orgx=4, xds_orgy=4,
                  close_distance=100, phi=0, osc_start=0, osc_range=0, twotheta=0)
    return smv_bytes(h, data)


def _listing(folder) -> dict:
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def expect_error(argv, capsys, *names, base=BASE):
    """Run main(base + argv) in the current folder; check the error contract; return the line."""
    before = _listing(".")
    rc = main(list(base) + list(argv))
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 9, out.err
    assert len(lines) == 1, out.err
    line = lines[0]
    assert line.startswith("nanobragg: error: ")
    assert "Traceback" not in out.err and "internal error" not in line
    for name in names:
        assert name in line, line
    assert _listing(".") == before  # nothing written, nothing changed, no temporary left
    return line


# ---- the flag parser ----------------------------------------------------------------------

def test_unknown_flag(workdir, capsys):
    expect_error(["-distanse", "100"], capsys, "-distanse", "unknown flag")


def test_unknown_tool_option(workdir, capsys):
    expect_error(["--cparity"], capsys, "--cparity", "unknown option")


def test_missing_value_at_the_end(workdir, capsys):
    expect_error(["-distance"], capsys, "-distance", "expected a value")


def test_missing_value_before_the_next_flag(workdir, capsys):
    expect_error(["-lambda", "-nonoise"], capsys, "-lambda", "expected a value")


def test_missing_value_of_a_tool_option(workdir, capsys):
    expect_error(["--png", "-nonoise"], capsys, "--png", "expected a value")


def test_non_numeric_value(workdir, capsys):
    expect_error(["-distance", "far"], capsys, "-distance", "expected a number", "'far'")


def test_non_integer_count(workdir, capsys):
    expect_error(["-phisteps", "2.5"], capsys, "-phisteps", "expected an integer")


def test_nan_value(workdir, capsys):
    expect_error(["-lambda", "nan"], capsys, "-lambda", "'nan'")


def test_infinite_value(workdir, capsys):
    expect_error(["-pixel", "inf"], capsys, "-pixel", "'inf'")


def test_overflowing_value(workdir, capsys):
    expect_error(["-distance", "1e999"], capsys, "-distance", "out of range")


def test_stray_value_without_flag(workdir, capsys):
    expect_error(["100"], capsys, "'100'", "values must follow their flag")


# ---- zero, negative and absurd sizes: refused, naming the flag --------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["-pixel", "0"], "-pixel"),
    (["-pixel", "-0.1"], "-pixel"),
    (["-distance", "0"], "-distance"),
    (["-distance", "-100"], "-distance"),
    (["-close_distance", "0"], "-close_distance"),
    (["-detsize", "0"], "-detsize"),
    (["-lambda", "0"], "-lambda"),
    (["-energy", "-5"], "-energy"),
    (["-exposure", "0"], "-exposure"),
    (["-beamsize", "0"], "-beamsize"),
    (["-fluence", "-1"], "-fluence"),
    (["-mosaic", "-0.1"], "-mosaic"),
    (["-dispersion", "-1"], "-dispersion"),
    (["-divergence", "-1"], "-divergence"),
    (["-detector_thick", "-10"], "-detector_thick"),
    (["-detector_abs", "-10"], "-detector_abs"),
    (["-water", "-1"], "-water"),
    (["-dmin", "-1"], "-dmin"),
    (["-xtalsize", "-0.1"], "-xtalsize"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_absurd_size_is_refused(workdir, capsys, argv, flag):
    line = expect_error(argv, capsys, flag)
    assert "positive" in line or "negative" in line


@pytest.mark.parametrize("argv, flag", [
    (["-detpixels", "-5"], "-detpixels"),
    (["-detpixels", "0"], "-detpixels"),
    (["-detpixels_x", "0"], "-detpixels_x"),
    (["-detpixels_s", "-1"], "-detpixels_s"),
    (["-oversample", "-2"], "-oversample"),
    (["-phisteps", "-1"], "-phisteps"),
    (["-mosaic_domains", "0"], "-mosaic_domains"),
    (["-dispsteps", "0"], "-dispsteps"),
    (["-divsteps", "0"], "-divsteps"),
    (["-hdivsteps", "-3"], "-hdivsteps"),
    (["-detector_thicksteps", "0"], "-detector_thicksteps"),
    (["-roi", "-1", "5", "0", "5"], "-roi"),
    (["-trace_pixel", "-1", "0"], "-trace_pixel"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_absurd_count_is_refused(workdir, capsys, argv, flag):
    expect_error(argv, capsys, flag, "at least")


def test_negative_cell_count_is_refused(workdir, capsys):
    expect_error(["-N", "-3"], capsys, "-N", "must not be negative")


def test_negative_cell_count_names_the_axis_flag(workdir, capsys):
    expect_error(["-Nb", "-1"], capsys, "-Nb", "must not be negative")


def test_zero_cells_keeps_nanoBraggs_reading(workdir, capsys):
    """nanoBragg.c reads N<=1 as one cell: accepted, with a warning (not an error)."""
    assert main(BASE + ["-N", "0", "-nonoise", "-nopgm"]) == 0
    assert "N < 1 is treated as N = 1" in capsys.readouterr().err


def test_phisteps_zero_keeps_nanoBraggs_reading(workdir, capsys):
    assert main(BASE + ["-phisteps", "0", "-nonoise", "-nopgm"]) == 0
    assert " 1 phi steps" in capsys.readouterr().out


def test_oversample_zero_means_automatic_as_in_nanoBragg(workdir, capsys):
    assert main(BASE + ["-oversample", "0", "-nonoise", "-nopgm"]) == 0
    out = capsys.readouterr()
    assert "auto-selected 2-fold oversampling" in out.out
    assert "automatic oversampling" in out.err


def test_cell_angle_outside_0_180(workdir, capsys):
    expect_error(["-cell", "100", "100", "100", "90", "90", "190"], capsys, "-cell", "190")


def test_cell_angles_without_a_volume(workdir, capsys):
    expect_error(["-cell", "100", "100", "100", "10", "10", "100"], capsys, "-cell",
                 "do not form a unit cell")


def test_zero_cell_length(workdir, capsys):
    expect_error(["-cell", "100", "0", "100"], capsys, "-cell", "positive", "'0'")


def test_absurd_step_count(workdir, capsys):
    expect_error(["-phisteps", "1000000"], capsys, "-phisteps", "absurd")


def test_absurd_oversample(workdir, capsys):
    expect_error(["-oversample", "5000"], capsys, "-oversample", "absurd")


def test_absurd_number_of_sources(workdir, capsys):
    expect_error(["-divergence", "1", "-divsteps", "2000"], capsys, "-divsteps", "sources")


def test_absurd_number_of_orientations(workdir, capsys):
    expect_error(["-osc", "1", "-phisteps", "2000", "-mosaic", "1", "-mosaic_domains", "1000"],
                 capsys, "-phisteps/-mosaic_domains", "orientations")


def test_roi_outside_the_detector(workdir, capsys):
    expect_error(["-roi", "20", "30", "0", "5"], capsys, "-roi", "selects no pixel")


def test_trace_pixel_outside_the_detector(workdir, capsys):
    expect_error(["-trace_pixel", "8", "0"], capsys, "-trace_pixel", "outside")


def test_zero_vector(workdir, capsys):
    expect_error(["-fdet_vector", "0", "0", "0"], capsys, "-fdet_vector", "zero")


def test_no_crystal(workdir, capsys):
    expect_error(["-nonoise"], capsys, "-cell", "-mat", base=["-default_F", "1", "-detpixels", "8"])


def test_no_structure_factors(workdir, capsys):
    expect_error(["-nonoise"], capsys, "-hkl", "-default_F",
                 base=["-cell", "100", "-detpixels", "8", "-noprogress"])


# ---- tool options ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, name", [
    (["--device", "tpu"], "--device"),
    (["--dtype", "float16"], "--dtype"),
    (["--threads", "0"], "--threads"),
    (["--max-memory", "lots"], "--max-memory"),
    (["--max-memory", "-5M"], "--max-memory"),
    (["--png-scale", "linear"], "--png-scale"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_tool_option_value(workdir, capsys, argv, name):
    expect_error(argv, capsys, name)


def test_hdf5_without_h5py_says_how_to_get_it(workdir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    expect_error(["--hdf5", "out.h5"], capsys, "--hdf5", "h5py")


# ---- input files ----------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["-hkl", "-mat", "-sourcefile"])
def test_missing_input_file(workdir, capsys, flag):
    expect_error([flag, "missing.txt"], capsys, flag, "missing.txt", "no such file")


@pytest.mark.parametrize("flag", ["-img", "-mask"])
def test_missing_image_file(workdir, capsys, flag):
    expect_error([flag, "missing.img"], capsys, "missing.img", "no such file")


def test_input_file_is_a_folder(workdir, capsys):
    os.mkdir("adir")
    expect_error(["-hkl", "adir"], capsys, "-hkl", "adir", "folder")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
@pytest.mark.parametrize("flag", ["-hkl", "-img", "-mask", "-sourcefile"])
def test_input_that_is_a_device_is_not_read_forever(workdir, capsys, flag):
    expect_error([flag, "/dev/zero"], capsys, flag, "/dev/zero", "not a regular file")


def test_hkl_with_non_integer_index(workdir, capsys):
    Path("frac.hkl").write_text("0 0 0 100\n1 0.5 0 50\n")
    expect_error(["-hkl", "frac.hkl"], capsys, "frac.hkl", "line 2", "not an integer")


def test_hkl_with_missing_column(workdir, capsys):
    Path("short.hkl").write_text("0 0 0 100\n1 0 0\n")
    expect_error(["-hkl", "short.hkl"], capsys, "short.hkl", "line 2", "4 columns")


def test_hkl_with_text_where_a_number_belongs(workdir, capsys):
    Path("text.hkl").write_text("h k l F\n0 0 0 100\n")
    expect_error(["-hkl", "text.hkl"], capsys, "text.hkl", "line 1", "not a number")


def test_empty_hkl(workdir, capsys):
    Path("empty.hkl").write_text("# nothing\n")
    expect_error(["-hkl", "empty.hkl"], capsys, "empty.hkl", "no reflections")


def test_matrix_with_fewer_than_nine_numbers(workdir, capsys):
    Path("eight.mat").write_text("0.01 0 0\n0 0.01 0\n0 0\n")
    expect_error(["-mat", "eight.mat"], capsys, "eight.mat", "expected 9 numbers", "found 8",
                 base=BASE[7:])


def test_matrix_with_garbage(workdir, capsys):
    Path("garbage.mat").write_text("0.01 0 zero\n")
    expect_error(["-mat", "garbage.mat"], capsys, "garbage.mat", "line 1", "'zero'",
                 base=BASE[7:])


def test_sourcefile_with_garbage(workdir, capsys):
    Path("bad_sources.txt").write_text("-10 0 zero\n")
    expect_error(["-sourcefile", "bad_sources.txt"], capsys, "bad_sources.txt", "line 1")


def test_img_that_is_not_an_smv_image(workdir, capsys):
    expect_error(["-img", "in.hkl"], capsys, "in.hkl", "not an SMV")


def test_truncated_smv_image(workdir, capsys):
    Path("cut.img").write_bytes(Path("header.img").read_bytes()[:600])
    expect_error(["-img", "cut.img"], capsys, "cut.img", "truncated")


def test_mask_of_another_size(workdir, capsys):
    Path("big.img").write_bytes(_smv(np.ones((4, 6), dtype=np.uint16)))
    expect_error(["-mask", "big.img", "-detpixels", "8"], capsys, "-mask", "big.img", "6x4")


def test_mask_that_masks_everything_is_an_empty_detector(workdir, capsys):
    Path("zero.img").write_bytes(_smv(np.zeros((8, 8), dtype=np.uint16)))
    expect_error(["-mask", "zero.img"], capsys, "-mask", "zero.img", "nothing to render")


# ---- outputs: never an input, writable, complete or absent ---------------------------------

@pytest.mark.parametrize("in_flag, path", [
    ("-hkl", "in.hkl"), ("-mat", "in.mat"), ("-sourcefile", "sources.txt"),
    ("-img", "header.img"), ("-mask", "header.img"),
])
@pytest.mark.parametrize("out_flag", ["-floatfile", "-intfile", "-noisefile", "--png",
                                      "--manifest"])
def test_output_never_overwrites_an_input(workdir, capsys, in_flag, path, out_flag):
    base = BASE[7:] if in_flag == "-mat" else BASE
    line = expect_error([in_flag, path, out_flag, path], capsys, out_flag, path,
                        "refusing to overwrite", f"given to {in_flag}", base=base)
    assert line.endswith(f"(given to {in_flag})")


def test_output_through_another_name_of_an_input(workdir, capsys):
    os.symlink("in.hkl", "alias.hkl")
    expect_error(["-hkl", "in.hkl", "-floatfile", "alias.hkl"], capsys, "-floatfile",
                 "refusing to overwrite")


def test_structure_factor_cache_never_overwrites_the_hkl_file(workdir, capsys):
    expect_error(["-hkl", "in.hkl", "-dump", "in.hkl"], capsys, "-dump", "refusing to overwrite")


def test_fdump_cache_read_is_an_input(workdir, capsys):
    from nanobragg_cli.io.hkl import fdump_bytes, hkl_grid
    Path("Fdump.bin").write_bytes(fdump_bytes(hkl_grid(np.array([[0, 0, 0]]), np.array([1.0]))))
    expect_error(["-intfile", "Fdump.bin"], capsys, "-intfile", "refusing to overwrite",
                 "given to -dump")


def test_two_outputs_on_one_file(workdir, capsys):
    expect_error(["-floatfile", "a.bin", "-intfile", "a.bin"], capsys, "-intfile", "a.bin",
                 "also written by -floatfile")


def test_output_in_a_missing_folder(workdir, capsys):
    expect_error(["-floatfile", "nowhere/x.bin"], capsys, "-floatfile", "nowhere/x.bin",
                 "does not exist")


def test_output_below_a_file(workdir, capsys):
    expect_error(["-intfile", "in.hkl/x.img"], capsys, "-intfile", "is not a folder")


def test_output_that_is_a_folder(workdir, capsys):
    os.mkdir("out.bin")
    expect_error(["-floatfile", "out.bin"], capsys, "-floatfile", "is a folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into a read-only folder")
def test_output_in_a_read_only_folder(workdir, capsys):
    os.mkdir("ro")
    os.chmod("ro", 0o555)
    try:
        expect_error(["--png", "ro/x.png"], capsys, "--png", "not writable")
    finally:
        os.chmod("ro", 0o755)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_full_disk_device(workdir, capsys):
    """/dev/full fails every write with ENOSPC; the float image staged before it is discarded."""
    expect_error(["-nonoise", "-nopgm", "-floatfile", "f.bin", "-intfile", "/dev/full"], capsys,
                 "/dev/full", "no space left on device")


def test_full_disk_while_writing_a_regular_file(workdir, capsys, monkeypatch):
    def full(fh, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic, "_write_all", full)
    expect_error(["-nopgm", "-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img",
                  "--png", "p.png", "--manifest", "run.json"], capsys, "f.bin",
                 "no space left on device")


# ---- memory ---------------------------------------------------------------------------------

def test_detector_too_large_for_memory(workdir, capsys):
    expect_error(["-detpixels", "2000000"], capsys, "-detpixels", "2000000x2000000",
                 "memory available")


def test_detector_too_large_for_the_memory_left(workdir, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: 32 * 2 ** 20)
    expect_error(["-detpixels", "1024"], capsys, "-detpixels", "1024x1024")


def test_max_memory_larger_than_the_machine(workdir, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: 2 ** 30)
    expect_error(["--max-memory", "2G"], capsys, "--max-memory", "memory available")


def test_one_pixel_needing_more_memory_than_available(workdir, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: 64 * 2 ** 20)
    expect_error(["-oversample", "1000"], capsys, "-oversample", "1000x1000 sub-pixels")


def test_kernel_memory_check_counts_every_loop():
    scene = SimpleNamespace(oversample=3, thicksteps=2, n_src=5, n_phi=7, n_mos=11,
                            evals_per_pixel=lambda: 3 * 3 * 2 * 5 * 7 * 11)
    preflight.check_kernel_memory(scene, 400, available=6930 * 400)
    with pytest.raises(FlagError, match="6930 evaluations"):
        preflight.check_kernel_memory(scene, 400, available=6930 * 400 - 1)


# ---- the same contract through a real process ---------------------------------------------

def _cli(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "nanobragg_cli", *args], capture_output=True,
                          text=True, cwd=cwd, **kw)


def test_error_in_a_real_process_is_one_line_without_traceback(workdir):
    Path("frac.hkl").write_text("0 0 0 100\n1 0.5 0 50\n")
    run = _cli(BASE + ["-hkl", "frac.hkl"], workdir)
    assert run.returncode == 9
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "frac.hkl" in run.stderr
    assert sorted(os.listdir(workdir)) == sorted(["frac.hkl", "in.hkl", "in.mat", "sources.txt",
                                                  "header.img"])


# Announces (on stdout) the first kernel chunk, then runs the CLI: the test interrupts a render
# that has really started, not the start-up.
_ANNOUNCE = announce_script()


def _read_until(proc, marker: str) -> list:
    """stdout lines up to ``marker`` (nanoBragg.c's set-up block comes first, flushed)."""
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.strip() == marker:
            break
    return lines


def test_ctrl_c_during_rendering_writes_nothing(tmp_path):
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-detpixels", "512", "-oversample", "4", "-mosaic", "1", "-mosaic_domains", "20",
            "-seed", "1", "-noprogress", "--max-memory", "16M", "--png", "p.png",
            "--manifest", "run.json"]
    proc = subprocess.Popen([sys.executable, "-c", _ANNOUNCE, *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = _read_until(proc, "RENDERING")
        assert lines and lines[-1] == "RENDERING", proc.stderr.read()
        time.sleep(0.3)
        assert proc.poll() is None, "the render finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["nanobragg: interrupted; no output file was written"]
    assert os.listdir(tmp_path) == []


def test_sigterm_during_rendering_writes_nothing(tmp_path):
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-detpixels", "512", "-oversample", "4", "-mosaic", "1", "-mosaic_domains", "20",
            "-seed", "1", "-noprogress", "--max-memory", "16M"]
    proc = subprocess.Popen([sys.executable, "-c", _ANNOUNCE, *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _read_until(proc, "RENDERING")[-1] == "RENDERING"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["nanobragg: terminated; no output file was written"]
    assert os.listdir(tmp_path) == []


def test_interrupt_while_writing_leaves_complete_files_or_none(workdir, capsys, monkeypatch):
    """Ctrl-C during the staging of the outputs: every temporary file is removed."""
    import nanobragg_cli.io.atomic as atomic
    real = atomic._write_all
    calls = []

    def interrupt_on_third(fh, data):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(fh, data)
    monkeypatch.setattr(atomic, "_write_all", interrupt_on_third)
    before = _listing(".")
    assert main(BASE + ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img",
                        "-pgmfile", "p.pgm"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nanobragg: interrupted; no output file was written"]
    assert _listing(".") == before
