"""Progress of a batch run: tqdm's bar on a terminal, a plain line every few seconds in logs.

::

    progress = make_progress("auto")  # a bar on a terminal, log lines otherwise
    progress.start(total)             # the number of records to judge, or None
    progress.update(failed=False)     # once per record finished
    progress.close()                  # the final state
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal, TextIO

from tqdm import tqdm

ProgressMode = Literal["auto", "bar", "log", "off"]


class Progress:
    """Progress display: the no-op base, which only counts; see :func:`make_progress`."""

    shows = False
    """Whether anything is drawn (a display that draws wants the total, for its ETA)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def start(self, total: int | None) -> None:
        """Begin, with the number of records to judge if known."""
        self.total, self.started = total, time.monotonic()

    def update(self, *, failed: bool) -> None:
        """One more record finished."""
        self.done += 1
        self.failed += failed

    def close(self) -> None:
        """Show the final state."""


class _LogProgress(Progress):
    """A plain line every ``interval`` seconds (and a last one), for logs and pipes."""

    shows = True

    def __init__(self, stream: TextIO, interval: float) -> None:
        super().__init__()
        self.stream, self.interval = stream, interval
        self._last = time.monotonic()

    def update(self, *, failed: bool) -> None:
        """Count one more record; print a line if ``interval`` has passed since the last."""
        super().update(failed=failed)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def close(self) -> None:
        """Print the final line."""
        self._print()

    def _print(self) -> None:
        print(f"thinking-judge batch: {self._stats()}", file=self.stream, flush=True)

    def _stats(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        text = f"{count} done, {rate:.1f}/s"
        if self.total is not None and rate > 0:
            text += f", ETA {_duration(max(0, self.total - self.done) / rate)}"
        return f"{text}, {self.failed} failed"


class _BarProgress(Progress):
    """tqdm's bar, redrawn in place, with the failures as a postfix."""

    shows = True

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._bar: Any = None

    def start(self, total: int | None) -> None:
        """Open the bar."""
        super().start(total)
        self._bar = tqdm(total=total, file=self.stream, unit="rec", dynamic_ncols=True)
        self._bar.set_postfix(failed=0, refresh=False)

    def update(self, *, failed: bool) -> None:
        """Advance the bar by one."""
        super().update(failed=failed)
        if failed:
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Draw the final state and close the bar."""
        if self._bar is not None:
            self._bar.close()


def make_progress(
    mode: ProgressMode = "auto", stream: TextIO | None = None, *, interval: float = 10.0
) -> Progress:
    """A progress display.

    Args:
        mode: ``"bar"`` (tqdm's bar), ``"log"`` (a plain line every ``interval``
            seconds), ``"off"``, or ``"auto"``: a bar when ``stream`` is a terminal, log
            lines otherwise.
        stream: Where to draw; standard error by default.
        interval: Seconds between two log lines.

    Returns:
        The display.
    """
    stream = sys.stderr if stream is None else stream
    if mode == "auto":
        isatty = getattr(stream, "isatty", None)
        mode = "bar" if isatty is not None and isatty() else "log"
    if mode == "off":
        return Progress()
    if mode == "log":
        return _LogProgress(stream, interval)
    return _BarProgress(stream)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


__all__ = ["Progress", "ProgressMode", "make_progress"]
