"""What each task needs on the host for a configuration, and where a configured tool is found."""

from __future__ import annotations

from pathlib import Path

from hubvm.host import tools
from tests.conftest import REPO, settings_with


def test_what_each_task_needs_follows_provider_source_and_accelerator() -> None:
    desktop = settings_with(REPO)
    assert tools.needs("pack", desktop) == ["packer", "vboxmanage", "vboxdrv"]
    assert tools.needs("up", desktop) == ["vagrant", "ansible_playbook", "vboxmanage", "vboxdrv"]
    assert tools.needs("export", desktop) == ["vagrant", "ansible_playbook", "vboxmanage", "vboxdrv"]
    libvirt = settings_with(REPO, **{"vm.provider": "libvirt", "image.source": "mirror", "vm.accelerator": "tcg",
                                     "export.formats": ["qcow2"]})
    assert tools.needs("pack", libvirt) == ["mmdebstrap", "mke2fs", "sfdisk", "archive keyring", "packer",
                                            "qemu_system", "qemu_img"]
    assert tools.needs("up", libvirt) == ["vagrant", "ansible_playbook", "virsh", "libvirt daemon", "qemu_system",
                                          "dnsmasq", "vagrant-libvirt"]
    assert tools.needs("export", libvirt)[-4:] == ["virt-sysprep", "virt-sparsify", "libguestfs appliance",
                                                   "qemu_img"]
    ova_only = settings_with(REPO, **{"vm.provider": "libvirt", "image.source": "mirror", "export.formats": ["ova"]})
    assert tools.needs("export", ova_only)[-1] == "qemu_img"  # the box's disk becomes the OVA's VMDK
    assert "KVM" in tools.needs("up", settings_with(REPO, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]}))
    assert "rsync" in tools.needs("up", settings_with(REPO, **{"vm.provider": "libvirt", "vm.data": "data",
                                                               "export.formats": ["qcow2"]}))
    assert tools.needs("provision", libvirt) == ["ansible_playbook"]
    assert tools.needs_of_run(["check", "render", "verify"], libvirt) == []
    assert tools.needs_of_run(["pack", "up", "export"], libvirt) == list(dict.fromkeys(
        tools.needs("pack", libvirt) + tools.needs("up", libvirt) + tools.needs("export", libvirt)))


def test_locate_finds_a_path_or_a_name_on_path(tmp_path: Path) -> None:
    tool = tmp_path / "packer"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert tools.locate(str(tool)) == str(tool)
    assert tools.locate("packer", search_path=str(tmp_path)) == str(tool)
    assert tools.locate(str(tmp_path / "nothing")) is None
