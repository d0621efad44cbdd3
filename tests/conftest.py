"""Fixtures shared by the unit tests: a private copy of the project, the real `hubvm` command run in it (as a
process, or in this process for the many-cases tests), and settings made from invoke.yaml plus overrides."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What a project copy needs to run the tasks (builds/ starts empty but for its README)
PROJECT_PARTS = ["tasks.py", "invoke.yaml", "hubvm", "http", "templates", "ansible", "config", "data",
                 "builds/README.md"]
HUBVM = str(Path(sys.executable).parent / "hubvm")
INVOKE = str(Path(sys.executable).parent / "invoke")  # plain invoke, which hands over to hubvm
# A guard against a command that hangs, not a time limit: a test never fails for being slow on a loaded machine
HANG_GUARD = 1800


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


@pytest.fixture(scope="session")
def probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of tool probes for the whole session (the tools do not change while the tests run)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture
def cli(project: Path, home: Path, probe_cache: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `hubvm` command in the project copy; INVOKE_* variables of the caller are dropped."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: str = "",
            binary: str = HUBVM) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        environment.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", XDG_CACHE_HOME=str(probe_cache),
                           **(env or {}))
        return subprocess.run([binary, *args], cwd=project, env=environment, capture_output=True, text=True,
                              input=stdin, timeout=HANG_GUARD)

    return run


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_in_process(project: Path, home: Path, args: list[str], env: dict[str, str] | None = None,
                   system_prefix: str | None = None) -> Outcome:
    """The hubvm program in this process (the same code path as the command, without a new interpreter: about
    100 times faster, for the tests that try many inputs). INVOKE_* variables are exactly `env`."""
    import contextlib
    import io

    from hubvm import program

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        for name in [n for n in os.environ if n.startswith("INVOKE_")]:
            del os.environ[name]
        os.environ.update(HOME=str(home), **(env or {}))
        prog = program.program(project, system_prefix=system_prefix)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                prog.run(["hubvm", *args])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Outcome(code, out.getvalue(), err.getvalue())


def settings_with(project: Path = REPO, **overrides: object):  # type: ignore[no-untyped-def]
    """Settings from the project's invoke.yaml with dotted overrides, as if from a -f file:
    settings_with(**{"vm.ip": "dhcp"})."""
    from hubvm.config import settings
    from hubvm.config.layers import Layers, defaults_layer, file_layer

    nested: dict[str, dict[str, object]] = {}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    layers = Layers((defaults_layer(project), file_layer(nested, "overrides", shared=False)), project)
    return settings.parse(layers)


def tree_digest(root: Path) -> str:
    """A digest of every file name and content below root (to prove that nothing changed)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# The longest files first, so that pytest-xdist's workers (one file each at a time) finish together: the
# end-to-end modules (the longest first, as measured here), then the real-tool validators, then the rest in their
# order. Files are named by their path below tests/ (the same file name may exist in two folders).
LONGEST_FIRST = ("e2e/test_native.py", "e2e/test_cluster.py", "e2e/test_backup.py", "e2e/test_provision.py",
                 "e2e/test_fresh_machine.py", "e2e/test_tljh_flavour.py", "e2e/test_publish.py", "e2e/test_verify.py",
                 "test_render_with_real_tools.py")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.resolve().relative_to(TESTS).as_posix()
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


# How long each marked group of tests took (setup, call and teardown of its tests), printed after the run.
TIMED_MARKERS = ("validators", "e2e")
_group_seconds: dict[str, float] = {}
_group_tests: dict[str, set[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for marker in TIMED_MARKERS:
        if marker in report.keywords:
            _group_seconds[marker] = _group_seconds.get(marker, 0.0) + report.duration
            _group_tests.setdefault(marker, set()).add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    properties = sys.modules.get("tests.config.test_properties")
    if output is not None and properties is not None:  # a pytest-xdist worker: its counts go to the controller
        output["hubvm_examples"] = dict(properties.EXAMPLES)


_WORKER_EXAMPLES: dict[str, int] = {}
_WORKER_STAGES: list[tuple[str, float]] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """The controller of a pytest-xdist run: what each worker counted and timed."""
    output = getattr(node, "workeroutput", {})
    for name, count in output.get("hubvm_examples", {}).items():
        _WORKER_EXAMPLES[name] = _WORKER_EXAMPLES.get(name, 0) + count
    _WORKER_STAGES.extend((str(stage), float(seconds)) for stage, seconds in output.get("hubvm_stages", []))


def pytest_terminal_summary(terminalreporter) -> None:
    for marker, seconds in _group_seconds.items():
        terminalreporter.write_line(f"{marker} group: {len(_group_tests[marker])} tests in {seconds:.1f} s")
    e2e = sys.modules.get("tests.e2e.conftest")
    stages = _WORKER_STAGES or (list(e2e._CLOCK.stages) if e2e is not None else [])
    if stages:
        terminalreporter.section("end-to-end stage durations")
        for stage, elapsed in stages:
            terminalreporter.write_line(f"{elapsed:8.1f} s  {stage}")
    properties = sys.modules.get("tests.config.test_properties")
    examples = dict(_WORKER_EXAMPLES) or (dict(properties.EXAMPLES) if properties is not None else {})
    if examples:
        counts = ", ".join(f"{name} {count}" for name, count in examples.items())
        terminalreporter.write_line(f"property examples: {sum(examples.values())} ({counts})")
