"""How every external command runs: one wrapper over the invoke Context's `run` (`Shell`, and the `Runner`
protocol that says what code running commands needs of it), one way to open a step, one way to quote a word.

Every command goes through `Shell.run`, so `hubvm --dry` prints it without running it, MockContext tests see the
sequence, and a step's output streams to the terminal and to builds/logs/<step>.log. Read-only queries (a
version, a list) go through `Shell.probe`, which runs even under --dry so that a dry run prints the plan this
machine would really follow. Under --dry nothing is written or deleted.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubvm.layout import Layout
from hubvm.report import StepLog, step_log


def is_dry(c: Any) -> bool:
    return bool(c.config.run.dry)


def q(value: Path | str) -> str:
    """A word of a shell command line, quoted when it needs to be."""
    return shlex.quote(str(value))


def rel(path: Path, project_dir: Path) -> str:
    """A path as printed in commands: relative to the project when inside it (shorter, and what people type)."""
    try:
        return str(path.relative_to(project_dir))
    except ValueError:
        return str(path)


class Runner(Protocol):
    """What code that runs commands needs: `Shell`, or a stand-in in a test."""

    @property
    def dry(self) -> bool: ...

    def run(self, command: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            **kwargs: Any) -> Any: ...

    def probe(self, command: str, cwd: Path | None = None) -> Any: ...

    def say(self, message: str) -> None: ...


@dataclass
class Shell:
    """Runs commands for one step: echoed, streamed to the step's log, in a folder, with extra environment."""

    c: Any
    log: StepLog | None = None

    @property
    def dry(self) -> bool:
        return is_dry(self.c)

    def run(self, command: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            **kwargs: Any) -> Any:
        options: dict[str, Any] = {"echo": True, "env": dict(env or {}), "pty": False}
        if self.log is not None:
            options.update(out_stream=self.log.out, err_stream=self.log.err)
        options.update(kwargs)
        if cwd is not None:  # spelled out (not c.cd) so that dry runs and MockContext show it
            command = f"cd {q(cwd)} && {command}"
        if self.log is not None and options.get("echo") and not options.get("hide"):
            self.log.record(f"$ {command}")  # invoke echoes to the terminal only
        return self.c.run(command, **options)

    def probe(self, command: str, cwd: Path | None = None) -> Any:
        """A read-only query (a version, a list): it runs even under --dry, quietly, and may fail."""
        return self.run(command, cwd=cwd, dry=False, hide=True, warn=True, echo=False, in_stream=False,
                        out_stream=None, err_stream=None)

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log.say(message)
        else:
            print(message, flush=True)


@contextlib.contextmanager
def step(c: Any, name: str, layout: Layout) -> Iterator[Shell]:
    """A step's Shell: its output to the terminal and (unless dry) builds/logs/<name>.log, its duration at the end."""
    sh = Shell(c)
    with step_log(name, None if sh.dry else layout.log(name)) as log:
        sh.log = log
        yield sh
