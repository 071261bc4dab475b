"""Many images in one run: rotation series (--frames) and shot lists (nanobragg batch).

The contract tested here: every frame's files are byte-identical to the single-image run of the
command line the manifest records for it (the single-image runs are themselves golden-tested
against nanoBragg.c; with NB_C_BIN set, one frame is also compared with nanoBragg.c directly),
templates number the files, --resume renders only what is missing, the NXmx series file holds
every frame and its angle, and bad input is one line, exit 9, nothing written.
"""

from dataclasses import replace
import hashlib
import json
import os
from pathlib import Path
import shlex
import subprocess

import numpy as np
import pytest

from conftest import main_in
from nanobragg_cli import series_run
from nanobragg_cli.errors import FlagError
from nanobragg_cli.series import (SeriesOptions, expand, frame_config, frames_to_render,
                                  plan_series, series_templates)
from nanobragg_cli.simulate import prepare, split_tool_options

BASE = ["-cell", "79.1", "79.1", "38.4", "90", "90", "90", "-misset", "10", "20", "30",
        "-default_F", "100", "-N", "5", "-lambda", "1", "-distance", "100", "-detpixels", "24",
        "-pixel", "1", "-osc", "0.5", "-phisteps", "2", "-seed", "7", "-noprogress"]
OUTS = ["-floatfile", "f_###.bin", "-intfile", "i_###.img", "-noisefile", "n_###.img"]


def _run(args, cwd, capsys=None):
    return main_in(args, cwd)


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _single_runs(manifest: dict, folder: Path) -> None:
    """Run every frame's recorded single-image command in ``folder``."""
    folder.mkdir()
    for rec in manifest["frames"]:
        assert rec["command"][0] == "nanobragg"
        assert shlex.split(rec["command_line"]) == rec["command"]
        assert _run(rec["command"][1:], folder) == 0


@pytest.mark.parametrize("mode", [[], ["--c-parity"]], ids=["default", "c-parity"])
def test_series_frames_equal_their_single_image_runs(tmp_path, mode, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert _run(mode + BASE + OUTS + ["--frames", "3", "--manifest", "m.json"], run) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("frame")] == \
        ["frame 1 phi=0", "frame 2 phi=0.5", "frame 3 phi=1"]
    manifest = json.loads((run / "m.json").read_text())
    assert [f["phi_deg"] for f in manifest["frames"]] == ["0", "0.5", "1"]
    assert [f["seed"] for f in manifest["frames"]] == [7, 8, 9]
    _single_runs(manifest, tmp_path / "single")
    series, single = _files(run), _files(tmp_path / "single")
    names = [f"{k}_{n:03d}.{e}" for n in (1, 2, 3) for k, e in (("f", "bin"), ("i", "img"),
                                                                 ("n", "img"))]
    for name in names:
        assert series[name] == single[name], name
    for rec in manifest["frames"]:
        for f in rec["files"]:
            assert hashlib.sha256(series[f["path"]]).hexdigest() == f["sha256"]
    # the frames differ (the crystal turns) and so do their noise seeds
    assert series["f_001.bin"] != series["f_002.bin"]
    assert b"PHI=0.5;" in series["i_002.img"] and b"OSC_START=0.5;" in series["i_002.img"]
    assert b"OSC_RANGE=0.5;" in series["i_002.img"]


def test_frame_config_is_that_of_its_own_command_line():
    nb, tool = split_tool_options(BASE + ["-phi", "-1.25"] + OUTS)
    cfg = prepare(nb)
    frames = plan_series(nb, cfg, SeriesOptions(frames=4, first=0), series_templates(nb, tool))
    assert [f.phi_deg for f in frames] == ["-1.25", "-0.75", "-0.25", "0.25"]
    for f in frames:
        own = prepare(list(f.argv))
        # the series writes only the files it names: no PGM here, which -pgmfile would add
        own = replace(own, output=replace(own.output, write_pgm=False))
        assert frame_config(cfg, f) == own   # every resolved field, φ to the last bit
        assert own.sampling.phi0 == float(f.phi_deg) / (180.0 * 0.31830988618379067154)  # C


