"""hubvm.publish.request without a server: the request's checks, the plan, and what the export's manifest gives
(the image name, properties and min_disk, and the one-line errors of an unusable export)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubvm.config.validators import OS_DIR
from hubvm.errors import UserError
from hubvm.publish.request import (
    ExportFacts,
    os_distro_and_version,
    plan,
    qcow2_virtual_size,
    read_export,
    request_for_export,
)
from tests.conftest import REPO
from tests.publish.helpers import DIGEST, qcow2_header, request

QEMU_IMG = shutil.which("qemu-img")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed (apt-get install qemu-utils)")


# ---------------------------------------------------------------------------------------------------------------
# The request's checks


@pytest.mark.parametrize(("changes", "message"), [
    ({"image_name": " "}, "publish.image_name = ' ': give a name of 1 to 255 characters"),
    ({"disk_format": "vmdk"}, "publish.disk_format = 'vmdk': not supported; use one of qcow2, raw"),
    ({"visibility": "everyone"},
     "publish.visibility = 'everyone': not an image visibility; use one of private, shared, community, public"),
    ({"digest": "abc"}, "the export's digest 'abc' is not a sha256; run hubvm export again"),
    ({"tags": ("",)}, "publish.tags: '' is not a tag; give 1 to 255 characters each"),
    ({"properties": {"min_disk": "20"}}, "publish.properties.min_disk: min_disk is Glance's own attribute or ours, "
                                         "not a property to set; remove it (min_disk and min_ram have their own "
                                         "settings)"),
    ({"properties": {"hubvm_digest": "x"}}, "publish.properties.hubvm_digest: hubvm_digest is Glance's own "
                                            "attribute or ours, not a property to set; remove it (min_disk and "
                                            "min_ram have their own settings)"),
    ({"properties": {"hw_qemu_guest_agent": True}},
     "publish.properties.hw_qemu_guest_agent = True: Glance properties are strings; quote it"),
    ({"min_ram_mb": -1}, "publish.min_ram_mb = -1: give a whole number, 0 or more"),
])
def test_a_bad_request_is_one_line_naming_the_setting(qcow2: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as raised:
        request(qcow2, **changes).check()
    assert str(raised.value) == message


def test_a_missing_file_says_to_export(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^.*/absent\.qcow2 does not exist: run hubvm export first$"):
        request(tmp_path / "absent.qcow2").check()


def test_a_file_that_is_not_qcow2_cannot_be_published_as_qcow2(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(4096))
    with pytest.raises(UserError, match=r"publish.disk_format = 'qcow2', but .*disk.raw is not a qcow2 image"):
        request(raw).check()
    request(raw, disk_format="raw").check()
    assert not request(raw, disk_format="raw").converts  # already raw: uploaded as it is


def test_the_create_body_holds_core_attributes_and_our_properties(qcow2: Path) -> None:
    body = request(qcow2, tags=("hub",), properties={"os_distro": "debian"}, min_disk_gb=20, min_ram_mb=2048,
                   visibility="community").create_body()
    assert body == {"name": "hub-debian-12", "disk_format": "qcow2", "container_format": "bare",
                    "visibility": "community", "tags": ["hub"], "min_disk": 20, "min_ram": 2048,
                    "os_distro": "debian", "hubvm_digest": DIGEST}


# ---------------------------------------------------------------------------------------------------------------
# The plan


def test_plan_of_a_qcow2_upload(qcow2: Path) -> None:
    lines = plan(request(qcow2, tags=("hub", "r"), properties={"os_distro": "debian"}, min_disk_gb=20,
                         min_ram_mb=2048))
    assert lines == [
        "connect to cloud 'mycloud' of clouds.yaml",
        "look for images named 'hub-debian-12': skip if one is active with hubvm_digest abababababab... and disk "
        "format qcow2; delete unfinished ones of ours",
        f"upload {qcow2} (64 B) as 'hub-debian-12': disk_format qcow2, container_format bare, visibility private, "
        "min_disk 20 GiB, min_ram 2048 MiB",
        "tags: hub, r",
        f"properties: hubvm_digest={DIGEST}, os_distro=debian",
        "wait for status active and compare Glance's os_hash_value (sha512) with the local file's; on a mismatch "
        "delete the image and fail",
        "stop before uploading if another active image is named 'hub-debian-12' (replace renames it instead)",
    ]


def test_plan_of_a_raw_upload_with_replace_shows_the_conversion(qcow2: Path, tmp_path: Path) -> None:
    req = request(qcow2, cloud=None, disk_format="raw", replace=True, raw_file=tmp_path / "out" / "hub.raw",
                  qemu_img="/usr/bin/qemu-img")
    lines = plan(req)
    assert lines[0] == "connect to the cloud of OS_CLOUD or OS_* variables"
    assert f"run: /usr/bin/qemu-img convert -O raw {qcow2} {tmp_path}/out/hub.raw" in lines
    assert lines[3].startswith(f"upload {tmp_path}/out/hub.raw (raw: 20.0 GiB, the disk's virtual size) as "
                               "'hub-debian-12': disk_format raw")
    assert lines[-2:] == [f"remove {tmp_path}/out/hub.raw",
                          "then rename other active images named 'hub-debian-12' to "
                          "hub-debian-12-replaced-<UTC time> (kept, not deleted)"]


def test_plan_works_before_the_export(tmp_path: Path) -> None:
    """--dry after a dry export: nothing exported yet, and the plan still says what would happen."""
    lines = plan(request(tmp_path / "hub.qcow2", disk_format="raw"))
    assert f"run: qemu-img convert -O raw {tmp_path}/hub.qcow2 {tmp_path}/hub.raw" in lines
    assert any("(not exported yet)" in line for line in lines)


# ---------------------------------------------------------------------------------------------------------------
# What the export wrote


def write_export(vm_dir: Path, name: str = "hub", os_name: str = "Debian 12 (bookworm)",
                 artifacts: dict[str, Any] | None = None) -> Path:
    vm_dir.mkdir(parents=True, exist_ok=True)
    qcow2 = vm_dir / f"{name}.qcow2"
    qcow2.write_bytes(qcow2_header((20 << 30) + 1))
    manifest = {"name": name, "created": "2026-11-25T18:03:11Z", "os": os_name,
                "configuration_sha256": "5a923d49" + "0" * 56,
                "artifacts": artifacts if artifacts is not None else
                {f"{name}.qcow2": {"sha256": "cd" * 32, "bytes": qcow2.stat().st_size}}}
    (vm_dir / "manifest.json").write_text(json.dumps(manifest))
    return qcow2


def test_the_export_gives_name_properties_and_min_disk(tmp_path: Path) -> None:
    qcow2 = write_export(tmp_path / "vm")
    facts = read_export(tmp_path / "vm", vm_name="hub")
    assert facts == ExportFacts("hub", "Debian 12 (bookworm)", "2026-11-25T18:03:11Z", "5a923d49" + "0" * 56,
                                qcow2, "cd" * 32, 64)
    assert facts.default_image_name == "hub-debian-12-20261125-cdcdcdcd"
    assert facts.default_properties() == {"os_distro": "debian", "os_version": "12",
                                          "hubvm_configuration_sha256": "5a923d49" + "0" * 56,
                                          "hubvm_created": "2026-11-25T18:03:11Z"}
    assert facts.default_properties(disk_bus="scsi") == {**facts.default_properties(), "hw_disk_bus": "scsi"}
    with_agent = json.loads((tmp_path / "vm" / "manifest.json").read_text()) | {"guest_agent": True}
    (tmp_path / "vm" / "manifest.json").write_text(json.dumps(with_agent))
    agent = read_export(tmp_path / "vm", vm_name="hub")
    assert agent.guest_agent and agent.default_properties() == {**facts.default_properties(),
                                                                "hw_qemu_guest_agent": "yes"}
    assert facts.min_disk_gb() == 21  # 20 GiB and one byte: a 20 GiB flavor disk cannot hold it


def test_request_for_export_takes_the_defaults_and_lays_settings_over_them(tmp_path: Path) -> None:
    qcow2 = write_export(tmp_path / "vm")
    facts = read_export(tmp_path / "vm")
    req = request_for_export(facts, cloud="mycloud", properties={"os_version": "12.12"}, min_ram_mb=2048,
                             tags=["hub"])
    assert (req.image_name, req.file, req.digest, req.min_disk_gb, req.min_ram_mb, req.tags) == \
        ("hub-debian-12-20261125-cdcdcdcd", qcow2, "cd" * 32, 21, 2048, ("hub",))
    assert req.properties["os_version"] == "12.12" and req.properties["os_distro"] == "debian"
    named = request_for_export(facts, cloud=None, image_name="jupyter", min_disk_gb=40)
    assert (named.image_name, named.min_disk_gb) == ("jupyter", 40)


@pytest.mark.parametrize("os_file", sorted((REPO / OS_DIR).glob("*.yaml")), ids=lambda p: p.stem)
def test_every_supported_os_gives_os_distro_and_os_version(os_file: Path) -> None:
    name = yaml.safe_load(os_file.read_text())["name"]
    distro, version = os_distro_and_version(name)
    assert distro == yaml.safe_load(os_file.read_text())["family"]
    assert version and version[0].isdigit()


def test_os_names_parse_as_libosinfo_short_ids() -> None:
    assert os_distro_and_version("Debian 12 (bookworm)") == ("debian", "12")
    assert os_distro_and_version("Ubuntu 24.04 LTS (noble)") == ("ubuntu", "24.04")
    assert os_distro_and_version("something else") == ("", "")


@pytest.mark.parametrize(("setup", "message"), [
    ("none", "manifest.json does not exist: run hubvm export first"),
    ("broken", "manifest.json cannot be read"),
    ("other-vm", "manifest.json is the export of 'other', not of vm.name 'hub': run hubvm export again"),
    ("no-qcow2", "manifest.json lists no hub.qcow2: add qcow2 to export.formats and run hubvm export"),
])
def test_an_unusable_export_is_one_line(tmp_path: Path, setup: str, message: str) -> None:
    vm_dir = tmp_path / "vm"
    if setup == "broken":
        vm_dir.mkdir()
        (vm_dir / "manifest.json").write_text("{")
    elif setup == "other-vm":
        write_export(vm_dir, name="other")
    elif setup == "no-qcow2":
        write_export(vm_dir, artifacts={"hub.box": {"sha256": "ef" * 32, "bytes": 1}})
    with pytest.raises(UserError) as raised:
        read_export(vm_dir, vm_name="hub")
    assert message in str(raised.value) and "\n" not in str(raised.value)


@needs_qemu_img
def test_the_virtual_size_read_from_the_header_is_qemu_imgs(tmp_path: Path) -> None:
    path = tmp_path / "made.qcow2"
    subprocess.run([str(QEMU_IMG), "create", "-q", "-f", "qcow2", str(path), "3G"], check=True)
    info = json.loads(subprocess.run([str(QEMU_IMG), "info", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)
    assert qcow2_virtual_size(path) == info["virtual-size"] == 3 << 30
