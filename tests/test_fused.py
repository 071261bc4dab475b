"""The fused (ahead-of-time compiled) kernel, nanobragg_cli.fused: its images against
nanoBragg.c's, when it is used and when not, a package reused for another scene's values, the
series' record of it, and the fallback when compiling fails.

Compiling costs ~15-40 s the first time a kernel is met (then its package is in the cache), so
these tests reuse a few golden cases' kernels.
"""

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

from conftest import CASES, GOLDEN, main_in, needs_golden
from nanobragg_cli import fused
from nanobragg_cli.golden import case_workdir, compare_images
from nanobragg_cli.series_manifest import _without_kernel_choice
from nanobragg_cli.simulate import ToolOptions, prepare, run_simulation

pytestmark = needs_golden

BUDGET = 4 << 20   # several chunks per image, the last one padded


def _run(name, default_mode=True, **tool):
    case = CASES[name]
    argv = list(case.default_mode_args if default_mode else case.args)
    with case_workdir(GOLDEN):
        cfg = prepare(argv)
        with redirect_stdout(io.StringIO()):
            return run_simulation(cfg, ToolOptions(**{"max_memory": BUDGET, **tool}))


@pytest.mark.parametrize("name, default_mode", [("mosaic_phi_spec", True), ("mat_hkl", False)])
def test_fused_image_matches_nanobragg(name, default_mode):
    """--compile on: mosaic domains and φ steps (default_F), and an -hkl table, each within the
    golden tolerance of nanoBragg.c's float image (mat_hkl: the default mode agrees with C)."""
    res = _run(name, default_mode, compile="on")
    assert res.kernel == "fused"
    m = compare_images(res.image, CASES[name].reference_image())
    assert m.ok, f"{name}: {m.n_bad} pixels over tolerance, worst {m.worst:.3g}x tolerance"


