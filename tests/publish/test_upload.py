"""hubvm.publish.upload without a server: sorting the images found under the name, the dated name of a replaced
image, progress lines, and the upload body's hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest

from hubvm.publish import upload
from hubvm.publish.upload import FoundImage, sort_found
from hubvm.report import Progress
from tests.publish.helpers import DIGEST, request

# ---------------------------------------------------------------------------------------------------------------
# Images found under the name


def found(status: str, digest: str | None = DIGEST, disk_format: str = "qcow2", name: str = "hub-debian-12",
          image_id: str = "") -> FoundImage:
    return FoundImage(image_id or f"{status}-{digest}-{disk_format}", name, status, disk_format, digest,
                      "2026-11-25T18:00:00Z")


def test_images_under_the_name_are_sorted_into_same_unfinished_and_others(qcow2: Path) -> None:
    same = found("active")
    raw_of_same = found("active", disk_format="raw")
    older = found("active", digest="ef" * 32)
    foreign = found("active", digest=None)
    saving, killed, queued = found("saving"), found("killed", digest="ef" * 32), found("queued")
    foreign_queued = found("queued", digest=None)
    deactivated = found("deactivated", digest="ef" * 32)
    elsewhere = found("active", name="hub-debian-12-old", image_id="other-name")
    result = sort_found([same, raw_of_same, older, foreign, saving, killed, queued, foreign_queued, deactivated,
                         elsewhere], request(qcow2))
    assert result.same == [same]
    assert result.unfinished == [saving, killed, queued]   # ours only: another tool's queued image is not ours
    assert result.others == [raw_of_same, older, foreign, deactivated]


def test_a_replaced_image_gets_a_dated_name() -> None:
    now = dt.datetime(2026, 11, 25, 18, 3, 11, tzinfo=dt.timezone.utc)
    assert upload.replaced_name("hub-debian-12", now) == "hub-debian-12-replaced-20261125T180311Z"
    assert len(upload.replaced_name("x" * 255, now)) == 255


# ---------------------------------------------------------------------------------------------------------------
# The upload body


def test_the_upload_body_hashes_what_it_yields_and_cannot_be_sent_twice(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(os.urandom(3 * upload.BLOCK + 5))
    body = upload.UploadBody(path, Progress(path.stat().st_size, print, "publish", "uploaded", clock=lambda: 0.0))
    assert len(body) == 3 * upload.BLOCK + 5
    assert b"".join(body) == path.read_bytes() and body.complete
    assert body.hexdigest("sha512") == hashlib.sha512(path.read_bytes()).hexdigest()
    assert body.hexdigest("sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="already sent once"):
        list(body)
