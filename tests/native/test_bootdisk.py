"""GRUB on a disk image file without a loop device: the boot code written into the image, checked byte by byte and
against a disk made by the real sfdisk."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from hubvm.host import tools
from hubvm.native import bootdisk


def mbr(start: int = 2048, count: int = 20000) -> bytes:
    sector = bytearray(512)
    sector[0x1B8:0x1BC] = b"\x12\x34\x56\x78"                                       # disk signature
    struct.pack_into("<BBBBBBBBII", sector, 0x1BE, 0x80, 0, 0, 0, 0x83, 0, 0, 0, start, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def boot_img() -> bytes:
    image = bytearray(range(256)) * 2
    image[0x66:0x68] = b"\xeb\x05"  # the jump at the drive check
    image[510:512] = b"\x55\xaa"
    return bytes(image)


def core_img(size: int = 3 * 512 + 100) -> bytes:
    image = bytearray(b"\xaa" * size)
    image[500 - 12:500] = bytes(12)                                   # the terminator diskboot.img ships with
    struct.pack_into("<QHH", image, 500, 1, 1, 0x820)                 # and one blocklist entry, to be replaced
    return bytes(image)


def test_embed_keeps_the_partition_table_and_points_boot_img_at_core_img() -> None:
    sector0, boot, core = mbr(), boot_img(), core_img()
    new_boot, new_core = bootdisk.embed(sector0, boot, core)
    assert len(new_boot) == 512
    assert new_boot[0x1B8:0x1FE] == sector0[0x1B8:0x1FE]              # signature and partition entries kept
    assert new_boot[0x1FE:] == b"\x55\xaa"
    assert new_boot[0x03:0x5A] == sector0[0x03:0x5A]                  # the BPB from the disk (zeros)
    assert struct.unpack_from("<Q", new_boot, 0x5C)[0] == 1           # core.img starts at LBA 1
    assert new_boot[0x64] == 0xFF and new_boot[0x66:0x68] == b"\x90\x90"
    assert new_boot[:0x03] == boot[:0x03] and new_boot[0x68:0x1B8] == boot[0x68:0x1B8]  # GRUB's code untouched
    assert len(new_core) == 4 * 512 and new_core[len(core):] == bytes(4 * 512 - len(core))
    assert struct.unpack_from("<QHH", new_core, 500) == (2, 3, 0x820)  # sectors 2-4 at 0x820:0
    assert struct.unpack_from("<QHH", new_core, 488) == (0, 0, 0)
    assert new_core[:488] == core[:488] and new_core[512:len(core)] == core[512:]


def test_embed_refuses_what_it_cannot_write_safely() -> None:
    with pytest.raises(bootdisk.EmbedError, match="no MBR partition table"):
        bootdisk.embed(bytes(512), boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match="no partition"):
        bootdisk.embed(mbr()[:0x1BE] + bytes(64) + b"\x55\xaa", boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match="needs 4 sectors, the gap before the first partition has 2"):
        bootdisk.embed(mbr(start=3), boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match=r"boot\.img is 100 bytes"):
        bootdisk.embed(mbr(), bytes(100), core_img())
    with pytest.raises(bootdisk.EmbedError, match="no blocklist terminator"):
        bootdisk.embed(mbr(), boot_img(), b"\x01" * 1024)


def test_the_embed_command_writes_into_a_disk_file_made_by_the_real_sfdisk(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "8M", str(disk)], check=True)
    sfdisk = tools.locate("sfdisk")  # in /usr/sbin, which a user's PATH may not have
    assert sfdisk, "sfdisk not found (package fdisk)"
    subprocess.run([sfdisk, "--quiet", "--label", "dos", str(disk)], input="start=2048, type=83, bootable\n",
                   text=True, check=True)
    table = disk.read_bytes()[0x1B8:0x200]
    (tmp_path / "boot.img").write_bytes(boot_img())
    (tmp_path / "core.img").write_bytes(core_img())
    tree = tmp_path / "tree"
    modules = tree / "boot" / "grub" / "i386-pc"
    modules.mkdir(parents=True)
    (modules / "boot.img").write_bytes(boot_img())
    (modules / "core.img").write_bytes(core_img())
    command = bootdisk.embed_command("python3", disk, tree)
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "core.img in sectors 1-4" in result.stdout
    written = disk.read_bytes()
    assert written[0x1B8:0x200] == table
    assert written[512:2 * 512] == bootdisk.embed(written[:512], boot_img(), core_img())[1][:512]
    assert written[5 * 512:2048 * 512] == bytes(2043 * 512)  # nothing past core.img
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(4096))
    failed = subprocess.run(bootdisk.embed_command("python3", blank, tree), shell=True, capture_output=True,
                            text=True)
    assert (failed.returncode, failed.stderr) == (1, "error: the disk has no MBR partition table (no 55 aa "
                                                     "signature)\n")
    assert blank.read_bytes() == bytes(4096)


def test_grub_cfg_boots_the_installed_kernel_with_the_trees_settings() -> None:
    settings_ = bootdisk.parse_grub_settings("1\nconsole=tty0 console=ttyS0,115200n8\nquiet\nconsole serial\n"
                                             "serial --unit=0 --speed=115200\nDebian\n")
    text = bootdisk.grub_cfg("1111-2222", "/boot/vmlinuz-6.1.0-56-amd64", "/boot/initrd.img-6.1.0-56-amd64",
                             settings_)
    assert "set timeout=1" in text
    assert "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial" in text
    assert "search --no-floppy --fs-uuid --set=root 1111-2222" in text
    assert ("linux /boot/vmlinuz-6.1.0-56-amd64 root=UUID=1111-2222 ro console=tty0 console=ttyS0,115200n8 "
            "quiet\n") in text
    assert "initrd /boot/initrd.img-6.1.0-56-amd64" in text
    assert bootdisk.load_cfg("1111-2222") == ("search.fs_uuid 1111-2222 root hd0,msdos1\n"
                                              "set prefix=($root)'/boot/grub'\n")
    assert bootdisk.parse_grub_settings("") == bootdisk.GrubSettings()


def test_grub_files_come_from_the_trees_own_grub() -> None:
    commands = bootdisk.grub_files_commands(Path("/b/rootfs"))
    assert commands[0] == "mkdir -p /b/rootfs/boot/grub/i386-pc && cp -a /b/rootfs/usr/lib/grub/i386-pc/. " \
        "/b/rootfs/boot/grub/i386-pc/"
    assert commands[1].startswith("chroot /b/rootfs grub-mkimage -O i386-pc ")
    assert commands[1].endswith("biosdisk part_msdos ext2 search_fs_uuid")
    assert "-c /boot/grub/i386-pc/load.cfg" in commands[1]


