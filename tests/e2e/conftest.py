"""Fixtures of the end-to-end tests: stage timings printed at the end of the run, and skips with reasons."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from tests.e2e.hosts import missing_requirements


class StageClock:
    """Durations of the slow stages (mmdebstrap, boot, provisioning, ...), printed at the end of the session."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        print(f"\n==> {stage}", flush=True)
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.stages.append((stage, elapsed))
            print(f"<== {stage}: {elapsed:.1f} s", flush=True)


_CLOCK = StageClock()


@pytest.fixture(scope="session")
def stages() -> StageClock:
    return _CLOCK


@pytest.fixture(scope="session")
def nspawn_requirements() -> None:
    """Skip, with the reason, where root, systemd-nspawn, mmdebstrap or network namespaces are missing."""
    reasons = missing_requirements(nspawn=True)
    if reasons:
        pytest.skip("; ".join(reasons))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _CLOCK.stages:
        return
    terminalreporter.section("end-to-end stage durations")
    for stage, elapsed in _CLOCK.stages:
        terminalreporter.write_line(f"{elapsed:8.1f} s  {stage}")
