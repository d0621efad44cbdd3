"""How each need is judged on the host (versions, plugins, daemons, KVM, libguestfs), that a run asks each probe
once, and that only ok answers are remembered, keyed by the command line, the environment and the files asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from invoke import Result

from hubvm.host import probes, tools
from hubvm.shell import Shell
from tests.conftest import REPO, settings_with
from tests.mockshell import bin_dir, context, make_settings, probed

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
    assert probes.parse_version(tools.TOOLS[key].pattern, output) == version


def test_a_missing_tool_is_named_with_its_debian_package_or_its_download_page() -> None:
    finding = probes.assess(tools.TOOLS["packer"], None, "")
    assert (finding.status, finding.fix) == (probes.MISSING, "install it: sudo apt-get install packer "
                                                            "(or see https://developer.hashicorp.com/packer/install)")
    virtualbox = probes.assess(tools.TOOLS["vboxmanage"], None, "")
    assert (virtualbox.status, virtualbox.fix) == (
        probes.NOT_PACKAGED, "install it from https://www.virtualbox.org/wiki/Linux_Downloads")


def test_a_too_old_tool_says_which_version_is_needed() -> None:
    finding = probes.assess(tools.TOOLS["vboxmanage"], "/usr/bin/VBoxManage", "6.1.26r145957\n")
    assert finding.status == probes.TOO_OLD
    assert finding.fix.startswith("upgrade to 6.1.28 or newer")


def test_vagrant_libvirt_plugin_from_plugin_list() -> None:
    output = "vagrant-libvirt (0.11.2, system)\n  - Version Constraint: > 0\nvagrant-scp (0.5.9, global)\n"
    assert probes.parse_vagrant_plugins(output) == {"vagrant-libvirt": "0.11.2", "vagrant-scp": "0.5.9"}
    assert probes.assess_vagrant_libvirt(output).ok
    assert probes.assess_vagrant_libvirt("No plugins installed.\n").status == probes.MISSING
    assert probes.assess_vagrant_libvirt("vagrant-libvirt (0.7.0, global)\n").status == probes.TOO_OLD


class Answers:
    """A runner that answers each probe from a table and records what was asked (a command not in the table is
    a test failure, not a success)."""

    def __init__(self, table: dict[str, Result]) -> None:
        self.table = table
        self.asked: list[str] = []

    def probe(self, command: str, cwd: Path | None = None) -> Result:
        self.asked.append(command)
        assert command in self.table, f"unexpected probe: {command}"
        return self.table[command]


def test_a_run_asks_each_probe_once(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "vm.accelerator": "tcg",
                                           "export.formats": ["qcow2"]})
    c = context(bin_dir)
    found = c.config.hubvm_probes  # host facts taken as present (tests/mockshell.py)
    for task in ("pack", "up", "export", "up", "export"):
        probes.require(found, s, tools.needs(task, s), dry=False)
    asked = probed(c)
    assert len(asked) == len(set(asked))
    assert any(command.endswith("vagrant plugin list") for command in asked)


def test_ok_answers_are_kept_until_the_tool_changes(bin_dir: Path, tmp_path: Path, project: Path) -> None:
    s = make_settings(project, bin_dir)
    cache = tmp_path / "probes.json"
    c = context(bin_dir)
    assert probes.Probes(Shell(c), cache).find("vagrant", s).version == "2.3.4"
    stored = json.loads(cache.read_text())
    assert [entry["command"] for entry in stored.values()] == [f"{bin_dir}/vagrant --version"]
    c2 = context(bin_dir)
    assert probes.Probes(Shell(c2), cache).find("vagrant", s).version == "2.3.4"
    assert probed(c2) == []  # from the cache
    vagrant = bin_dir / "vagrant"
    vagrant.write_text(vagrant.read_text() + "# upgraded\n")
    os.utime(vagrant, ns=(1, 1))
    c3 = context(bin_dir)
    probes.Probes(Shell(c3), cache).find("vagrant", s)
    assert probed(c3) == [f"{bin_dir}/vagrant --version"]


def test_a_dry_run_writes_no_cache(bin_dir: Path, tmp_path: Path, project: Path) -> None:
    s = make_settings(project, bin_dir)
    cache = tmp_path / "probes.json"
    c = context(bin_dir, dry=True)
    probes.Probes(Shell(c), cache, write=False).find("vagrant", s)
    assert not cache.exists()


@pytest.fixture
def host_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's KVM device and /boot, made up in tmp_path (the probes' module constants point there)."""
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-56-amd64").write_bytes(b"kernel")
    device = tmp_path / "kvm"
    device.write_text("")
    monkeypatch.setattr(probes, "BOOT_DIR", boot)
    monkeypatch.setattr(probes, "KVM_DEVICE", str(device))
    return tmp_path


