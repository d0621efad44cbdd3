"""What this host must have, per task: the tools and commands each task needs for a configuration (`needs`, the
one place that says it), and where a configured tool is (`locate`, `command`). How each need is judged is
hubvm.host.probes; `hubvm check` prints them all (hubvm.host.check).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
LIBVIRT_URI = "qemu:///system"
# vagrant-libvirt's `vagrant package` runs these by name
GUESTFS_COMMANDS = ("virt-sysprep", "virt-sparsify")


# name -> (executable, Debian package, why it is needed)
COMMANDS = {
    "dnsmasq": ("dnsmasq", "dnsmasq-base", "libvirt's NAT networks, vagrant-libvirt's management network"),
    "rsync": ("rsync", "rsync", "vagrant-libvirt copies vm.data into the VM with rsync"),
    "mke2fs": ("mke2fs", "e2fsprogs", "the mirror image's file system"),
    "sfdisk": ("sfdisk", "fdisk", "the mirror image's partition table"),
    "systemd-nspawn": ("systemd-nspawn", "systemd-container", "the native build's container"),
    "ip": ("ip", "iproute2", "the native build's network namespace"),
    "nft": ("nft", "nftables", "the native build's way out (NAT)"),
    "ssh-keygen": ("ssh-keygen", "openssh-client", "the native build's login key"),
    **{name: (name, "libguestfs-tools", "vagrant-libvirt's package runs it") for name in GUESTFS_COMMANDS},
}

KEYRINGS = {"debian": ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
            "ubuntu": ("/usr/share/keyrings/ubuntu-archive-keyring.gpg", "ubuntu-keyring")}


def needs(task: str, s: Any) -> list[str]:
    """The names of the needs of `task` for the settings `s`, in the order a build meets them."""
    libvirt = s.vm.provider == "libvirt"
    provider = (["virsh", "libvirt daemon", "qemu_system", "dnsmasq", "vagrant-libvirt"]
                + (["KVM"] if s.vm.accelerator == "kvm" else []) + (["rsync"] if s.vm.data else [])
                if libvirt else ["vboxmanage", "vboxdrv"])
    mirror = ["mmdebstrap", "mke2fs", "sfdisk", "archive keyring"] if s.image.source == "mirror" else []
    builder = ["qemu_system", "qemu_img"] + (["KVM"] if s.vm.accelerator == "kvm" else []) if libvirt \
        else ["vboxmanage", "vboxdrv"]
    if s.build.mode == "native":
        native = ["root", *mirror, "systemd-nspawn", "ip", "nft", "ssh-keygen", "ansible_playbook", "qemu_system",
                  "qemu_img", *(["KVM"] if s.vm.accelerator == "kvm" else [])]
        table = {"pack": [], "up": [], "provision": ["ansible_playbook"], "provision-vagrant": ["vagrant"],
                 "export": native, "all": native, "check": native, "publish": []}
        return list(dict.fromkeys(table.get(task, [])))
    table = {
        "pack": [*mirror, "packer", *builder],
        "up": ["vagrant", "ansible_playbook", *provider],
        "provision": ["ansible_playbook"],
        "provision-vagrant": ["vagrant", "ansible_playbook"],
        "export": ["vagrant", "ansible_playbook", *provider]
        + ([*GUESTFS_COMMANDS, "libguestfs appliance"] if libvirt else [])
        + (["qemu_img"] if "qcow2" in s.export.formats or (libvirt and {"ova", "ovf"} & set(s.export.formats))
           else []),  # a libvirt box's disk becomes the OVA's VMDK with qemu-img (hubvm.ovf)
    }
    table["publish"] = ["qemu_img"] if s.publish.disk_format == "raw" else []
    table["all"] = table["pack"] + table["up"] + table["export"]
    table["check"] = table["all"]
    return list(dict.fromkeys(table.get(task, [])))


def needs_of_run(task_names: Iterable[str], s: Any) -> list[str]:
    """Everything a run of these tasks needs (pre-tasks included), each once."""
    # check only reports; all checks the whole run itself, once it knows there is something to build
    names = [name for name in task_names if name not in ("check", "all")]
    return list(dict.fromkeys(need for task in names for need in needs(task, s)))


def locate(command: str, search_path: str | None = None) -> str | None:
    """A configured tool: a path, or a name on PATH or beside this Python (a virtualenv's bin/)."""
    if os.sep in command:
        path = Path(command).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    path = search_path if search_path is not None else os.environ.get("PATH", "")
    extra = os.pathsep.join(["/usr/sbin", "/sbin"])  # dnsmasq, mke2fs, sfdisk live here; not on every user's PATH
    return shutil.which(command, path=os.pathsep.join([path, str(Path(sys.executable).parent), extra]))


def command(s: Any, key: str) -> str:
    """The command to type for a configured tool: its path when found, else the configured name."""
    return locate(getattr(s.tools, key)) or getattr(s.tools, key)
