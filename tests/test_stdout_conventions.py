"""stdout is nanoBragg.c's, stderr is ours: warnings of ours as `nanobragg: warning:` on stderr
only, nanoBragg.c's WARNING: lines on stdout, an error alone on stderr, hints for the common
mistakes, and nanoBragg.c's usage without arguments."""

from pathlib import Path

import pytest

from nanobragg_cli.cli import main
from nanobragg_cli.c_stdout import BANNER
from nanobragg_cli.c_usage import USAGE_ORDER

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-N", "2", "-lambda", "1",
        "-distance", "100", "-detpixels", "16", "-pixel", "0.1", "-nopgm", "-noprogress"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fdump_reuse_warning_is_ours_on_stderr_and_cs_line_stays_on_stdout(workdir, capsys):
    Path("in.hkl").write_text("1 0 0 10\n0 1 0 20\n")
    assert main(BASE + ["-hkl", "in.hkl", "-nonoise"]) == 0
    first = capsys.readouterr()
    assert "writing dump file for next time: Fdump.bin" in first.out.splitlines()
    assert main(BASE + ["-default_F", "1", "-nonoise"]) == 0
    out = capsys.readouterr()
    assert "reading Fs from Fdump.bin" in out.out.splitlines()   # nanoBragg.c prints this
    assert "replaces -default_F" not in out.out
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nanobragg: warning: no -hkl given")


def test_nanobraggs_warning_lines_stay_on_stdout(workdir, capsys):
    assert main(BASE + ["-default_F", "1", "-nonoise", "-mosaic_domains", "3"]) == 0
    out = capsys.readouterr()
    assert "WARNING: no mosaic spread specified.  setting mosaic_domains = 1" in out.out.splitlines()
    assert "WARNING" not in out.err
    assert all(line.startswith("nanobragg: ") for line in out.err.splitlines())


def test_malformed_hkl_is_one_error_line_and_no_seed_note(workdir, capsys):
    """Without -seed the run would note its time-based noise seed; with a bad -hkl the error is
    the only line on stderr (and no header of the hkl file passes without a hint)."""
    Path("bad.hkl").write_text("H K L FP\n1 0 0 10\n")
    assert main(BASE + ["-hkl", "bad.hkl"]) == 9
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanobragg: error: hkl file bad.hkl, line 1")
    assert "column header" in lines[0] and "'#'" in lines[0]
    assert out.out == ""


def test_mistyped_flag_gets_a_suggestion(workdir, capsys):
    assert main(BASE + ["-default_F", "1", "-distnce", "100"]) == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nanobragg: error: -distnce: unknown flag; did you mean -distance? "
                   "(see 'nanobragg --help')"]


def test_no_arguments_prints_nanobraggs_usage_and_exits_9(workdir, capsys):
    assert main([]) == 9
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == BANNER
    assert lines[1] == ("ERROR: no hkl file and no dump file to read."
                        "usage: nanoBragg -mat auto.mat -hkl Fs.hkl")
    assert lines[2] == "options:"
    assert [ln.split("\t")[1].strip() for ln in lines[3:]] == list(USAGE_ORDER)
    assert len(lines) == 80   # as nanoBragg.c's
    assert all(ln.split("\t")[2] for ln in lines[3:])   # every flag explained
    assert len(out.err.strip().splitlines()) == 1


def test_suite_on_a_missing_folder_says_so(workdir, capsys):
    from click.testing import CliRunner
    from nanobragg_cli.suite import suite_command
    res = CliRunner().invoke(suite_command, ["no_such_folder"])
    assert res.exit_code != 0
    assert "no_such_folder: the folder does not exist" in res.output


def test_a_reader_that_leaves_early_does_not_stop_the_run(tmp_path):
    """`nanobragg ... | head -1`: the set-up block goes out before the render; once the reader
    has gone, the rest of stdout is dropped and the run still writes its files."""
    import subprocess
    import sys
    argv = BASE + ["-default_F", "100", "-detpixels", "256", "-oversample", "2", "-nonoise",
                   "-floatfile", "f.bin", "-intfile", "i.img"]
    proc = subprocess.Popen([sys.executable, "-m", "nanobragg_cli", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().decode().strip() == BANNER
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == b""
    assert (tmp_path / "f.bin").stat().st_size == 256 * 256 * 4
    assert (tmp_path / "i.img").exists()