def test_template_expansion_and_numbering():
    assert expand("-intfile", "sweep_#####.img", 7) == "sweep_00007.img"
    assert expand("-intfile", "s#.img", 9) == "s9.img"
    assert expand("-intfile", "shot_{id}_##.img", 3, "x1") == "shot_x1_03.img"
    with pytest.raises(FlagError, match="needs 3 digits"):
        expand("-intfile", "s_##.img", 100)
    with pytest.raises(FlagError, match="more than one run"):
        expand("-intfile", "s_##_##.img", 1)
    nb, tool = split_tool_options(BASE + OUTS)
    cfg = prepare(nb)
    frames = plan_series(nb, cfg, SeriesOptions(frames=3, first=98), series_templates(nb, tool))
    assert [dict(f.outputs)["-intfile"] for f in frames] == ["i_098.img", "i_099.img",
                                                               "i_100.img"]
    assert [f.number for f in frames_to_render(frames, {99})] == [98, 100]
    assert [f.number for f in frames_to_render(frames, set(), rank=1, world=2)] == [99]


def test_resume_after_an_interrupted_series(tmp_path, monkeypatch, capsys):
    args = BASE + OUTS + ["--frames", "4", "--manifest", "m.json"]
    whole = tmp_path / "whole"
    whole.mkdir()
    assert _run(args, whole) == 0
    part = tmp_path / "part"
    part.mkdir()
    commit = series_run.commit_frame
    calls = []

    def interrupted(files, written, *cache):
        calls.append(files)
        if len(calls) == 3:
            raise KeyboardInterrupt
        commit(files, written, *cache)

    monkeypatch.setattr(series_run, "commit_frame", interrupted)
    assert _run(args, part) == 130
    monkeypatch.setattr(series_run, "commit_frame", commit)
    names = set(_files(part))
    assert names == {"m.json", "f_001.bin", "i_001.img", "n_001.img", "f_002.bin", "i_002.img",
                     "n_002.img"}   # only complete frames, no temporary file
    (part / "i_002.img").write_bytes(b"damaged")   # a frame whose file no longer matches
    capsys.readouterr()
    assert _run(args + ["--resume"], part) == 0
    out = capsys.readouterr().out
    rendered = [line.split(":")[0] for line in out.splitlines() if line.startswith("frame")]
    assert rendered == ["frame 2 phi=0.5", "frame 3 phi=1", "frame 4 phi=1.5"]
    a, b = _files(whole), _files(part)
    assert set(a) == set(b)
    for name in a:
        if name != "m.json":
            assert a[name] == b[name], name
    done = json.loads((part / "m.json").read_text())
    assert [f["number"] for f in done["frames"]] == [1, 2, 3, 4]


def test_resume_without_seed_reuses_the_run_seed(tmp_path, capsys):
    args = [a for a in BASE if a not in ("-seed", "7")] + OUTS + ["--frames", "2",
                                                                   "--manifest", "m.json"]
    assert _run(args, tmp_path) == 0
    first = json.loads((tmp_path / "m.json").read_text())
    assert "noise seed: frame i uses -seed" in capsys.readouterr().err
    assert _run(args + ["--resume"], tmp_path) == 0
    assert "0 to render, 2 already complete" in capsys.readouterr().out
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["noise_seed"] == first["noise_seed"] == first["frames"][0]["seed"]


