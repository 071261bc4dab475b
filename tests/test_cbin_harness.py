"""The --c-bin harness (parity --c-bin, suite --c-bin --cases, golden make, --shrink) against a
stand-in binary (tests/fake_nanobragg.py) that replays nanoBragg.c's outputs from the corpus and
can be told to perturb one value, or to behave like a binary without -trace_pixel."""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import GOLDEN, needs_golden
from nanobragg_cli.cli import main
from nanobragg_cli.printout_compare import compare_printouts

HERE = Path(__file__).resolve().parent
CUBIC = json.loads((GOLDEN / "cases" / "cubic_basic" / "meta.json").read_text())["args"] \
    if (GOLDEN / "cases" / "cubic_basic").is_dir() else []

pytestmark = needs_golden


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Path of the stand-in binary, its corpus set; no perturbation."""
    exe = tmp_path / "fake_nanobragg"
    exe.write_text(f"#!{sys.executable}\n" + (HERE / "fake_nanobragg.py").read_text())
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_NB_CORPUS", str(GOLDEN))
    for var in ("FAKE_NB_PERTURB", "FAKE_NB_PERTURB_IF", "FAKE_NB_NO_TRACE", "FAKE_NB_RENDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(GOLDEN)            # the corpus' flags name inputs/... relative to it
    return str(exe)


def _parity(capsys, fake, out, *args, flags=CUBIC):
    code = main(["parity", "--c-bin", fake, "--c-parity", "--out", str(out), *args, "--",
                 *flags])
    return code, capsys.readouterr()


def test_parity_c_bin_agrees_with_nanobraggs_outputs_and_writes_the_bundle(fake, tmp_path,
                                                                           capsys):
    code, cap = _parity(capsys, fake, tmp_path / "b", "--bytes", "int", "--pixel", "65", "106")
    assert code == 0, cap.out + cap.err
    assert "0 of 16384 pixels over tolerance" in cap.out
    assert "bytes: int.img identical" in cap.out
    assert "pixel (65, 65) [brightest] trace" in cap.out
    assert "pixel (65, 106) [given] trace" in cap.out
    assert cap.out.rstrip().endswith("first_divergence=None")
    (bundle,) = (tmp_path / "b").iterdir()
    names = {p.name for p in bundle.iterdir()}
    assert {"c_trace_65_65.log", "trace_py_65_106.log", "compare_65_106.json", "c_float.bin",
            "image_metrics.json", "summary.md", "sha256.txt", "commands.txt"} <= names
    assert "OMP_NUM_THREADS=1" in (bundle / "commands.txt").read_text()


def test_a_perturbed_trace_value_is_the_first_divergence(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NB_PERTURB", "trace:polar:1.000001")
    code, cap = _parity(capsys, fake, tmp_path / "b")
    assert code == 1
    assert "[brightest] trace" in cap.out and "first_divergence=polar" in cap.out
    assert cap.out.rstrip().endswith("first_divergence=polar")


def test_a_perturbed_image_pixel_is_traced_as_the_worst(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NB_PERTURB", "image:65:106:1.01")
    code, cap = _parity(capsys, fake, tmp_path / "b")
    assert code == 1
    assert "1 of 16384 pixels over tolerance" in cap.out
    assert "pixel (65, 106) [worst] trace" in cap.out      # C's trace there agrees with ours
    assert cap.out.rstrip().endswith("first_divergence=image")


def test_a_perturbed_image_block_counts_every_pixel(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NB_PERTURB", "image:64-65:64-65:1.01")   # the brightest is (65, 65)
    code, cap = _parity(capsys, fake, tmp_path / "b")
    assert code == 1
    assert "4 of 16384 pixels over tolerance" in cap.out
    assert "pixel (65, 65) [worst+brightest] trace" in cap.out


def test_without_trace_pixel_the_printout_values_are_compared(fake, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("FAKE_NB_NO_TRACE", "1")
    code, cap = _parity(capsys, fake, tmp_path / "b")
    assert code == 0, cap.out + cap.err
    assert "printed no TRACE_C lines" in cap.out
    assert "pixel (65, 65) [brightest] printout: 13 records: 13 ok" in cap.out


def test_printout_tolerance_is_one_unit_of_the_printed_digits():
    c = ["  65   65 : stol = 5.3033e+06 or 0.00053033", "polar      0.9999999375",
         "hkl= -0.000056 -0.075000 0.075000  hkl0= 0 0 0"]
    near = [c[0], "polar      0.9999999376", c[2]]
    far = [c[0], "polar      0.9999999378", c[2].replace("hkl0= 0 0 0", "hkl0= 0 0 1")]
    assert compare_printouts(c, near).first_divergence is None
    res = compare_printouts(c, far)
    assert res.first_divergence == "polar" and res.counts["failed"] == 2   # C's order


def test_a_printout_value_we_do_not_print_is_the_first_divergence():
    c = ["  65   65 : stol = 5.3033e+06 or 0.00053033", "polar      0.9999999375"]
    res = compare_printouts(c, c[:1])
    assert res.first_divergence == "polar"
    assert res.rows[-1].status == "missing_py"


def _cases_file(tmp_path, names):
    lines = ["# corpus cases, paths relative to this file's folder"]
    for name in names:
        args = json.loads((GOLDEN / "cases" / name / "meta.json").read_text())["args"]
        lines.append(f"{name}: " + " ".join(args) + "   # trailing comment")
    path = tmp_path / "cases" / "cases.txt"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    os.symlink(GOLDEN / "inputs", path.parent / "inputs")
    return path


def test_suite_c_bin_runs_a_cases_file_and_reports_the_perturbed_case(fake, tmp_path, capsys,
                                                                      monkeypatch):
    cases = _cases_file(tmp_path, ["cubic_basic", "mat_hkl", "noise_seed"])
    monkeypatch.chdir(tmp_path)          # paths resolve against the cases file, not the cwd
    monkeypatch.setenv("FAKE_NB_PERTURB", "trace:F_latt:1.01")
    monkeypatch.setenv("FAKE_NB_PERTURB_IF", "-seed")
    code = main(["suite", "--c-bin", fake, "--cases", str(cases)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-1] == "2 passed, 1 failed"
    rows = {line.split()[0]: line for line in out if line.split()[:1] and
            line.split()[0] in ("cubic_basic", "mat_hkl", "noise_seed")}
    assert " pass " in rows["cubic_basic"] and " pass " in rows["mat_hkl"]
    assert " FAIL " in rows["noise_seed"] and "brightest trace: F_latt" in rows["noise_seed"]
    assert "bytes identical" in rows["noise_seed"]       # int.img and noise.img (-seed 7)


def test_golden_make_writes_a_corpus_that_suite_checks_without_the_binary(fake, tmp_path,
                                                                          capsys):
    cases = _cases_file(tmp_path, ["cubic_basic", "mat_hkl"])
    out = tmp_path / "corpus"
    assert main(["golden", "make", "--c-bin", fake, "--cases", str(cases), str(out)]) == 0
    meta = json.loads((out / "cases" / "mat_hkl" / "meta.json").read_text())
    ref = json.loads((GOLDEN / "cases" / "mat_hkl" / "meta.json").read_text())
    assert set(meta) == set(ref) - {"roi_origin_slow_fast", "roi_shape"}
    assert meta["trace_pixels_slow_fast"] == ref["trace_pixels_slow_fast"]   # brightest, off-peak
    assert (out / "inputs" / "P1_small.hkl").read_bytes() == \
        (GOLDEN / "inputs" / "P1_small.hkl").read_bytes()
    assert (out / "cases" / "cubic_basic" / "float.bin").read_bytes() == \
        (GOLDEN / "cases" / "cubic_basic" / "float.bin").read_bytes()
    capsys.readouterr()
    assert main(["suite", str(out), "--traces"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 passed, 0 failed"


def test_c_bin_that_does_not_exist_is_one_error_line(tmp_path, capsys):
    code = main(["parity", "--c-bin", str(tmp_path / "nope"), "--", *CUBIC])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--c-bin" in err and "no such file" in err


TWENTY = ["-cell", "100", "100", "100", "90", "90", "90", "-N", "3", "-default_F", "100",
          "-lambda", "1", "-distance", "100", "-detpixels", "16", "-pixel", "0.4", "-polar", "0.5",
          "-osc", "0.1", "-phisteps", "2", "-mosaic", "0.1", "-mosaic_domains", "2",
          "-oversample", "1", "-Xbeam", "3.2", "-Ybeam", "3.2", "-dispersion", "0",
          "-dispsteps", "1", "-beamsize", "0.1", "-flux", "1e12", "-nonoise"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the stand-in renders through the server")
def test_shrink_reduces_twenty_flags_to_the_one_that_diverges(fake, tmp_path, capsys,
                                                              monkeypatch):
    from nanobragg_cli.shrink import flag_groups
    assert len(flag_groups(TWENTY)) == 20
    runtime = Path(tempfile.mkdtemp(prefix="nbsh", dir="/tmp"))    # short: AF_UNIX path limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("NANOBRAGG_SERVER", "1")       # the stand-in's renders stay warm
    monkeypatch.setenv("FAKE_NB_RENDER", "1")
    monkeypatch.setenv("FAKE_NB_PERTURB", "trace:polar:1.000001")
    monkeypatch.setenv("FAKE_NB_PERTURB_IF", "-polar")
    monkeypatch.chdir(tmp_path)
    try:
        code, cap = _parity(capsys, fake, tmp_path / "b", "--shrink", flags=TWENTY)
    finally:
        subprocess.run([sys.executable, "-m", "nanobragg_cli.server", "--stop"], timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)
    assert code == 1, cap.out + cap.err
    lines = cap.out.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("shrunk 20 flags to"))
    shrunk = flag_groups(lines[at + 1].split())
    assert ["-polar", "0.5"] in shrunk
    assert {g[0] for g in shrunk} <= {"-polar", "-cell", "-detpixels", "-default_F"}
    assert lines[at + 2] == "first_divergence=polar"
    (bundle,) = (tmp_path / "b").iterdir()
    assert "-polar 0.5" in (bundle / "shrink.txt").read_text()
