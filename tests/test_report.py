"""What a person sees: durations, tables, and step logs that go to the terminal and to builds/logs/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hubvm.report import StepLog, StepResult, duration, step_log, steps_table, table


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
