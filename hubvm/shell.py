"""How every external command runs: one wrapper over the invoke Context's `run`, and one way to open a step.

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
from typing import Any

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


def probes(c: Any, layout: Layout) -> Any:
    """The tool probes of this run: one memo per run (kept on its config), backed by the user's cache."""
    from hubvm import tools

    config = c.config
    try:
        existing = config.hubvm_probes
    except (AttributeError, KeyError):
        existing = None
    if existing is not None:
        return existing
    found = tools.Probes(lambda command: Shell(c).probe(command), tools.probes_cache(), write=not is_dry(c))
    with contextlib.suppress(AttributeError, TypeError):
        config.hubvm_probes = found  # a real attribute of HubConfig; a plain Config keeps it as a value
    return found


def require(c: Any, s: Any, layout: Layout, task: str) -> dict[str, str]:
    """What `task` needs on this host (hubvm.tools.needs), judged once per run; a gap stops the step."""
    from hubvm import tools

    return tools.require(probes(c, layout), s, tools.needs(task, s), is_dry(c))
