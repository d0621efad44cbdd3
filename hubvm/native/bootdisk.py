"""A bootable disk made from a root filesystem tree, with no loop device, no mount and no VM: the native build's
route from the provisioned tree to the disk the VM path gets from `vagrant package`.

1. GRUB's files go into the tree as `grub-install --target=i386-pc` puts them: the i386-pc modules under
   /boot/grub/i386-pc, grubenv, and a core image made by the tree's own `grub-mkimage` (run with chroot), whose
   embedded configuration finds the root file system by its UUID. grub.cfg is written here (`grub_cfg`) from
   the tree's own /etc/default/grub settings, in the form update-grub gives; the appliance's own update-grub
   (at its first kernel upgrade) replaces it.
2. The disk: an MBR partition table (sfdisk) and an ext4 file system filled from the tree (`mke2fs -d`), written
   straight into the partition (hubvm.baseimage.raw_disk_commands, as for the mirror base disk).
3. The boot code: `embed` does what `grub-bios-setup --no-rs-codes` does for an MBR disk, on the image file -
   GRUB's boot.img in the first sector (the partition table kept, the core image's sector recorded, the
   drive check disabled as for a hard disk) and core.img in the sectors before the first partition (its
   blocklist naming where the rest of it lies). grub-bios-setup itself cannot do this here: before writing, it
   looks for the block device holding its own files' directory (/dev of the host, or of a chroot - a mount),
   which an image file in a folder does not have, and which a container or CI runner may not even show.
   The offsets are boot.img's and diskboot.img's documented layout (GRUB's include/grub/i386/pc/boot.h,
   stable since GRUB 2.00); the proof is the e2e test booting the disk under QEMU without -kernel.

`python -m hubvm.native.bootdisk embed DISK BOOT CORE` runs it as one command line (shown by `hubvm --dry`).
"""

from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from hubvm.shell import q

SECTOR = 512
# boot.img (the MBR's boot code), offsets as in GRUB's include/grub/i386/pc/boot.h
BPB_START, BPB_END = 0x03, 0x5A             # a DOS BIOS parameter block: kept from the disk
KERNEL_SECTOR = 0x5C                        # 64-bit LBA of the core image's first sector
BOOT_DRIVE = 0x64                           # 0xff: the drive the BIOS booted from
DRIVE_CHECK = 0x66                          # a jump, replaced by two NOPs on hard disks
PARTITION_TABLE_START, PARTITION_TABLE_END = 0x1B8, 0x1FE   # disk signature and the four entries: kept
# diskboot.img (the core image's first sector) ends with blocklists of 12 bytes: start LBA, sectors, segment
BLOCKLIST = struct.Struct("<QHH")
CORE_SEGMENT = 0x820                        # where the rest of the core image is loaded (0x8000 + 0x200)
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "search_fs_uuid")   # what core.img needs to find /boot/grub
GRUB_DIR = "/boot/grub"
PLATFORM = "i386-pc"


class EmbedError(Exception):
    """The disk or the images are not what `embed` can work with."""


def first_partition_start(sector0: bytes) -> int:
    """The first sector of the lowest partition of an MBR partition table."""
    if sector0[510:512] != b"\x55\xaa":
        raise EmbedError("the disk has no MBR partition table (no 55 aa signature)")
    starts = []
    for index in range(4):
        entry = sector0[0x1BE + 16 * index: 0x1BE + 16 * (index + 1)]
        start, count = struct.unpack_from("<II", entry, 8)
        if entry[4] != 0 and count:
            starts.append(start)
    if not starts:
        raise EmbedError("the MBR partition table has no partition")
    return min(starts)


