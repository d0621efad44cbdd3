"""What builds/vm/ holds: the artifacts per export format, the OVA's member order, checksums and the manifest."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from hubvm import artifacts
from hubvm.errors import UserError
from hubvm.layout import Layout
from tests.conftest import settings_with


def test_artifact_paths_follow_the_formats(project: Path) -> None:
    s = settings_with(project, **{"export.formats": ["ova", "qcow2"]})
    names = [p.name for p in artifacts.artifact_paths(s, Layout.of(s))]
    assert names == ["jupyterhub-vm.box", "SHA256SUMS", "manifest.json", "jupyterhub-vm.ova", "jupyterhub-vm.qcow2"]
    libvirt = settings_with(project, **{"vm.provider": "libvirt", "export.formats": ["qcow2", "ova", "ovf"]})
    assert [p.name for p in artifacts.artifact_paths(libvirt, Layout.of(libvirt))][3:] == [
        "jupyterhub-vm.qcow2", "jupyterhub-vm.ova", "ovf"]  # made by hubvm.ovf from the box's disk


def test_the_ova_starts_with_its_descriptor_and_the_ovf_folder_holds_the_same(project: Path, tmp_path: Path) -> None:
    s = settings_with(project, **{"export.formats": ["ovf", "ova"]})
    unpacked, partial = tmp_path / "box", tmp_path / "partial"
    unpacked.mkdir()
    partial.mkdir()
    (unpacked / "box-disk001.vmdk").write_bytes(b"disk")
    (unpacked / "box.ovf").write_text("<Envelope/>")
    artifacts.lay_out_ovf(s, unpacked, partial)
    with tarfile.open(partial / "jupyterhub-vm.ova") as ova:
        assert ova.getnames() == ["box.ovf", "box-disk001.vmdk"]
    assert sorted(p.name for p in (partial / "ovf").iterdir()) == ["box-disk001.vmdk", "box.ovf"]
    (unpacked / "box.ovf").unlink()
    with pytest.raises(UserError, match="holds no OVF"):
        artifacts.lay_out_ovf(s, unpacked, tmp_path / "again")


def test_checksums_and_manifest(project: Path, tmp_path: Path) -> None:
    s = settings_with(project, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    partial = tmp_path / "partial"
    (partial / "box").mkdir(parents=True)
    (partial / "box" / "box.img").write_bytes(b"not listed")
    (partial / "jupyterhub-vm.qcow2").write_bytes(b"qcow2")
    artifacts.write_checksums_and_manifest(s, partial, {"Vagrant": "2.3.4"}, "cfg", "boxdigest")
    sums = (partial / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{artifacts.sha256(partial / 'jupyterhub-vm.qcow2')}  jupyterhub-vm.qcow2"]
    manifest = json.loads((partial / "manifest.json").read_text())
    assert manifest["configuration_sha256"] == "cfg" and manifest["hub"]["https"] == "self-signed"
    assert manifest["hub"]["signup"] == "closed" and manifest["hub"]["https_port"] == 443
    assert manifest["hub"]["admin_passwords"]["admin"].startswith("generated at each copy's first boot")
    assert manifest["artifacts"]["jupyterhub-vm.qcow2"]["bytes"] == 5


@pytest.mark.parametrize(("size", "text"), [(10, "10 B"), (2048, "2.0 KiB"), (5 << 30, "5.0 GiB")])
def test_sizes(tmp_path: Path, size: int, text: str) -> None:
    path = tmp_path / "f"
    with path.open("wb") as stream:
        stream.truncate(size)
    assert artifacts.size(path) == text
