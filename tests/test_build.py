"""`all`: the failed step's line names the real command that failed and points at its log."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Result, UnexpectedExit

from hubvm.build import failed_command, failure_line
from hubvm.errors import UserError
from hubvm.layout import Layout


@pytest.mark.parametrize(("command", "named"), [
    ("cd /p/builds/vagrant && vagrant up --provider=libvirt", "vagrant up"),
    ("cd '/p q/builds/packer' && /usr/bin/packer build -force -only=qemu.mirror -var-file=v.json box.pkr.hcl",
     "packer build"),
    ("cd /p && qemu-img convert -c -O qcow2 builds/vm.partial/box/box.img builds/vm.partial/x.qcow2",
     "qemu-img convert"),
    ("cd /p && tar -xzf builds/vm.partial/x.box -C builds/vm.partial/box", "tar"),
    ("LIBGUESTFS_BACKEND_SETTINGS=force_tcg timeout 600 /usr/bin/libguestfs-test-tool", "libguestfs-test-tool"),
    ("'/opt/my tools/vagrant' destroy -f", "vagrant destroy"),
    ("mmdebstrap --variant=important --include=a,b bookworm builds/base/rootfs", "mmdebstrap"),
])
def test_the_failed_command_is_named_by_its_program(command: str, named: str) -> None:
    assert failed_command(command) == named


def test_the_failure_line_points_at_the_steps_log(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "vm", "debian12", "libvirt")
    error = UnexpectedExit(Result(command="cd /p/builds/vagrant && vagrant up --provider=libvirt", exited=1))
    assert failure_line(error, layout, "up") == f"vagrant up exited with 1; see {tmp_path}/builds/logs/up.log"
    assert failure_line(UserError("no box at x\nmore"), layout, "up") == "no box at x"
