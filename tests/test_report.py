"""What a person sees: durations, tables, and step logs that go to the terminal and to builds/logs/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hubvm.report import Progress, StepLog, StepResult, duration, step_log, steps_table, table


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0s"), (9.5, "9.5s"), (61, "1m01s"), (3725, "1h02m05s")])
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_tables_are_as_wide_as_their_widest_cell() -> None:
    assert table(["a", "bb"], [("xxx", 1), ("y", 22)]).splitlines() == ["a    bb", "---  --", "xxx  1", "y    22"]
    assert steps_table([StepResult("pack", "skipped", 0.0, "up to date")]).splitlines()[-1] == \
        "pack  skipped  0.0s      up to date"


def test_a_step_log_streams_to_the_terminal_and_its_file_and_ends_with_the_duration(tmp_path: Path) -> None:
    terminal = io.StringIO()
    log = StepLog("up", tmp_path / "logs" / "up.log", terminal).open()
    log.say("hello")
    log.close("done")
    written = (tmp_path / "logs" / "up.log").read_text().splitlines()
    assert written == terminal.getvalue().splitlines()
    assert written[0].startswith("==> up: ") and written[1] == "hello"
    assert written[-1].startswith("<== up: done in ")


def test_a_failing_step_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), step_log("pack", tmp_path / "pack.log"):
        raise RuntimeError("boom")
    assert (tmp_path / "pack.log").read_text().splitlines()[-1].startswith("<== pack: failed in ")


def test_a_line_redrawn_with_carriage_returns_is_logged_once_as_last_drawn(tmp_path: Path) -> None:
    terminal = io.StringIO()
    log = StepLog("export", tmp_path / "export.log", terminal).open()
    progress = "".join(f"\r\x1b[KProgress: {n}%" for n in range(100))
    log.out.write(f"==> Packaging domain...\n{progress}")
    log.out.flush()  # a redrawn line in flight is held, not written at each flush
    log.out.write("\r\x1b[K==> Compressing package\r\ncrlf line\r\na prompt: ")
    log.out.flush()  # an unfinished line that is not redrawn is written at flush
    assert (tmp_path / "export.log").read_text().endswith("a prompt: ")
    log.out.write("yes\n")
    log.close("done")
    assert terminal.getvalue().count("Progress:") == 100  # the terminal shows the progress as it goes
    lines = (tmp_path / "export.log").read_text().splitlines()
    assert lines[1:5] == ["==> Packaging domain...", "==> Compressing package", "crlf line", "a prompt: yes"]
    assert lines[-1].startswith("<== export: done in ")


def test_progress_says_bytes_rate_and_time_left_every_few_seconds_then_the_duration() -> None:
    now = [100.0]
    lines: list[str] = []
    progress = Progress(1000 << 20, lines.append, "publish", "uploaded", every=5.0, clock=lambda: now[0])
    for second, sent_mib in [(1, 100), (4.9, 400), (5.0, 500), (7, 700), (10.5, 900), (12.5, 1000)]:
        now[0] = 100.0 + second
        progress.update(sent_mib << 20)
    assert lines == ["publish: 500.0 MiB of 1000.0 MiB (50%), 100.0 MiB/s, about 5.0s left",
                     "publish: 900.0 MiB of 1000.0 MiB (90%), 85.7 MiB/s, about 1.2s left"]
    assert progress.summary(1000 << 20) == "publish: uploaded 1000.0 MiB in 12.5s (80.0 MiB/s)"
    assert progress.elapsed == 12.5


def test_progress_without_a_total_says_bytes_and_rate() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(None, lines.append, "backup", "received", every=5.0, clock=lambda: now[0])
    now[0] = 5.0
    progress.update(50 << 20)
    assert lines == ["backup: 50.0 MiB, 10.0 MiB/s"]
    now[0] = 8.0
    assert progress.summary(64 << 20) == "backup: received 64.0 MiB in 8.0s (8.0 MiB/s)"
