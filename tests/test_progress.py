"""The progress bar: on stderr, only on a terminal, only after ~1 s, never with -noprogress."""

import io

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
