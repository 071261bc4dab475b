"""Scale-out: a series split over processes (torchrun, Slurm, --rank/--world-size) writes exactly
the files of one process, and its merged manifest lists every frame once.

The reference is always a one-process run of the same command (whose frames are themselves
checked against their single-image runs, and those against nanoBragg.c, in test_series.py and
the golden tests); what is tested here is that the split changes no byte.
"""

import hashlib
import json
import os
from pathlib import Path
import signal
import subprocess
import sys

import pytest

from conftest import main_in
from nanobragg_cli.errors import FlagError
from nanobragg_cli.ranks import detect, launcher_variables, part_path, pick_device
from nanobragg_cli.series import frames_to_render
from nanobragg_cli.tool_options import ToolOptions

VENV_BIN = Path(sys.executable).parent
NB = [sys.executable, "-m", "nanobragg_cli"]
TIMEOUT = 240
# small frames, but not instant (the kill test stops a rank between frames)
FLAGS = ["-cell", "79.1", "79.1", "38.4", "90", "90", "90", "-misset", "10", "20", "30",
         "-default_F", "100", "-N", "5", "-lambda", "1", "-distance", "100", "-detpixels", "64",
         "-pixel", "0.5", "-osc", "0.5", "-phisteps", "3", "-noprogress",
         "-intfile", "i_###.img", "-noisefile", "n_###.img", "--frames", "6", "--threads", "1"]
