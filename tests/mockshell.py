"""What the step tests share: stand-in tools in a temporary bin/, settings that point at them, and invoke's
MockContext answering version probes, Vagrant's machine-readable lists and the commands the steps are known to
run (nothing is executed).

The stand-ins are never run (MockContext answers instead), so the tests are the same on machines with and
without packer, vagrant or VirtualBox. A command MockContext has no answer for fails the test (invoke raises
NotImplementedError naming it): a step that runs a wrong or new command is seen, not answered "yes".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Config, MockContext, Result

from hubvm.config.settings import Settings
from hubvm.host import probes
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


def step_commands(bin_dir: Path) -> list[re.Pattern[str]]:
    """The commands the steps run (pack, up, provision, export, destroy, clean), each anchored to its tool: they
    succeed; anything else has no answer."""
    tool = {name: re.escape(str(bin_dir / name)) for name in VERSIONS}
    cd = r"cd \S+ && "
    return [re.compile(pattern) for pattern in (
        rf"^{cd}{tool['packer']} (init \.|build -force -only=\S+ -var-file=variables\.pkrvars\.json "
        r"(\.|box\.pkr\.hcl))$",
        rf"^{cd}{tool['vagrant']} (up --provider=\w+( --provision)?|provision --provision-with (ansible|cleanup)"
        rf"|package --output \S+|destroy -f|box add --force --name \S+ \S+)$",
        rf"^{tool['vagrant']} box remove --force --all \S+$",
        r"^rm -rf \S+ \S+ \S+ && mkdir -p \S+$",
        rf"^{tool['mmdebstrap']} --variant=important .*",
        r"^rm -f \S+ && truncate -s \d+ \S+$",
        r"^echo 'start=\d+, type=83, bootable' \| sfdisk --quiet --label dos \S+$",
        r"^mke2fs -q -F -t ext4 -L root -U [0-9a-f-]+ -d \S+ -E offset=\d+ \S+ \d+k$",
        rf"^{tool['qemu-img']} convert -f raw -O qcow2 \S+ \S+$",
        rf"^{cd}{tool['qemu-img']} convert (-c )?-O qcow2( -o compression_type=zstd)? \S+ \S+$",
        rf"^({cd})?{tool['qemu-img']} convert -f (raw|qcow2) -O vmdk -o subformat=streamOptimized \S+ \S+$",
        r"^rm -rf \S+ \S+$",
        rf"^{cd}tar -xzf \S+ -C \S+$",
        rf"^{cd}{tool['ansible-playbook']} -i .* ansible/playbook\.yml$",
    )]


def context(bin_dir: Path, packer: str = "1.6.6", dry: bool = False, answers: dict | None = None) -> MockContext:
    """A MockContext that answers version probes, `vagrant ... --machine-readable` and the steps' commands
    (`step_commands`); `answers` add to or override them. Any other command has no answer (the test fails)."""
    run: dict = {}
    for name, output in VERSIONS.items():
        run[re.compile(rf"^{re.escape(str(bin_dir / name))} (--version|version)$")] = Result(
            stdout=output.format(packer=packer))
    run[re.compile(rf"^{re.escape(str(bin_dir / 'vagrant'))} box list --machine-readable$")] = Result()  # no boxes
    run[re.compile(r".*plugin list$")] = Result(stdout="vagrant-libvirt (0.11.2, system)\n")
    run[re.compile(r".*virsh -c qemu:///system uri$")] = Result(stdout="qemu:///system\n")
    run[re.compile(r".*-accel kvm .*")] = Result(stdout="[    0.5] Kernel panic - not syncing: VFS\n")
    run[re.compile(r".*libguestfs-test-tool$")] = Result(stdout="===== TEST FINISHED OK =====\n")
    # a test's own answers first: MockContext takes the first pattern that matches
    run = {**(answers or {}), **run, **{pattern: Result() for pattern in step_commands(bin_dir)}}
    config = Config(overrides={"run": {"dry": dry}})
    c = MockContext(config=config, run=run, repeat=True)
    # The host's own facts (a VirtualBox driver, KVM, the libguestfs appliance, the archive keyring) are tested in
    # tests/host/test_probes.py; here they are taken as present, so that a step's command sequence is the same anywhere.
    found = probes.Probes(Shell(c), None, write=False)
    for name in HOST_FACTS:
        found.memo[name] = probes.Finding(name, probes.OK)
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


def probed(c: MockContext) -> list[str]:
    """The read-only probes a step ran, in order."""
    return [call.args[0] for call in c.run.call_args_list
            if call.kwargs.get("hide") and call.kwargs.get("dry") is False]
