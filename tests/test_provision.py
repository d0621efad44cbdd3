"""provision: the same playbook and variables on the Vagrant VM or any host over SSH (MockContext)."""

from __future__ import annotations

from pathlib import Path

from hubvm.provision import provision
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
        f"cd {project} && ansible-playbook -i 10.0.0.2, -u root -e ansible_port=2200 -e @builds/ansible/vars.yml "
        f"--ssh-common-args '-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
        f"-o HashKnownHosts=no -o ConnectTimeout=10 -o ServerAliveInterval=30' --private-key {key} "
        "ansible/playbook.yml")
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert f"ansible.extra_vars = '{project}/builds/ansible/vars.yml'" in vagrantfile
    assert f"ansible.playbook = '{project}/ansible/playbook.yml'" in vagrantfile


def test_provision_of_the_vagrant_vm(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir)
    provision(c, s, None)
    assert commands(c, bin_dir) == [f"cd {project}/builds/vagrant && vagrant provision --provision-with ansible"]
