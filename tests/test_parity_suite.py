"""`nanobragg suite` (the CI parity job over a golden corpus) and `nanobragg parity` (the evidence
bundle), run in-process against nanoBragg.c's golden outputs."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from conftest import GOLDEN, needs_golden
from nanobragg_cli.compare_explain import PHI_DEPENDENT_KEYS
from nanobragg_cli.golden import case_workdir, compare_images, load_cases
from nanobragg_cli.parity import parity_command
from nanobragg_cli.suite import suite_command, tolerance_profile

CUBIC_ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-N", "5", "-default_F", "100",
              "-lambda", "1", "-distance", "100", "-detpixels", "128", "-pixel", "0.1"]


def _suite(*args):
    return CliRunner().invoke(suite_command, [str(a) for a in args])


@needs_golden
def test_suite_passes_on_golden_cases_and_reports_each_check_in_json(tmp_path):
    out = tmp_path / "suite.json"
    res = _suite(GOLDEN, "--cases", "cubic_basic,noise_seed,pgm_output", "--cases",
                 "phi_from0_spec", "--traces", "--json", out)
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().splitlines()[-1] == "4 passed, 0 failed"
    data = json.loads(out.read_text())
    assert (data["passed"], data["failed"]) == (4, 0)
    by = {c["name"]: c for c in data["cases"]}
    assert sorted(by) == ["cubic_basic", "noise_seed", "pgm_output", "phi_from0_spec"]
    # *_spec references are for the default mode (C run with -phi 1e-30), others --c-parity
    assert by["phi_from0_spec"]["mode"] == "default"
    assert {by[n]["mode"] for n in ("cubic_basic", "noise_seed", "pgm_output")} == {"c-parity"}
    assert by["noise_seed"]["bytes"] == {"int.img": True, "noise.img": True}
    assert by["pgm_output"]["bytes"] == {"int.img": True, "image.pgm": True}
    for name, case in by.items():
        assert case["ok"] and case["image"]["ok"] and case["image"]["n_bad"] == 0
        meta = json.loads((GOLDEN / "cases" / name / "meta.json").read_text())
        assert case["traces"] == {f"{s},{f}": None for s, f in meta["trace_pixels_slow_fast"]}


def _corpus_copy(tmp_path, names):
    root = tmp_path / "golden"
    (root / "cases").mkdir(parents=True)
    (root / "inputs").symlink_to((GOLDEN / "inputs").resolve())
    for name in names:
        shutil.copytree(GOLDEN / "cases" / name, root / "cases" / name)
        for p in (root / "cases" / name).iterdir():
            p.chmod(0o644)
    return root


@needs_golden
def test_suite_fails_when_a_reference_image_or_int_image_is_perturbed(tmp_path):
    root = _corpus_copy(tmp_path, ["cubic_basic", "cubic_N1", "phi_from0"])
    fb = root / "cases" / "cubic_basic" / "float.bin"
    img = np.fromfile(fb, dtype="<f4")
    k = int(np.argmax(img))
    img[k] *= np.float32(1.0001)   # 1e-4 relative: ten times the 1e-5 tolerance
    img.tofile(fb)
    ib = root / "cases" / "cubic_N1" / "int.img"
    raw = bytearray(ib.read_bytes())
    raw[-1] ^= 1
    ib.write_bytes(bytes(raw))
    out = tmp_path / "suite.json"
    res = _suite(root, "--json", out)
    assert res.exit_code == 1, res.output
    assert res.output.rstrip().splitlines()[-1] == "1 passed, 2 failed"
    by = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    assert not by["cubic_basic"]["ok"] and by["cubic_basic"]["image"]["n_bad"] == 1
    assert by["cubic_basic"]["bytes"] == {"int.img": True}
    assert by["cubic_N1"]["image"]["ok"] and by["cubic_N1"]["bytes"] == {"int.img": False}
    assert by["phi_from0"]["ok"]


@needs_golden
def test_suite_forced_default_mode_fails_where_nanobragg_carries_phi_over():
    res = _suite(GOLDEN, "--cases", "phi_from0", "--default-mode", "--traces")
    assert res.exit_code == 1
    assert "phi_from0" in res.output and "0 passed, 1 failed" in res.output


@needs_golden
def test_suite_unknown_case_or_missing_corpus_is_unusable_input(tmp_path):
    assert _suite(GOLDEN, "--cases", "no_such_case").exit_code == 2
    assert _suite(tmp_path).exit_code == 2


def test_float32_profile_judges_pixels_above_a_thousandth_of_the_max_at_1e3():
    t = tolerance_profile("float32")
    assert (t.rtol, t.floor_fraction) == (1e-3, 1e-3)
    t = tolerance_profile("float64")
    assert (t.rtol, t.atol_fraction, t.floor_fraction, t.trace_rtol) == (1e-5, 1e-7, 0.0, 1e-9)


def _parity(args, golden=GOLDEN):
    """Run `nanobragg parity` in a fresh working folder holding inputs -> corpus inputs."""
    with case_workdir(golden) as cwd:
        res = CliRunner().invoke(parity_command, [str(a) for a in args])
        left = sorted(p.name for p in cwd.iterdir())
    return res, left


def _bundle(out: Path) -> Path:
    found = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert len(found) == 1, found
    return found[0]


@needs_golden
def test_parity_bundle_holds_every_file_with_correct_checksums(tmp_path):
    case = GOLDEN / "cases" / "cubic_basic"
    res, left = _parity(["--c-trace", case / "trace_65_65.log", "--c-image", case / "float.bin",
                         "--c-parity", "--out", tmp_path / "b", "--", *CUBIC_ARGS,
                         "-floatfile", "ours.bin", "-intfile", "ours.img", "-nonoise", "-nopgm",
                         "-trace_pixel", "65", "65"])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().splitlines()[-1] == "first_divergence=None"
    assert left == ["inputs"]   # nothing written into the working folder
    b = _bundle(tmp_path / "b")
    assert b.name.endswith("Z") and "T" in b.name
    names = {p.name for p in b.iterdir()}
    assert names == {"commands.txt", "trace_py.log", "trace_py_per_phi.json", "c_trace.log",
                     "compare.txt", "compare.md", "compare.json", "image_metrics.json",
                     "env.json", "git_sha.txt", "sha256.txt", "summary.md", "ours.bin",
                     "ours.img"}
    listed = {}
    for line in (b / "sha256.txt").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
        path = Path(name) if Path(name).is_absolute() else b / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
    assert set(listed) >= names - {"sha256.txt"}
    assert str((case / "trace_65_65.log").resolve()) in listed
    assert str((case / "float.bin").resolve()) in listed
    cmp = json.loads((b / "compare.json").read_text())
    assert cmp["first_divergence"] is None and cmp["counts"]["missing_py"] == 0
    assert (b / "c_trace.log").read_bytes() == (case / "trace_65_65.log").read_bytes()
    m = json.loads((b / "image_metrics.json").read_text())
    assert m["ok"] and m["pixels_over_tolerance"] == 0 and m["pixels"] == 128 * 128
    # the image in the bundle is nanoBragg.c's, within the contract's tolerance
    ours = np.fromfile(b / "ours.bin", dtype="<f4").reshape(128, 128)
    assert compare_images(ours, load_cases(GOLDEN, ["cubic_basic"])[0].reference_image()).ok
    assert (b / "ours.img").read_bytes() == (case / "int.img").read_bytes()
    env = json.loads((b / "env.json").read_text())
    assert {"python", "torch", "numpy", "device", "dtype", "threads", "platform"} <= set(env)
    assert env["mode"] == "c-parity"
    assert "TRACE_PY: I_before_scaling" in (b / "trace_py.log").read_text()
    assert json.loads((b / "trace_py_per_phi.json").read_text())["per_phi"]
    cmds = (b / "commands.txt").read_text()
    assert "nanobragg parity" in cmds and "nanoBragg -cell 100" in cmds
    assert "PASS" in (b / "summary.md").read_text()


@needs_golden
def test_parity_in_default_mode_diverges_from_c_at_phi0_and_says_why(tmp_path):
    meta = json.loads((GOLDEN / "cases" / "phi_from0" / "meta.json").read_text())
    res, _ = _parity(["--c-trace", GOLDEN / "cases" / "phi_from0" / "trace_65_65.log",
                      "--out", tmp_path, "--", *meta["args"], "-nonoise", "-nopgm"])
    assert res.exit_code == 1, res.output
    cmp = json.loads((_bundle(tmp_path) / "compare.json").read_text())
    key = cmp["first_divergence"]
    assert key in PHI_DEPENDENT_KEYS or key.startswith("PHI.")
    assert "phi=0 carryover" in cmp["explanation"] and "--c-parity" in cmp["explanation"]
    assert "FAIL" in (_bundle(tmp_path) / "summary.md").read_text()


@needs_golden
def test_parity_without_a_usable_trace_exits_2_and_writes_nothing(tmp_path):
    res, _ = _parity(["--c-trace", tmp_path / "missing.log", "--out", tmp_path / "b", "--",
                      *CUBIC_ARGS, "-trace_pixel", "65", "65"])
    assert res.exit_code == 2 and "missing.log" in res.output
    # a pixel other than the one C traced is refused too
    res, _ = _parity(["--c-trace", GOLDEN / "cases" / "cubic_basic" / "trace_65_65.log",
                      "--out", tmp_path / "b", "--", *CUBIC_ARGS, "-trace_pixel", "3", "4"])
    assert res.exit_code == 2 and "65 65" in res.output
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@needs_golden
def test_reference_traces_in_the_repository_are_the_corpus_files():
    traces = Path(__file__).resolve().parent.parent / "traces"
    logs = sorted(traces.glob("*/trace_*.log"))
    assert {p.parent.name for p in logs} >= {"cubic_basic", "phi_from0", "mosaic_phi", "divergence",
                                             "supervisor", "supervisor_spec"}
    readme = (traces / "README.md").read_text()
    for p in logs:
        assert p.read_bytes() == (GOLDEN / "cases" / p.parent.name / p.name).read_bytes(), p
        assert f"`{p.parent.name}/{p.name}`" in readme
