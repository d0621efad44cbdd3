"""The slurm role's files rendered by Ansible itself from an inventory like the one `hubvm provision` writes (the
hub and two compute nodes with their facts): slurm.conf in both limit modes (cgroup: the plugins and cgroup.conf
that real VMs use, rendered and checked here but never run: containers cannot; none: what the cluster test runs),
the NFS mount of the homes, and the filter that names the nodes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests.conftest import REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ROLE = REPO / "ansible/roles/slurm"
INVENTORY = {"all": {"children": {
    "hub": {"hosts": {"hub": {"ansible_host": "10.0.0.2", "slurm_node_name": "hub"}}},
    "compute": {"hosts": {
        "hub-node1": {"ansible_host": "10.0.0.5", "slurm_node_name": "hub-node1", "ansible_processor_vcpus": 4,
                      "ansible_memtotal_mb": 8000},
        "hub-node2": {"ansible_host": "10.0.0.6", "slurm_node_name": "hub-node2", "ansible_processor_vcpus": 2,
                      "ansible_memtotal_mb": 4000}}}}}}


def _render(root: Path) -> dict[str, dict[str, str]]:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook is not installed beside {sys.executable}")
    inventory = root / "inventory.yml"
    inventory.write_text(json.dumps(INVENTORY))
    tasks = []
    for limits in ("cgroup", "none"):
        files = {name: f"lookup('ansible.builtin.template', '{ROLE / 'templates' / name}.j2')"
                 for name in ("slurm.conf", "cgroup.conf", "home.mount")}
        entry = "{'" + limits + "': {" + ", ".join(f"'{k}': {v}" for k, v in files.items()) + "}}"
        combined = f"{{{{ rendered | default({{}}) | combine({entry}) }}}}"
        tasks.append({"name": f"Render the slurm role's files ({limits})", "vars": {"slurm_limits": limits},
                      "ansible.builtin.set_fact": {"rendered": combined}})
    tasks.append({"name": "Write them", "ansible.builtin.copy": {"content": "{{ rendered | to_json }}",
                                                                 "dest": str(root / "out.json"), "mode": "0644"}})
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "hub", "connection": "local", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")], "tasks": tasks}]))
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)], capture_output=True,
                            text=True, env={"PATH": str(ANSIBLE_PLAYBOOK.parent) + ":/usr/bin:/bin",
                                            "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
                                            "ANSIBLE_FILTER_PLUGINS": str(ROLE / "filter_plugins")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((root / "out.json").read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return _render(tmp_path_factory.mktemp("slurm"))


def test_slurm_conf_names_the_controller_and_every_node_with_its_resources(rendered: dict) -> None:
    conf = rendered["none"]["slurm.conf"]
    assert "SlurmctldHost=hub(10.0.0.2)" in conf
    assert "NodeName=hub-node1 NodeAddr=10.0.0.5 CPUs=4 RealMemory=7200 State=UNKNOWN" in conf
    assert "NodeName=hub-node2 NodeAddr=10.0.0.6 CPUs=2 RealMemory=3600 State=UNKNOWN" in conf
    assert "PartitionName=hub Nodes=hub-node1,hub-node2 Default=YES" in conf
    # a node's failure ends its jobs (the hub sees the server gone) instead of requeueing them elsewhere
    assert "JobRequeue=0" in conf and "SlurmdTimeout=30" in conf and "AuthType=auth/munge" in conf


def test_without_cgroup_limits_processes_are_tracked_by_their_parents(rendered: dict) -> None:
    conf = rendered["none"]["slurm.conf"]
    assert "ProctrackType=proctrack/linuxproc" in conf and "TaskPlugin=task/none" in conf
    assert "SelectTypeParameters=CR_Core\n" in conf and "cgroup" not in conf.replace("Slurm's cgroup plugins", "")


def test_with_cgroup_limits_memory_and_cores_are_enforced(rendered: dict) -> None:
    conf = rendered["cgroup"]["slurm.conf"]
    assert "ProctrackType=proctrack/cgroup" in conf and "TaskPlugin=task/cgroup,task/affinity" in conf
    assert "SelectTypeParameters=CR_Core_Memory" in conf
    cgroup = rendered["cgroup"]["cgroup.conf"]
    assert all(line in cgroup for line in ("ConstrainCores=yes", "ConstrainRAMSpace=yes", "CgroupPlugin=autodetect"))


def test_the_homes_are_mounted_from_the_hub_over_nfs(rendered: dict) -> None:
    unit = rendered["none"]["home.mount"]
    assert "What=10.0.0.2:/home" in unit and "Where=/home" in unit and "Type=nfs" in unit


def test_the_node_filter_reads_names_addresses_and_facts() -> None:
    spec = importlib.util.spec_from_file_location("slurm_nodes", ROLE / "filter_plugins/slurm_nodes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hostvars = {"a": {"ansible_processor_vcpus": "2", "ansible_memtotal_mb": 1000}, "b": {"slurm_node_name": "n2",
                "ansible_host": "10.0.0.9", "ansible_processor_vcpus": 8, "ansible_memtotal_mb": 16000}}
    assert module.slurm_nodes(["a", "b"], hostvars, 0.5) == [
        {"name": "a", "address": "a", "cpus": 2, "memory_mb": 500},
        {"name": "n2", "address": "10.0.0.9", "cpus": 8, "memory_mb": 8000}]
    assert module.slurm_nodes(["b"], hostvars, 0.5, facts=False) == [{"name": "n2", "address": "10.0.0.9"}]
    assert set(module.FilterModule().filters()) == {"slurm_nodes"}
    hostvars["c"] = {"slurm_node_name": "hub-node3", "ansible_host": "10.0.0.7"}  # unreachable: no facts
    with pytest.raises(AnsibleFilterError, match=r"^compute node hub-node3 \(10\.0\.0\.7\) did not answer.*"
                                                 r"start it, or take it out of cluster\.compute$"):
        module.slurm_nodes(["a", "c"], hostvars, 0.5)
