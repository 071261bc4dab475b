"""Progress of a run on stderr: rendering, then the noise image, then writing the files.

On a terminal: a bar (after ~1 s), whose label follows the stage. Elsewhere (a pipe, a CI log,
``tee``, a batch system's output file): plain lines such as

    nanobragg: rendering 40% (12 s elapsed, about 18 s left)

at most every few seconds or every 10 %, with ``--progress``, and by default once the render is
projected to take more than ~10 s. Nothing with ``-noprogress`` / ``--no-progress``.
"""

import sys
import time

PLAIN_AUTO_SECONDS = 10.0   # runs projected longer than this report progress in logs by default
PLAIN_EVERY_SECONDS = 5.0
PLAIN_EVERY_FRACTION = 0.10


def _seconds(t: float) -> str:
    return f"{t:.0f} s" if t >= 10 else f"{t:.1f} s"


def _drop_stdout(out) -> None:
    """Send the rest of ``out`` to /dev/null (its reader has gone)."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class RenderProgress:
    """Callable(done, total) for :func:`nanobragg_cli.render.render`, plus :meth:`stage` for the
    steps after the render and :meth:`print_stdout` for stdout lines printed while it is shown.

    ``enabled``: False for -noprogress/--no-progress. ``plain``: True to print plain lines on a
    non-terminal stream (``--progress``), None to print them only for long runs."""

    def __init__(self, enabled: bool, delay: float = 1.0, stream=None, plain: bool | None = None,
                 auto_seconds: float = PLAIN_AUTO_SECONDS, every: float = PLAIN_EVERY_SECONDS):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.terminal = enabled and tty
        self.plain = enabled and not tty and plain is not False
        self.plain_forced = bool(plain)
        self.delay = delay
        self.auto_seconds = auto_seconds
        self.every = every
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None
        self.label = "rendering"
        self._last_t = None
        self._last_frac = 0.0
        self._printing = False
        self._first = None

    # plain lines -----------------------------------------------------------------------------
    def _plain_line(self, text: str) -> None:
        print(f"nanobragg: {text}", file=self.stream, flush=True)

    def _plain(self, done: int, total: int) -> None:
        now = time.perf_counter()
        elapsed = now - self.t0
        frac = done / total if total else 1.0
        if self._first is None:   # the render's pace is measured from its first report on
            self._first = (now, done)
        t1, d1 = self._first
        rate = (done - d1) / (now - t1) if done > d1 and now > t1 else None
        left = (total - done) / rate if rate else None
        if not self._printing:
            projected = (now - t1) + left if left is not None else None
            if not (self.plain_forced or (projected is not None and
                                          projected > self.auto_seconds)):
                return
            self._printing = True
        elif done < total and (now - self._last_t < self.every and
                               frac - self._last_frac < PLAIN_EVERY_FRACTION - 1e-9):
            return
        self._last_t, self._last_frac = now, frac
        tail = f", about {_seconds(left)} left" if left is not None and done < total else ""
        self._plain_line(f"{self.label} {100 * frac:.0f}% ({_seconds(elapsed)} elapsed{tail})")

    # the bar ---------------------------------------------------------------------------------
    def _start_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        # redirect_stdout=False: stdout lines must stay on stdout (they may go to a file)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=Console(file=self.stream),
                            transient=True, redirect_stdout=False, redirect_stderr=False)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total)

    def __call__(self, done: int, total: int) -> None:
        if self.plain:
            self._plain(done, total)
        if not self.terminal:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.delay or done >= total:
                return
            self._start_bar(total)
        self.bar.update(self.task, completed=done, total=total, description=self.label)

    def stage(self, label: str) -> None:
        """A step after the render (``noise image``, ``writing files``): shown as it starts."""
        self.label = label
        if self.plain and self._printing:
            self._plain_line(f"{label} ({_seconds(time.perf_counter() - self.t0)} elapsed)")
        if self.bar is not None:
            self.bar.update(self.task, completed=0, total=None, description=label)

    def print_stdout(self, lines: list, out=None) -> None:
        """Print lines on stdout now (flushed), above the bar if one is shown."""
        out = out or sys.stdout
        live = self.bar is not None and getattr(out, "isatty", lambda: False)()
        if live:
            self.bar.stop()
        try:
            if lines:
                out.write("\n".join(lines) + "\n")
            out.flush()
        except BrokenPipeError:   # e.g. `nanobragg ... | head`: the run goes on, its files too
            _drop_stdout(out)
        if live:
            self.bar.start()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