SEEDED = FLAGS + ["-seed", "11"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in launcher_variables()
           and k not in ("MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _run(args, cwd, env=None, check=True):
    r = subprocess.run(NB + list(args), cwd=cwd, env=env or _env(), capture_output=True,
                       text=True, timeout=TIMEOUT)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _images(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.img"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The files of a one-process run of SEEDED."""
    folder = tmp_path_factory.mktemp("one_process")
    _run(SEEDED + ["--manifest", "m.json"], folder)
    files = _images(folder)
    assert len(files) == 12
    return files


def _check_merged(manifest: Path, world: int, folder: Path) -> dict:
    m = json.loads(manifest.read_text())
    numbers = [f["number"] for f in m["frames"]]
    assert numbers == [1, 2, 3, 4, 5, 6]   # every frame once
    for f in m["frames"]:
        assert f["rank"] == (f["number"] - 1) % world
        assert f["host"] and f["device"] == "cpu" and f["seconds"] > 0
        for rec in f["files"]:
            data = (folder / rec["path"]).read_bytes()
            assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["ranks"]["world_size"] == world and m["failed"] == [] and m["missing"] == 0
    return m


def test_torchrun_two_ranks_write_the_files_of_one_process(tmp_path, reference):
    torchrun = VENV_BIN / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "--max-restarts", "0",
           "-m", "nanobragg_cli", *SEEDED, "--manifest", "m.json"]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rank 1 of 2 (local 1) from torchrun" in r.stderr
    assert _images(tmp_path) == reference
    m = _check_merged(tmp_path / "m.json", 2, tmp_path)
    assert [p["source"] for p in m["ranks"]["parts"]] == ["torchrun", "torchrun"]


def _slurm(rank: int, world: int = 2) -> dict:
    return _env(SLURM_PROCID=str(rank), SLURM_NTASKS=str(world), SLURM_LOCALID=str(rank))


def test_slurm_ranks_run_one_after_the_other_write_the_files_of_one_process(tmp_path,
                                                                              reference):
    r0 = _run(SEEDED + ["--manifest", "m.json"], tmp_path, _slurm(0))
    assert "rank 0 of 2 (local 0) from Slurm" in r0.stderr
    assert sorted(_images(tmp_path)) == ["i_001.img", "i_003.img", "i_005.img",
                                         "n_001.img", "n_003.img", "n_005.img"]
    assert not (tmp_path / "m.json").exists()   # rank 1 has not finished
    _run(SEEDED + ["--manifest", "m.json"], tmp_path, _slurm(1))
    assert _images(tmp_path) == reference
    _check_merged(tmp_path / "m.json", 2, tmp_path)   # merged by the last rank to finish


def test_a_killed_rank_resumes_to_the_same_bytes(tmp_path, reference):
    args = SEEDED + ["--manifest", "m.json"]
    _run(args, tmp_path, _slurm(0))
    proc = subprocess.Popen(NB + args, cwd=tmp_path, env=_slurm(1), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()   # its first frame is complete: kill it in the second
        assert first.startswith("series:"), first
        assert proc.stdout.readline().startswith("frame 2 ")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
    assert len(_images(tmp_path)) < 12   # killed mid-run
    part = json.loads((tmp_path / part_path("m.json", 1, 2)).read_text())
    assert part["status"] == "running" and [f["number"] for f in part["frames"]] == [2]
    r = _run(args + ["--resume"], tmp_path, _slurm(1))
    assert "renders 3: 2 to render, 1 already complete" in r.stdout
    assert _images(tmp_path) == reference
    _check_merged(tmp_path / "m.json", 2, tmp_path)


def test_multi_rank_run_without_a_process_group_needs_a_seed(tmp_path, capsys):
    code = _in_process(FLAGS + ["--rank", "0", "--world-size", "2"], tmp_path)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 9 and not any(tmp_path.iterdir())
    assert lines[-1].startswith("nanobragg: error: -seed: a run split over 2 processes needs")


_in_process = main_in


def test_failed_frame_is_recorded_and_resume_renders_it(tmp_path, monkeypatch, capsys,
                                                        reference):
    from nanobragg_cli import series_run
    commit = series_run.commit_frame

    def failing(files, written, *cache):
        if any("003" in path for path, _ in files):
            raise OSError("simulated failure of frame 3")
        commit(files, written, *cache)
    args = SEEDED + ["--manifest", "m.json", "--rank", "0", "--world-size", "1"]
    monkeypatch.setattr(series_run, "commit_frame", failing)
    assert _in_process(args, tmp_path) == 9
    err = capsys.readouterr().err
    assert "frame 3 failed: simulated failure of frame 3" in err
    assert err.strip().splitlines()[-1].startswith("nanobragg: error: 1 of 6 frame(s) failed")
    m = json.loads((tmp_path / "m.json").read_text())
    assert [f["number"] for f in m["failed"]] == [3] and "simulated" in m["failed"][0]["error"]
    assert [f["number"] for f in m["frames"]] == [1, 2, 4, 5, 6]
    monkeypatch.setattr(series_run, "commit_frame", commit)
    assert _in_process(args + ["--resume"], tmp_path) == 0
    assert "1 to render, 5 already complete" in capsys.readouterr().out
    assert _images(tmp_path) == reference


def test_merge_command_joins_the_parts(tmp_path, capsys):
    for rank in (0, 1):
        assert _in_process(SEEDED + ["--manifest", "m.json", "--rank", str(rank),
                                     "--world-size", "2"], tmp_path) == 0
    (tmp_path / "m.json").unlink()   # as if the last rank had not merged
    assert _in_process(["batch", "--merge", "m.json"], tmp_path) == 0
    assert "merge: 2 parts -> m.json: 6 frames complete, 0 failed, 0 missing" in \
        capsys.readouterr().out
    _check_merged(tmp_path / "m.json", 2, tmp_path)


# ---- detection --------------------------------------------------------------------------------

def test_detection_order_and_values():
    tool = ToolOptions()
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert (detect(tool, slurm).rank, detect(tool, slurm).world) == (3, 8)
    assert detect(tool, slurm).local_rank == 1 and detect(tool, slurm).source == "Slurm"
    # a launcher started inside a Slurm job: its own per-process variables win
    torch_env = {**slurm, "RANK": "5", "WORLD_SIZE": "16", "LOCAL_RANK": "2"}
    assert (detect(tool, torch_env).rank, detect(tool, torch_env).source) == (5, "torchrun")
    ompi = {**slurm, "OMPI_COMM_WORLD_RANK": "6", "OMPI_COMM_WORLD_SIZE": "7",
            "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
    assert (detect(tool, ompi).rank, detect(tool, ompi).world) == (6, 7)
    pmi = {"PMI_RANK": "2", "PMI_SIZE": "4"}
    assert (detect(tool, pmi).rank, detect(tool, pmi).local_rank) == (2, 2)
    assert detect(tool, {}).world == 1 and detect(tool, {}).source == "none"
    over = ToolOptions(rank=1, world_size=3)
    assert (detect(over, torch_env).rank, detect(over, torch_env).world) == (1, 3)


@pytest.mark.parametrize("env, tool, pattern", [
    ({"RANK": "2", "WORLD_SIZE": "2"}, ToolOptions(), "not below the world size 2"),
    ({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"}, ToolOptions(), "SLURM_PROCID='x'"),
    ({}, ToolOptions(rank=1), "--rank/--world-size: give both"),
])
def test_bad_rank_values_are_one_line_errors(env, tool, pattern):
    with pytest.raises(FlagError, match=pattern):
        detect(tool, env)


def test_device_of_a_rank_and_the_shares():
    r = detect(ToolOptions(), {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "5"})
    assert pick_device("cuda", r, 4) == "cuda:1" and pick_device("cuda:0", r, 4) == "cuda:0"
    assert pick_device("cpu", r, 4) == "cpu"
    frames = [type("F", (), {"number": n})() for n in range(1, 11)]
    shares = [[f.number for f in frames_to_render(frames, {3}, r, 3)] for r in range(3)]
    assert shares == [[1, 4, 7, 10], [2, 5, 8], [6, 9]]   # frame 3 done; no frame twice


def test_batch_split_over_two_ranks_writes_the_files_of_one_process(tmp_path, capsys):
    shots = "".join(json.dumps({"id": k, "flags": f"-misset {10 + k} 20 30"}) + "\n"
                    for k in range(5))
    base = ["-cell", "79.1", "79.1", "38.4", "90", "90", "90", "-default_F", "100", "-N", "3",
            "-lambda", "1", "-distance", "100", "-detpixels", "24", "-pixel", "0.5", "-seed",
            "5", "-noprogress", "-intfile", "s_{id}.img", "-noisefile", "n_{id}.img",
            "--manifest", "m.json"]
    one, split = tmp_path / "one", tmp_path / "split"
    for folder in (one, split):
        folder.mkdir()
        (folder / "shots.jsonl").write_text(shots)
    assert _in_process(["batch", "shots.jsonl", "--", *base], one) == 0
    for rank in (1, 0):
        assert _in_process(["batch", "shots.jsonl", "--", *base, "--rank", str(rank),
                            "--world-size", "2"], split) == 0
    assert _images(split) == _images(one) and len(_images(one)) == 10
    m = json.loads((split / "m.json").read_text())
    assert [(f["id"], f["rank"]) for f in m["frames"]] == [("0", 0), ("1", 1), ("2", 0),
                                                           ("3", 1), ("4", 0)]
