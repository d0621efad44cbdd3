"""Fixtures shared by the unit tests: a private copy of the project, and the real `invoke` binary run in it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What a project copy needs to run the tasks (builds/ starts empty but for its README)
PROJECT_PARTS = ["tasks.py", "invoke.yaml", "hubvm", "templates", "http", "ansible", "config", "data",
                 "builds/README.md"]
INVOKE = str(Path(sys.executable).parent / "invoke")


def copy_project(root: Path) -> Path:
    """Copy what the tasks need (PROJECT_PARTS) from the repository to root; returns root."""
    for part in PROJECT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / part)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project in a temporary folder, so tests may render, write stamps and break things."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.invoke.yaml of the person running the tests leaks in."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def invoke(project: Path, home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real invoke binary in the project copy; INVOKE_* variables of the caller are dropped."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        environment.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
        return subprocess.run([INVOKE, *args], cwd=project, env=environment, capture_output=True, text=True,
                              input=stdin, timeout=120)

    return run


def tree_digest(root: Path) -> str:
    """A digest of every file name and content below root (to prove that nothing changed)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# How long each marked group of tests took (setup, call and teardown of its tests), printed after the run.
TIMED_MARKERS = ("validators", "e2e")
_group_seconds: dict[str, float] = {}
_group_tests: dict[str, set[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for marker in TIMED_MARKERS:
        if marker in report.keywords:
            _group_seconds[marker] = _group_seconds.get(marker, 0.0) + report.duration
            _group_tests.setdefault(marker, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    for marker, seconds in _group_seconds.items():
        terminalreporter.write_line(f"{marker} group: {len(_group_tests[marker])} tests in {seconds:.1f} s")
