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
    if output is not None:  # a pytest-xdist worker: its stages go to the controller (tests/conftest.py prints them)
        output["hubvm_stages"] = list(_CLOCK.stages)
