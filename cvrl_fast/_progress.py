"""One progress display for every long-running command: a bar on a terminal, plain lines in a log file.

    with Progress("pretrain", total=450, unit="steps") as progress:
        for step in ...:
            progress.update(step, loss=6.1, acc=0.2)

On a TTY the bar is rewritten in place (carriage return, no ANSI codes) and ends with a newline; log lines
printed while it is shown go through `Progress.write`, which clears the bar first so the two never collide.
Anywhere else (a pipe, a log file, CI) it prints one plain line at most every `every_seconds`, plus the
first and the last update, so a log holds readable lines and no control characters.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _format_fields(fields: dict) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return " ".join(parts)


class Progress:
    """Progress of `total` units of work (steps, videos, ...)."""

    def __init__(self, label: str, total: int, *, unit: str = "", stream: Optional[TextIO] = None,
                 every_seconds: float = 10.0, tty: Optional[bool] = None, width: int = 24):
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = stream if stream is not None else sys.stdout
        self.every_seconds = float(every_seconds)
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else bool(tty)
        self.width = width
        self._t0 = time.monotonic()
        self._last_line = -float("inf")
        self._shown = False  # a bar is on screen (TTY only)
        self._done = 0
        self._printed = -1  # `done` of the last plain line (non-TTY)
        self._max_len = 0  # longest bar drawn so far (TTY): shorter redraws are padded to it
        self._fields: dict = {}

    # ---- the display
    def _text(self) -> str:
        count = f"{self._done}/{self.total}" + (f" {self.unit}" if self.unit else "")
        elapsed = time.monotonic() - self._t0
        rate = ""
        if self._done and elapsed > 0:
            r = self._done / elapsed
            rate = f", {r:.0f}" if r >= 100 else f", {r:.1f}" if r >= 1 else f", {r:.2f}"
            rate += f" {self.unit or 'it'}/s"
        fields = _format_fields(self._fields)
        return f"{self.label}: {count}{rate}" + (f", {fields}" if fields else "")

    def _bar(self) -> str:
        frac = self._done / self.total if self.total else 1.0
        filled = int(round(self.width * min(1.0, frac)))
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {self._text()}"

    def update(self, done: int, **fields) -> None:
        """`done` units finished so far; `fields` (name -> value) are shown after the count."""
        self._done = int(done)
        if fields:
            self._fields = fields
        finished = bool(self.total) and self._done >= self.total
        if self.tty:
            self._draw()
            if finished:
                self.stream.write("\n")
                self._shown = False
            self.stream.flush()
            return
        now = time.monotonic()
        if finished or self._printed < 0 or now - self._last_line >= self.every_seconds:
            self._line(now)

    def _draw(self) -> None:
        bar = self._bar()
        self._max_len = max(self._max_len, len(bar))
        self.stream.write("\r" + bar.ljust(self._max_len))
        self._shown = True

    def _line(self, now: float) -> None:
        self.stream.write(self._text() + "\n")
        self.stream.flush()
        self._last_line, self._printed = now, self._done

    def write(self, line: str) -> None:
        """Print one log line without breaking the bar (it is redrawn below the line)."""
        if self.tty and self._shown:
            self.stream.write("\r" + " " * self._max_len + "\r")
        self.stream.write(line.rstrip("\n") + "\n")
        if self.tty and self._shown:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        """Ends the display: a TTY bar gets its newline; a log gets the last state if not yet printed."""
        if self.tty:
            if self._shown:
                self.stream.write("\n")
                self._shown = False
                self.stream.flush()
        elif self._done != self._printed and self._done > 0:  # nothing done: nothing to report
            self._line(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
