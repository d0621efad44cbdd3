"""The upload: images found under the name (same digest, unfinished, others), the file streamed in blocks with
hashes and progress, the wait for active, the hash comparison, and --replace's renaming."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubvm.errors import UserError
from hubvm.publish.errors import CHECK, CONNECT, CREATE, LIST, REPLACE, UPLOAD, ChecksumMismatch, PublishFailed, explain
from hubvm.publish.request import (
    DIGEST_PROPERTY,
    REPLACED_BY_PROPERTY,
    UNFINISHED_STATUSES,
    PublishRequest,
    convert_command,
)
from hubvm.report import Progress, duration, human_bytes

if TYPE_CHECKING:
    from openstack.connection import Connection

BLOCK = 1 << 20
PROGRESS_EVERY = 5.0  # seconds between progress lines


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
    progress = Progress(file.stat().st_size, say, "publish", "uploaded", every=PROGRESS_EVERY)
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