def embed(sector0: bytes, boot_img: bytes, core_img: bytes) -> tuple[bytes, bytes]:
    """The new first sector and the core image as it goes to sectors 1.. of the disk (see the module doc)."""
    if len(boot_img) != SECTOR:
        raise EmbedError(f"boot.img is {len(boot_img)} bytes, not {SECTOR}")
    if len(core_img) < SECTOR:
        raise EmbedError("core.img is smaller than one sector")
    sectors = -(-len(core_img) // SECTOR)
    gap = first_partition_start(sector0) - 1
    if sectors > gap:
        raise EmbedError(f"core.img needs {sectors} sectors, the gap before the first partition has {gap}")
    boot = bytearray(boot_img)
    boot[BPB_START:BPB_END] = sector0[BPB_START:BPB_END]
    boot[PARTITION_TABLE_START:PARTITION_TABLE_END] = sector0[PARTITION_TABLE_START:PARTITION_TABLE_END]
    boot[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"
    boot[BOOT_DRIVE] = 0xFF
    struct.pack_into("<Q", boot, KERNEL_SECTOR, 1)
    core = bytearray(core_img) + bytes(sectors * SECTOR - len(core_img))
    # clear the blocklists diskboot.img comes with, from the last one backwards, up to the zero terminator
    offset = SECTOR - BLOCKLIST.size
    while BLOCKLIST.unpack_from(core, offset)[1]:
        core[offset:offset + BLOCKLIST.size] = bytes(BLOCKLIST.size)
        offset -= BLOCKLIST.size
        if offset <= 0:
            raise EmbedError("core.img's first sector has no blocklist terminator: not a GRUB i386-pc core image")
    # the first sector (diskboot) is at LBA 1, the rest follows it: one blocklist, then a terminator
    BLOCKLIST.pack_into(core, SECTOR - BLOCKLIST.size, 2, sectors - 1, CORE_SEGMENT)
    BLOCKLIST.pack_into(core, SECTOR - 2 * BLOCKLIST.size, 0, 0, 0)
    return bytes(boot), bytes(core)


def embed_into(disk: Path, boot_img: Path, core_img: Path) -> int:
    """Write GRUB's boot code into an image file (see `embed`); returns the core image's sectors."""
    with disk.open("r+b") as stream:
        sector0 = stream.read(SECTOR)
        boot, core = embed(sector0, boot_img.read_bytes(), core_img.read_bytes())
        stream.seek(0)
        stream.write(boot)
        stream.seek(SECTOR)
        stream.write(core)
    return len(core) // SECTOR


@dataclass(frozen=True)
class GrubSettings:
    """What update-grub would read from /etc/default/grub and /etc/default/grub.d/*.cfg."""

    timeout: str = "5"
    cmdline: str = ""
    cmdline_default: str = "quiet"
    terminal: str = ""
    serial_command: str = ""
    distributor: str = "Debian"


# Printed by `grub_settings_command`, one per line, in GrubSettings' order
GRUB_VARIABLES = ("GRUB_TIMEOUT", "GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT", "GRUB_TERMINAL",
                  "GRUB_SERIAL_COMMAND", "GRUB_DISTRIBUTOR")


def grub_settings_command(tree: Path) -> str:
    """Read the tree's GRUB settings as update-grub does (its files sourced by its own shell, in the tree)."""
    script = ("set -e; . /etc/default/grub; for f in /etc/default/grub.d/*.cfg; do [ -e \"$f\" ] && . \"$f\"; "
              "done; printf '%s\\n' " + " ".join(f'"${name}"' for name in GRUB_VARIABLES))
    return f"chroot {q(tree)} /bin/sh -c {q(script)}"


def parse_grub_settings(output: str) -> GrubSettings:
    lines = output.split("\n")
    if len(lines) < len(GRUB_VARIABLES):
        return GrubSettings()
    values = dict(zip(GRUB_VARIABLES, lines, strict=False))
    return GrubSettings(timeout=values["GRUB_TIMEOUT"] or "5", cmdline=values["GRUB_CMDLINE_LINUX"],
                        cmdline_default=values["GRUB_CMDLINE_LINUX_DEFAULT"], terminal=values["GRUB_TERMINAL"],
                        serial_command=values["GRUB_SERIAL_COMMAND"],
                        distributor=values["GRUB_DISTRIBUTOR"] or "Debian")


def grub_cfg(root_uuid: str, kernel: str, initrd: str, settings: GrubSettings) -> str:
    """/boot/grub/grub.cfg: one entry for the installed kernel, the root found by UUID, the tree's settings
    (time-out, kernel command line, serial console) as update-grub would apply them."""
    terminal = []
    if settings.serial_command:
        terminal.append(settings.serial_command)
    if settings.terminal:
        terminal += [f"terminal_input {settings.terminal}", f"terminal_output {settings.terminal}"]
    options = " ".join(part for part in (settings.cmdline, settings.cmdline_default) if part)
    return "\n".join([
        "# Written by hubvm (native build) in the form update-grub gives; update-grub replaces it.",
        "if [ -s $prefix/grubenv ]; then",
        "  load_env",
        "fi",
        *terminal,
        f"set timeout={settings.timeout}",
        "set default=0",
        "insmod part_msdos",
        "insmod ext2",
        f"search --no-floppy --fs-uuid --set=root {root_uuid}",
        f"menuentry '{settings.distributor} GNU/Linux' --class debian --class gnu-linux --class os {{",
        "  insmod gzio",
        f"  linux {kernel} root=UUID={root_uuid} ro {options}".rstrip(),
        f"  initrd {initrd}",
        "}",
        "",
    ])


def load_cfg(root_uuid: str) -> str:
    """The configuration embedded in core.img: find the root file system by UUID, GRUB's files below it."""
    return f"search.fs_uuid {root_uuid} root hd0,msdos1\nset prefix=($root)'{GRUB_DIR}'\n"


def grub_files_commands(tree: Path) -> list[str]:
    """Put GRUB's modules into /boot/grub/i386-pc, make its core image and grubenv, with the tree's own GRUB
    (load.cfg must be written first, see `load_cfg`)."""
    t = q(tree)
    modules = f"{GRUB_DIR}/{PLATFORM}"
    return [
        f"mkdir -p {t}{modules} && cp -a {t}/usr/lib/grub/{PLATFORM}/. {t}{modules}/",
        f"chroot {t} grub-mkimage -O {PLATFORM} -d /usr/lib/grub/{PLATFORM} -c {modules}/load.cfg "
        f"-p {GRUB_DIR} -o {modules}/core.img {' '.join(GRUB_MODULES)}",
        f"chroot {t} grub-editenv {GRUB_DIR}/grubenv create",
    ]


def embed_command(python: str, disk: Path, tree: Path) -> str:
    """`embed` run as a command line (`python -m hubvm.native.bootdisk embed ...`), on the images the tree's
    grub-mkimage made."""
    modules = tree / GRUB_DIR.lstrip("/") / PLATFORM
    return " ".join(q(part) for part in (python, "-m", __name__, "embed", disk, modules / "boot.img",
                                         modules / "core.img"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write GRUB's BIOS boot code into a disk image file")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("embed", help="boot.img into the MBR, core.img before the first partition")
    command.add_argument("disk", type=Path)
    command.add_argument("boot_img", type=Path)
    command.add_argument("core_img", type=Path)
    args = parser.parse_args(argv)
    try:
        sectors = embed_into(args.disk, args.boot_img, args.core_img)
    except (EmbedError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"GRUB's boot code is in {args.disk}: boot.img in sector 0, core.img in sectors 1-{sectors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
