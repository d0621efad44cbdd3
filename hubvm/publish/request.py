"""What to publish where: the request and its checks, what builds/vm/'s manifest says of the export (and the
defaults that follow from it: image name, properties, min_disk), and the plan a dry run prints."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubvm.config.schema import choices_of
from hubvm.errors import UserError
from hubvm.report import human_bytes

DISK_FORMATS = choices_of("publish.disk_format")
VISIBILITIES = choices_of("publish.visibility")
DIGEST_PROPERTY = "hubvm_digest"            # the export's sha256: what makes an image "the same" for a skip
REPLACED_BY_PROPERTY = "hubvm_replaced_by"  # set on a renamed older image: the id of the image that took its name
# Statuses of an image whose data never arrived (Glance's image state machine); "deactivated" is an admin's doing
UNFINISHED_STATUSES = frozenset({"queued", "saving", "uploading", "importing", "killed"})
# Glance's own attributes: not settable as custom properties (min_disk and min_ram have their own fields)
RESERVED_PROPERTIES = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "tags", "disk_format",
    "container_format", "min_disk", "min_ram", "size", "virtual_size", "checksum", "os_hash_algo",
    "os_hash_value", "created_at", "updated_at", "file", "schema", "self", "locations", "direct_url",
    DIGEST_PROPERTY, REPLACED_BY_PROPERTY,
})
QCOW2_MAGIC = b"QFI\xfb"
GIB = 1 << 30


# ---------------------------------------------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class PublishRequest:
    """What to publish where. ``digest`` is the sha256 of ``file`` as the export recorded it (manifest.json)."""

    image_name: str
    file: Path
    digest: str
    cloud: str | None = None                 # a cloud of clouds.yaml; None: OS_CLOUD or the OS_* variables
    disk_format: str = "qcow2"               # qcow2, or raw (converted locally with qemu-img)
    visibility: str = "private"
    tags: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)   # os_distro, os_version, hw_* ...
    min_disk_gb: int = 0
    min_ram_mb: int = 0
    replace: bool = False
    qemu_img: str = "qemu-img"
    raw_file: Path | None = None             # where the raw conversion goes; None: beside the file, .raw
    api_timeout: float = 120.0               # seconds a request may wait for the server before publish gives up
    active_timeout: float = 600.0            # seconds to wait for the uploaded image to become active

    def check(self) -> None:
        """Everything that can be checked without the cloud; raises a one-line UserError naming the setting."""
        if not self.image_name.strip() or len(self.image_name) > 255:
            raise UserError(f"publish.image_name = {self.image_name!r}: give a name of 1 to 255 characters")
        if self.disk_format not in DISK_FORMATS:
            raise UserError(f"publish.disk_format = {self.disk_format!r}: not supported; use one of "
                            f"{', '.join(DISK_FORMATS)}")
        if self.visibility not in VISIBILITIES:
            raise UserError(f"publish.visibility = {self.visibility!r}: not an image visibility; use one of "
                            f"{', '.join(VISIBILITIES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise UserError(f"the export's digest {self.digest!r} is not a sha256; run hubvm export again")
        for tag in self.tags:
            if not tag or len(tag) > 255:
                raise UserError(f"publish.tags: {tag!r} is not a tag; give 1 to 255 characters each")
        for key, value in self.properties.items():
            if key in RESERVED_PROPERTIES:
                raise UserError(f"publish.properties.{key}: {key} is Glance's own attribute or ours, not a "
                                "property to set; remove it (min_disk and min_ram have their own settings)")
            if not isinstance(value, str):
                raise UserError(f"publish.properties.{key} = {value!r}: Glance properties are strings; quote it")
        for key, value in (("publish.min_disk_gb", self.min_disk_gb), ("publish.min_ram_mb", self.min_ram_mb)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{key} = {value!r}: give a whole number, 0 or more")
        if not self.file.is_file():
            raise UserError(f"{self.file} does not exist: run hubvm export first")
        if self.disk_format == "qcow2" and not is_qcow2(self.file):
            raise UserError(f"publish.disk_format = 'qcow2', but {self.file} is not a qcow2 image; "
                            "use disk_format raw or publish the export's .qcow2")

    @property
    def converts(self) -> bool:
        """A raw upload of a qcow2 file: converted locally first."""
        return self.disk_format == "raw" and self.file.is_file() and is_qcow2(self.file)

    @property
    def converted_file(self) -> Path:
        return self.raw_file or self.file.with_suffix(".raw")

    @property
    def upload_file(self) -> Path:
        return self.converted_file if self.converts else self.file

    @property
    def cloud_label(self) -> str:
        return f"cloud {self.cloud!r}" if self.cloud else "the cloud of OS_CLOUD or the OS_* variables"

    def image_properties(self) -> dict[str, str]:
        return {**self.properties, DIGEST_PROPERTY: self.digest}

    def create_body(self) -> dict[str, Any]:
        """The JSON of Glance's POST /v2/images: core attributes, then our properties (strings) at the top level."""
        return {"name": self.image_name, "disk_format": self.disk_format, "container_format": "bare",
                "visibility": self.visibility, "tags": list(self.tags), "min_disk": self.min_disk_gb,
                "min_ram": self.min_ram_mb, **self.image_properties()}


