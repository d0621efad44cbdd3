"""hubvm.publish without a server: the request's checks, the plan, the export's defaults, sorting the images found
under the name, progress lines, and the one-line errors made of what openstacksdk and keystoneauth raise.
(The uploads themselves run against a real glance-api in tests/e2e/test_publish.py.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubvm import publish, schema
from hubvm.publish import (
    CHECK,
    CONNECT,
    CREATE,
    LIST,
    UPLOAD,
    ExportFacts,
    FoundImage,
    Progress,
    PublishRequest,
    UserError,
    explain,
    plan,
    sort_found,
)

REPO = Path(__file__).resolve().parent.parent
DIGEST = "ab" * 32
QEMU_IMG = shutil.which("qemu-img")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed (apt-get install qemu-utils)")


def qcow2_header(virtual_bytes: int) -> bytes:
    """The first bytes of a qcow2 (version 3): what is_qcow2 and qcow2_virtual_size read."""
    return b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + virtual_bytes.to_bytes(8, "big") + bytes(32)


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    path = tmp_path / "hub.qcow2"
    path.write_bytes(qcow2_header(20 << 30))
    return path


def request(file: Path, **changes: Any) -> PublishRequest:
    fields: dict[str, Any] = {"image_name": "hub-debian-12", "file": file, "digest": DIGEST, "cloud": "mycloud"}
    fields.update(changes)
    return PublishRequest(**fields)


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
    facts = publish.read_export(tmp_path / "vm", vm_name="hub")
    assert facts == ExportFacts("hub", "Debian 12 (bookworm)", "2026-11-25T18:03:11Z", "5a923d49" + "0" * 56,
                                qcow2, "cd" * 32, 64)
    assert facts.default_image_name == "hub-debian-12-20261125-cdcdcdcd"
    assert facts.default_properties() == {"os_distro": "debian", "os_version": "12",
                                          "hubvm_configuration_sha256": "5a923d49" + "0" * 56,
                                          "hubvm_created": "2026-11-25T18:03:11Z"}
    assert facts.default_properties(disk_bus="scsi") == {**facts.default_properties(), "hw_disk_bus": "scsi"}
    with_agent = json.loads((tmp_path / "vm" / "manifest.json").read_text()) | {"guest_agent": True}
    (tmp_path / "vm" / "manifest.json").write_text(json.dumps(with_agent))
    agent = publish.read_export(tmp_path / "vm", vm_name="hub")
    assert agent.guest_agent and agent.default_properties() == {**facts.default_properties(),
                                                                "hw_qemu_guest_agent": "yes"}
    assert facts.min_disk_gb() == 21  # 20 GiB and one byte: a 20 GiB flavor disk cannot hold it


def test_request_for_export_takes_the_defaults_and_lays_settings_over_them(tmp_path: Path) -> None:
    qcow2 = write_export(tmp_path / "vm")
    facts = publish.read_export(tmp_path / "vm")
    req = publish.request_for_export(facts, cloud="mycloud", properties={"os_version": "12.12"}, min_ram_mb=2048,
                                     tags=["hub"])
    assert (req.image_name, req.file, req.digest, req.min_disk_gb, req.min_ram_mb, req.tags) == \
        ("hub-debian-12-20261125-cdcdcdcd", qcow2, "cd" * 32, 21, 2048, ("hub",))
    assert req.properties["os_version"] == "12.12" and req.properties["os_distro"] == "debian"
    named = publish.request_for_export(facts, cloud=None, image_name="jupyter", min_disk_gb=40)
    assert (named.image_name, named.min_disk_gb) == ("jupyter", 40)


@pytest.mark.parametrize("os_file", sorted((REPO / schema.OS_DIR).glob("*.yaml")), ids=lambda p: p.stem)
def test_every_supported_os_gives_os_distro_and_os_version(os_file: Path) -> None:
    name = yaml.safe_load(os_file.read_text())["name"]
    distro, version = publish.os_distro_and_version(name)
    assert distro == yaml.safe_load(os_file.read_text())["family"]
    assert version and version[0].isdigit()


def test_os_names_parse_as_libosinfo_short_ids() -> None:
    assert publish.os_distro_and_version("Debian 12 (bookworm)") == ("debian", "12")
    assert publish.os_distro_and_version("Ubuntu 24.04 LTS (noble)") == ("ubuntu", "24.04")
    assert publish.os_distro_and_version("something else") == ("", "")


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
        publish.read_export(vm_dir, vm_name="hub")
    assert message in str(raised.value) and "\n" not in str(raised.value)


@needs_qemu_img
def test_the_virtual_size_read_from_the_header_is_qemu_imgs(tmp_path: Path) -> None:
    path = tmp_path / "made.qcow2"
    subprocess.run([str(QEMU_IMG), "create", "-q", "-f", "qcow2", str(path), "3G"], check=True)
    info = json.loads(subprocess.run([str(QEMU_IMG), "info", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)
    assert publish.qcow2_virtual_size(path) == info["virtual-size"] == 3 << 30


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
    import datetime as dt

    now = dt.datetime(2026, 11, 25, 18, 3, 11, tzinfo=dt.timezone.utc)
    assert publish.replaced_name("hub-debian-12", now) == "hub-debian-12-replaced-20261125T180311Z"
    assert len(publish.replaced_name("x" * 255, now)) == 255


# ---------------------------------------------------------------------------------------------------------------
# Progress


def test_progress_says_bytes_rate_and_time_left_every_few_seconds_then_the_duration() -> None:
    now = [100.0]
    lines: list[str] = []
    progress = Progress(1000 << 20, lines.append, every=5.0, clock=lambda: now[0])
    for second, sent_mib in [(1, 100), (4.9, 400), (5.0, 500), (7, 700), (10.5, 900), (12.5, 1000)]:
        now[0] = 100.0 + second
        progress.update(sent_mib << 20)
    assert lines == ["publish: 500.0 MiB of 1000.0 MiB (50%), 100.0 MiB/s, about 5.0s left",
                     "publish: 900.0 MiB of 1000.0 MiB (90%), 85.7 MiB/s, about 1.2s left"]
    assert progress.summary(1000 << 20) == "publish: uploaded 1000.0 MiB in 12.5s (80.0 MiB/s)"
    assert progress.elapsed == 12.5


def test_the_upload_body_hashes_what_it_yields_and_cannot_be_sent_twice(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "data"
    path.write_bytes(os.urandom(3 * publish.BLOCK + 5))
    body = publish.UploadBody(path, Progress(path.stat().st_size, print, clock=lambda: 0.0))
    assert len(body) == 3 * publish.BLOCK + 5
    assert b"".join(body) == path.read_bytes() and body.complete
    assert body.hexdigest("sha512") == hashlib.sha512(path.read_bytes()).hexdigest()
    assert body.hexdigest("sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="already sent once"):
        list(body)


# ---------------------------------------------------------------------------------------------------------------
# One-line errors from what openstacksdk and keystoneauth raise


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(variable)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"alpha": {"auth_type": "none", "auth": {"endpoint": "http://x"}},
                                               "beta": {"auth_type": "none", "auth": {"endpoint": "http://y"}}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def raised_by(action: Any) -> BaseException:
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("nothing raised")


def test_an_unknown_cloud_lists_the_clouds_of_clouds_yaml(qcow2: Path, clouds_yaml: Path) -> None:
    import openstack

    error = raised_by(lambda: openstack.connect(cloud="gamma"))
    assert str(explain(error, CONNECT, request(qcow2, cloud="gamma"))) == (
        f"publish.cloud = 'gamma': no such cloud in {clouds_yaml} (clouds there: alpha, beta); name one of them, "
        "or add it to clouds.yaml")


def test_an_unknown_os_cloud_names_the_variable(qcow2: Path, clouds_yaml: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import openstack

    monkeypatch.setenv("OS_CLOUD", "gamma")
    error = raised_by(lambda: openstack.connect())
    assert str(explain(error, CONNECT, request(qcow2, cloud=None))).startswith(
        f"OS_CLOUD = 'gamma': no such cloud in {clouds_yaml} (clouds there: alpha, beta)")


def test_no_cloud_at_all_says_where_a_cloud_comes_from(qcow2: Path, clouds_yaml: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import openstack

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml.with_name("absent.yaml")))
    error = raised_by(lambda: list(openstack.connect().image.images()))
    assert str(explain(error, LIST, request(qcow2, cloud=None))) == (
        "no cloud to publish to (Auth plugin requires parameters which were not given: auth_url): set "
        "publish.cloud to a cloud of clouds.yaml, or OS_CLOUD, or source the project's openrc file (OS_AUTH_URL, "
        "OS_USERNAME, ...)")


def test_http_answers_become_their_lines(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    html = ("413 Request Entity Too Large: 413 Request Entity Too Large: Image exceeds the storage quota: The size "
            "of the data 8716288 will exceed the limit. 2097152 bytes remaining.")
    quota = sdk.HttpException("413: Client Error", http_status=413, details=html)
    assert str(explain(quota, UPLOAD, request(qcow2), 8 << 20, 8 << 20)) == (
        "cloud 'mycloud' refused the upload, the image storage quota is exceeded (Image exceeds the storage quota: "
        "The size of the data 8716288 will exceed the limit. 2097152 bytes remaining.); delete old images "
        "(openstack image list) or ask the cloud's admins for more")
    too_large = sdk.HttpException("413", http_status=413, details="The incoming image is too large")
    assert str(explain(too_large, UPLOAD, request(qcow2), 1 << 30, 1 << 30)).startswith(
        "cloud 'mycloud' refused the upload, the image is too large for it (1.0 GiB: The incoming image is too large)")
    forbidden = sdk.ForbiddenException("403", http_status=403,
                                       details="You are not authorized to complete publicize_image action.")
    assert str(explain(forbidden, CREATE, request(qcow2, visibility="public"))) == (
        "publish.visibility = 'public': cloud 'mycloud' does not let this account create public images (403: You "
        "are not authorized to complete publicize_image action.); use private or shared, or ask the cloud's admins")
    assert str(explain(forbidden, LIST, request(qcow2))) == (
        "cloud 'mycloud' refused to list the images (403: You are not authorized to complete publicize_image "
        "action.)")
    unauthorized = ksa.Unauthorized(http_status=401, url="https://keystone.example:5000/v3/auth/tokens")
    assert str(explain(unauthorized, LIST, request(qcow2))) == (
        "cloud 'mycloud' refused the credentials (401 Unauthorized at https://keystone.example:5000/v3/auth/tokens):"
        " check auth.username, auth.password and the project in clouds.yaml (or OS_USERNAME, OS_PASSWORD)")


def test_connection_failures_say_where_and_why(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa

    refused = ksa.ConnectFailure("Unable to establish connection to https://glance.example:9292/v2/images: "
                                 "HTTPSConnectionPool(...): [Errno 111] Connection refused")
    assert str(explain(refused, LIST, request(qcow2))) == (
        "cannot reach cloud 'mycloud' at https://glance.example:9292/v2/images: connection refused (nothing "
        "listening); check auth_url or endpoint in clouds.yaml and the network (VPN, proxy)")
    dropped = ksa.ConnectFailure("Unable to establish connection to http://g:9292/v2/images/1/file: ('Connection "
                                 "aborted.', RemoteDisconnected('Remote end closed connection without response'))")
    assert str(explain(dropped, UPLOAD, request(qcow2), 300 << 20, 1536 << 20)) == (
        "the connection to cloud 'mycloud' dropped during the upload, after 300.0 MiB of 1.5 GiB (the server "
        "closed the connection, http://g:9292/v2/images/1/file); run publish again when the cloud answers")


def test_a_failed_discovery_asks_the_port_whether_anything_listens(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    message = "Unable to find a version discovery document at {}, the service is unavailable or misconfigured."
    error = ksa.DiscoveryFailure(message.format(f"http://127.0.0.1:{closed}"))
    assert str(explain(error, LIST, request(qcow2))).startswith(
        f"cannot reach cloud 'mycloud' at http://127.0.0.1:{closed}: connection refused (nothing listening)")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        error = ksa.DiscoveryFailure(message.format(f"http://127.0.0.1:{port}"))
        assert str(explain(error, LIST, request(qcow2))) == (
            f"cloud 'mycloud': no OpenStack Image API found at http://127.0.0.1:{port}; check auth_url or endpoint "
            "in clouds.yaml (the service's root URL, without /v2)")


def test_anything_else_is_still_one_line(qcow2: Path) -> None:
    from openstack import exceptions as sdk

    error = sdk.SDKException("something odd\nwith a second line")
    assert str(explain(error, CHECK, request(qcow2))) == \
        "cloud 'mycloud': could not check the uploaded image: something odd"
    assert str(explain(ValueError("bad\nvalue"), CHECK, request(qcow2))) == \
        "could not check the uploaded image: ValueError: bad"


def test_importing_publish_does_not_import_openstacksdk() -> None:
    """invoke --list imports tasks.py and so this module: openstacksdk (about a second) loads only to publish."""
    code = "import sys, hubvm.publish; print('openstack' in sys.modules, 'keystoneauth1' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["False", "False"]
