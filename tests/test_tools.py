"""What each task needs on the host, how each need is judged (versions, plugins, daemons, KVM, libguestfs), that a
run asks each probe once and remembers slow answers by the identity of what it asked, and the Packer command line
per Packer version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from invoke import Result

from hubvm import tools
from hubvm.shell import Shell
from tests.conftest import REPO, settings_with
from tests.mockshell import bin_dir, context, make_settings, probes

__all__ = ["bin_dir"]  # a fixture


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
    assert tools.parse_version(tools.TOOLS[key].pattern, output) == version


def test_a_missing_tool_is_named_with_its_debian_package_or_its_download_page() -> None:
    finding = tools.assess(tools.TOOLS["packer"], None, "")
    assert (finding.status, finding.fix) == (tools.MISSING, "install it: sudo apt-get install packer "
                                                            "(or see https://developer.hashicorp.com/packer/install)")
    virtualbox = tools.assess(tools.TOOLS["vboxmanage"], None, "")
    assert (virtualbox.status, virtualbox.fix) == (
        tools.NOT_PACKAGED, "install it from https://www.virtualbox.org/wiki/Linux_Downloads")


def test_a_too_old_tool_says_which_version_is_needed() -> None:
    finding = tools.assess(tools.TOOLS["vboxmanage"], "/usr/bin/VBoxManage", "6.1.26r145957\n")
    assert finding.status == tools.TOO_OLD
    assert finding.fix.startswith("upgrade to 6.1.28 or newer")


def test_vagrant_libvirt_plugin_from_plugin_list() -> None:
    output = "vagrant-libvirt (0.11.2, system)\n  - Version Constraint: > 0\nvagrant-scp (0.5.9, global)\n"
    assert tools.parse_vagrant_plugins(output) == {"vagrant-libvirt": "0.11.2", "vagrant-scp": "0.5.9"}
    assert tools.assess_vagrant_libvirt(output).ok
    assert tools.assess_vagrant_libvirt("No plugins installed.\n").status == tools.MISSING
    assert tools.assess_vagrant_libvirt("vagrant-libvirt (0.7.0, global)\n").status == tools.TOO_OLD


@pytest.mark.parametrize(("version", "expected"), [
    ("1.6.6", ["packer build -force -only=qemu.mirror -var-file=v.json box.pkr.hcl"]),
    ("1.12.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
    ("1.15.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
])
def test_packer_commands_follow_the_packer_version(version: str, expected: list[str]) -> None:
    assert tools.packer_commands("packer", version, "qemu.mirror", "v.json") == expected


def test_a_tool_path_with_a_space_is_quoted() -> None:
    assert tools.packer_commands("/opt/my tools/packer", "1.6.6", "qemu.iso", "v.json")[0].startswith(
        "'/opt/my tools/packer' build")


def test_plugins_file_declares_every_builder_of_the_template() -> None:
    template = (REPO / "templates" / "packer" / "box.pkr.hcl").read_text()
    plugins = (REPO / "templates" / "packer" / "plugins.pkr.hcl").read_text()
    for name, (source, _) in tools.PACKER_PLUGINS.items():
        assert f'source  = "{source}"' in plugins
        assert name in template


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


def test_a_run_asks_each_probe_once(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "vm.accelerator": "tcg",
                                           "export.formats": ["qcow2"]})
    c = context(bin_dir)
    found = c.config.hubvm_probes  # host facts taken as present (tests/mockshell.py)
    for task in ("pack", "up", "export", "up", "export"):
        tools.require(found, s, tools.needs(task, s), dry=False)
    asked = probes(c)
    assert len(asked) == len(set(asked))
    assert any(command.endswith("vagrant plugin list") for command in asked)


def test_slow_answers_are_kept_until_the_tool_changes(bin_dir: Path, tmp_path: Path, project: Path) -> None:
    s = make_settings(project, bin_dir)
    cache = tmp_path / "probes.json"
    c = context(bin_dir)
    first = tools.Probes(lambda command: Shell(c).probe(command), cache)
    assert first.find("vagrant", s).version == "2.3.4"
    assert "tool:vagrant" in json.loads(cache.read_text())
    c2 = context(bin_dir)
    assert tools.Probes(lambda command: Shell(c2).probe(command), cache).find("vagrant", s).version == "2.3.4"
    assert probes(c2) == []  # from the cache
    vagrant = bin_dir / "vagrant"
    vagrant.write_text(vagrant.read_text() + "# upgraded\n")
    os.utime(vagrant, ns=(1, 1))
    c3 = context(bin_dir)
    tools.Probes(lambda command: Shell(c3).probe(command), cache).find("vagrant", s)
    assert probes(c3) == [f"{bin_dir}/vagrant --version"]


def test_a_dry_run_writes_no_cache(bin_dir: Path, tmp_path: Path, project: Path) -> None:
    s = make_settings(project, bin_dir)
    cache = tmp_path / "probes.json"
    c = context(bin_dir, dry=True)
    tools.Probes(lambda command: Shell(c).probe(command), cache, write=False).find("vagrant", s)
    assert not cache.exists()


@pytest.mark.parametrize(("answer", "status", "words"), [
    (Result(stdout="[    0.9] Kernel panic - not syncing: VFS: Unable to mount root fs\n"), tools.OK, ""),
    (Result(stdout="", exited=124), tools.NOT_USABLE, "printed nothing within 20 s"),
    (Result(stderr="qemu-system-x86_64: failed to initialize kvm: Permission denied\n", exited=1),
     tools.NOT_USABLE, "could not start a guest with KVM (qemu-system-x86_64: failed to initialize kvm"),
])
def test_the_kvm_probe_boots_a_kernel_and_tells_a_hang_from_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       answer: Result, status: str, words: str) -> None:
    kernel = tmp_path / "vmlinuz-6.1.0-56-amd64"
    kernel.write_bytes(b"kernel")
    monkeypatch.setattr(tools, "_kernels", lambda: [str(kernel)])
    monkeypatch.setattr(tools.os.path, "exists", lambda path: path == "/dev/kvm" or os.path.lexists(path))
    monkeypatch.setattr(tools.os, "access", lambda path, mode: True)
    asked: list[str] = []

    def run(command: str) -> Result:
        asked.append(command)
        return answer

    finding = tools.probe_kvm(run, "/usr/bin/qemu-system-x86_64")
    assert finding.status == status
    assert words in finding.fix
    if status != tools.OK:
        assert "set vm.accelerator: tcg" in finding.fix
    assert asked == [tools.kvm_probe_command("/usr/bin/qemu-system-x86_64", str(kernel))]
    assert "-accel kvm" in asked[0] and asked[0].startswith("timeout -k 5 20 ")


def test_without_dev_kvm_kvm_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.os.path, "exists", lambda path: False)
    finding = tools.probe_kvm(lambda command: Result(), "/usr/bin/qemu-system-x86_64")
    assert finding.status == tools.NOT_USABLE and "/dev/kvm does not exist" in finding.fix


def test_libguestfs_needs_a_readable_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_with(REPO, **{"vm.provider": "libvirt", "vm.accelerator": "tcg", "export.formats": ["qcow2"]})
    monkeypatch.setattr(tools, "_kernels", lambda: [])
    finding = tools.assess_guestfs_appliance(lambda command: Result(), s)
    assert finding.status == tools.MISSING and "linux-image-amd64" in finding.fix


def test_libguestfs_appliance_is_started_in_software_emulation_with_tcg(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    s = settings_with(REPO, **{"vm.provider": "libvirt", "vm.accelerator": "tcg", "export.formats": ["qcow2"]})
    kernel = tmp_path / "vmlinuz-1"
    kernel.write_bytes(b"k")
    monkeypatch.setattr(tools, "_kernels", lambda: [str(kernel)])
    monkeypatch.setattr(tools, "locate", lambda name, search_path=None: f"/usr/bin/{name}")
    asked: list[str] = []

    def run(command: str) -> Result:
        asked.append(command)
        return Result(stderr="libguestfs: error: /usr/bin/supermin exited with error status 1.\n", exited=1)

    finding = tools.assess_guestfs_appliance(run, s)
    assert asked == ["LIBGUESTFS_BACKEND_SETTINGS=force_tcg timeout 600 /usr/bin/libguestfs-test-tool"]
    assert finding.status == tools.NOT_USABLE and "supermin exited with error status 1" in finding.fix


def test_commands_needed_by_name_say_which_package_brings_them() -> None:
    finding = tools.assess_command("dnsmasq", None, *tools.COMMANDS["dnsmasq"][1:])
    assert finding.status == tools.MISSING
    assert finding.fix.startswith("install it: sudo apt-get install dnsmasq-base (libvirt's NAT networks")
    assert tools.assess_command("virt-sysprep", None, *tools.COMMANDS["virt-sysprep"][1:]).fix.startswith(
        "install it: sudo apt-get install libguestfs-tools")


def test_a_daemon_that_does_not_answer_is_not_running() -> None:
    assert tools.assess_libvirtd(True, "qemu:///system\n").ok
    assert tools.assess_libvirtd(False, "").status == tools.NOT_RUNNING