def convert_command(request: PublishRequest) -> str:
    """qemu-img's raw conversion of the export (what Ceph-backed clouds boot from without converting)."""
    from shlex import quote
    return (f"{request.qemu_img} convert -O raw {quote(str(request.file))} "
            f"{quote(str(request.converted_file))}")


def is_qcow2(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(4) == QCOW2_MAGIC


def qcow2_virtual_size(path: Path) -> int:
    """The disk size a qcow2 file describes, in bytes (its header: magic, version, ..., size at offset 24)."""
    with path.open("rb") as stream:
        header = stream.read(32)
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise UserError(f"{path} is not a qcow2 image: run hubvm export again")
    return struct.unpack(">Q", header[24:32])[0]



# ---------------------------------------------------------------------------------------------------------------
# What the export wrote


@dataclass(frozen=True)
class ExportFacts:
    """What builds/vm/manifest.json says about the exported qcow2, and the publish defaults that follow from it."""

    vm_name: str
    os_name: str              # "Debian 12 (bookworm)"
    created: str              # "2026-11-25T18:03:11Z"
    configuration_sha256: str
    file: Path
    file_sha256: str
    file_bytes: int
    guest_agent: bool = False  # the image runs qemu-guest-agent (manifest.json's guest_agent)

    @property
    def default_image_name(self) -> str:
        """<vm name>-<distro>-<version>-<export date>-<first 8 of the export's sha256>: sortable and unique."""
        distro, version = os_distro_and_version(self.os_name)
        date = self.created[:10].replace("-", "")
        parts = [self.vm_name, distro, version, date, self.file_sha256[:8]]
        return "-".join(p for p in parts if p)

    def default_properties(self, disk_bus: str | None = None) -> dict[str, str]:
        """os_distro/os_version (libosinfo's short ids, as Nova and Horizon read them); hw_qemu_guest_agent only
        when the image runs the agent (Nova otherwise waits for it on quiesce); hw_disk_bus only when asked."""
        distro, version = os_distro_and_version(self.os_name)
        properties = {"os_distro": distro, "os_version": version} if distro else {}
        properties["hubvm_configuration_sha256"] = self.configuration_sha256
        properties["hubvm_created"] = self.created
        if self.guest_agent:
            properties["hw_qemu_guest_agent"] = "yes"
        if disk_bus:
            properties["hw_disk_bus"] = disk_bus
        return properties

    def min_disk_gb(self) -> int:
        """The qcow2's virtual size, rounded up to whole GiB: a smaller flavor disk cannot hold it."""
        return -(-qcow2_virtual_size(self.file) // GIB)


def request_for_export(facts: ExportFacts, *, cloud: str | None, image_name: str = "", disk_format: str = "qcow2",
                       visibility: str = "private", tags: Sequence[str] = (),
                       properties: Mapping[str, str] | None = None, min_disk_gb: int = 0, min_ram_mb: int = 0,
                       disk_bus: str = "", replace: bool = False, active_timeout: float = 600.0,
                       qemu_img: str = "qemu-img", raw_file: Path | None = None) -> PublishRequest:
    """The request for builds/vm/'s qcow2: an empty image_name or a min_disk_gb of 0 take the export's defaults;
    `properties` are laid over the derived ones (os_distro, os_version, the export's date and digest)."""
    return PublishRequest(
        image_name=image_name or facts.default_image_name, file=facts.file, digest=facts.file_sha256, cloud=cloud,
        disk_format=disk_format, visibility=visibility, tags=tuple(tags),
        properties={**facts.default_properties(disk_bus or None), **(properties or {})},
        min_disk_gb=min_disk_gb or (facts.min_disk_gb() if facts.file.is_file() else 0), min_ram_mb=min_ram_mb,
        replace=replace, active_timeout=active_timeout, qemu_img=qemu_img, raw_file=raw_file)


def os_distro_and_version(os_name: str) -> tuple[str, str]:
    """("debian", "12") from "Debian 12 (bookworm)", ("ubuntu", "24.04") from "Ubuntu 24.04 LTS (noble)";
    ("", "") when the name does not start with a distribution and a version."""
    match = re.match(r"\s*([A-Za-z]+)\s+(\d+(?:\.\d+)*)\b", os_name)
    return (match.group(1).lower(), match.group(2)) if match else ("", "")


def read_export(vm_dir: Path, vm_name: str | None = None) -> ExportFacts:
    """The facts of builds/vm/ (manifest.json and the qcow2 it lists); a one-line UserError when they are not
    there or do not fit (no export yet, an export without qcow2, a manifest from another VM)."""
    manifest_path = vm_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{manifest_path} does not exist: run hubvm export first") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{manifest_path} cannot be read ({error}): run hubvm export again") from None
    try:
        name = manifest["name"]
        artifacts = manifest["artifacts"]
        facts = {"os_name": manifest["os"], "created": manifest["created"],
                 "configuration_sha256": manifest["configuration_sha256"],
                 "guest_agent": manifest.get("guest_agent") is True}
    except (KeyError, TypeError) as error:
        raise UserError(f"{manifest_path} lacks {error}: run hubvm export again") from None
    if vm_name is not None and name != vm_name:
        raise UserError(f"{manifest_path} is the export of {name!r}, not of vm.name {vm_name!r}: "
                        "run hubvm export again")
    qcow2 = f"{name}.qcow2"
    if qcow2 not in artifacts:
        raise UserError(f"{manifest_path} lists no {qcow2}: add qcow2 to export.formats and run hubvm export")
    return ExportFacts(vm_name=name, file=vm_dir / qcow2, file_sha256=artifacts[qcow2]["sha256"],
                       file_bytes=int(artifacts[qcow2]["bytes"]), **facts)


# ---------------------------------------------------------------------------------------------------------------
# The plan (what --dry prints)


def plan(request: PublishRequest) -> list[str]:
    """What publish would do, one line each, without connecting (the file may not exist yet under --dry)."""
    where = f"cloud {request.cloud!r} of clouds.yaml" if request.cloud else "the cloud of OS_CLOUD or OS_* variables"
    if not request.file.is_file():
        size = "not exported yet"
    elif request.converts:
        size = f"raw: {human_bytes(qcow2_virtual_size(request.file))}, the disk's virtual size"
    else:
        size = human_bytes(request.file.stat().st_size)
    lines = [f"connect to {where}",
             f"look for images named {request.image_name!r}: skip if one is active with {DIGEST_PROPERTY} "
             f"{request.digest[:12]}... and disk format {request.disk_format}; delete unfinished ones of ours"]
    if request.disk_format == "raw" and (request.converts or not request.file.is_file()):
        lines.append(f"run: {convert_command(request)}")
    properties = ", ".join(f"{k}={v}" for k, v in sorted(request.image_properties().items()))
    lines += [f"upload {request.upload_file} ({size}) as "
              f"{request.image_name!r}: disk_format {request.disk_format}, container_format bare, "
              f"visibility {request.visibility}, min_disk {request.min_disk_gb} GiB, min_ram {request.min_ram_mb} MiB",
              f"tags: {', '.join(request.tags) or '(none)'}",
              f"properties: {properties}",
              "wait for status active and compare Glance's os_hash_value (sha512) with the local file's; "
              "on a mismatch delete the image and fail"]
    if request.converts:
        lines.append(f"remove {request.converted_file}")
    if request.replace:
        lines.append(f"then rename other active images named {request.image_name!r} to "
                     f"{request.image_name}-replaced-<UTC time> (kept, not deleted)")
    else:
        lines.append(f"stop before uploading if another active image is named {request.image_name!r} "
                     "(replace renames it instead)")
    return lines


