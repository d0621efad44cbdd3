"""Finding the host tools, reading their versions, and how the Packer command line follows the version."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from hubvm import settings, tools
from tests.conftest import REPO


@pytest.mark.parametrize(("key", "output", "version"), [
    ("packer", "Packer v1.6.6\n", "1.6.6"),
    ("packer", "Packer v1.12.0\n\nYour version of Packer is out of date!", "1.12.0"),
    ("packer", "1.15.0\n", None),  # not how Packer prints it: no version rather than a wrong one
    ("vagrant", "Vagrant 2.3.4\n", "2.3.4"),
    ("ansible_playbook", "ansible-playbook [core 2.19.14]\n  config file = None\n", "2.19.14"),
    ("vboxmanage", "7.2.6r172322\n", "7.2.6"),
    ("virsh", "9.0.0\n", "9.0.0"),
    ("qemu_system", "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\n", "7.2.22"),
    ("qemu_img", "qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\n", "7.2.22"),
])
def test_versions_are_read_from_what_each_tool_prints(key: str, output: str, version: str | None) -> None:
    found = tools.parse_version(tools.TOOLS[key].pattern, output)
    assert found == (Version(version) if version else None)


def test_a_missing_tool_is_named_with_its_debian_package_and_download_page() -> None:
    finding = tools.assess(tools.TOOLS["packer"], None, "")
    assert not finding.ok
    assert finding.fix == ("install it: sudo apt-get install packer "
                           "(or see https://developer.hashicorp.com/packer/install)")
    virtualbox = tools.assess(tools.TOOLS["vboxmanage"], None, "")
    assert virtualbox.fix == "install it from https://www.virtualbox.org/wiki/Linux_Downloads"


def test_a_too_old_tool_says_which_version_is_needed() -> None:
    finding = tools.assess(tools.TOOLS["vboxmanage"], "/usr/bin/VBoxManage", "6.1.26r145957\n")
    assert not finding.ok
    assert finding.fix.startswith("upgrade to 6.1.28 or newer")


def test_vagrant_libvirt_plugin_from_plugin_list() -> None:
    output = "vagrant-libvirt (0.11.2, system)\n  - Version Constraint: > 0\nvagrant-scp (0.5.9, global)\n"
    assert tools.parse_vagrant_plugins(output) == {"vagrant-libvirt": Version("0.11.2"),
                                                   "vagrant-scp": Version("0.5.9")}
    assert tools.assess_vagrant_libvirt(output).ok
    assert not tools.assess_vagrant_libvirt("No plugins installed.\n").ok


@pytest.mark.parametrize(("version", "expected"), [
    ("1.6.6", ["packer build -force -only=qemu.mirror -var-file=v.json box.pkr.hcl"]),
    ("1.12.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
    ("1.15.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
])
def test_packer_commands_follow_the_packer_version(version: str, expected: list[str]) -> None:
    assert tools.packer_commands("packer", Version(version), "qemu.mirror", "v.json") == expected


def test_plugins_file_declares_every_builder_of_the_template() -> None:
    template = (REPO / "templates" / "packer" / "box.pkr.hcl").read_text()
    plugins = (REPO / "templates" / "packer" / "plugins.pkr.hcl").read_text()
    for name, (source, _) in tools.PACKER_PLUGINS.items():
        assert f'source  = "{source}"' in plugins
        assert name in template


def test_needed_tools_follow_provider_and_source() -> None:
    base = settings.defaults(REPO)
    desktop = settings.parse(base, REPO)
    assert tools.needed(desktop) == ["packer", "vagrant", "ansible_playbook", "vboxmanage"]
    libvirt = settings.parse(settings.merge(base, {"vm": {"provider": "libvirt"}, "image": {"source": "mirror"},
                                                   "export": {"formats": ["qcow2"]}}), REPO)
    assert tools.needed(libvirt) == ["mmdebstrap", "packer", "vagrant", "ansible_playbook", "virsh",
                                     "qemu_system", "qemu_img"]


def test_locate_finds_a_path_or_a_name_on_path(tmp_path: Path) -> None:
    tool = tmp_path / "packer"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert tools.locate(str(tool)) == str(tool)
    assert tools.locate("packer", search_path=str(tmp_path)) == str(tool)
    assert tools.locate(str(tmp_path / "nothing")) is None


def test_libvirt_packaging_needs_libguestfs_tools() -> None:
    assert tools.assess_guestfs("virt-sysprep", "/usr/bin/virt-sysprep").ok
    missing = tools.assess_guestfs("virt-sysprep", None)
    assert not missing.ok
    assert "sudo apt-get install libguestfs-tools" in missing.fix