def test_a_failed_probe_is_asked_again_and_an_ok_one_is_not(host_files: Path, tmp_path: Path, project: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2 of issue 18: a cached failure blocked the build after check's own advice was followed."""
    qemu = "/usr/bin/qemu-system-x86_64"
    monkeypatch.setattr(probes, "locate", lambda name, search_path=None: qemu if "qemu" in name else None)
    s = settings_with(project, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    command = probes.kvm_probe_command(qemu, str(host_files / "boot" / "vmlinuz-6.1.0-56-amd64"))
    cache = tmp_path / "probes.json"
    hang = Answers({command: Result(exited=124)})
    assert probes.Probes(hang, cache).find("KVM", s).status == probes.NOT_USABLE
    works = Answers({command: Result(stdout="[ 0.5] Kernel panic - not syncing: VFS\n")})
    assert probes.Probes(works, cache).find("KVM", s).ok
    assert works.asked == [command]  # the failure was not served from the cache
    again = Answers({})
    assert probes.Probes(again, cache).find("KVM", s).ok and again.asked == []  # the ok answer was


def test_the_libguestfs_answer_is_keyed_by_its_command_and_environment(host_files: Path, tmp_path: Path,
                                                                      project: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2 of issue 18: the appliance probed without force_tcg answered for a build with vm.accelerator tcg."""
    monkeypatch.setattr(probes, "locate", lambda name, search_path=None: f"/usr/bin/{name}")
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    cache = tmp_path / "probes.json"
    ok = Result(stdout="===== TEST FINISHED OK =====\n")
    kvm = settings_with(project, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    tcg = settings_with(project, **{"vm.provider": "libvirt", "vm.accelerator": "tcg", "export.formats": ["qcow2"]})
    plain = "timeout 600 /usr/bin/libguestfs-test-tool"
    forced = "LIBGUESTFS_BACKEND_SETTINGS=force_tcg timeout 600 /usr/bin/libguestfs-test-tool"
    first = Answers({plain: ok, forced: ok})
    assert probes.Probes(first, cache).find("libguestfs appliance", kvm).ok
    second = Answers({plain: ok, forced: ok})
    assert probes.Probes(second, cache).find("libguestfs appliance", tcg).ok
    assert second.asked == [forced]  # another command line: asked, not taken from the kvm run's answer
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_kvm")
    third = Answers({plain: ok, forced: ok})
    probes.Probes(third, cache).find("libguestfs appliance", kvm)
    assert third.asked == [plain]  # the same command in another environment: asked again
    assert {entry["name"] for entry in json.loads(cache.read_text()).values()} == {"libguestfs appliance"}


def test_only_the_newest_answers_of_a_need_are_kept(tmp_path: Path) -> None:
    cache = tmp_path / "probes.json"
    found = probes.Probes(Answers({f"tool --version {n}": Result(stdout="ok") for n in range(10)}), cache)
    for n in range(10):
        found.ask("tool", f"tool --version {n}", lambda result: probes.Finding("tool", probes.OK))
    kept = [entry["command"] for entry in json.loads(cache.read_text()).values()]
    assert len(kept) == probes.KEPT_PER_NEED and "tool --version 9" in kept


def test_an_old_cache_file_is_not_trusted(bin_dir: Path, tmp_path: Path, project: Path) -> None:
    s = make_settings(project, bin_dir)
    cache = tmp_path / "probes.json"
    cache.write_text(json.dumps({"tool:vagrant": {"identity": "x", "finding": {"name": "Vagrant", "status": "ok",
                                                                               "version": "9.9.9"}}}))
    c = context(bin_dir)
    assert probes.Probes(Shell(c), cache).find("vagrant", s).version == "2.3.4"


@pytest.mark.parametrize(("answer", "status", "words"), [
    (Result(stdout="[    0.9] Kernel panic - not syncing: VFS: Unable to mount root fs\n"), probes.OK, ""),
    (Result(stdout="", exited=124), probes.NOT_USABLE, "printed nothing within 20 s"),
    (Result(stderr="qemu-system-x86_64: failed to initialize kvm: Permission denied\n", exited=1),
     probes.NOT_USABLE, "could not start a guest with KVM (qemu-system-x86_64: failed to initialize kvm"),
])
def test_the_kvm_probe_boots_a_kernel_and_tells_a_hang_from_a_failure(host_files: Path, project: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       answer: Result, status: str, words: str) -> None:
    qemu = "/usr/bin/qemu-system-x86_64"
    monkeypatch.setattr(probes, "locate", lambda name, search_path=None: qemu)
    kernel = host_files / "boot" / "vmlinuz-6.1.0-56-amd64"
    command = probes.kvm_probe_command(qemu, str(kernel))
    runner = Answers({command: answer})
    finding = probes.Probes(runner).find("KVM", settings_with(project, **{"vm.provider": "libvirt",
                                                                         "export.formats": ["qcow2"]}))
    assert finding.status == status
    assert words in finding.fix
    if status != probes.OK:
        assert "set vm.accelerator: tcg" in finding.fix
    assert runner.asked == [command]
    assert "-accel kvm" in command and command.startswith("timeout -k 5 20 ")


def test_without_dev_kvm_kvm_is_not_usable(tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "KVM_DEVICE", str(tmp_path / "no-kvm"))
    runner = Answers({})
    finding = probes.Probes(runner).find("KVM", settings_with(project, **{"vm.provider": "libvirt",
                                                                         "export.formats": ["qcow2"]}))
    assert finding.status == probes.NOT_USABLE and "does not exist" in finding.fix and runner.asked == []


def test_libguestfs_needs_a_readable_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_with(REPO, **{"vm.provider": "libvirt", "vm.accelerator": "tcg", "export.formats": ["qcow2"]})
    monkeypatch.setattr(probes, "BOOT_DIR", tmp_path)
    finding = probes.Probes(Answers({})).find("libguestfs appliance", s)
    assert finding.status == probes.MISSING and "linux-image-amd64" in finding.fix


def test_libguestfs_appliance_is_started_in_software_emulation_with_tcg(host_files: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_with(REPO, **{"vm.provider": "libvirt", "vm.accelerator": "tcg", "export.formats": ["qcow2"]})
    monkeypatch.setattr(probes, "locate", lambda name, search_path=None: f"/usr/bin/{name}")
    command = "LIBGUESTFS_BACKEND_SETTINGS=force_tcg timeout 600 /usr/bin/libguestfs-test-tool"
    runner = Answers({command: Result(stderr="libguestfs: error: /usr/bin/supermin exited with error status 1.\n",
                                      exited=1)})
    finding = probes.Probes(runner).find("libguestfs appliance", s)
    assert runner.asked == [command]
    assert finding.status == probes.NOT_USABLE and "supermin exited with error status 1" in finding.fix


def test_commands_needed_by_name_say_which_package_brings_them() -> None:
    finding = probes.assess_command("dnsmasq", None, *tools.COMMANDS["dnsmasq"][1:])
    assert finding.status == probes.MISSING
    assert finding.fix.startswith("install it: sudo apt-get install dnsmasq-base (libvirt's NAT networks")
    assert probes.assess_command("virt-sysprep", None, *tools.COMMANDS["virt-sysprep"][1:]).fix.startswith(
        "install it: sudo apt-get install libguestfs-tools")


def test_a_daemon_that_does_not_answer_is_not_running() -> None:
    assert probes.assess_libvirtd(True, "qemu:///system\n").ok
    assert probes.assess_libvirtd(False, "").status == probes.NOT_RUNNING
