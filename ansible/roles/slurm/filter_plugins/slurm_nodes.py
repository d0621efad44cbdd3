"""Filters of the slurm role: the cluster's machines as slurm.conf and /etc/hosts name them.

    slurm_nodes: "{{ groups['compute'] | slurm_nodes(hostvars, 0.9) }}"

Each inventory host becomes {name, address, cpus, memory_mb}: its name is the host variable slurm_node_name (the
host name the playbook gives the machine: slurmd and slurmctld check it), else the inventory name; its address
ansible_host, else the inventory name; its CPUs and memory come from its facts (the memory's given share, for the
jobs), unless facts=False. A compute node without facts (it did not answer this run) is an error naming it: slurm.conf
cannot describe a node it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def slurm_nodes(hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]], memory_share: float,
                facts: bool = True) -> list[dict[str, Any]]:
    nodes = []
    for host in hosts:
        variables = hostvars[host]
        node = {"name": variables.get("slurm_node_name") or host, "address": variables.get("ansible_host") or host}
        if facts:
            if "ansible_processor_vcpus" not in variables or "ansible_memtotal_mb" not in variables:
                raise AnsibleFilterError(
                    f"compute node {node['name']} ({node['address']}) did not answer, so its cores and memory are "
                    "unknown: start it, or take it out of cluster.compute")
            node["cpus"] = int(variables["ansible_processor_vcpus"])
            node["memory_mb"] = int(int(variables["ansible_memtotal_mb"]) * float(memory_share))
        nodes.append(node)
    return nodes


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"slurm_nodes": slurm_nodes}
