"""A vagrant-libvirt box from a qcow2 disk, laid out as `vagrant package` makes it for the libvirt provider:
box.img (the disk), metadata.json (provider, format, virtual size in GiB, rounded up), a Vagrantfile (the
provider's driver), and the build's private key as vagrant_private_key with the Vagrantfile line that uses it
(what Vagrant adds when the machine had a key inserted). The box is a plain tar (Vagrant reads tar, tar.gz and
zip): box.img is a compressed qcow2 already.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hubvm.shell import q

DISK = "box.img"
METADATA = "metadata.json"
VAGRANTFILE = "Vagrantfile"
PRIVATE_KEY = "vagrant_private_key"
MEMBERS = (METADATA, VAGRANTFILE, PRIVATE_KEY, DISK)


def metadata(virtual_size_bytes: int) -> str:
    """vagrant-libvirt's metadata.json (box format v1)."""
    gib = math.ceil(virtual_size_bytes / 1024**3)
    return json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": gib}, indent=2) + "\n"


def vagrantfile() -> str:
    """What vagrant-libvirt's package writes, then the line Vagrant's package appends for the box's key."""
    return "\n".join([
        'Vagrant.configure("2") do |config|',
        "  config.vm.provider :libvirt do |libvirt|",
        '    libvirt.driver = "kvm"',
        "  end",
        "end",
        "",
        'Vagrant.configure("2") do |config|',
        f'  config.ssh.private_key_path = File.expand_path("../{PRIVATE_KEY}", __FILE__)',
        "end",
        "",
    ])


def tar_command(box: Path, folder: Path) -> str:
    """The box from `folder`, which holds MEMBERS (box.img last: `vagrant box add` reads the small ones first)."""
    return f"tar -cf {q(box)} -C {q(folder)} {' '.join(MEMBERS)}"
