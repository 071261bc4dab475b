"""The README's examples run as written: its Python blocks, and its nanobragg command lines (the
quick-start and the worked example) produce the files and picture they promise."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands():
    """Each `.venv/bin/nanobragg ...` command of the README's sh blocks, continuation lines joined."""
    out = []
    for block in _blocks("sh"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.split(r"(?:^|\s)#(?:\s|$)", line)[0].strip()   # a comment, not a template
            if line.startswith(".venv/bin/nanobragg ") and "<" not in line:
                out.append(shlex.split(line)[1:])
    return out


@pytest.mark.parametrize("code", _blocks("python"))
def test_readme_python_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a[:4]))
def test_readme_command_writes_its_files(argv, tmp_path):
    (tmp_path / "out").mkdir()   # the README's `mkdir -p out`
    for block in _blocks("jsonl"):   # the shot list the batch example reads
        (tmp_path / "shots.jsonl").write_text(block)
    res = subprocess.run([sys.executable, "-m", "nanobragg_cli", *argv, "-noprogress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, NANOBRAGG_SERVER="0"))
    assert res.returncode == 0, res.stderr
    for flag in ("-floatfile", "-intfile", "--png", "--manifest"):
        if flag in argv:
            name = argv[argv.index(flag) + 1]
            if "--frames" in argv:   # a series: its first frame's file
                name = re.sub("#+", lambda m: "1".zfill(len(m.group())), name)
            if argv[0] == "batch":   # a shot list: the first shot's file
                first = json.loads(_blocks("jsonl")[0].splitlines()[0])["id"]
                name = re.sub("#+", lambda m: "1".zfill(len(m.group())),
                              name.replace("{id}", str(first)))
            path = tmp_path / name
            assert path.stat().st_size > 0, path
    if "--png" in argv:
        assert (tmp_path / argv[argv.index("--png") + 1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
