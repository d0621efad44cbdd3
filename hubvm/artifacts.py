"""What builds/vm/ holds after an export, and the pure parts of making it: the list of artifacts, checksums,
sizes, the OVA's member order, and manifest.json."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hubvm import binder, guest
from hubvm.config.settings import Settings, image_source
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import human_bytes


def artifact_paths(s: Settings, layout: Layout) -> list[Path]:
    """What builds/vm/ holds after an export."""
    names = [f"{s.vm.name}.box", "SHA256SUMS", "manifest.json"]
    names += [{"ovf": "ovf", "ova": f"{s.vm.name}.ova", "qcow2": f"{s.vm.name}.qcow2"}[f] for f in s.export.formats]
    return [layout.artifact(name) for name in names]


def qcow2_options(compression: str) -> str:
    """qemu-img convert's options for the exported qcow2 (export.compression): compressed as distributions ship
    their cloud images (4.0 GiB -> 1.5 GiB for the full build test's hub); a guest decompresses a cluster when it
    first writes it."""
    return {"zlib": "-c -O qcow2", "zstd": "-c -O qcow2 -o compression_type=zstd", "none": "-O qcow2"}[compression]


def size(path: Path) -> str:
    """A file's size, or a folder's total, as the tool prints sizes."""
    total = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return human_bytes(total)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def box_disk(s: Settings, unpacked: Path) -> Path:
    """The disk inside a packaged box: VirtualBox's VMDK, or vagrant-libvirt's box.img (qcow2)."""
    if s.vm.provider == "libvirt":
        return unpacked / "box.img"
    found = sorted(unpacked.glob("*.vmdk"))
    return found[0] if found else unpacked / "box-disk001.vmdk"


def lay_out_ovf(s: Settings, unpacked: Path, partial: Path) -> None:
    """OVF + VMDK (a folder) and/or the OVA (a tar whose first member is the OVF descriptor) from a VirtualBox box
    (other providers' disks become an OVF package in hubvm.ovf)."""
    ovf = next(iter(sorted(unpacked.glob("*.ovf"))), None)
    if ovf is None:
        raise UserError(f"the packaged box holds no OVF ({unpacked}), which vagrant package of a VirtualBox box "
                        "makes; see builds/logs/export.log")
    members = [ovf, *sorted(unpacked.glob("*.vmdk"))]
    if "ova" in s.export.formats:
        with tarfile.open(partial / f"{s.vm.name}.ova", "w", format=tarfile.USTAR_FORMAT) as ova:
            for member in members:
                ova.add(member, arcname=member.name)
    if "ovf" in s.export.formats:
        (partial / "ovf").mkdir()
        for member in members:
            shutil.copy2(member, partial / "ovf" / member.name)


def write_checksums_and_manifest(s: Settings, partial: Path, versions: Mapping[str, str], digest: str,
                                 box_digest: str, features: Mapping[str, Any] | None = None) -> None:
    files = sorted(p for p in partial.rglob("*") if p.is_file() and "box" not in p.relative_to(partial).parts[:1])
    sums = {str(p.relative_to(partial)): sha256(p) for p in files}
    (partial / "SHA256SUMS").write_text("".join(f"{h}  {name}\n" for name, h in sums.items()))
    manifest = manifest_data(s, versions, digest, box_digest, features or {})
    manifest["artifacts"] = {name: {"sha256": h, "bytes": (partial / name).stat().st_size} for name, h in sums.items()}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def manifest_data(s: Settings, versions: Mapping[str, str], digest: str, box_digest: str,
                  features: Mapping[str, Any]) -> dict[str, Any]:
    key = s.export.ssh_public_key
    return {
        "name": s.vm.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "os": s.os_data["name"],
        "provider": s.vm.provider,
        "guest_agent": s.vm.provider == "libvirt",  # qemu-guest-agent (role base): OpenStack's hw_qemu_guest_agent
        "base_image": {"source": s.image.source, **image_source(s)},
        "tool_versions": dict(versions),
        "configuration_sha256": digest,
        "box_inputs_sha256": box_digest,
        "hub": {"flavour": s.hub.flavour, "admin_users": list(s.hub.admin_users), "port": s.hub.port,
                "https": s.hub.https, "https_port": s.hub.https_port if s.hub.https != "off" else None,
                "signup": s.hub.signup, "admin_passwords": {
                    name: "bcrypt hash from the configuration" if name in s.hub.admin_password_hashes else
                    f"generated at each copy's first boot (its console, {guest.ADMIN_PASSWORDS})"
                    for name in s.hub.admin_users},
                **features},
        "packages": {"python": list(s.packages.python), "r": list(s.packages.r), "cran": list(s.packages.cran),
                     "bioconductor": list(s.packages.bioconductor),
                     **({"binder": folder.record()} if (folder := binder.of(s)) else {})},
        "access": {
            "ssh_user": s.export.ssh_user if key else None,
            "ssh_public_key": key.read_text().split()[0] + " " + key.name if key else None,
            "vagrant_user_and_insecure_key": "kept" if s.export.keep_vagrant_access else "removed",
            "password_ssh_logins": "enabled" if s.export.keep_vagrant_access else "disabled",
        },
    }
