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


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: its stages go to the controller (pytest_testnodedown)
        output["hubvm_stages"] = list(_CLOCK.stages)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """The controller of a pytest-xdist run: the stages each worker timed."""
    _CLOCK.stages += [tuple(stage) for stage in getattr(node, "workeroutput", {}).get("hubvm_stages", [])]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _CLOCK.stages:
        return
    terminalreporter.section("end-to-end stage durations")
    for stage, elapsed in _CLOCK.stages:
        terminalreporter.write_line(f"{elapsed:8.1f} s  {stage}")
