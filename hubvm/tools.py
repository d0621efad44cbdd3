"""The host tools: where they are, which version, what to do when one is missing or too old.

Pure functions parse what a tool prints; `probe` runs the version commands through an invoke Context (so
MockContext tests see them). Version probes are read-only and also run under `invoke --dry`, so that a dry run
prints the plan this machine would really follow (for example whether `packer init` is part of it).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from hubvm.settings import Settings


@dataclass(frozen=True)
class Tool:
    key: str             # attribute of settings.tools
    label: str
    version_args: str
    pattern: str         # regex with one group: the version
    minimum: str
    debian: str          # Debian/Ubuntu packages that provide it ("" if none)
    download: str        # the official download page


TOOLS: dict[str, Tool] = {t.key: t for t in (
    Tool("packer", "Packer", "version", r"Packer v?(\d+\.\d+\.\d+)", "1.6.6", "packer",
         "https://developer.hashicorp.com/packer/install"),
    Tool("vagrant", "Vagrant", "--version", r"Vagrant (\d+\.\d+\.\d+)", "2.3.4", "vagrant",
         "https://developer.hashicorp.com/vagrant/install"),
    Tool("ansible_playbook", "Ansible", "--version", r"ansible-playbook \[core (\d+\.\d+\.\d+)", "2.14.0",
         "ansible-core", "https://docs.ansible.com/ansible/latest/installation_guide/"),
    Tool("vboxmanage", "VirtualBox", "--version", r"^(\d+\.\d+\.\d+)", "6.1.28", "",
         "https://www.virtualbox.org/wiki/Linux_Downloads"),
    Tool("virsh", "libvirt", "--version", r"^(\d+\.\d+\.\d+)", "7.0.0", "libvirt-daemon-system libvirt-clients",
         "https://libvirt.org/downloads.html"),
    Tool("qemu_system", "QEMU", "--version", r"QEMU emulator version (\d+\.\d+\.\d+)", "5.2.0", "qemu-system-x86",
         "https://www.qemu.org/download/"),
    Tool("qemu_img", "qemu-img", "--version", r"qemu-img version (\d+\.\d+\.\d+)", "5.2.0", "qemu-utils",
         "https://www.qemu.org/download/"),
    Tool("mmdebstrap", "mmdebstrap", "--version", r"mmdebstrap (\d+\.\d+\.\d+)", "1.0.0", "mmdebstrap",
         "https://gitlab.mister-muffin.de/josch/mmdebstrap"),
)}

VAGRANT_LIBVIRT_MINIMUM = "0.11.0"
# Packer 1.7 brought `packer init` and required_plugins; from 1.10 on the builders are plugins only.
PACKER_INIT_SINCE = Version("1.7.0")
PACKER_PLUGINS = {
    "qemu": ("github.com/hashicorp/qemu", ">= 1.1.0"),
    "virtualbox": ("github.com/hashicorp/virtualbox", ">= 1.1.0"),
    "vagrant": ("github.com/hashicorp/vagrant", ">= 1.1.0"),
}


def needed(s: Settings) -> list[str]:
    """The tools this configuration needs, in the order a build uses them."""
    keys = []
    if s.image.source == "mirror":
        keys += ["mmdebstrap"]
    keys += ["packer", "vagrant", "ansible_playbook"]
    keys += ["vboxmanage"] if s.vm.provider == "virtualbox" else ["virsh", "qemu_system"]
    if s.vm.provider == "libvirt" or s.image.source == "mirror" or "qcow2" in s.export.formats:
        keys += ["qemu_img"]
    return list(dict.fromkeys(keys))


def locate(command: str, search_path: str | None = None) -> str | None:
    """A configured tool: a path, or a name on PATH or beside this Python (a virtualenv's bin/)."""
    if os.sep in command:
        path = Path(command).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    path = search_path if search_path is not None else os.environ.get("PATH", "")
    return shutil.which(command, path=os.pathsep.join([path, str(Path(sys.executable).parent)]))


def parse_version(pattern: str, output: str) -> Version | None:
    match = re.search(pattern, output, re.MULTILINE)
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


def parse_vagrant_plugins(output: str) -> dict[str, Version]:
    """`vagrant plugin list` -> {"vagrant-libvirt": Version("0.11.2")}."""
    plugins = {}
    for name, version in re.findall(r"^(\S+) \((\d+(?:\.\d+)+)", output, re.MULTILINE):
        plugins[name] = Version(version)
    return plugins


@dataclass(frozen=True)
class Finding:
    """One line of `invoke check`."""

    name: str
    path: str | None
    version: Version | None
    minimum: str
    ok: bool
    fix: str


def install_hint(tool: Tool) -> str:
    if tool.debian:
        return f"install it: sudo apt-get install {tool.debian} (or see {tool.download})"
    return f"install it from {tool.download}"


def assess(tool: Tool, path: str | None, output: str) -> Finding:
    """Judge one tool from where it was found and what its version command printed."""
    if path is None:
        return Finding(tool.label, None, None, tool.minimum, False, install_hint(tool))
    version = parse_version(tool.pattern, output)
    if version is None:
        return Finding(tool.label, path, None, tool.minimum, False,
                       f"`{path} {tool.version_args}` printed no version; check the installation")
    if version < Version(tool.minimum):
        return Finding(tool.label, path, version, tool.minimum, False,
                       f"upgrade to {tool.minimum} or newer: {install_hint(tool).split(': ', 1)[-1]}")
    return Finding(tool.label, path, version, tool.minimum, True, "")


def assess_vagrant_libvirt(output: str) -> Finding:
    version = parse_vagrant_plugins(output).get("vagrant-libvirt")
    hint = "install it: sudo apt-get install vagrant-libvirt (or: vagrant plugin install vagrant-libvirt)"
    if version is None:
        return Finding("vagrant-libvirt", None, None, VAGRANT_LIBVIRT_MINIMUM, False, hint)
    ok = version >= Version(VAGRANT_LIBVIRT_MINIMUM)
    return Finding("vagrant-libvirt", "vagrant plugin", version, VAGRANT_LIBVIRT_MINIMUM, ok, "" if ok else hint)


Runner = Callable[[str], Any]  # runs a read-only command, returns an object with .stdout and .ok


def probe(run: Runner, s: Settings, keys: Iterable[str] | None = None) -> list[Finding]:
    """Find and judge each needed tool (and the vagrant-libvirt plugin when the provider is libvirt)."""
    keys = list(keys) if keys is not None else needed(s)
    findings = []
    for key in keys:
        tool = TOOLS[key]
        path = locate(getattr(s.tools, key))
        output = ""
        if path is not None:
            result = run(f"{path} {tool.version_args}")
            output = (result.stdout or "") + (result.stderr or "")
        findings.append(assess(tool, path, output))
    if s.vm.provider == "libvirt" and "virsh" in keys:  # the provider's own needs, with its tools
        vagrant, virsh = locate(s.tools.vagrant), locate(s.tools.virsh)
        if vagrant is not None:
            findings.append(assess_vagrant_libvirt(run(f"{vagrant} plugin list").stdout or ""))
        if virsh is not None:
            findings.append(assess_libvirtd(run(f"{virsh} -c {LIBVIRT_URI} uri")))
        findings += [assess_guestfs(name, locate(name)) for name in GUESTFS_COMMANDS]
    return findings


# vagrant-libvirt's `vagrant package` runs these by name (and fails without them)
GUESTFS_COMMANDS = ("virt-sysprep", "virt-sparsify")


def assess_guestfs(name: str, path: str | None) -> Finding:
    fix = "" if path else "install it: sudo apt-get install libguestfs-tools (vagrant-libvirt's package needs it)"
    return Finding(name, path, None, "-", path is not None, fix)


LIBVIRT_URI = "qemu:///system"


def assess_libvirtd(result: Any) -> Finding:
    """vagrant-libvirt talks to the system libvirt daemon: it must answer."""
    ok = bool(getattr(result, "ok", False)) and LIBVIRT_URI in (result.stdout or "")
    fix = "" if ok else "start it: sudo systemctl start libvirtd (and add yourself to the libvirt group)"
    return Finding("libvirt daemon", LIBVIRT_URI if ok else None, None, "-", ok, fix)


# ---------------------------------------------------------------------------------------------------------------
# How the Packer command line adapts to the Packer version


def packer_uses_init(version: Version) -> bool:
    """Packer >= 1.7 reads required_plugins and installs them with `packer init` (needed from 1.10 on)."""
    return version >= PACKER_INIT_SINCE


def packer_commands(packer: str, version: Version, only: str, var_file: str) -> list[str]:
    """The commands `pack` runs in builds/packer/, for this Packer version.

    Packer 1.6 reads the single template file (it rejects the required_plugins block of plugins.pkr.hcl);
    newer Packer reads the whole folder, so plugins.pkr.hcl declares the builders it must install first.
    """
    target = "." if packer_uses_init(version) else "box.pkr.hcl"
    commands = [f"{packer} init ."] if packer_uses_init(version) else []
    commands.append(f"{packer} build -force -only={only} -var-file={var_file} {target}")
    return commands
