"""The build VM under Vagrant: up (box add, boot, provision), destroy and clean, as command sequences (MockContext)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Result

from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.render import box_name
from hubvm.vm import vagrant
from tests.mockshell import bin_dir, commands, context, make_settings

__all__ = ["bin_dir"]  # a fixture



def test_up_adds_the_box_and_boots_with_provisioning(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    c = context(bin_dir)
    vagrant.up(c, s)
    assert commands(c, bin_dir) == [
        f"cd {project} && vagrant box add --force --name {box_name(s)} builds/boxes/{layout.box_file.name}",
        f"cd {layout.vagrant_dir} && vagrant up --provider=virtualbox",
    ]
    assert layout.vagrantfile.is_file()


def test_up_skips_box_add_when_vagrant_has_the_box_and_reprovisions_on_request(project: Path,
                                                                               bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    listed = Result(stdout=f"1700000000,,box-name,{box_name(s)}\n1700000000,,box-provider,virtualbox\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed})
    vagrant.up(c, s, provision=True)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant up --provider=virtualbox --provision"]

    # a running VM is provisioned with `vagrant provision` (vagrant-libvirt runs `up --provision` twice)
    layout.vagrant_machine_id.parent.mkdir(parents=True)
    layout.vagrant_machine_id.write_text("uuid")
    running = Result(stdout="1700000000,jupyterhub-vm,state,running\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed,
                                  re.compile(r".*status --machine-readable$"): running})
    vagrant.up(c, s, provision=True)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant provision --provision-with ansible"]


def test_up_without_a_box_says_to_pack(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    with pytest.raises(UserError, match="hubvm pack"):
        vagrant.up(context(bin_dir), s)


def test_destroy_and_clean(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    machine = layout.vagrant_dir / ".vagrant" / "machines" / "jupyterhub-vm" / "virtualbox"
    machine.mkdir(parents=True)
    (machine / "id").write_text("uuid")
    c = context(bin_dir)
    vagrant.destroy(c, s)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant destroy -f"]
    with pytest.raises(UserError, match="destroy it first"):
        vagrant.clean(c, s)
    (machine / "id").unlink()
    listed = Result(stdout=f"1,,box-name,hubvm/{layout.box_stem}-0123456789ab\n1,,box-name,other/box\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed})
    vagrant.clean(c, s, everything=True)
    assert commands(c, bin_dir) == [f"vagrant box remove --force --all hubvm/{layout.box_stem}-0123456789ab"]
    assert not layout.vagrant_dir.exists()


def test_the_state_of_a_vm_that_was_never_created_is_known_without_asking_vagrant(project: Path,
                                                                                   bin_dir: Path) -> None:
    """`vagrant status` writes builds/vagrant/.vagrant/ even under --dry: it is asked only about a created VM."""
    from hubvm.render import plan, write
    from hubvm.shell import Shell

    s = make_settings(project, bin_dir)
    write(plan(s))
    c = context(bin_dir)
    assert vagrant.vm_state(Shell(c), s, Layout.of(s)) == "not_created"
    assert c.run.call_args_list == []
