"""Fixtures of the publish tests: a small file with a qcow2 header (a 20 GiB disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.helpers import qcow2_header


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    path = tmp_path / "hub.qcow2"
    path.write_bytes(qcow2_header(20 << 30))
    return path
