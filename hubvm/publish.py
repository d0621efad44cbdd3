"""Publish the exported disk image to an OpenStack cloud's Image service (Glance) with openstacksdk.

    request = PublishRequest(image_name="hub-debian-12-20261125-5a923d49", file=Path("builds/vm/hub.qcow2"),
                             digest=<sha256 of the file, as the export recorded it>, cloud="mycloud")
    plan(request)                      # the lines a dry run prints; connects to nothing
    publish(request, run=sh.run, say=log.say)

The cloud is read as the openstack CLI reads it: a named cloud of clouds.yaml, or, with no name, OS_CLOUD or the
OS_* variables of an openrc file. What publish does, in order:

1. Lists the images of that name. An active one with the same digest (our property ``hubvm_digest``) and disk
   format is reported and nothing is uploaded. Images of ours that never became active (a publish interrupted
   by a dead server or a killed client) are deleted. Another active image of that name stops the run unless
   ``replace`` is set (without it there would be two images of one name, and `--image NAME` would be ambiguous);
   one that hubvm did not publish stops it even then.
2. With disk format raw (what Ceph-backed clouds want) and a qcow2 file: converts it with ``qemu-img convert``
   through the caller's ``run``, so --dry and MockContext see the command; the raw file is removed afterwards.
3. Creates the image record and streams the file to it in 1 MiB blocks, hashing each block (sha256, sha512, md5)
   and printing progress (bytes, rate, time left) every few seconds, then the duration.
4. Waits for ``active`` and compares Glance's ``os_hash_value`` (sha512, or the algorithm Glance names) with the
   local one; when the uploaded file is the export's own, its sha256 must also equal the digest.
5. With ``replace``: only now, with the new image active and checked, renames the older active images of that
   name to ``<name>-replaced-<UTC time>`` (kept, not deleted: servers booted from them can still be rebuilt;
   the output says how to delete them).

Any failure after the record was created deletes it; when the server is unreachable by then, the error line says
so and the next publish removes the leftover. Failures are one-line `UserError`s; openstacksdk is imported only
when publish runs, so importing this module (and `invoke --list`) stays fast.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubvm.errors import UserError
from hubvm.report import duration

if TYPE_CHECKING:
    from openstack.connection import Connection

DISK_FORMATS = ("qcow2", "raw")
VISIBILITIES = ("private", "shared", "community", "public")
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
BLOCK = 1 << 20
PROGRESS_EVERY = 5.0   # seconds between progress lines
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


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


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
                       disk_bus: str = "", replace: bool = False,
                       qemu_img: str = "qemu-img", raw_file: Path | None = None) -> PublishRequest:
    """The request for builds/vm/'s qcow2: an empty image_name or a min_disk_gb of 0 take the export's defaults;
    `properties` are laid over the derived ones (os_distro, os_version, the export's date and digest)."""
    return PublishRequest(
        image_name=image_name or facts.default_image_name, file=facts.file, digest=facts.file_sha256, cloud=cloud,
        disk_format=disk_format, visibility=visibility, tags=tuple(tags),
        properties={**facts.default_properties(disk_bus or None), **(properties or {})},
        min_disk_gb=min_disk_gb or (facts.min_disk_gb() if facts.file.is_file() else 0), min_ram_mb=min_ram_mb,
        replace=replace, qemu_img=qemu_img, raw_file=raw_file)


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


# ---------------------------------------------------------------------------------------------------------------
# Images found under the name


@dataclass(frozen=True)
class FoundImage:
    id: str
    name: str
    status: str
    disk_format: str | None
    digest: str | None         # our property, None on images not published by hubvm
    created_at: str | None

    @classmethod
    def of(cls, image: Any) -> FoundImage:
        properties = getattr(image, "properties", None) or {}
        return cls(image.id, image.name, image.status, image.disk_format, properties.get(DIGEST_PROPERTY),
                   image.created_at)

    @property
    def ours(self) -> bool:
        return self.digest is not None


@dataclass(frozen=True)
class Found:
    same: list[FoundImage]          # active, same digest and disk format: nothing to upload
    unfinished: list[FoundImage]    # ours, never became active: to delete
    others: list[FoundImage]        # active (or deactivated) images of that name with other content


def sort_found(images: Iterable[FoundImage], request: PublishRequest) -> Found:
    same, unfinished, others = [], [], []
    for image in images:
        if image.name != request.image_name:
            continue  # Glance's name filter is exact; this guards against a server that is not
        if image.status == "active" and image.digest == request.digest and image.disk_format == request.disk_format:
            same.append(image)
        elif image.ours and image.status in UNFINISHED_STATUSES:
            unfinished.append(image)
        elif image.status not in UNFINISHED_STATUSES | {"deleted", "pending_delete"}:
            others.append(image)
    return Found(same, unfinished, others)


def replaced_name(name: str, now: dt.datetime) -> str:
    return f"{name}-replaced-{now.strftime('%Y%m%dT%H%M%SZ')}"[:255]


# ---------------------------------------------------------------------------------------------------------------
# The upload body: hashes and progress while requests sends it


class Progress:
    """A progress line at most every `every` seconds: bytes sent, rate, time left; then the total and duration."""

    def __init__(self, total: int, say: Callable[[str], None], every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.say, self.clock = total, say, clock
        self.every = PROGRESS_EVERY if every is None else every
        self.started = self.last = clock()
        self.elapsed = 0.0   # the upload's duration, once summary() has said it

    def update(self, sent: int) -> None:
        now = self.clock()
        if now - self.last < self.every or sent >= self.total:
            return
        self.last = now
        self.say(self.line(sent, now - self.started))

    def line(self, sent: int, elapsed: float) -> str:
        rate = sent / elapsed if elapsed > 0 else 0.0
        percent = 100 * sent // self.total if self.total else 100
        left = f", about {duration((self.total - sent) / rate)} left" if rate > 0 else ""
        return (f"publish: {human_bytes(sent)} of {human_bytes(self.total)} ({percent}%), "
                f"{human_bytes(rate)}/s{left}")

    def summary(self, sent: int) -> str:
        self.elapsed = elapsed = self.clock() - self.started
        rate = f" ({human_bytes(sent / elapsed)}/s)" if elapsed > 0 else ""
        return f"publish: uploaded {human_bytes(sent)} in {duration(elapsed)}{rate}"


class UploadBody:
    """The file as requests sends it: an iterable of 1 MiB blocks with a length (so Content-Length is set, not
    chunked encoding), hashing every block on its way out. It can be sent once: a retry would send nothing."""

    def __init__(self, path: Path, progress: Progress) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.progress = progress
        self.sent = 0
        self.hashes = {"sha256": hashlib.sha256(), "sha512": hashlib.sha512(), "md5": hashlib.md5()}
        self.started = False

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        if self.started:
            raise RuntimeError("the upload body was already sent once; an upload is not retried")
        self.started = True
        with self.path.open("rb") as stream:
            while block := stream.read(BLOCK):
                for h in self.hashes.values():
                    h.update(block)
                self.sent += len(block)
                self.progress.update(self.sent)
                yield block

    def hexdigest(self, algorithm: str) -> str | None:
        h = self.hashes.get(algorithm)
        return h.hexdigest() if h is not None else None

    @property
    def complete(self) -> bool:
        return self.started and self.sent == self.size


# ---------------------------------------------------------------------------------------------------------------
# Errors: everything openstacksdk and keystoneauth raise, as one line


CONNECT, LIST, CREATE, UPLOAD, CHECK, REPLACE = "connect", "list", "create", "upload", "check", "replace"


class PublishFailed(UserError):
    """A publish that failed after the image record was created (the record is deleted, or said to be left)."""


class ChecksumMismatch(UserError):
    """What Glance stored is not what was sent, or the file is not what the export wrote."""


def server_message(error: BaseException) -> str:
    """The server's own words, without HTML and without the repeated status line ("413 Request Entity ...")."""
    text = str(getattr(error, "details", None) or getattr(error, "message", None) or error)
    parts = [p.strip() for p in re.split(r":\s+|\n", re.sub(r"<[^>]+>", " ", text)) if p.strip()]
    kept = [p for p in parts if not re.fullmatch(r"\d{3}(\s+[A-Za-z][A-Za-z ]*)?|Error|HttpException", p)]
    message = ": ".join(dict.fromkeys(kept)) or text
    return " ".join(message.split())[:300]


def _status(error: BaseException) -> int | None:
    for attribute in ("status_code", "http_status"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _unreachable_reason(error: BaseException) -> tuple[str, str]:
    """(url, reason) from keystoneauth's "Unable to establish connection to URL: ... [Errno 111] Connection
    refused" and its read-timeout and dropped-connection variants."""
    text = str(error)
    url_match = re.search(r"(https?://[^\s:'\",]+(?::\d+)?[^\s:'\",]*)", text)
    url = url_match.group(1) if url_match else "?"
    for pattern, reason in ((r"Errno 111|Connection refused", "connection refused (nothing listening)"),
                            (r"Errno -2|Name or service not known|getaddrinfo", "host name not found"),
                            (r"Errno 113|No route to host", "no route to host"),
                            (r"timed out|Timeout", "no answer (timed out)"),
                            (r"RemoteDisconnected|Connection aborted|reset by peer|Broken pipe|Errno 104|Errno 32",
                             "the server closed the connection"),
                            (r"SSL|certificate", "TLS failed (certificate?)")):
        if re.search(pattern, text):
            return url, reason
    return url, text.splitlines()[0][:200] if text else type(error).__name__


def tcp_unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at the URL's host and port (refused, unknown host, ...), or None when something does."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        return _unreachable_reason(error)[1]
    return None


def explain(error: BaseException, phase: str, request: PublishRequest, sent: int = 0, total: int = 0) -> UserError:
    """One line for what went wrong in `phase`; names the setting or the cloud, the value and the fix."""
    if isinstance(error, UserError):
        return error
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    cloud = request.cloud_label
    status = _status(error)
    if isinstance(error, sdk.ConfigException) and "was not found" in str(error):
        setting = (f"publish.cloud = {request.cloud!r}" if request.cloud
                   else f"OS_CLOUD = {os.environ.get('OS_CLOUD')!r}")
        return UserError(f"{setting}: no such cloud in {_clouds_files()} (clouds there: {_cloud_names()}); name one "
                         "of them, or add it to clouds.yaml")
    if isinstance(error, (ksa.MissingRequiredOptions, ksa.MissingAuthPlugin, ksa.NoMatchingPlugin)):
        return UserError(f"no cloud to publish to ({error}): set publish.cloud to a cloud of clouds.yaml, or "
                         "OS_CLOUD, or source the project's openrc file (OS_AUTH_URL, OS_USERNAME, ...)")
    if isinstance(error, sdk.ConfigException):
        return UserError(f"publish.cloud = {request.cloud!r}: its configuration is not usable: {error}")
    if isinstance(error, ksa.Unauthorized) or status == 401:
        url = getattr(error, "url", None) or ""
        at = f" at {url}" if url else ""
        return UserError(f"{cloud} refused the credentials (401 Unauthorized{at}): check auth.username, "
                         "auth.password and the project in clouds.yaml (or OS_USERNAME, OS_PASSWORD)")
    # requests' HTTPError, and so openstacksdk's HttpException, is an OSError: answers come before connections
    if status == 413:
        message = server_message(error)
        if "quota" in message.lower():
            return UserError(f"{cloud} refused the upload, the image storage quota is exceeded ({message}); "
                             "delete old images (openstack image list) or ask the cloud's admins for more")
        return UserError(f"{cloud} refused the upload, the image is too large for it ({human_bytes(total)}: "
                         f"{message}); publish the compressed qcow2 (publish.disk_format qcow2) or ask its admins")
    if status == 403 and phase == CREATE and request.visibility != "private":
        return UserError(f"publish.visibility = {request.visibility!r}: {cloud} does not let this account create "
                         f"{request.visibility} images (403: {server_message(error)}); use private or shared, "
                         "or ask the cloud's admins")
    if status is not None:
        return UserError(f"{cloud} refused to {_verb(phase)} ({status}: {server_message(error)})")
    if isinstance(error, ksa.EndpointNotFound):
        return UserError(f"{cloud} has no image service in its catalog ({error}): check region_name and "
                         "interface in clouds.yaml")
    if isinstance(error, ksa.DiscoveryFailure):
        # keystoneauth says the same for "nothing listens there" and "that is not an OpenStack API": ask the port
        url, _ = _unreachable_reason(error)
        reason = tcp_unreachable(url)
        if reason:
            return UserError(f"cannot reach {cloud} at {url}: {reason}; check auth_url or endpoint in clouds.yaml "
                             "and the network (VPN, proxy)")
        return UserError(f"{cloud}: no OpenStack Image API found at {url}; check auth_url or endpoint in "
                         "clouds.yaml (the service's root URL, without /v2)")
    if isinstance(error, (ksa.ConnectionError, ksa.ConnectFailure)) or (
            isinstance(error, OSError) and not isinstance(error, FileNotFoundError)):
        url, reason = _unreachable_reason(error)
        if phase == UPLOAD and sent:
            return UserError(f"the connection to {cloud} dropped during the upload, after {human_bytes(sent)} of "
                             f"{human_bytes(total)} ({reason}, {url}); run publish again when the cloud answers")
        return UserError(f"cannot reach {cloud} at {url}: {reason}; check auth_url or endpoint in clouds.yaml "
                         "and the network (VPN, proxy)")
    if isinstance(error, (sdk.SDKException, ksa.ClientException)):
        return UserError(f"{cloud}: could not {_verb(phase)}: {str(error).splitlines()[0][:300]}")
    return UserError(f"could not {_verb(phase)}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")


def _verb(phase: str) -> str:
    return {CONNECT: "connect", LIST: "list the images", CREATE: "create the image", UPLOAD: "store the upload",
            CHECK: "check the uploaded image", REPLACE: "rename the replaced image"}.get(phase, phase)


def _clouds_files() -> str:
    from openstack.config import loader

    config = loader.OpenStackConfig()
    return config.config_filename or "clouds.yaml (none found: ~/.config/openstack/, /etc/openstack/ or ./)"


def _cloud_names() -> str:
    from openstack.config import loader

    names = [n for n in loader.OpenStackConfig().get_cloud_names() if n != "defaults"]
    return ", ".join(names) or "none"


# ---------------------------------------------------------------------------------------------------------------
# Publish


@dataclass
class PublishResult:
    status: str                  # uploaded | skipped
    image_id: str
    seconds: float = 0.0         # upload time (0 when skipped)
    bytes: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)   # (image id, new name) with replace
    removed: list[str] = field(default_factory=list)               # ids of unfinished images deleted first

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def connect(request: PublishRequest) -> Connection:
    """A connection to the request's cloud (no request made yet: a bad endpoint or password shows on the first)."""
    import openstack

    try:
        # cloud=None: openstack.connect reads OS_CLOUD, else the OS_* variables, as the openstack CLI does
        return openstack.connect(cloud=request.cloud, api_timeout=request.api_timeout)
    except Exception as error:
        raise explain(error, CONNECT, request) from None


def publish(request: PublishRequest, run: Callable[[str], Any], say: Callable[[str], None] = print) -> PublishResult:
    """Upload `request.file` as the image `request.image_name` (see the module's docstring for the steps)."""
    request.check()
    conn = connect(request)
    try:
        found = sort_found((FoundImage.of(i) for i in conn.image.images(name=request.image_name)), request)
    except Exception as error:
        raise explain(error, LIST, request) from None
    removed = remove_unfinished(conn, found.unfinished, request, say)
    if found.same:
        image = found.same[0]
        say(f"publish: {request.image_name!r} is already in {request.cloud_label}, active, with the same digest "
            f"(image {image.id}): nothing to upload (tags and properties are left as they are)")
        return PublishResult("skipped", image.id, removed=removed)
    if found.others and not request.replace:
        listing = ", ".join(f"{i.id} ({i.status}, {'digest ' + i.digest[:12] if i.digest else 'not from hubvm'})"
                            for i in found.others)
        raise UserError(f"{request.cloud_label} already has an image named {request.image_name!r}: {listing}; "
                        "publish with --replace (renames it after the upload) or choose another publish.image_name")
    foreign = [i for i in found.others if not i.ours]
    if foreign:
        raise UserError(f"{request.cloud_label} has an image named {request.image_name!r} that hubvm did not "
                        f"publish ({', '.join(i.id for i in foreign)}): --replace renames only hubvm's images; "
                        "choose another publish.image_name or rename that image yourself")

    converts = request.converts
    try:
        if converts:
            started = time.monotonic()
            say(f"publish: converting {request.file.name} to raw (qemu-img)")
            run(convert_command(request))
            say(f"publish: converted to {request.converted_file} "
                f"({human_bytes(request.converted_file.stat().st_size)}) in {duration(time.monotonic() - started)}")
        image_id, progress, body = upload(conn, request, say)
    finally:
        if converts:
            request.converted_file.unlink(missing_ok=True)
    result = PublishResult("uploaded", image_id, progress.elapsed, body.sent, removed=removed)
    if request.replace:
        result.renamed = rename_replaced(conn, found.others, image_id, request, say)
    return result


def remove_unfinished(conn: Connection, images: Sequence[FoundImage], request: PublishRequest,
                      say: Callable[[str], None]) -> list[str]:
    removed = []
    for image in images:
        try:
            conn.image.delete_image(image.id, ignore_missing=True)
        except Exception as error:
            raise explain(error, "delete the unfinished image " + image.id, request) from None
        say(f"publish: deleted image {image.id} ({image.status}, created {image.created_at}): an earlier publish "
            "that never finished")
        removed.append(image.id)
    return removed


def upload(conn: Connection, request: PublishRequest, say: Callable[[str], None]) -> tuple[str, Progress, UploadBody]:
    """Create the record, stream the file, wait for active, compare hashes; any failure deletes the record."""
    from openstack import exceptions as sdk

    try:
        response = conn.image.post("/images", json=request.create_body())
        sdk.raise_from_response(response)
        image_id = response.json()["id"]
    except Exception as error:
        raise explain(error, CREATE, request) from None
    file = request.upload_file
    progress = Progress(file.stat().st_size, say)
    body = UploadBody(file, progress)
    phase = UPLOAD
    say(f"publish: uploading {file} ({human_bytes(body.size)}) as {request.image_name!r}, image {image_id}")
    try:
        response = conn.image.put(f"/images/{image_id}/file", data=body,
                                  headers={"Content-Type": "application/octet-stream"})
        sdk.raise_from_response(response)
        say(progress.summary(body.sent))
        phase = CHECK
        image = wait_until_active(conn, image_id, request.active_timeout)
        compare_hashes(image, body, request)
    except BaseException as error:
        # Ctrl-C included: nothing half-uploaded is left behind while the server answers
        failure = explain(error, phase, request, body.sent, body.size) if isinstance(error, Exception) else None
        left = delete_quietly(conn, image_id)
        if failure is None:
            raise
        raise PublishFailed(f"{failure}{left}") from None
    say(f"publish: image {image_id} is active; Glance's {image.hash_algo or 'md5'} equals the local file's")
    return image_id, progress, body


def wait_until_active(conn: Connection, image_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        image = conn.image.get_image(image_id)
        if image.status == "active":
            return image
        if image.status in ("killed", "deleted", "pending_delete", "deactivated"):
            raise UserError(f"the cloud marked the uploaded image {image.status}, not active")
        if time.monotonic() > deadline:
            raise UserError(f"the uploaded image is still {image.status} after {duration(timeout)}, not active "
                            "(publish.active_timeout)")
        time.sleep(2)


def compare_hashes(image: Any, body: UploadBody, request: PublishRequest) -> None:
    """Glance's hash of what it stored against ours of what we sent; and the export's own sha256."""
    if not body.complete:
        raise UserError(f"only {human_bytes(body.sent)} of {human_bytes(body.size)} were sent")
    algorithm = image.hash_algo
    theirs = image.hash_value
    if not (algorithm and theirs and body.hexdigest(algorithm)):
        algorithm, theirs = "md5", image.checksum   # a Glance before Rocky, or a hash we do not compute
    ours = body.hexdigest(algorithm)
    if not theirs or theirs != ours:
        raise ChecksumMismatch(f"checksum mismatch: Glance stored {algorithm} {str(theirs)[:16]}..., the local "
                               f"file has {str(ours)[:16]}... (the data changed on the way)")
    if not request.converts and body.hexdigest("sha256") != request.digest:
        raise ChecksumMismatch(f"{request.file} changed since the export (sha256 {body.hexdigest('sha256')[:16]}"
                               f"..., the export recorded {request.digest[:16]}...): run hubvm export again")


def delete_quietly(conn: Connection, image_id: str) -> str:
    """Delete a failed upload's record; the words to add to the error line."""
    try:
        conn.image.delete_image(image_id, ignore_missing=True)
    except Exception:
        return (f"; image {image_id} could not be deleted now (the cloud does not answer): the next publish "
                "removes it")
    return f"; image {image_id} was deleted"


def rename_replaced(conn: Connection, others: Sequence[FoundImage], new_id: str, request: PublishRequest,
                    say: Callable[[str], None]) -> list[tuple[str, str]]:
    """Give the older images of the name another name (kept: servers booted from them can still be rebuilt)."""
    renamed = []
    now = dt.datetime.now(dt.timezone.utc)
    for image in others:
        new_name = replaced_name(request.image_name, now)
        try:
            conn.image.update_image(image.id, name=new_name, **{REPLACED_BY_PROPERTY: new_id})
        except Exception as error:
            raise UserError(f"{explain(error, REPLACE, request)}; the new image {new_id} is active, and the old "
                            f"image {image.id} still has the name {request.image_name!r}: rename or delete it "
                            "(openstack image set --name / openstack image delete)") from None
        say(f"publish: renamed the replaced image {image.id} to {new_name!r} (kept; delete it with "
            f"`openstack image delete {image.id}` when no server needs it)")
        renamed.append((image.id, new_name))
    return renamed
