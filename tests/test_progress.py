"""The progress bar: on stderr, only on a terminal, only after ~1 s, never with -noprogress."""

import io

from conftest import announce_script
from nanobragg_cli.progress import RenderProgress
from nanobragg_cli.simulate import prepare, split_tool_options


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _drive(bar, steps=5):
    for k in range(1, steps + 1):
        bar(k, steps + 1)
    bar.close()


def test_bar_is_drawn_on_a_terminal_once_the_run_is_long():
    out = Terminal()
    _drive(RenderProgress(True, delay=0.0, stream=out))
    assert "rendering" in out.getvalue()


def test_no_bar_for_short_runs_pipes_or_noprogress():
    for enabled, stream, delay in ((True, Terminal(), 60.0), (True, io.StringIO(), 0.0),
                                   (False, Terminal(), 0.0)):
        _drive(RenderProgress(enabled, delay=delay, stream=stream))
        assert stream.getvalue() == ""


def test_noprogress_and_tool_options_decide_the_bar():
    base = "-cell 100 100 100 90 90 90 -default_F 100 -detpixels 16".split()
    assert prepare(base).output.progress is True
    assert prepare(base + ["-noprogress"]).output.progress is False
    _, tool = split_tool_options(base + ["--no-progress"])
    assert tool.progress is False


def test_plain_lines_off_a_terminal_with_progress_or_for_long_runs():
    """Off a terminal (a log file): --progress prints plain lines every 10 % or few seconds; by
    default only a run projected past ~10 s does; -noprogress never."""
    import re
    import time as _time
    forced = io.StringIO()
    bar = RenderProgress(True, stream=forced, plain=True, every=60.0)
    for k in range(1, 21):
        bar(k, 20)
    bar.stage("writing files")
    bar.close()
    lines = forced.getvalue().splitlines()
    assert all(re.match(r"nanobragg: (rendering \d+% \(.* elapsed(, about .* left)?\)|"
                        r"writing files \(.* elapsed\))$", ln) for ln in lines), lines
    percents = [int(m.group(1)) for ln in lines for m in [re.search(r"rendering (\d+)%", ln)] if m]
    assert percents == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 100]
    assert lines[-1].startswith("nanobragg: writing files")

    short, long_run = io.StringIO(), io.StringIO()
    quick = RenderProgress(True, stream=short, auto_seconds=10.0)
    for k in range(1, 11):
        quick(k, 10)
    slow = RenderProgress(True, stream=long_run, auto_seconds=10.0)
    start = _time.perf_counter() - 2.0       # 2 s for the first 10 %: about 20 s in all
    slow.t0, slow._first = start, (start, 0)
    slow(1, 10)
    off = io.StringIO()
    RenderProgress(False, stream=off, plain=True)(1, 10)
    assert short.getvalue() == "" and off.getvalue() == ""
    assert long_run.getvalue().startswith("nanobragg: rendering 10% (2.0 s elapsed, about 18 s")


_ANNOUNCE = announce_script(1.0)


def test_setup_block_is_on_stdout_before_the_render_and_progress_goes_to_the_log(tmp_path):
    """Read from a pipe while the process still renders: nanoBragg.c's set-up block is there
    (flushed) before the render starts; with --progress and stderr a pipe, plain progress lines
    follow on stderr; the statistics come after the render."""
    import subprocess
    import sys
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-detpixels", "64", "-seed", "1", "-nopgm", "--max-memory", "4M", "--progress"]
    proc = subprocess.Popen([sys.executable, "-c", _ANNOUNCE, *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = []
        for line in proc.stdout:
            first.append(line.rstrip("\n"))
            if line.strip() == "RENDERING":
                break
        assert proc.poll() is None, "the run ended before the set-up block could be read"
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert first[0].startswith("nanoBragg nanocrystal diffraction simulator")
    assert "  water droplet size: 0 m" in first and "Unit Cell: 100 100 100 90 90 90" in first
    assert not any(ln.startswith("max_I") for ln in first)
    assert any(ln.startswith("max_I = ") for ln in rest.splitlines())
    progress = [ln for ln in err.splitlines() if "% (" in ln]
    assert progress and all(ln.startswith("nanobragg: rendering ") for ln in progress), err
    assert "nanobragg: noise image (" in err and "nanobragg: writing files (" in err
