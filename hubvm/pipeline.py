"""The pipeline of `all`: pack, up (with verify) and export, each once and in order, and a table of what each did;
and the export step of either build mode (build.mode vm: hubvm.vm.export; native: hubvm.native.build), skipped
when builds/vm/ is the export of the current inputs."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import UnexpectedExit

from hubvm import digests
from hubvm.artifacts import artifact_paths
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host.probes import probes_of, require
from hubvm.host.tools import needs
from hubvm.layout import Layout
from hubvm.native import build as native
from hubvm.report import StepResult, steps_table
from hubvm.shell import is_dry, rel
from hubvm.verify.run import run_verify
from hubvm.vm import export as vm_export
from hubvm.vm import pack, vagrant


def export_digest(s: Settings) -> str:
    """What the export of this configuration is made of, in its build mode."""
    if s.build.mode == "native":
        return native.inputs_digest(s)
    return digests.export_digest(s, digests.box_digest(s))


def export_is_current(s: Settings) -> bool:
    """builds/vm/ was exported from the current inputs, and all its artifacts are there."""
    layout = Layout.of(s)
    return digests.read(layout.export_stamp) == export_digest(s) and all(p.exists() for p in artifact_paths(s, layout))


def export(c: Any, s: Settings) -> StepResult:
    """The export step: the VM made clone-safe and packaged (build.mode vm), or the native build; skipped when
    builds/vm/ is already the export of the current inputs."""
    if export_is_current(s):
        print(f"export: {rel(Layout.of(s).vm_dir, s.project_dir)} is up to date (its inputs are unchanged)")
        return StepResult("export", "skipped", 0.0, "up to date")
    return native.export_native(c, s) if s.build.mode == "native" else vm_export.export(c, s)


def all_steps(c: Any, s: Settings, force: bool = False) -> None:
    layout = Layout.of(s)
    if not force and export_is_current(s):
        print("up and export: builds/vm/ is up to date (box and configuration unchanged)")
        results = [pack.pack(c, s, force)] + [StepResult(n, "skipped", 0.0, "up to date")
                                              for n in ("up", "verify", "export")]
        print(steps_table(results))
        return
    # every need of the whole run, before the first step: not an hour into the build
    require(probes_of(c), s, needs("all", s), is_dry(c))
    plan: list[tuple[str, Callable[[], StepResult | None]]] = [
        ("pack", lambda: pack.pack(c, s, force)),
        ("up", lambda: vagrant.up(c, s)),
        ("verify", lambda: run_verify(c, s, None, None, False)),
        ("export", lambda: export(c, s)),
    ]
    if s.build.mode == "native":  # one step: the tree, its provisioning, the disk, and verify on a boot of it
        plan = [("export", lambda: export(c, s))]
    results: list[StepResult] = []
    for name, run in plan:
        started = time.monotonic()
        try:
            result = run()
        except (UserError, UnexpectedExit, KeyboardInterrupt) as error:
            results.append(StepResult(name, "failed", time.monotonic() - started, failure_line(error, layout, name)))
            print(steps_table(results), file=sys.stderr)
            raise
        results.append(result or StepResult(name, "dry run" if is_dry(c) else "ran", time.monotonic() - started))
    print(steps_table(results))


def failed_command(command: str) -> str:
    """The program (and its subcommand) a failed command line ran: `cd X && vagrant up --provider=libvirt` ->
    `vagrant up`; `FOO=1 timeout 600 qemu-img convert ...` -> `qemu-img convert`."""
    line = command.split(" && ")[-1]
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    while words and (("=" in words[0] and not words[0].startswith("-")) or words[0] in ("timeout", "env", "sudo")):
        words.pop(0)
        if words and words[0].replace(".", "").isdigit():
            words.pop(0)  # timeout's duration
    if not words:
        return command.split()[0] if command.split() else "a command"
    program = Path(words[0]).name
    if len(words) > 1 and not words[1].startswith("-") and "/" not in words[1] and "." not in words[1]:
        return f"{program} {words[1]}"
    return program


def failure_line(error: BaseException, layout: Layout, step: str) -> str:
    if isinstance(error, UnexpectedExit):
        return f"{failed_command(error.result.command)} exited with {error.result.exited}; see {layout.log(step)}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return (str(error) or type(error).__name__).splitlines()[0][:160]
