"""provision: the same playbook and variables on the Vagrant VM or any host over SSH (MockContext)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubvm.errors import UserError
from hubvm.provision import inventory, provision
from hubvm.verify.target import Target
from tests.mockshell import bin_dir, commands, context, make_settings

__all__ = ["bin_dir"]  # a fixture



def test_provision_of_a_host_runs_the_same_playbook_and_variables(project: Path, bin_dir: Path,
                                                                  tmp_path: Path) -> None:
    s = make_settings(project, bin_dir)
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    c = context(bin_dir)
    provision(c, s, Target("10.0.0.2", "root", 2200, key))
    [command] = commands(c, bin_dir)
    known_hosts = project / "builds" / "ssh" / "known_hosts"
    assert command == (
        f"cd {project} && ansible-playbook -i builds/ansible/inventory.yml -e @builds/ansible/vars.yml "
        f"--ssh-common-args '-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
        f"-o HashKnownHosts=no -o ConnectTimeout=10 -o ServerAliveInterval=30' ansible/playbook.yml")
    groups = json.loads((project / "builds" / "ansible" / "inventory.yml").read_text())["all"]["children"]
    assert groups == {"hub": {"hosts": {"10.0.0.2": {"ansible_host": "10.0.0.2", "ansible_port": 2200,
                                                     "ansible_user": "root", "ansible_become": False,
                                                     "ansible_ssh_private_key_file": str(key)}}},
                      "compute": {"hosts": {}}}
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert f"ansible.extra_vars = '{project}/builds/ansible/vars.yml'" in vagrantfile
    assert f"ansible.playbook = '{project}/ansible/playbook.yml'" in vagrantfile


def test_provision_of_the_vagrant_vm(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir)
    provision(c, s, None)
    assert commands(c, bin_dir) == [f"cd {project}/builds/vagrant && vagrant provision --provision-with ansible"]


def test_a_cluster_is_one_inventory_of_the_hub_and_its_named_compute_nodes(project: Path, bin_dir: Path,
                                                                          tmp_path: Path) -> None:
    s = make_settings(project, bin_dir, **{"hub.flavour": "pypi", "hub.spawner": "slurm",
                                           "cluster.compute": ["10.0.0.5", "admin@10.0.0.6:2222"]})
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    groups = inventory(s, Target("10.0.0.2", "root", 22, key))["all"]["children"]
    assert list(groups["hub"]["hosts"]) == ["jupyterhub"]
    assert groups["hub"]["hosts"]["jupyterhub"]["slurm_node_name"] == "jupyterhub"
    nodes = groups["compute"]["hosts"]
    assert list(nodes) == ["jupyterhub-node1", "jupyterhub-node2"]
    assert nodes["jupyterhub-node1"] == {"ansible_host": "10.0.0.5", "ansible_port": 22, "ansible_user": "root",
                                         "ansible_become": False, "ansible_ssh_private_key_file": str(key),
                                         "slurm_node_name": "jupyterhub-node1", "base_node_name": "jupyterhub-node1"}
    assert (nodes["jupyterhub-node2"]["ansible_user"], nodes["jupyterhub-node2"]["ansible_port"],
            nodes["jupyterhub-node2"]["ansible_become"]) == ("admin", 2222, True)


def test_a_cluster_is_provisioned_over_ssh_only(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"hub.flavour": "pypi", "hub.spawner": "slurm",
                                           "cluster.compute": ["10.0.0.5"]})
    with pytest.raises(UserError, match=r"a cluster is provisioned over SSH; run hubvm provision --host HUB"):
        provision(context(bin_dir), s, None)
