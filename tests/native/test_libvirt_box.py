"""The vagrant-libvirt box the native build makes: its members, metadata and Vagrantfile, as Vagrant reads them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hubvm.native import libvirt_box


def test_the_box_is_laid_out_as_vagrant_package_makes_it() -> None:
    assert json.loads(libvirt_box.metadata(10 * 1024**3)) == {"provider": "libvirt", "format": "qcow2",
                                                             "virtual_size": 10}
    assert json.loads(libvirt_box.metadata(10 * 1024**3 + 1))["virtual_size"] == 11
    vagrantfile = libvirt_box.vagrantfile()
    assert 'libvirt.driver = "kvm"' in vagrantfile
    assert 'config.ssh.private_key_path = File.expand_path("../vagrant_private_key", __FILE__)' in vagrantfile
    assert libvirt_box.tar_command(Path("/v/a.box"), Path("/b/box")) == \
        "tar -cf /v/a.box -C /b/box metadata.json Vagrantfile vagrant_private_key box.img"


def test_the_box_vagrantfile_is_ruby_vagrant_reads(tmp_path: Path) -> None:
    """Vagrant itself loads the box's Vagrantfile (as it does a box's) and sees the private key."""
    if subprocess.run(["which", "vagrant"], capture_output=True).returncode:
        pytest.skip("vagrant not found")
    (tmp_path / "Vagrantfile").write_text(libvirt_box.vagrantfile().replace(
        'Vagrant.configure("2") do |config|\n  config.vm.provider',
        'Vagrant.configure("2") do |config|\n  config.vm.box = "x"\n  config.vm.provider', 1))
    (tmp_path / libvirt_box.PRIVATE_KEY).write_text("a key\n")
    result = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, capture_output=True,
                            text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


