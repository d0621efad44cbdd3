"""`all`: pack, up (with verify) and export, each once and in order, and a table of what each did."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import UnexpectedExit

from hubvm import pack, remote, tools, vagrant
from hubvm.errors import UserError
from hubvm.export import export, export_is_current
from hubvm.layout import Layout
from hubvm.report import StepResult, steps_table
from hubvm.settings import Settings
from hubvm.shell import is_dry, probes, rel


def all_steps(c: Any, s: Settings, force: bool = False) -> None:
    layout = Layout.of(s)
    if not force and export_is_current(s):
        print("up and export: builds/vm/ is up to date (box and configuration unchanged)")
        results = [pack.pack(c, s, force)] + [StepResult(n, "skipped", 0.0, "up to date")
                                              for n in ("up", "verify", "export")]
        print(steps_table(results))
        return
    # every need of the whole run, before the first step: not an hour into the build
    tools.require(probes(c, layout), s, tools.needs("all", s), is_dry(c))
    plan: list[tuple[str, Callable[[], StepResult | None]]] = [
        ("pack", lambda: pack.pack(c, s, force)),
        ("up", lambda: vagrant.up(c, s)),
        ("verify", lambda: remote.run_verify(c, s, None, None, False)),
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


def publish_export(c: Any, s: Settings, replace: bool = False) -> StepResult:
    """`publish`: builds/vm/'s qcow2 to the configured cloud's image service (hubvm.publish); when builds/vm/ is not
    the export of the current box and configuration, pack, up, verify and export run first (as `all`)."""

    from hubvm import publish
    from hubvm.shell import step

    layout = Layout.of(s)
    if "qcow2" not in s.export.formats:
        raise UserError(f"publish uploads the qcow2, and export.formats = {list(s.export.formats)} makes none; "
                        "add qcow2 to export.formats")
    if not export_is_current(s):
        print("publish: builds/vm/ is not the export of the current box and configuration: pack, up, verify and "
              "export first")
        all_steps(c, s)
    with step(c, "publish", layout) as sh:
        qcow2 = layout.artifact(f"{s.vm.name}.qcow2")
        try:
            facts = publish.read_export(layout.vm_dir, s.vm.name)
        except UserError:
            if not sh.dry:
                raise
            sh.say(f"[dry run] publish would upload {rel(qcow2, s.project_dir)} once the export has made it")
            return StepResult("publish", "dry run", sh.log.elapsed())
        request = publish.request_for_export(
            facts, cloud=s.publish.cloud or None, image_name=s.publish.image_name,
            disk_format=s.publish.disk_format, visibility=s.publish.visibility, tags=s.publish.tags,
            properties=s.publish.properties, min_disk_gb=s.publish.min_disk_gb, min_ram_mb=s.publish.min_ram_mb,
            disk_bus=s.publish.disk_bus, replace=replace,
            qemu_img=tools.command(s, "qemu_img"), raw_file=layout.publish_dir / f"{s.vm.name}.raw")
        request = replace_timeout(request, s.publish.active_timeout)
        if sh.dry:
            for line in publish.plan(request):
                sh.say(f"[dry run] publish would {line}")
            return StepResult("publish", "dry run", sh.log.elapsed())
        if request.converts:
            layout.publish_dir.mkdir(parents=True, exist_ok=True)
        result = publish.publish(request, run=lambda command: sh.run(command), say=sh.say)
        detail = (f"{result.image_id} skipped (same digest)" if result.status == "skipped" else
                  f"image {result.image_id}, {publish.human_bytes(result.bytes)} at "
                  f"{publish.human_bytes(result.rate)}/s")
        return StepResult("publish", result.status, sh.log.elapsed(), detail)


def replace_timeout(request: Any, seconds: int) -> Any:
    import dataclasses

    return dataclasses.replace(request, active_timeout=seconds)
