"""image.source mirror: the command lines of the base disk and the Packer variables of source qemu.mirror."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from hubvm import baseimage
from hubvm.config import settings
from hubvm.layout import Layout
from tests.conftest import REPO, settings_with

UUID = "0b7c54a2-3f35-4b8e-9d2c-1f0e6a1d2c3b"
MIRROR = {"image.source": "mirror", "vm.provider": "libvirt", "export.formats": ["qcow2"]}


def parse(**overrides: object) -> settings.Settings:
    return settings_with(REPO, **{**MIRROR, **overrides})


class Recorder:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str) -> None:
        self.commands.append(command)


def test_spec_takes_the_debian_mirror_and_the_build_login() -> None:
    image = baseimage.spec(parse(**{"vm.disk_gb": 12}))
    assert image.suite == "bookworm"
    assert image.sources == ("deb http://deb.debian.org/debian bookworm main",
                             "deb http://deb.debian.org/debian bookworm-updates main",
                             "deb http://deb.debian.org/debian-security bookworm-security main")
    for package in ("linux-image-amd64", "grub-pc", "openssh-server", "sudo", "python3", "systemd-resolved"):
        assert package in image.packages
    assert (image.user, image.password, image.disk_gb) == ("vagrant", "vagrant", 12)
    assert image.keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"  # also from a non-Debian host


def test_a_private_mirror_replaces_every_source() -> None:
    image = baseimage.spec(parse(**{"image.mirror": "http://mirror.example/debian"}))
    assert image.sources == ("deb http://mirror.example/debian bookworm main",
                             "deb http://mirror.example/debian bookworm-updates main")


def test_ubuntu_needs_its_keyring() -> None:
    image = baseimage.spec(parse(**{"vm.os": "ubuntu2404"}))
    assert image.keyring == "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    assert "linux-image-virtual" in image.packages
    assert image.sources[0] == "deb http://archive.ubuntu.com/ubuntu noble main universe"


def test_build_runs_mmdebstrap_then_makes_the_disk_without_loop_devices() -> None:
    s = parse()
    recorder = Recorder()
    image_path = baseimage.build(recorder, s, Layout.of(s), root_uuid=UUID)
    base = REPO / "builds" / "base"
    assert image_path == base / "disk.qcow2"
    commands = recorder.commands
    assert commands[0].startswith(f"rm -rf {base}/rootfs ")
    argv = shlex.split(commands[1])
    assert argv[0].endswith("mmdebstrap")
    assert "--variant=important" in argv
    hooks = [a.split("=", 1)[1] for a in argv if a.startswith("--customize-hook=")]
    # the hook gets "$1" (mmdebstrap's root directory) unexpanded, then its own arguments
    assert shlex.split(hooks[0])[1:] == ["$1", "debian", "vagrant", "vagrant", UUID]
    assert hooks[0].startswith(str(REPO / "builds" / "packer" / "scripts" / "mirror-customize.sh"))
    assert f'"$1/vmlinuz" {base}/vmlinuz' in hooks[1]
    assert argv[-5:] == ["bookworm", f"{base}/rootfs", *baseimage.spec(s).sources]
    disk = commands[2:]
    assert disk[0].endswith(f"truncate -s {20 * 1024**3} {base}/disk.raw")
    assert "sfdisk" in disk[1] and "--label dos" in disk[1] and "start=2048" in disk[1]
    assert f"-U {UUID}" in disk[2] and f"-d {base}/rootfs" in disk[2] and "-E offset=1048576" in disk[2]
    assert disk[2].endswith(f"{20 * 1024**2 - 1024}k")
    assert "convert -f raw -O qcow2" in disk[3]
    assert disk[4] == f"rm -rf {base}/disk.raw {base}/rootfs"
    assert not any("losetup" in c or "mount " in c for c in commands)


def test_build_makes_a_fresh_uuid_per_build() -> None:
    s = parse()
    first, second = Recorder(), Recorder()
    baseimage.build(first, s, Layout.of(s))
    baseimage.build(second, s, Layout.of(s))
    assert first.commands[1] != second.commands[1]


def test_packer_variables_boot_the_kernel_directly_with_paths_from_builds_packer() -> None:
    s = parse()
    variables = baseimage.packer_variables(s, Layout.of(s))
    assert variables["iso_url"] == "../base/disk.qcow2"
    assert variables["iso_checksum"] == "none"
    assert variables["mirror_kernel_args"] == [
        ["-kernel", "../base/vmlinuz"],
        ["-initrd", "../base/initrd.img"],
        ["-append", "root=/dev/vda1 ro console=ttyS0,115200n8"],
        ["-serial", "file:../logs/pack-console.log"],
    ]


@pytest.mark.parametrize("script", ["mirror-customize.sh", "bootloader.sh"])
def test_scripts_exist_and_are_executable(script: str) -> None:
    path = REPO / "templates" / "packer" / "scripts" / script
    assert path.is_file() and path.stat().st_mode & 0o111


def test_the_packer_template_boots_the_mirror_disk_with_the_kernel_args() -> None:
    template = (REPO / "templates" / "packer" / "box.pkr.hcl").read_text()
    block = template[template.index('name             = "mirror"'):]
    block = block[:block.index("\n  }\n")]
    assert "disk_image       = true" in block
    assert "qemuargs = var.mirror_kernel_args" in block
    assert '"scripts/bootloader.sh"' in template
    assert Path(REPO / "templates" / "packer" / "scripts" / "bootloader.sh").read_text().count("grub-install") == 1