def test_nxmx_series_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    args = BASE + ["-phi", "10", "-floatfile", "f_##.bin", "-nonoise", "--frames", "3",
                   "--hdf5", "s.h5"]
    assert _run(args, tmp_path) == 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (3, 24, 24)
        assert data.chunks == (1, 24, 24) and data.compression == "gzip"
        for k in range(3):
            raw = np.fromfile(tmp_path / f"f_{k + 1:02d}.bin", dtype="<f4").reshape(24, 24)
            assert np.array_equal(data[k], raw)
        sample = f["/entry/sample"]
        phi = f[sample["depends_on"][()].decode()]
        assert list(phi[()]) == [10.0, 10.5, 11.0]
        assert phi.attrs["units"] == "deg" and phi.attrs["transformation_type"] == "rotation"
        assert f["/entry/sample/transformations/phi_increment_set"][()] == 0.5


SHOTS = [{"id": "a", "flags": "-misset 10 20 30"},
         {"id": "b", "flags": ["-misset", "12", "20", "30", "-seed", "100"]},
         {"id": 3, "flags": "-misset 10 20 30 -phi 2"}]


@pytest.mark.parametrize("mode", [[], ["--c-parity"]], ids=["default", "c-parity"])
def test_batch_shots_equal_their_single_image_runs(tmp_path, mode, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "shots.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SHOTS))
    base = [a for a in BASE if a not in ("-misset", "10", "20", "30")]
    args = ["batch", "shots.jsonl", "--", *mode, *base, "-floatfile", "s_{id}.bin",
            "-intfile", "s_#.img", "-noisefile", "n_{id}.img", "--manifest", "m.json"]
    assert _run(args, run) == 0
    manifest = json.loads((run / "m.json").read_text())
    assert [f["seed"] for f in manifest["frames"]] == [7, 100, 9]
    _single_runs(manifest, tmp_path / "single")
    series, single = _files(run), _files(tmp_path / "single")
    for name in ("s_a.bin", "s_1.img", "n_a.img", "s_b.bin", "s_2.img", "n_b.img", "s_3.bin",
                 "s_3.img", "n_3.img"):
        assert series[name] == single[name], name


def _error(args, cwd, capsys, pattern):
    before = set(os.listdir(cwd))
    code = _run(args, cwd)
    err = capsys.readouterr().err
    assert code == 9
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanobragg: error: "), err
    assert pattern in lines[0], lines[0]
    assert set(os.listdir(cwd)) == before   # nothing written


@pytest.mark.parametrize("extra, pattern", [
    (OUTS + ["--frames", "0"], "--frames: must be at least 1"),
    (OUTS + ["--frames", "two"], "--frames: expected an integer"),
    (OUTS + ["--frames"], "--frames: expected a value"),
    (["--frames", "3"], "--frames: no output template"),
    (["-intfile", "a.img", "--frames", "3"], "-intfile a.img: every frame would overwrite"),
    (["-intfile", "a_#.img"], "give --frames N"),
    (["-intfile", "a_#.img", "--frames", "10"], "needs 2 digits"),
    (["-intfile", "a_#_#.img", "--frames", "2"], "more than one run of '#'"),
    (OUTS + ["--frames", "2", "--resume"], "--resume: needs --manifest"),
    (OUTS + ["--first-frame", "2"], "give --frames N"),
    (OUTS + ["--frames", "2", "-osc", "0"], "the oscillation range is 0"),
])
def test_bad_series_input(tmp_path, capsys, extra, pattern):
    _error(BASE + extra, tmp_path, capsys, pattern)


@pytest.mark.parametrize("text, pattern", [
    ('{"id": "a", "flags": "-misset 1 2 3"}\n{"id": "b", "flags": \n', "shots.jsonl:2: not valid JSON"),
    ('["a"]\n', "shots.jsonl:1: expected a JSON object"),
    ('{"id": "a"}\n{"id": "a"}\n', "shots.jsonl:2: id 'a' repeats line 1"),
    ('{"id": "a/b"}\n', "shots.jsonl:1: id 'a/b'"),
    ('{"id": "a", "flags": "-nosuchflag 1"}\n', "shots.jsonl:1: -nosuchflag: unknown flag"),
    ('{"id": "a", "flags": "--c-parity"}\n', "shots.jsonl:1: --c-parity: options of this tool"),
    ('{"id": "a", "flags": 5}\n', "shots.jsonl:1: \"flags\" must be"),
    ('{"id": "a", "phi": 5}\n', "shots.jsonl:1: unknown key 'phi'"),
    ('\n', "shots.jsonl: no shots"),
])
def test_bad_shot_list(tmp_path, capsys, text, pattern):
    (tmp_path / "shots.jsonl").write_text(text)
    _error(["batch", "shots.jsonl", "--", *BASE, "-intfile", "s_{id}.img"], tmp_path, capsys,
           pattern)


def test_batch_outputs_must_differ(tmp_path, capsys):
    (tmp_path / "shots.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    _error(["batch", "shots.jsonl", "--", *BASE, "-intfile", "same.img"], tmp_path, capsys,
           "shots.jsonl:2: -intfile same.img: also written by shots.jsonl:1")


@pytest.mark.skipif(not os.environ.get("NB_C_BIN"), reason="NB_C_BIN (a nanoBragg.c binary) "
                    "not set")
def test_a_frame_equals_nanobragg_c(tmp_path):
    """One frame of a --c-parity series against nanoBragg.c run with the recorded flags."""
    run, c = tmp_path / "run", tmp_path / "c"
    run.mkdir()
    c.mkdir()
    assert _run(["--c-parity"] + BASE + OUTS + ["--frames", "3", "--manifest", "m.json"],
                run) == 0
    rec = json.loads((run / "m.json").read_text())["frames"][2]
    subprocess.run([os.environ["NB_C_BIN"], *shlex.split(rec["nanoBragg_c"])[1:]], cwd=c,
                   env=dict(os.environ, OMP_NUM_THREADS="1"), check=True,
                   stdout=subprocess.DEVNULL)
    for name in ("f_003.bin", "i_003.img", "n_003.img"):
        assert (run / name).read_bytes() == (c / name).read_bytes(), name


def test_api_render_series_matches_the_cli_frames_and_is_differentiable(tmp_path):
    import torch
    from nanobragg_cli.api import Simulator
    assert _run(BASE + ["-floatfile", "f_#.bin", "-nonoise", "--frames", "3"], tmp_path) == 0
    sim = Simulator.from_flags([a for a in BASE if a != "-noprogress"])
    images = list(sim.render_series(3))
    assert len(images) == 3 and images[0].shape == (24, 24)
    for k, img in enumerate(images):
        cli = np.fromfile(tmp_path / f"f_{k + 1}.bin", dtype="<f4").reshape(24, 24)
        ref = img.detach().numpy().astype(np.float32)
        np.testing.assert_allclose(ref, cli, rtol=1e-5, atol=1e-7 * cli.max())
    p = sim.parameters(["distance", "phi0"], units="flag")
    total = sum(img.sum() for img in sim.render_series(2, p, units="flag", osc=0.5))
    total.backward()
    assert torch.isfinite(p["distance"].grad) and p["distance"].grad != 0
    assert torch.isfinite(p["phi0"].grad) and p["phi0"].grad != 0
    with pytest.raises(Exception, match="frames: expected a positive integer"):
        sim.render_series(0)


def test_help_lists_the_series_options_and_batch():
    from nanobragg_cli.help import help_text
    from nanobragg_cli.series import SERIES_OPTIONS
    text = help_text(width=100)
    for name in SERIES_OPTIONS:
        assert f"  {name}" in text, name
    assert "  batch " in text


def test_nxmx_series_after_resume_holds_every_frame(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    args = BASE + ["-floatfile", "f_#.bin", "-nonoise", "--frames", "3", "--hdf5", "s.h5",
                   "--manifest", "m.json"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()
    assert _run(args, whole) == 0
    commit = series_run.commit_frame

    def interrupted(files, written, *cache):
        if any(p.endswith("f_2.bin") for p, _ in files):
            raise KeyboardInterrupt
        commit(files, written, *cache)

    monkeypatch.setattr(series_run, "commit_frame", interrupted)
    assert _run(args, part) == 130
    assert not (part / "s.h5").exists()     # written once the series is complete
    monkeypatch.setattr(series_run, "commit_frame", commit)
    assert _run(args + ["--resume"], part) == 0
    with h5py.File(whole / "s.h5", "r") as a, h5py.File(part / "s.h5", "r") as b:
        assert np.array_equal(a["/entry/data/data"][()], b["/entry/data/data"][()])
        assert list(b["/entry/sample/transformations/phi"][()]) == [0.0, 0.5, 1.0]


def test_batch_resume_keeps_the_time_seed(tmp_path, capsys):
    (tmp_path / "shots.jsonl").write_text('{"id": "a"}\n{"id": "b", "flags": "-phi 1"}\n')
    base = [a for a in BASE if a not in ("-seed", "7")]
    args = ["batch", "shots.jsonl", "--", *base, "-intfile", "s_{id}.img", "-noisefile",
            "n_{id}.img", "--manifest", "m.json"]
    assert _run(args, tmp_path) == 0
    first = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "n_b.img").unlink()
    capsys.readouterr()
    assert _run(args + ["--resume"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 to render, 1 already complete" in out and "shot b:" in out
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["frames"] == [dict(f, seconds=g["seconds"]) for f, g in
                               zip(first["frames"], again["frames"])]


def test_batch_without_a_shot_list(tmp_path, capsys):
    _error(["batch"], tmp_path, capsys, "batch: give the shot list")


def test_series_fdump_joins_the_first_committed_frame(tmp_path, monkeypatch, capsys):
    """-hkl's Fdump.bin cache is written with the first frame that is committed, not at set-up:
    an interrupted first frame leaves no Fdump.bin (nor anything else); a failed first frame
    leaves it to the next frame's commit."""
    (tmp_path / "in.hkl").write_text("0 0 1 10\n1 0 0 20\n0 1 0 30\n")
    args = BASE + ["-hkl", "in.hkl", "-floatfile", "f_#.bin", "-nonoise", "--frames", "2"]
    commit = series_run.commit_frame
    calls = []

    def interrupted(files, written, *cache):
        calls.append([p for p, _ in list(files) + [c for cs in cache for c in cs]])
        raise KeyboardInterrupt

    monkeypatch.setattr(series_run, "commit_frame", interrupted)
    assert _run(args, tmp_path) == 130
    assert sorted(_files(tmp_path)) == ["in.hkl"]
    assert calls == [["f_1.bin", "Fdump.bin"]]

    def first_fails(files, written, *cache):
        if any(p == "f_1.bin" for p, _ in files):
            raise OSError("simulated failure of frame 1")
        commit(files, written, *cache)

    monkeypatch.setattr(series_run, "commit_frame", first_fails)
    assert _run(args, tmp_path) == 9
    assert "frame 1 failed: simulated failure of frame 1" in capsys.readouterr().err
    assert sorted(_files(tmp_path)) == ["Fdump.bin", "f_2.bin", "in.hkl"]


def test_batch_shot_with_an_impossible_image_is_refused_by_name(tmp_path, capsys):
    """Each shot is checked like a single image (validate.check_image) before it is committed:
    the detector facing away from the sample gives negative solid angles, so shot b is refused,
    nothing of it written, and the run's one error line names it (exit 9)."""
    (tmp_path / "shots.jsonl").write_text('{"id": "a"}\n{"id": "b", "flags": "-twotheta 180 '
                                          '-pivot beam"}\n')
    args = ["batch", "shots.jsonl", "--", *BASE, "-floatfile", "f_{id}.bin", "-nonoise"]
    assert _run(args, tmp_path) == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nanobragg: error: 1 of 2 shot(s) failed (shot b: the image has "
                              "576 negative pixels of 576: the detector faces away")
    assert "Traceback" not in "".join(err)
    assert sorted(_files(tmp_path)) == ["f_a.bin", "shots.jsonl"]
