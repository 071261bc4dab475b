"""Nothing silently wrong: impossible images refused, sizes checked before they are spent,
extreme values and bad files named in one line (exit 9, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from nanobragg_cli.cli import main

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "16", "-pixel", "0.1", "-noprogress",
        "-nopgm", "-nonoise"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_error(capsys, code, expected_code=9):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expected_code, err
    assert len(err) == 1 and err[0].startswith("nanobragg: error: "), err
    assert "RuntimeWarning" not in err[0]
    return err[0]


@pytest.mark.parametrize("extra, setup, needle", [
    (["-sourcefile", "src.txt"], ("src.txt", "0 0 -10 1 1e-10\n0 0 -10 1 -1e-10\n"),
     "source 2 of src.txt has a negative wavelength"),
    (["-sourcefile", "src.txt"], ("src.txt", "0 0 -10 1 0\n"),
     "source 1 of src.txt has a zero wavelength"),
    (["-dispersion", "200", "-dispsteps", "2"], None, "-dispersion 200"),
    (["-default_F", "1e200"], None, "-default_F 1e+200: the intensities would overflow"),
    (["-fluence", "1e308"], None, "-fluence 1e+308: the intensities would overflow"),
    (["-twotheta", "180", "-pivot", "beam"], None, "the detector faces away from the sample"),
])
def test_impossible_images_are_refused(workdir, capsys, extra, setup, needle):
    """Before: an all-NaN, all-inf or all-negative image with exit 0 (nanoBragg.c's output)."""
    if setup:
        (workdir / setup[0]).write_text(setup[1])
    before = sorted(os.listdir(workdir))
    line = _one_error(capsys, main(BASE + extra + ["-floatfile", "f.bin"]))
    assert needle in line
    assert sorted(os.listdir(workdir)) == before


def test_c_parity_writes_what_c_writes_with_a_warning(workdir, capsys):
    assert main(BASE + ["-twotheta", "180", "-pivot", "beam", "-floatfile", "f.bin",
                        "--c-parity"]) == 0
    err = capsys.readouterr().err
    assert "nanobragg: warning: the image has 256 negative pixels" in err
    assert "RuntimeWarning" not in err
    img = np.fromfile(workdir / "f.bin", np.float32)
    assert img.size == 256 and (img < 0).all()  # the detector faces away: omega < 0 everywhere


@pytest.mark.parametrize("flag, value, needle", [
    ("-detpixels", "9" * 5000, "-detpixels: value 9999"),
    ("-water", "1e300", "-water:"),
    ("-distance", "1e-300", "-distance:"),
    ("-lambda", "1e-300", "-lambda:"),
    ("-energy", "1e300", "-energy: an energy of 1e+300 eV"),
    ("-N", "100000", "-N 100000 100000 100000"),
])
def test_extreme_values_name_their_flag(workdir, capsys, flag, value, needle):
    """Before: rc 70 'internal error' (OverflowError, ValueError)."""
    line = _one_error(capsys, main(BASE + [flag, value]))
    assert needle in line
    assert os.listdir(workdir) == []


@pytest.mark.parametrize("text, needle", [
    ("0 0 0\n0 0 0\n0 0 0\n", "all nine numbers are zero"),
    ("0.01 0.02 0.03\n0 0.01 0.01\n0 0 0\n", "coplanar"),
    ("0.01 0 0\n0 0 0\n0 0 0.01\n", "the b* vector is zero"),
])
def test_bad_orientation_matrix_is_named(workdir, capsys, text, needle):
    (workdir / "A.mat").write_text(text)
    line = _one_error(capsys, main(BASE + ["-mat", "A.mat"]))
    assert "A.mat" in line and needle in line


def _smv_header(**keys):
    body = "".join(f"{k}={v};\n" for k, v in keys.items())
    text = ("{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
            + body + "}\n").encode()
    return text + b" " * (512 - len(text))


def test_infinite_header_value_names_file_and_key(workdir, capsys):
    (workdir / "in.img").write_bytes(_smv_header(SIZE1=4, SIZE2=4, BEAM_CENTER_X="inf")
                                     + bytes(32))
    line = _one_error(capsys, main(BASE + ["-img", "in.img"]))
    assert "-img in.img: header value BEAM_CENTER_X=inf is not a finite number" in line


def _rss_run(cwd, args):
    # VmHWM: this process's own peak (ru_maxrss may include the forking parent's)
    code = ("import sys; from nanobragg_cli.cli import main; rc = main(sys.argv[1:]); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]);"
            " sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_huge_hkl_grid_is_refused_before_it_is_allocated(tmp_path):
    """A 31-byte -hkl with reflections at +-250: before, 3.2 GB RSS and a 1 GB Fdump.bin."""
    (tmp_path / "big.hkl").write_text("250 250 250 1\n-250 -250 -250 1\n")
    r = _rss_run(tmp_path, BASE + ["-hkl", "big.hkl", "--max-memory", "256M"])
    assert r.returncode == 9, r.stderr
    assert r.stderr.strip().splitlines() == [
        "nanobragg: error: -hkl big.hkl: its indices span 501x501x501 (a grid of 126506008 "
        "structure factors, also written to the Fdump cache), which needs about 2.8 GiB, more "
        "than the 256.0 MiB allowed by --max-memory"]
    assert int(r.stdout.split()[-1]) < 1_000_000  # KiB: torch's import, no grid
    assert sorted(os.listdir(tmp_path)) == ["big.hkl"]
    # --c-parity reads -hkl as nanoBragg.c does: the same check before the table is allocated
    r = _rss_run(tmp_path, BASE + ["-hkl", "big.hkl", "--max-memory", "256M", "--c-parity"])
    assert r.returncode == 9, r.stderr
    assert r.stderr.strip().splitlines() == [
        "nanobragg: error: hkl file big.hkl: Miller index ranges 501 x 501 x 501 make a table of "
        "126506008 values, which needs about 2.8 GiB, more than the 256.0 MiB allowed by "
        "--max-memory"]
    assert int(r.stdout.split()[-1]) < 1_000_000
    # without --max-memory: a grid 1000 times larger than its reflections is a mistake
    r = _rss_run(tmp_path, BASE + ["-hkl", "big.hkl"])
    assert r.returncode == 9, r.stderr
    assert r.stderr.strip().splitlines() == [
        "nanobragg: error: -hkl big.hkl: 2 reflections span 501x501x501 indices: a grid of "
        "126506008 structure factors needing about 2.8 GiB (and an Fdump cache of 965.2 MiB), "
        "almost all empty; check the indices, or allow it with --max-memory"]
    assert int(r.stdout.split()[-1]) < 1_000_000
    assert sorted(os.listdir(tmp_path)) == ["big.hkl"]


def test_huge_image_header_is_refused_before_its_pixels_are_read(tmp_path):
    """A header declaring 60000x60000 (a sparse 7.2 GB file): before, a minute and 14 GB."""
    with open(tmp_path / "huge.img", "wb") as fh:
        fh.write(_smv_header(SIZE1=60000, SIZE2=60000, PIXEL_SIZE=0.1))
        fh.truncate(512 + 2 * 60000 * 60000)
    r = _rss_run(tmp_path, BASE + ["-img", "huge.img", "--max-memory", "1G"])
    assert r.returncode == 9, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "nanobragg: error: -img huge.img: its header declares a 60000x60000 detector")
    assert int(r.stdout.split()[-1]) < 500_000


def test_torch_allocation_failure_is_the_out_of_memory_error(workdir, capsys, monkeypatch):
    import nanobragg_cli.simulate as simulate

    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 123456789 bytes.")
    monkeypatch.setattr(simulate, "run_simulation", fail)
    line = _one_error(capsys, main(BASE + ["-floatfile", "f.bin"]))
    assert line.startswith("nanobragg: error: out of memory")


def test_unwritable_output_folder_is_refused_before_the_render(workdir, capsys):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    line = _one_error(capsys, main(BASE + ["-floatfile", "/proc/x.bin"]))
    assert line == ("nanobragg: error: -floatfile /proc/x.bin: cannot write there: folder /proc "
                    "does not accept new files (a virtual file system such as /proc?)") or \
        "permission denied" in line


def test_mistyped_flag_gets_a_suggestion(workdir, capsys):
    line = _one_error(capsys, main(BASE + ["-distanse", "100"]))
    assert line == ("nanobragg: error: -distanse: unknown flag; did you mean -distance? "
                    "(see 'nanobragg --help')")


def test_bad_header_value_is_blamed_on_the_header_not_a_flag(workdir, capsys):
    """Before: '-distance: the detector distance must be positive' for DISTANCE=-5 in -img."""
    (workdir / "neg.img").write_bytes(_smv_header(SIZE1=4, SIZE2=4, DISTANCE=-5) + bytes(32))
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-noprogress",
            "-nopgm", "-nonoise", "-img", "neg.img"]
    line = _one_error(capsys, main(args))
    assert line == ("nanobragg: error: -img neg.img: header value DISTANCE=-5: the detector "
                    "distance must be positive (set by the header; -distance overrides it)")


def test_mistyped_tool_option_gets_a_suggestion(workdir, capsys):
    line = _one_error(capsys, main(BASE + ["--max-memry", "1G"]))
    assert "--max-memry: unknown option; did you mean --max-memory?" in line


def test_a_series_frame_with_an_impossible_image_stops_the_series(workdir, capsys):
    """Each frame of --frames is checked like a single image before it is committed."""
    code = main(BASE + ["-twotheta", "180", "-pivot", "beam", "-osc", "1",
                        "-floatfile", "f_##.bin", "-intfile", "i_##.img", "--frames", "2"])
    err = capsys.readouterr().err
    assert code == 9 and "the detector faces away from the sample" in err
    assert not any(n.startswith(("f_", "i_")) for n in os.listdir(workdir))
