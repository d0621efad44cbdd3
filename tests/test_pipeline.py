"""The pipeline: the failed step's line names the real command that failed and points at its log; the export is
current exactly when nothing it is made of changed (in both build modes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Result, UnexpectedExit

from hubvm import digests
from hubvm.artifacts import artifact_paths
from hubvm.config import schema
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.pipeline import export_digest, export_is_current, failed_command, failure_line
from tests.conftest import settings_with


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


# A valid value other than the default for every setting that goes into nothing that is built (schema NOWHERE)
NOWHERE_VALUES: dict[str, object] = {
    "vm.accelerator": "tcg", "vm.hub_host_port": 18080, "vm.hub_https_host_port": 18443,
    "ssh.port": 2200, "ssh.via": "ip", "ssh.identity": "id_test", "ssh.connect_timeout": 30, "ssh.wait": 600,
    "cluster.munge_key": "id_test", "cluster.compute": ["root@10.0.0.5"],
    **{f"tools.{name}": f"/opt/tools/{name}" for name in ("packer", "vagrant", "vboxmanage", "virsh", "qemu_img",
                                                          "qemu_system", "ansible_playbook", "mmdebstrap")},
    "publish.cloud": "mycloud", "publish.image_name": "hub 2026", "publish.disk_format": "raw",
    "publish.visibility": "public", "publish.tags": ["course"], "publish.properties": {"hw_scsi_model": "virtio-scsi"},
    "publish.min_disk_gb": 30, "publish.min_ram_mb": 2048, "publish.disk_bus": "scsi", "publish.active_timeout": 60,
    "material.repo": "https://git.example.org/teaching/course.git", "material.branch": "fall-2026",
    "material.open": "week1/intro.ipynb", "material.app": "classic",
}
# What a setting needs beside it to be valid at all (a cluster's nodes need a hub that spawns on Slurm)
NOWHERE_CONTEXT: dict[str, dict[str, object]] = {"cluster.compute": {"hub.flavour": "pypi", "hub.spawner": "slurm"}}
# Both build modes: the VM mode's defaults, and a native build of the shipped e2e profile's kind
MODES = {
    "vm": {"export.formats": ["ovf", "qcow2"]},
    "native": {"build.mode": "native", "vm.provider": "libvirt", "image.source": "mirror", "vm.ip": "dhcp",
               "export.formats": ["qcow2"], "export.ssh_public_key": "id_test.pub"},
}


def test_every_setting_that_goes_nowhere_has_a_changed_value_to_try() -> None:
    assert sorted(NOWHERE_VALUES) == sorted(schema.keys_in(schema.NOWHERE))


def _exported(project: Path, overrides: dict[str, object]) -> Settings:
    """Settings whose export builds/vm/ holds: the stamp written and every artifact present."""
    key = project / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    (project / "id_test.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test\n")
    s = settings_with(project, **overrides)
    layout = Layout.of(s)
    for path in artifact_paths(s, layout):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("artifact")
    digests.write(layout.export_stamp, export_digest(s))
    assert export_is_current(s)
    return s


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("key", sorted(NOWHERE_VALUES))
def test_a_setting_that_goes_nowhere_leaves_the_export_current(project: Path, mode: str, key: str) -> None:
    """Defect 1 of issue 18: publishing by the README's example (INVOKE_PUBLISH_CLOUD=...) rebuilt the appliance."""
    base = {**MODES[mode], **NOWHERE_CONTEXT.get(key, {})}
    _exported(project, base)
    changed = settings_with(project, **{**base, key: NOWHERE_VALUES[key]})
    assert export_is_current(changed), f"{key} made the export stale"


@pytest.mark.parametrize(("key", "value"), [
    ("packages.python", ["scipy"]), ("hub.signup", "open"), ("vm.timezone", "Europe/Berlin"),
    ("export.compression", "zstd"), ("vm.name", "other-hub"), ("guest.pip_index_url", "http://pypi.example/simple"),
    ("material.nbgitpuller", False),
])
def test_a_setting_of_the_appliance_makes_the_export_stale_but_not_the_box(project: Path, key: str,
                                                                         value: object) -> None:
    s = _exported(project, MODES["vm"])
    changed = settings_with(project, **{**MODES["vm"], key: value})
    assert not export_is_current(changed)
    assert digests.box_digest(changed) == digests.box_digest(s)


@pytest.mark.parametrize(("key", "value"), [
    ("vm.disk_gb", 40), ("ssh.password", "other"), ("guest.http_proxy", "http://proxy.example:3128"),
    ("vm.os", "ubuntu2404"),
])
def test_a_setting_of_the_box_makes_box_and_export_stale(project: Path, key: str, value: object) -> None:
    s = _exported(project, MODES["vm"])
    changed = settings_with(project, **{**MODES["vm"], key: value})
    assert digests.box_digest(changed) != digests.box_digest(s)
    assert not export_is_current(changed)


def test_a_file_setting_counts_by_its_content_not_its_path(project: Path) -> None:
    s = _exported(project, MODES["native"])
    moved = project / "keys" / "elsewhere.pub"
    moved.parent.mkdir()
    moved.write_text((project / "id_test.pub").read_text())
    (project / "keys" / "elsewhere").write_text((project / "id_test").read_text())
    assert export_is_current(settings_with(project, **{**MODES["native"], "export.ssh_public_key": str(moved)}))
    moved.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF other\n")
    assert not export_is_current(settings_with(project, **{**MODES["native"], "export.ssh_public_key": str(moved)}))
    assert export_is_current(s)
