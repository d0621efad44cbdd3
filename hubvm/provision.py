"""provision: the playbook alone, on the Vagrant VM or on any Debian/Ubuntu machine over SSH (same variables)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hubvm import render
from hubvm.config.settings import Settings
from hubvm.host import tools
from hubvm.host.probes import require_task
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.shell import q, rel, step
from hubvm.verify.target import Target, ssh_options
from hubvm.vm.vagrant import ansible_config, vagrant_env


def ansible_command(s: Settings, layout: Layout, target: Target, tags: Iterable[str] = ()) -> str:
    """ansible-playbook against one SSH target, with the same variables file Vagrant passes."""
    ssh_args = " ".join(ssh_options(layout.known_hosts, s.ssh.connect_timeout))
    parts = [q(tools.command(s, "ansible_playbook")), "-i", q(f"{target.host},"), "-u", q(target.user),
             "-e", q(f"ansible_port={target.port}"), "-e", q(f"@{rel(layout.ansible_vars, s.project_dir)}"),
             "--ssh-common-args", q(ssh_args)]
    if target.identity is not None:
        parts += ["--private-key", q(target.identity)]
    if target.user != "root":
        parts += ["--become"]
    if tags:
        parts += ["--tags", q(",".join(tags))]
    parts.append("ansible/playbook.yml")
    return " ".join(parts)


def provision(c: Any, s: Settings, target: Target | None) -> StepResult:
    """Run the playbook: on the Vagrant VM (`vagrant provision`), or on any machine over SSH."""
    layout = Layout.of(s)
    require_task(c, s, "provision" if target else "provision-vagrant")
    with step(c, "provision", layout) as sh:
        render.render_files(sh, s)
        if target is None:
            sh.run(f"{q(tools.command(s, 'vagrant'))} provision --provision-with ansible", cwd=layout.vagrant_dir,
                   env=vagrant_env(s))
        else:
            if not sh.dry:
                layout.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            sh.run(ansible_command(s, layout, target), cwd=s.project_dir,
                   env={"ANSIBLE_CONFIG": str(ansible_config(s))})
        return StepResult("provision", "dry run" if sh.dry else "ran", sh.log.elapsed(),
                          str(target or "vagrant VM"))
