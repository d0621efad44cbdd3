"""image.source "mirror": a bootable base disk built from a package mirror, with no installer and no loop device.

The route, each step a command line (so `hubvm --dry pack` prints them and MockContext tests see them):

1. mmdebstrap bootstraps the system into a directory (the OS's package list from templates/packer/os/<os>.yaml);
   its customize hook, templates/packer/scripts/mirror-customize.sh, writes fstab, networking, the serial
   console and the build login; a second hook copies the kernel and initrd out for step 3.
2. sfdisk writes an MBR partition table into a sparse file of vm.disk_gb; `mke2fs -d` writes the ext4 file
   system, filled from the directory, straight into the partition (-E offset=...): no loop device, no mount.
   qemu-img turns the raw file into a qcow2, the directory and the raw file are deleted.
3. Packer's qemu builder (source qemu.mirror) boots that disk with -kernel/-initrd/-append, since it has no
   boot loader yet; scripts/bootloader.sh runs grub-install and update-grub inside the guest, so the box
   boots by itself. The rest of the build is the same as for every other source.

Everything here but `build` is pure: command lines and Packer variables from the settings.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm.config.settings import Settings
from hubvm.host import tools
from hubvm.layout import Layout
from hubvm.shell import Runner, q

PARTITION_START = 1024 * 1024  # bytes; the first MiB holds the MBR and GRUB's core image
VARIANT = "important"  # Debian's "important" priority: what a minimal installed system has
HOOK_SCRIPT = Path("scripts") / "mirror-customize.sh"  # below the rendered Packer folder
VIRTIO_ROOT = "/dev/vda1"  # the root partition as the kernel sees it in Packer's VM (disk_interface virtio)


@dataclass(frozen=True)
class MirrorImage:
    """Everything the base disk is built from (see `spec`)."""

    suite: str
    sources: tuple[str, ...]  # one-line sources.list entries: "deb URL SUITE COMPONENTS"
    packages: tuple[str, ...]
    keyring: str
    hostname: str
    user: str
    password: str
    disk_gb: int


@dataclass(frozen=True)
class Paths:
    """Where the base disk and its parts go: builds/base/ and the rendered Packer folder."""

    base_dir: Path
    hook: Path

    @classmethod
    def of(cls, layout: Layout) -> Paths:
        return cls(layout.base_image_dir, layout.packer_dir / HOOK_SCRIPT)

    @property
    def rootfs(self) -> Path:
        return self.base_dir / "rootfs"

    @property
    def raw(self) -> Path:
        return self.base_dir / "disk.raw"

    @property
    def image(self) -> Path:
        return self.base_dir / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.base_dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.base_dir / "initrd.img"


def spec(s: Settings) -> MirrorImage:
    """The base disk's recipe from the settings and templates/packer/os/<os>.yaml's `mirror` section."""
    data = s.os_data["mirror"]
    mirror = s.image.mirror or data["url"]
    components = " ".join(data["components"])
    sources = [f"deb {mirror} {suite} {components}" for suite in data.get("suites") or [data["suite"]]]
    # The official security archive is added only with the official mirror: a private mirror may be all there is
    if data.get("security") and not s.image.mirror:
        sources.append(f"deb {data['security']} {components}")
    return MirrorImage(
        suite=data["suite"],
        sources=tuple(sources),
        packages=tuple(data["packages"]),
        keyring=data.get("keyring") or "",
        hostname=s.os_data["family"],  # the role of Ansible's vm role to name the machine; the box is generic
        user=s.ssh.user,
        password=s.ssh.password,
        disk_gb=s.vm.disk_gb,
    )



def mmdebstrap_command(image: MirrorImage, paths: Paths, root_uuid: str, mmdebstrap: str = "mmdebstrap",
                       copy_kernel: bool = True, dpkg_options: tuple[str, ...] = ()) -> str:
    """Bootstrap the system into paths.rootfs, customised, and (for Packer's first boot) copy its kernel and
    initrd beside it. `dpkg_options` stay in the tree's /etc/dpkg/dpkg.cfg.d/99mmdebstrap (mmdebstrap's
    --dpkgopt): whoever passes them removes that file before the tree becomes an image."""
    # mmdebstrap runs each hook with `sh -c HOOK exec ROOT`: "$1" must reach that shell unexpanded
    hook = " ".join([q(paths.hook), '"$1"', *(q(part) for part in (image.hostname, image.user, image.password,
                                                                    root_uuid))])
    # /vmlinuz and /initrd.img are the symlinks Debian and Ubuntu keep to the installed kernel
    copy_kernel_hook = f'cp -L "$1/vmlinuz" {q(paths.kernel)} && cp -L "$1/initrd.img" {q(paths.initrd)}'
    argv = [mmdebstrap, f"--variant={VARIANT}", f"--include={','.join(image.packages)}"]
    if image.keyring:
        argv.append(f"--keyring={image.keyring}")
    argv += [f"--dpkgopt={option}" for option in dpkg_options]
    argv.append(f"--customize-hook={hook}")
    if copy_kernel:
        argv.append(f"--customize-hook={copy_kernel_hook}")
    argv += [image.suite, str(paths.rootfs), *image.sources]
    return " ".join(q(arg) for arg in argv)


def raw_disk_commands(rootfs: Path, raw: Path, size: int, root_uuid: str) -> list[str]:
    """A sparse raw disk of `size` bytes: an MBR table with one bootable partition from PARTITION_START, and
    in it an ext4 file system filled from the `rootfs` tree."""
    fs_kib = (size - PARTITION_START) // 1024
    start_sector = PARTITION_START // 512
    return [
        f"rm -f {q(raw)} && truncate -s {size} {q(raw)}",
        f"echo 'start={start_sector}, type=83, bootable' | sfdisk --quiet --label dos {q(raw)}",
        # -d copies the tree (owners, modes, links, device nodes, xattrs) into the file system being made
        f"mke2fs -q -F -t ext4 -L root -U {root_uuid} -d {q(rootfs)} -E offset={PARTITION_START} "
        f"{q(raw)} {fs_kib}k",
    ]


def disk_commands(image: MirrorImage, paths: Paths, root_uuid: str, qemu_img: str = "qemu-img") -> list[str]:
    """The partitioned qcow2 disk from the bootstrapped directory, with no loop device and no mount."""
    return [
        *raw_disk_commands(paths.rootfs, paths.raw, image.disk_gb * 1024**3, root_uuid),
        f"{q(qemu_img)} convert -f raw -O qcow2 {q(paths.raw)} {q(paths.image)}",
        f"rm -rf {q(paths.raw)} {q(paths.rootfs)}",
    ]


def build_commands(image: MirrorImage, paths: Paths, root_uuid: str, mmdebstrap: str = "mmdebstrap",
                   qemu_img: str = "qemu-img") -> list[str]:
    """Every command of the base disk, in order: a fresh builds/base/, mmdebstrap, the disk."""
    return [
        f"rm -rf {q(paths.rootfs)} {q(paths.raw)} {q(paths.image)} && mkdir -p {q(paths.base_dir)}",
        mmdebstrap_command(image, paths, root_uuid, mmdebstrap),
        *disk_commands(image, paths, root_uuid, qemu_img),
    ]


def kernel_args(paths: Paths, packer_dir: Path, console_log: Path) -> list[list[str]]:
    """Packer's qemuargs for the first boot: the kernel from the image, its root partition, a serial log."""
    return [
        ["-kernel", _relative(paths.kernel, packer_dir)],
        ["-initrd", _relative(paths.initrd, packer_dir)],
        ["-append", f"root={VIRTIO_ROOT} ro console=ttyS0,115200n8"],
        ["-serial", f"file:{_relative(console_log, packer_dir)}"],
    ]


def packer_variables(s: Settings, layout: Layout) -> dict[str, Any]:
    """The Packer variables of source qemu.mirror (Packer runs in builds/packer: paths relative to it)."""
    paths = Paths.of(layout)
    return {
        "iso_url": _relative(paths.image, layout.packer_dir),
        "iso_checksum": "none",
        "mirror_kernel_args": kernel_args(paths, layout.packer_dir, layout.logs_dir / "pack-console.log"),
    }


def build(sh: Runner, s: Settings, layout: Layout, root_uuid: str | None = None) -> Path:
    """Run every command of the base disk through `sh` (so --dry prints them); returns the qcow2's path.
    mmdebstrap needs root here (it bootstraps into a directory and chroots into it)."""
    paths = Paths.of(layout)
    image = spec(s)
    for command in build_commands(image, paths, root_uuid or str(uuid.uuid4()), tools.command(s, "mmdebstrap"),
                                  tools.command(s, "qemu_img")):
        sh.run(command)
    return paths.image


def _relative(path: Path, start: Path) -> str:
    """`path` as seen from `start`, both inside builds/ (../base/disk.qcow2 from builds/packer)."""
    return os.path.relpath(path, start)
