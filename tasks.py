"""Build a JupyterHub VM: Packer makes the base box, Vagrant boots it and Ansible provisions it, then export.

`invoke --list` shows the tasks, `invoke --help TASK` their flags. Settings: invoke.yaml (defaults), overridden by
/etc/invoke.yaml, ~/.invoke.yaml, INVOKE_* variables, `invoke -f FILE` and the flags below. The logic lives in the
hubvm package; each task here only reads its flags and calls it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, UnexpectedExit, task

from hubvm import invoke_config, steps, tools
from hubvm.errors import UserError, user_errors
from hubvm.layout import Layout
from hubvm.report import StepResult, steps_table
from hubvm.settings import Settings
from hubvm.target import parse as parse_target

invoke_config.adapt_invoke()

IP_HELP = 'host-only IP of the VM, or "dhcp" (vm.ip)'
DATA_HELP = 'host folder shared with every hub user, or "none" (vm.data)'
HOST_HELP = "any machine over SSH instead of the Vagrant VM: [user@]address[:port]"
IDENTITY_HELP = "private key file (ssh.identity); for the Vagrant VM it replaces Vagrant's key"


def settings(c: Any, ip: str | None = None, data: str | None = None) -> Settings:
    return invoke_config.load(c.config, invoke_config.flag_overrides({"ip": ip, "data": data}))


@task
@user_errors
def check(c):
    """Check this host's tools (Packer, Vagrant, Ansible, the provider), their versions, how to get them."""
    s = settings(c)
    findings = tools.probe(lambda command: steps.Shell(c).probe(command), s)
    print(f"provider {s.vm.provider}, base image {s.image.source} ({s.os_data['name']})")
    print(steps.check_table(findings))
    missing = [f.name for f in findings if not f.ok]
    if missing:
        raise UserError(f"missing or too old: {', '.join(missing)}")


@task(help={"ip": IP_HELP, "data": DATA_HELP})
@user_errors
def render(c, ip=None, data=None):
    """Write the generated files under builds/ from templates/ and the configuration; runs nothing else.

    Packer template and variables, the installer answer files, the Vagrantfile and the Ansible variables.
    """
    s = settings(c, ip, data)
    for path in steps.render_files(c, s):
        print(steps.rel(path, s))


@task(help={"force": "rebuild even when the box's inputs are unchanged"})
@user_errors
def pack(c, force=False):
    """Build the base box with Packer (skipped when a box of the same inputs exists)."""
    steps.pack(c, settings(c), force)


@task(pre=[pack], help={"ip": IP_HELP, "data": DATA_HELP, "provision": "re-provision a VM that is already up"})
@user_errors
def up(c, ip=None, data=None, provision=False):
    """Boot the VM from the box with Vagrant, provision it with Ansible, then verify it."""
    s = settings(c, ip, data)
    from hubvm import remote  # fabric and paramiko load only for the tasks that connect

    steps.up(c, s, provision)
    remote.run_verify(c, s, Layout.of(s), None, None, False)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "ip": IP_HELP, "data": DATA_HELP})
@user_errors
def provision(c, host=None, identity=None, ip=None, data=None):
    """Run the Ansible playbook on the Vagrant VM, or with --host on any Debian/Ubuntu machine over SSH."""
    s = settings(c, ip, data)
    target = None
    if host:
        target = parse_target(host, s.ssh.user, Path(identity).expanduser() if identity else s.ssh.identity)
    steps.provision(c, s, target)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "json": "print the results as JSON"})
@user_errors
def verify(c, host=None, identity=None, json=False):
    """Check the VM (or --host) over SSH: hub, kernels, packages, shared data; exits 1 if a check fails."""
    from hubvm import remote

    s = settings(c)
    remote.run_verify(c, s, Layout.of(s), host, identity, json)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "command": "run this command and exit with its status"})
@user_errors
def ssh(c, host=None, identity=None, command=None):
    """Open a shell in the VM (or --host), or run one command with -c."""
    from hubvm import remote

    s = settings(c)
    status = remote.run_ssh(c, s, Layout.of(s), host, identity, command)
    if status:
        raise Exit(code=status)


@task(pre=[up])
@user_errors
def export(c):
    """Package the provisioned VM into builds/vm/, then destroy the build VM.

    builds/vm/ gets the box, the formats of export.formats (OVF + VMDK, OVA, qcow2), SHA256SUMS and manifest.json.
    """
    steps.export(c, settings(c))


@task(help={"yes": "do not ask for confirmation"})
@user_errors
def destroy(c, yes=False):
    """Stop and delete the Vagrant VM (build.sh -c)."""
    s = settings(c)
    if not yes and not steps.is_dry(c) and steps.vm_exists(Layout.of(s)):
        if not sys.stdin.isatty():
            raise UserError("destroy asks for confirmation and there is no terminal; pass --yes")
        if input(f"Destroy the VM {s.vm.name}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UserError("not confirmed; nothing was destroyed")
    steps.destroy(c, s)


@task(name="clean", help={"all": "also remove the boxes, the exported appliance and the download cache"})
@user_errors
def clean(c, all=False):
    """Remove rendered files, logs and Vagrant's state (build.sh -r); exported artifacts only with --all."""
    s = settings(c)
    removed = steps.clean(c, s, everything=all)
    print("\n".join(f"removed {steps.rel(p, s)}" for p in removed) if removed else "nothing to remove")


@task(name="all", help={"ip": IP_HELP, "data": DATA_HELP, "force": "rebuild the box even when it is up to date"})
@user_errors
def all_(c, ip=None, data=None, force=False):
    """Run pack, up (with verify) and export once each, in order, and print a table of the steps."""
    s = settings(c, ip, data)
    layout = Layout.of(s)
    from hubvm import remote

    plan: list[tuple[str, Callable[[], StepResult | None]]] = [("pack", lambda: steps.pack(c, s, force))]
    if not force and steps.export_is_current(s):
        print("up and export: builds/vm/ is up to date (box and configuration unchanged)")
        results = [steps.pack(c, s, force)] + [StepResult(n, "skipped", 0.0, "up to date")
                                                for n in ("up", "verify", "export")]
        print(steps_table(results))
        return
    # every tool of the whole run, before the first step: not an hour into the build
    steps.require_tools(steps.Shell(c), s, tools.needed(s))
    plan += [
        ("up", lambda: steps.up(c, s)),
        ("verify", lambda: remote.run_verify(c, s, layout, None, None, False)),
        ("export", lambda: steps.export(c, s)),
    ]
    results: list[StepResult] = []
    for name, run in plan:
        started = time.monotonic()
        try:
            result = run()
        except (UserError, UnexpectedExit, KeyboardInterrupt) as error:
            results.append(StepResult(name, "failed", time.monotonic() - started, _first_line(error)))
            print(steps_table(results), file=sys.stderr)
            raise
        results.append(result or StepResult(name, "dry run" if steps.is_dry(c) else "ran",
                                            time.monotonic() - started))
    print(steps_table(results))


def _first_line(error: BaseException) -> str:
    if isinstance(error, UnexpectedExit):
        return f"{error.result.command.split()[0]} exited with {error.result.exited}"
    return (str(error) or type(error).__name__).splitlines()[0][:100]