def test_fused_image_does_not_depend_on_the_chunk_size():
    """A compiled image is the same whatever the chunk size (so whatever --threads or
    --max-memory): a frame's recorded single-image command reproduces its bytes."""
    a = _run("mat_hkl", False, compile="on")
    b = _run("mat_hkl", False, compile="on", max_memory=BUDGET // 3)
    assert a.kernel == b.kernel == "fused"
    assert np.array_equal(a.image, b.image)


def test_runs_that_keep_the_eager_kernel():
    """--c-parity (nanoBragg.c's arithmetic), a traced pixel, and under --compile auto a run
    far below the work that repays a compilation."""
    assert _run("mat_hkl", False, compile="on", c_parity=True).kernel == "eager"
    case = CASES["mat_hkl"]
    with case_workdir(GOLDEN):
        cfg = prepare(list(case.args) + ["-trace_pixel", "60", "60"])
        with redirect_stdout(io.StringIO()):
            traced = run_simulation(cfg, ToolOptions(max_memory=BUDGET, compile="on"))
    assert traced.kernel == "eager" and traced.trace_lines
    assert _run("cubic_basic", False).kernel == "eager"     # auto, 66 k evaluations


def test_compile_failure_falls_back_to_the_eager_kernel(monkeypatch, capsys, tmp_path):
    """A compiler that fails (no C++ compiler, say): one warning on stderr, the eager image."""
    monkeypatch.setattr(fused, "POLICY", fused.CompilePolicy())
    monkeypatch.setattr(fused, "cache_dir", lambda: tmp_path)   # nothing cached: it compiles

    def broken(*args):
        raise RuntimeError("no working C++ compiler found\nsecond line")
    monkeypatch.setattr(fused, "compile_package", broken)
    res = _run("mat_hkl", False, compile="on")
    again = _run("mat_hkl", False, compile="on")
    err = capsys.readouterr().err
    assert err.count("nanobragg: warning: --compile: the fused kernel could not be compiled "
                     "(RuntimeError: no working C++ compiler found)") == 1
    assert res.kernel == again.kernel == "eager"
    assert np.array_equal(res.image, _run("mat_hkl", False, compile="off").image)


def test_series_fused_by_auto_records_compile_on_and_its_command_reproduces_a_frame(
        tmp_path, monkeypatch):
    """--compile auto weighs the whole series: where it fuses, each frame's command line in the
    manifest says --compile on, and running that command alone gives the same bytes."""
    monkeypatch.setattr(fused, "AUTO_MIN_EVALS", 0.0)
    for p in ("A.mat", "P1_small.hkl"):
        (tmp_path / "inputs").mkdir(exist_ok=True)
        (tmp_path / "inputs" / p).write_bytes((GOLDEN / "inputs" / p).read_bytes())
    argv = list(CASES["mat_hkl"].args) + ["-osc", "0.2", "-floatfile", "f_##.bin", "-nopgm",
                                          "-noprogress", "--frames", "2", "--manifest", "m.json",
                                          "--max-memory", "4M"]
    with redirect_stdout(io.StringIO()):
        assert main_in(argv, tmp_path) == 0
    frames = json.loads((tmp_path / "m.json").read_text())["frames"]
    assert all("--compile" in f["command"] and
               f["command"][f["command"].index("--compile") + 1] == "on" for f in frames)
    series_bytes = (tmp_path / "f_02.bin").read_bytes()
    (tmp_path / "f_02.bin").unlink()
    with redirect_stdout(io.StringIO()):
        assert main_in(frames[1]["command"][1:], tmp_path) == 0
    assert (tmp_path / "f_02.bin").read_bytes() == series_bytes


def test_resume_compares_frame_commands_without_the_added_compile_choice():
    cmd = ["nanobragg", "--compile", "on", "-N", "5"]
    assert _without_kernel_choice(cmd, []) == ["nanobragg", "-N", "5"]
    assert _without_kernel_choice(cmd, ["--compile", "on"]) == cmd   # the user's own choice


def test_fused_supervisor_roi_matches_nanobragg():
    """The supervisor command (N = 36/47/29: both sines of each axis by polynomial; an -hkl
    table; 10 φ steps) in the default mode, its golden ROI within the golden tolerance of
    nanoBragg.c forced to rotate at φ=0 (supervisor_spec)."""
    case = CASES["supervisor_spec"]
    (s0, f0), (h, w) = case.meta["roi_origin_slow_fast"], case.meta["roi_shape"]
    with case_workdir(GOLDEN):
        cfg = prepare(list(case.default_mode_args))
        with redirect_stdout(io.StringIO()):
            res = run_simulation(cfg, ToolOptions(compile="on", max_memory=BUDGET),
                                 window=(s0, s0 + h - 1, f0, f0 + w - 1))
    assert res.kernel == "fused"
    ours = res.image[s0:s0 + h, f0:f0 + w]
    m = compare_images(ours, np.load(case.dir / "float_roi.npy"))
    assert m.ok, f"{m.n_bad} pixels over tolerance, worst {m.worst:.3g}x tolerance"


def test_a_package_takes_another_scene_s_values_as_inputs(monkeypatch):
    """A package compiled for one scene renders another with the same key (here another
    distance and beam centre, the same oversampling: tensors, not part of the key) with that scene's values, not the
    first one's: the same image as the eager kernel's to 1e-12 of its maximum, and no second
    compilation."""
    base = list(CASES["mat_hkl"].args)
    assert _run("mat_hkl", False, compile="on").kernel == "fused"   # compiled (or cached)

    def no_compile(*args):
        raise AssertionError("compiled again: the other scene's values are in the key")
    monkeypatch.setattr(fused, "compile_package", no_compile)
    moved = base + ["-distance", "123.4", "-Xbeam", "3.3", "-Ybeam", "2.9", "-oversample", "3"]
    with case_workdir(GOLDEN):
        images = {}
        for choice in ("on", "off"):
            cfg = prepare(moved)
            with redirect_stdout(io.StringIO()):
                res = run_simulation(cfg, ToolOptions(max_memory=BUDGET, compile=choice))
            images[choice] = (res.kernel, res.image)
    assert images["on"][0] == "fused" and images["off"][0] == "eager"
    eager = images["off"][1]
    assert np.abs(images["on"][1] - eager).max() <= 1e-12 * eager.max()
    assert np.abs(eager - _run("mat_hkl", False, compile="off").image).max() > 1e-3 * eager.max()


def test_a_cached_package_loads_without_the_compiler(tmp_path):
    """A run whose kernel is in the cache imports neither dynamo nor inductor (that is what
    removes the compiler's per-process set-up)."""
    import subprocess
    import sys
    code = ("import sys, io, contextlib\n"
            "from nanobragg_cli.simulate import ToolOptions, prepare, run_simulation\n"
            "cfg = prepare(sys.argv[1:])\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    res = run_simulation(cfg, ToolOptions(max_memory={BUDGET}, compile='on'))\n"
            "print(res.kernel, 'torch._dynamo' in sys.modules, 'torch._inductor' in sys.modules)")
    argv = list(CASES["mat_hkl"].args)
    for _ in range(2):   # the first may compile; the second loads
        with case_workdir(GOLDEN):
            out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                                 text=True, check=True).stdout.split()
    assert out == ["fused", "False", "False"]
