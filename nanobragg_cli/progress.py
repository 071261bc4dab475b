"""A progress bar on stderr for long renders: shown only on a terminal, after ~1 s, and not with
-noprogress / --no-progress."""

import sys
import time


class RenderProgress:
    """Callable(done, total) for :func:`nanobragg_cli.render.render`; starts a rich bar once the
    run has taken longer than ``delay`` seconds."""

    def __init__(self, enabled: bool, delay: float = 1.0, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.delay = delay
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.delay or done >= total:
                return
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.bar = Progress(TextColumn("rendering"), BarColumn(),
                                TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=Console(file=self.stream),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("render", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
