"""What several publish test files share: a digest, the header of a qcow2 file, and a request to publish it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubvm.publish.request import PublishRequest

DIGEST = "ab" * 32


def qcow2_header(virtual_bytes: int) -> bytes:
    """The first bytes of a qcow2 (version 3): what is_qcow2 and qcow2_virtual_size read."""
    return b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + virtual_bytes.to_bytes(8, "big") + bytes(32)


def request(file: Path, **changes: Any) -> PublishRequest:
    fields: dict[str, Any] = {"image_name": "hub-debian-12", "file": file, "digest": DIGEST, "cloud": "mycloud"}
    fields.update(changes)
    return PublishRequest(**fields)
