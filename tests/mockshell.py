"""What the step tests share: stand-in tools in a temporary bin/, settings that point at them, and invoke's
MockContext answering version probes and Vagrant's machine-readable lists (nothing is executed).

The stand-ins are never run (MockContext answers every command), so the tests are the same on machines with and
without packer, vagrant or VirtualBox.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Config, MockContext, Result

from hubvm import tools
from hubvm.settings import Settings
from hubvm.shell import Shell
from tests.conftest import settings_with

VERSIONS = {
    "packer": "Packer v{packer}",
    "vagrant": "Vagrant 2.3.4",
    "ansible-playbook": "ansible-playbook [core 2.19.14]",
    "VBoxManage": "7.2.6r170000",
    "virsh": "9.0.0",
    "qemu-system-x86_64": "QEMU emulator version 7.2.19",
    "qemu-img": "qemu-img version 7.2.19",
    "mmdebstrap": "mmdebstrap 1.3.5",
}
TOOL_KEYS = [("packer", "packer"), ("vagrant", "vagrant"), ("ansible_playbook", "ansible-playbook"),
             ("vboxmanage", "VBoxManage"), ("virsh", "virsh"), ("qemu_system", "qemu-system-x86_64"),
             ("qemu_img", "qemu-img"), ("mmdebstrap", "mmdebstrap")]
COMMANDS = ["virt-sysprep", "virt-sparsify", "dnsmasq", "rsync", "mke2fs", "sfdisk"]


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))  # tools found by name (virt-sysprep) come from here only
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in [*VERSIONS, *COMMANDS]:
        tool = path / name
        tool.write_text("#!/bin/sh\nexit 99\n")  # never run: MockContext answers instead
        tool.chmod(0o755)
    return path


def make_settings(project: Path, bin_dir: Path, **overrides: object) -> Settings:
    tools = {f"tools.{key}": str(bin_dir / name) for key, name in TOOL_KEYS}
    return settings_with(project, **{**tools, **overrides})


def context(bin_dir: Path, packer: str = "1.6.6", dry: bool = False, answers: dict | None = None) -> MockContext:
    """A MockContext that answers version probes and `vagrant ... --machine-readable`, and 'succeeds' at the rest."""
    run: dict = {}
    for name, output in VERSIONS.items():
        run[re.compile(rf"^{re.escape(str(bin_dir / name))} (--version|version)$")] = Result(
            stdout=output.format(packer=packer))
    run[re.compile(r".*plugin list$")] = Result(stdout="vagrant-libvirt (0.11.2, system)\n")
    run[re.compile(r".*virsh -c qemu:///system uri$")] = Result(stdout="qemu:///system\n")
    run[re.compile(r".*-accel kvm .*")] = Result(stdout="[    0.5] Kernel panic - not syncing: VFS\n")
    run[re.compile(r".*libguestfs-test-tool$")] = Result(stdout="===== TEST FINISHED OK =====\n")
    run.update(answers or {})
    run[re.compile(r".*")] = Result()
    config = Config(overrides={"run": {"dry": dry}})
    c = MockContext(config=config, run=run, repeat=True)
    # The host's own facts (a VirtualBox driver, KVM, the libguestfs appliance, the archive keyring) are tested in
    # tests/test_tools.py; here they are taken as present, so that a step's command sequence is the same anywhere.
    found = tools.Probes(lambda command: Shell(c).probe(command), None, write=False)
    for name in HOST_FACTS:
        found.memo[name] = tools.Finding(name, tools.OK)
    config.hubvm_probes = found
    return c


HOST_FACTS = ("vboxdrv", "KVM", "libguestfs appliance", "archive keyring")


def act_on(c: MockContext, word: str, action) -> None:
    """Make commands containing `word` also do `action(command)` (say, write what packer would write);
    every command still gets the answer prepared for it."""

    def run(command: str, **kwargs: object) -> Result:
        if word in command:
            action(command)
        return c._yield_result("__run", command)

    c.run.side_effect = run


def commands(c: MockContext, bin_dir: Path) -> list[str]:
    """The commands a step ran, probes left out, with the tool paths shortened to their names."""
    ran = []
    for call in c.run.call_args_list:
        command, options = call.args[0], call.kwargs
        if options.get("hide") and options.get("dry") is False:
            continue  # a read-only probe
        ran.append(command.replace(f"{bin_dir}/", ""))
    return ran


def probes(c: MockContext) -> list[str]:
    """The read-only probes a step ran, in order."""
    return [call.args[0] for call in c.run.call_args_list
            if call.kwargs.get("hide") and call.kwargs.get("dry") is False]
