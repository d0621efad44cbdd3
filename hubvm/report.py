"""What a person sees: step logs that stream to the terminal and to builds/logs/<step>.log, durations, tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO


class Tee:
    """A text stream that writes to several streams (the terminal and a log file)."""

    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


class FinalLines:
    """A log file's stream that keeps what a terminal would show in the end: a line redrawn with carriage returns
    (vagrant package's "Progress: 1%", 2%, ...) is written once, as last drawn, without the erase-line codes.
    A line still being redrawn is held until it ends; any other unfinished line is written at flush."""

    ERASE_LINE = "\x1b[K"

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.pending = ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            self.file.write(self._last_drawn(line) + "\n")
        return len(text)

    def _last_drawn(self, line: str) -> str:
        return line.rstrip("\r").rsplit("\r", 1)[-1].replace(self.ERASE_LINE, "")

    def flush(self) -> None:
        if self.pending and "\r" not in self.pending:
            self.file.write(self.pending)
            self.pending = ""
        self.file.flush()

    def close(self) -> None:
        if self.pending:
            self.file.write(self._last_drawn(self.pending) + "\n")
            self.pending = ""
        self.file.close()


@dataclass
class StepResult:
    name: str
    status: str            # ran | skipped | failed | dry run
    seconds: float
    detail: str = ""


def human_bytes(count: float) -> str:
    """1536 -> "1.5 KiB": sizes as the tool prints them (artifacts, uploads, archives)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with columns as wide as their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def steps_table(results: Sequence[StepResult]) -> str:
    return table(["step", "status", "duration", "detail"],
                 [(r.name, r.status, duration(r.seconds), r.detail) for r in results])


class Progress:
    """A progress line at most every `every` seconds: bytes moved, rate and (with a known total) time left; then the
    total and the duration. `label` starts each line (publish, backup, restore), `verb` says what was done."""

    def __init__(self, total: int | None, say: Callable[[str], None], label: str, verb: str,
                 every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.say, self.label, self.verb, self.every, self.clock = total, say, label, verb, every, clock
        self.started = self.last = clock()
        self.elapsed = 0.0   # the duration, once summary() has said it

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.last < self.every or (self.total is not None and done >= self.total):
            return
        self.last = now
        self.say(self.line(done, now - self.started))

    def line(self, done: int, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.label}: {human_bytes(done)}, {human_bytes(rate)}/s"
        percent = 100 * done // self.total if self.total else 100
        left = f", about {duration((self.total - done) / rate)} left" if rate > 0 else ""
        return (f"{self.label}: {human_bytes(done)} of {human_bytes(self.total)} ({percent}%), "
                f"{human_bytes(rate)}/s{left}")

    def summary(self, done: int) -> str:
        self.elapsed = elapsed = self.clock() - self.started
        rate = f" ({human_bytes(done / elapsed)}/s)" if elapsed > 0 else ""
        return f"{self.label}: {self.verb} {human_bytes(done)} in {duration(elapsed)}{rate}"


class StepLog:
    """Streams of one step: the terminal and, unless dry, builds/logs/<step>.log."""

    def __init__(self, name: str, log_path: Path | None, out: TextIO | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.terminal = out or sys.stdout
        self.file: FinalLines | None = None
        self.started = time.monotonic()

    def open(self) -> StepLog:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.file = FinalLines(self.log_path.open("a"))
        self.say(f"==> {self.name}: {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return self

    @property
    def out(self) -> IO[str]:
        return Tee(self.terminal, self.file) if self.file else self.terminal  # type: ignore[return-value]

    @property
    def err(self) -> IO[str]:
        return Tee(sys.stderr, self.file) if self.file else sys.stderr  # type: ignore[return-value]

    def say(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()

    def record(self, line: str) -> None:
        """A line for the log file only (what the terminal already shows otherwise)."""
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self, status: str) -> None:
        self.say(f"<== {self.name}: {status} in {duration(self.elapsed())}")
        if self.file is not None:
            self.file.close()
            self.file = None


@contextmanager
def step_log(name: str, log_path: Path | None) -> Iterator[StepLog]:
    log = StepLog(name, log_path).open()
    try:
        yield log
    except BaseException:
        log.close("failed")
        raise
    else:
        log.close("done")
