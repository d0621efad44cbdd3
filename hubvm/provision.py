"""provision: the playbook alone, on the Vagrant VM or on any Debian/Ubuntu machine over SSH (same variables); with
hub.spawner slurm, on the hub and its cluster's compute nodes in one run.

Over SSH the playbook reads an inventory hubvm writes (builds/ansible/inventory.yml): the group hub (the target)
and the group compute (cluster.compute, each node named <vm.hostname>-node<N>: its host name, and its NodeName in
slurm.conf). Every machine is reached with the target's key; a node's own user and port come from its entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hubvm import render
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.host.probes import require_task
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.shell import q, rel, step
from hubvm.verify.target import Target, parse, ssh_options
from hubvm.vm.vagrant import ansible_config, vagrant_env


def node_names(s: Settings) -> list[str]:
    """The compute nodes' names, in the order of cluster.compute."""
    return [f"{s.vm.hostname}-node{n}" for n in range(1, len(s.cluster.compute) + 1)]


def compute_targets(s: Settings, hub: Target) -> list[Target]:
    """The compute nodes as SSH targets: their own user and port, the hub target's key."""
    return [parse(spec, hub.user, hub.identity) for spec in s.cluster.compute]


def _host(target: Target, **more: str) -> dict[str, Any]:
    variables: dict[str, Any] = {"ansible_host": target.host, "ansible_port": target.port,
                                 "ansible_user": target.user, "ansible_become": target.user != "root", **more}
    if target.identity is not None:
        variables["ansible_ssh_private_key_file"] = str(target.identity)
    return variables


def inventory(s: Settings, hub: Target) -> dict[str, Any]:
    """The playbook's inventory: the hub and, on a cluster, its compute nodes (see the module doc)."""
    if s.hub.spawner != "slurm":
        hubs = {hub.host: _host(hub)}
        computes: dict[str, Any] = {}
    else:
        hubs = {s.vm.hostname: _host(hub, slurm_node_name=s.vm.hostname, base_node_name=s.vm.hostname)}
        computes = {name: _host(node, slurm_node_name=name, base_node_name=name)
                    for name, node in zip(node_names(s), compute_targets(s, hub), strict=True)}
    return {"all": {"children": {"hub": {"hosts": hubs}, "compute": {"hosts": computes}}}}


def write_inventory(layout: Layout, s: Settings, hub: Target) -> Path:
    """builds/ansible/inventory.yml (JSON is YAML: Ansible's YAML inventory reads it)."""
    path = layout.ansible_inventory
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inventory(s, hub), indent=2) + "\n")
    return path


def ansible_command(s: Settings, layout: Layout, tags: Iterable[str] = ()) -> str:
    """ansible-playbook with hubvm's inventory (write_inventory) and the same variables file Vagrant passes."""
    ssh_args = " ".join(ssh_options(layout.known_hosts, s.ssh.connect_timeout))
    parts = [q(tools.command(s, "ansible_playbook")), "-i", q(rel(layout.ansible_inventory, s.project_dir)),
             "-e", q(f"@{rel(layout.ansible_vars, s.project_dir)}"), "--ssh-common-args", q(ssh_args)]
    if tags:
        parts += ["--tags", q(",".join(tags))]
    parts.append("ansible/playbook.yml")
    return " ".join(parts)


def provision(c: Any, s: Settings, target: Target | None) -> StepResult:
    """Run the playbook: on the Vagrant VM (`vagrant provision`), or over SSH on a machine (and its cluster)."""
    layout = Layout.of(s)
    if target is None and s.cluster.compute:
        raise UserError(f"cluster.compute = {list(s.cluster.compute)}: a cluster is provisioned over SSH; run "
                        "hubvm provision --host HUB (the hub's address) --identity KEY")
    require_task(c, s, "provision" if target else "provision-vagrant")
    with step(c, "provision", layout) as sh:
        render.render_files(sh, s)
        if target is None:
            sh.run(f"{q(tools.command(s, 'vagrant'))} provision --provision-with ansible", cwd=layout.vagrant_dir,
                   env=vagrant_env(s))
        else:
            if sh.dry:
                machines = 1 + len(s.cluster.compute) if s.hub.spawner == "slurm" else 1
                sh.say(f"[dry run] would write {rel(layout.ansible_inventory, s.project_dir)} ({machines} machines)")
            else:
                layout.known_hosts.parent.mkdir(parents=True, exist_ok=True)
                write_inventory(layout, s, target)
            sh.run(ansible_command(s, layout), cwd=s.project_dir, env={"ANSIBLE_CONFIG": str(ansible_config(s))})
        machines = f" and {len(s.cluster.compute)} compute nodes" if target and s.cluster.compute else ""
        return StepResult("provision", "dry run" if sh.dry else "ran", sh.log.elapsed(),
                          f"{target or 'vagrant VM'}{machines}")
