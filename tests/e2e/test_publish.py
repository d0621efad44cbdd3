"""hubvm.publish against a real Image service: Debian 12's glance-api started on loopback (tests/e2e/glance.py).

openstacksdk reads a clouds.yaml of the test's own (OS_CLIENT_CONFIG_FILE) whose clouds point at that Glance,
directly or through loopback helpers of this module: a TCP proxy that flips one byte of an upload on its way
(a corrupted upload), and a stand-in for Keystone that refuses every password (Glance without Keystone accepts
anything, so wrong credentials need an identity service that says no, as Keystone does: 401 on POST
/v3/auth/tokens). The failures run publish in a child Python, as the invoke task would, and require exactly
one line on its stderr: no traceback, no library warning.

Files are small generated qcow2s (random data, so neither qemu-img nor Glance can shortcut them); the upload
time and rate are printed (run with -s to see them).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubvm.publish import upload as upload_module
from hubvm.publish.request import (
    DIGEST_PROPERTY,
    UNFINISHED_STATUSES,
    PublishRequest,
    convert_command,
    plan,
    read_export,
    request_for_export,
)
from hubvm.publish.upload import PublishResult, publish
from hubvm.report import human_bytes
from tests.e2e.glance import Glance, free_port, glance_api, missing_requirements

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the service, a clouds.yaml, generated images


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glance]:
    reasons = missing_requirements()
    if reasons:
        pytest.skip("glance-api cannot run here: " + "; ".join(reasons))
    with glance_api(tmp_path_factory.mktemp("glance") / "service") as service:
        print(f"\nglance-api {service.endpoint} (PID {service.pid}): db_sync {service.db_sync_seconds:.1f} s, "
              f"/healthcheck answered {service.started_in:.1f} s after the start")
        yield service


@dataclass
class Clouds:
    """A clouds.yaml of the test's own, named by OS_CLIENT_CONFIG_FILE (for this process and child processes)."""

    path: Path
    entries: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, entry: dict[str, Any]) -> str:
        self.entries[name] = entry
        self.path.write_text(yaml.safe_dump({"clouds": self.entries}))
        return name

    def glance(self, name: str, endpoint: str) -> str:
        """A cloud without Keystone: openstacksdk's auth_type none and the service's root URL."""
        return self.add(name, {"auth_type": "none", "auth": {"endpoint": endpoint}})


@pytest.fixture
def clouds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, glance: Glance) -> Clouds:
    for variable in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(variable)
    path = tmp_path / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    result = Clouds(path)
    result.glance("local", glance.endpoint)
    return result


@dataclass(frozen=True)
class Disk:
    path: Path
    sha256: str
    sha512: str
    virtual_bytes: int


def make_qcow2(path: Path, data_mib: int, virtual_mib: int = 0) -> Disk:
    """A qcow2 whose first `data_mib` MiB are random (qemu-img convert keeps them), the rest of the disk empty."""
    raw = path.with_suffix(".source-raw")
    with raw.open("wb") as stream:
        for _ in range(data_mib):
            stream.write(os.urandom(MIB))
        stream.truncate(max(virtual_mib, data_mib) * MIB)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()
    return Disk(path, file_hash(path, "sha256"), file_hash(path, "sha512"), max(virtual_mib, data_mib) * MIB)


def file_hash(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while block := stream.read(MIB):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Disk:
    return make_qcow2(tmp_path_factory.mktemp("disks") / "small.qcow2", 8, virtual_mib=64)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Disk:
    return make_qcow2(tmp_path_factory.mktemp("disks") / "other.qcow2", 4, virtual_mib=64)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Disk:
    return make_qcow2(tmp_path_factory.mktemp("disks") / "large.qcow2", 256, virtual_mib=1024)


def unique_name(label: str) -> str:
    return f"hubvm-test-{label}-{uuid.uuid4().hex[:8]}"


def request(disk: Disk, cloud: str | None = "local", **changes: Any) -> PublishRequest:
    fields: dict[str, Any] = {"image_name": unique_name("image"), "file": disk.path, "digest": disk.sha256,
                              "cloud": cloud}
    fields.update(changes)
    return PublishRequest(**fields)


def images_named(glance: Glance, name: str) -> list[Any]:
    import openstack

    conn = openstack.connect(auth_type="none", endpoint=glance.endpoint)
    return list(conn.image.images(name=name))


def all_images(glance: Glance) -> list[Any]:
    import openstack

    return list(openstack.connect(auth_type="none", endpoint=glance.endpoint).image.images())


def image_record(glance: Glance, image_id: str) -> dict[str, Any]:
    import openstack

    conn = openstack.connect(auth_type="none", endpoint=glance.endpoint)
    return conn.image.get(f"/images/{image_id}").json()


def run_publish(req: PublishRequest) -> tuple[PublishResult, list[str]]:
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    def run(command: str) -> None:
        lines.append(f"$ {command}")
        subprocess.run(command, shell=True, check=True)

    return publish(req, run=run, say=say), lines


def rate_line(result: PublishResult) -> str:
    return (f"upload: {human_bytes(result.bytes)} in {result.seconds:.2f} s, "
            f"{human_bytes(result.rate)}/s")


# A child Python that publishes as the invoke task will: a UserError is one line on stderr and exit status 1
CHILD = """
import json, subprocess, sys
from pathlib import Path
from hubvm.errors import UserError
from hubvm.publish.request import PublishRequest
from hubvm.publish.upload import PublishResult, publish
fields = json.loads(sys.argv[1])
fields["file"] = Path(fields["file"])
fields["tags"] = tuple(fields["tags"])
try:
    publish(PublishRequest(**fields), run=lambda c: subprocess.run(c, shell=True, check=True))
except UserError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
"""


def publish_in_child(req: PublishRequest, timeout: float = 300) -> tuple[str, str]:
    """Run publish in a child Python; it must fail with exactly one line on stderr. Returns (that line, stdout)."""
    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in req.__dict__.items()}
    fields["properties"] = dict(req.properties)
    fields["tags"] = list(req.tags)
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(fields)], capture_output=True, text=True,
                            timeout=timeout, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    print(result.stdout, end="")
    print(result.stderr, end="")
    assert result.returncode == 1, f"expected a failure, got {result.returncode}: {result.stdout}{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {result.stderr!r}"
    return lines[0], result.stdout


# ---------------------------------------------------------------------------------------------------------------
# Loopback helpers: a proxy that corrupts one byte of an upload, and a Keystone that refuses every password


class CorruptingProxy:
    """127.0.0.1:port -> Glance. In the client's stream, the byte `flip_at` bytes into the body of the first
    PUT .../file (the image data) is inverted on its way; everything else passes unchanged."""

    def __init__(self, target_port: int, flip_at: int) -> None:
        self.target_port, self.flip_at = target_port, flip_at
        self.flipped = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._client_to_server, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _client_to_server(self, source: socket.socket, sink: socket.socket) -> None:
        seen = b""          # the stream so far, kept until the PUT's headers are found
        position = 0        # bytes of the stream forwarded before the current block
        target = -1         # stream offset of the byte to flip
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if target < 0 and not self.flipped:
                    seen += data
                    put = seen.find(b"PUT /v2/images/")
                    end = seen.find(b"\r\n\r\n", put) if put >= 0 else -1
                    if end >= 0:
                        target = end + 4 + self.flip_at
                if position <= target < position + len(data):
                    block = bytearray(data)
                    block[target - position] ^= 0xFF
                    data = bytes(block)
                    self.flipped += 1
                    target, seen = -1, b""
                position += len(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


class RefusingKeystone(http.server.ThreadingHTTPServer):
    """Stands in for Keystone (identity v3) on loopback: answers version discovery as Keystone does, and every
    POST /v3/auth/tokens with Keystone's 401. Records the user names it was asked about."""

    def __init__(self) -> None:
        self.users: list[str] = []
        super().__init__(("127.0.0.1", 0), KeystoneHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v3"


class KeystoneHandler(http.server.BaseHTTPRequestHandler):
    server: RefusingKeystone

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def version(self) -> dict[str, Any]:
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": self.server.auth_url + "/"}],
                "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v3":
            self._json(200, {"version": self.version()})
        else:
            self._json(300, {"versions": {"values": [self.version()]}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with contextlib.suppress(KeyError, TypeError):
            self.server.users.append(body["auth"]["identity"]["password"]["user"]["name"])
        self._json(401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}},
                   {"WWW-Authenticate": f'Keystone uri="{self.server.auth_url}"'})

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


# ---------------------------------------------------------------------------------------------------------------
# Uploads that succeed


def test_publish_sets_properties_and_tags_and_checks_the_checksum(glance: Glance, clouds: Clouds,
                                                                   small: Disk) -> None:
    req = request(small, tags=("hubvm", "jupyterhub"), min_disk_gb=1, min_ram_mb=1024,
                  properties={"os_distro": "debian", "os_version": "12", "hw_qemu_guest_agent": "yes",
                              "hw_disk_bus": "virtio"})
    result, lines = run_publish(req)
    print(rate_line(result))
    assert result.status == "uploaded"
    [image] = images_named(glance, req.image_name)
    assert image.id == result.image_id
    assert (image.status, image.disk_format, image.container_format, image.visibility) == \
        ("active", "qcow2", "bare", "private")
    assert (image.min_disk, image.min_ram, sorted(image.tags)) == (1, 1024, ["hubvm", "jupyterhub"])
    stored_record = image_record(glance, image.id)   # Glance's own JSON: properties are top-level strings
    assert {k: stored_record.get(k) for k in ("os_distro", "os_version", "hw_qemu_guest_agent", "hw_disk_bus",
                                              DIGEST_PROPERTY)} == \
        {"os_distro": "debian", "os_version": "12", "hw_qemu_guest_agent": "yes", "hw_disk_bus": "virtio",
         DIGEST_PROPERTY: small.sha256}
    assert (image.hash_algo, image.hash_value, image.size) == ("sha512", small.sha512, small.path.stat().st_size)
    stored = glance.store_dir / image.id
    assert file_hash(stored, "sha256") == small.sha256   # what Glance keeps is the file, byte for byte
    assert any(line.startswith("publish: uploaded ") for line in lines)
    assert any("sha512 equals the local file's" in line for line in lines)


def test_a_large_upload_reports_progress_and_its_rate(glance: Glance, clouds: Clouds, large: Disk,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_module, "PROGRESS_EVERY", 0.2)  # loopback is fast: lines every 0.2 s, not every 5 s
    req = request(large)
    result, lines = run_publish(req)
    print(rate_line(result))
    [image] = images_named(glance, req.image_name)
    assert (image.status, image.hash_value) == ("active", large.sha512)
    assert result.bytes == large.path.stat().st_size
    summary = [line for line in lines if line.startswith("publish: uploaded ")]
    assert summary and "MiB/s" in summary[0]
    progress = [line for line in lines if re.fullmatch(r"publish: [\d.]+ MiB of 256.3 MiB \(\d+%\), [\d.]+ MiB/s, "
                                                                r"about (\d+m)?[\d.]+s left", line)]
    assert progress, lines


def test_the_same_image_again_is_skipped(glance: Glance, clouds: Clouds, small: Disk) -> None:
    req = request(small)
    first, _ = run_publish(req)
    second, lines = run_publish(req)
    assert (second.status, second.image_id) == ("skipped", first.image_id)
    assert "nothing to upload" in lines[-1]
    assert [i.id for i in images_named(glance, req.image_name)] == [first.image_id]


def test_another_image_of_that_name_stops_publish_unless_replace(glance: Glance, clouds: Clouds, small: Disk,
                                                                 other: Disk) -> None:
    name = unique_name("replace")
    old, _ = run_publish(request(small, image_name=name))

    line, _ = publish_in_child(request(other, image_name=name))
    assert "already has an image named" in line and "--replace" in line
    assert [i.id for i in images_named(glance, name)] == [old.image_id]

    new, lines = run_publish(request(other, image_name=name, replace=True))
    [now_named] = images_named(glance, name)
    assert (now_named.id, now_named.status, now_named.properties[DIGEST_PROPERTY]) == \
        (new.image_id, "active", other.sha256)
    [(renamed_id, renamed_to)] = new.renamed
    assert renamed_id == old.image_id and renamed_to.startswith(f"{name}-replaced-")
    [kept] = images_named(glance, renamed_to)
    assert (kept.id, kept.status, kept.properties["hubvm_replaced_by"]) == (old.image_id, "active", new.image_id)
    assert any(f"renamed the replaced image {old.image_id}" in line for line in lines)


def test_raw_is_converted_locally_and_uploaded(glance: Glance, clouds: Clouds, small: Disk, tmp_path: Path) -> None:
    req = request(small, disk_format="raw", raw_file=tmp_path / "converted.raw")
    result, lines = run_publish(req)
    print(rate_line(result))
    assert f"$ {convert_command(req)}" in lines
    assert not req.raw_file.exists()  # type: ignore[union-attr]
    [image] = images_named(glance, req.image_name)
    assert (image.status, image.disk_format, image.size) == ("active", "raw", small.virtual_bytes)
    expected = tmp_path / "expected.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(small.path), str(expected)], check=True)
    assert image.hash_value == file_hash(expected, "sha512")
    # the qcow2's digest stays the identity: the same export as raw is skipped next time
    assert run_publish(req)[0].status == "skipped"


@pytest.mark.parametrize("source", ["OS_CLOUD", "openrc"])
def test_the_environment_names_the_cloud_when_no_cloud_is_given(glance: Glance, clouds: Clouds, small: Disk,
                                                                monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    if source == "OS_CLOUD":
        monkeypatch.setenv("OS_CLOUD", "local")
    else:  # OS_* variables as an openrc file sets them, and no clouds.yaml
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds.path.with_name("absent.yaml")))
        monkeypatch.setenv("OS_AUTH_TYPE", "none")
        monkeypatch.setenv("OS_ENDPOINT", glance.endpoint)
    req = request(small, cloud=None)
    assert plan(req)[0] == "connect to the cloud of OS_CLOUD or OS_* variables"
    result, _ = run_publish(req)
    assert [i.id for i in images_named(glance, req.image_name)] == [result.image_id]


def test_public_images_need_the_clouds_permission(glance: Glance, clouds: Clouds, small: Disk) -> None:
    req = request(small, visibility="public")
    line, _ = publish_in_child(req)
    assert line.startswith("error: publish.visibility = 'public': cloud 'local' does not let this account create "
                           "public images (403")
    assert images_named(glance, req.image_name) == []
    try:
        glance.restart(publicize_image=True)
        result, _ = run_publish(req)
        [image] = images_named(glance, req.image_name)
        assert (image.id, image.visibility) == (result.image_id, "public")
    finally:
        glance.restart(publicize_image=False)


# ---------------------------------------------------------------------------------------------------------------
# Uploads that fail: one line, nothing left behind


def test_a_corrupted_upload_is_caught_and_deleted(glance: Glance, clouds: Clouds, small: Disk) -> None:
    proxy = CorruptingProxy(glance.port, flip_at=3 * MIB + 4321)
    try:
        req = request(small, cloud=clouds.glance("corrupting", proxy.endpoint))
        line, stdout = publish_in_child(req)
    finally:
        proxy.close()
    assert proxy.flipped == 1
    assert "checksum mismatch: Glance stored sha512" in line and line.endswith("was deleted")
    assert images_named(glance, req.image_name) == []
    assert "publish: uploaded " in stdout


def test_a_server_killed_mid_upload_is_one_line_and_the_next_publish_cleans_up(glance: Glance, clouds: Clouds,
                                                                               large: Disk) -> None:
    req = request(large)
    before = set(glance.stored_files())
    killed_at: list[int] = []

    def kill_when_data_arrives() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = [p for p in glance.stored_files() if p not in before]
            if new and new[0].stat().st_size >= 16 * MIB:
                killed_at.append(new[0].stat().st_size)
                glance.kill()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_when_data_arrives, daemon=True)
    watcher.start()
    try:
        line, _ = publish_in_child(req)
    finally:
        watcher.join(timeout=130)
        glance.restart()
    print(f"glance-api killed with {human_bytes(killed_at[0])} stored")
    assert "dropped during the upload" in line and "could not be deleted now" in line
    assert "the next publish removes it" in line
    [leftover] = images_named(glance, req.image_name)
    assert leftover.status in UNFINISHED_STATUSES

    result, lines = run_publish(req)
    print(rate_line(result))
    assert any(f"deleted image {leftover.id}" in line for line in lines)
    [image] = images_named(glance, req.image_name)
    assert (image.id, image.status, image.hash_value) == (result.image_id, "active", large.sha512)


def test_ctrl_c_mid_upload_leaves_no_image(glance: Glance, clouds: Clouds, large: Disk) -> None:
    req = request(large)
    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in req.__dict__.items()}
    fields.update(properties={}, tags=[])
    before = set(glance.stored_files())
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(fields)], cwd=PROJECT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            new = [p for p in glance.stored_files() if p not in before]
            if new and new[0].stat().st_size >= 16 * MIB:
                child.send_signal(signal.SIGINT)   # what Ctrl-C in the terminal sends
                break
            time.sleep(0.01)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    print(stdout, stderr[-500:])
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert images_named(glance, req.image_name) == []


def test_quota_exceeded_is_one_line(glance: Glance, clouds: Clouds, small: Disk) -> None:
    req = request(small)
    # Glance counts the sizes of the owner's images (here all have the same, no owner); not the store's files:
    # uploads cut short leave partial files there that no image owns
    used = sum(image.size or 0 for image in all_images(glance))
    try:
        glance.restart(user_storage_quota=f"{used + 4 * MIB}B")      # 4 MiB left: the 8 MiB image does not fit
        line, _ = publish_in_child(req)
    finally:
        glance.restart(user_storage_quota="0")
    assert "the image storage quota is exceeded" in line and "4194304 bytes remaining" in line
    assert line.endswith("was deleted")
    assert images_named(glance, req.image_name) == []


def test_an_image_too_large_for_the_cloud_is_one_line(glance: Glance, clouds: Clouds, small: Disk) -> None:
    req = request(small)
    try:
        glance.restart(image_size_cap=MIB)
        line, _ = publish_in_child(req)
    finally:
        glance.restart(image_size_cap=1 << 40)
    assert "the image is too large for it" in line and line.endswith("was deleted")
    assert images_named(glance, req.image_name) == []


def test_an_unknown_cloud_name_is_one_line(clouds: Clouds, small: Disk) -> None:
    line, _ = publish_in_child(request(small, cloud="nowhere"))
    assert line == (f"error: publish.cloud = 'nowhere': no such cloud in {clouds.path} (clouds there: local); "
                    "name one of them, or add it to clouds.yaml")


def test_nothing_listening_is_one_line(clouds: Clouds, small: Disk) -> None:
    port = free_port()
    line, _ = publish_in_child(request(small, cloud=clouds.glance("closed", f"http://127.0.0.1:{port}")))
    assert line.startswith(f"error: cannot reach cloud 'closed' at http://127.0.0.1:{port}")
    assert "connection refused (nothing listening)" in line


def test_wrong_credentials_are_one_line(clouds: Clouds, small: Disk) -> None:
    # Glance runs without Keystone here and accepts anyone: RefusingKeystone stands in for a Keystone that
    # rejects the password, as a real cloud's would
    keystone = RefusingKeystone()
    try:
        cloud = clouds.add("badpassword", {"auth_type": "password", "identity_api_version": 3, "auth": {
            "auth_url": keystone.auth_url, "username": "alice", "password": "wrong", "project_name": "demo",
            "user_domain_name": "Default", "project_domain_name": "Default"}})
        line, _ = publish_in_child(request(small, cloud=cloud))
    finally:
        keystone.shutdown()
        keystone.server_close()
    assert keystone.users and set(keystone.users) == {"alice"}
    assert line.startswith("error: cloud 'badpassword' refused the credentials (401 Unauthorized")
    assert "check auth.username, auth.password and the project in clouds.yaml" in line


def test_no_cloud_at_all_is_one_line(clouds: Clouds, small: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds.path.with_name("absent.yaml")))
    line, _ = publish_in_child(request(small, cloud=None))
    assert line.startswith("error: no cloud to publish to (")
    assert "set publish.cloud to a cloud of clouds.yaml, or OS_CLOUD" in line


# ---------------------------------------------------------------------------------------------------------------
# Opt-in: a real export (the full build test's builds/vm/), for its upload time and rate


def test_publish_a_real_export(glance: Glance, clouds: Clouds) -> None:
    vm_dir = os.environ.get("HUBVM_PUBLISH_EXPORT")
    if not vm_dir:
        pytest.skip("set HUBVM_PUBLISH_EXPORT to an export's folder (builds/vm) to publish its qcow2 here")
    facts = read_export(Path(vm_dir))
    req = request_for_export(facts, cloud="local", min_ram_mb=1024)
    print("\n".join(f"plan: {line}" for line in plan(req)))
    result, _ = run_publish(req)
    print(f"{facts.file} ({human_bytes(facts.file_bytes)}): {rate_line(result)}")
    [image] = images_named(glance, req.image_name)
    assert (image.status, image.hash_value) == ("active", file_hash(facts.file, "sha512"))
    record = image_record(glance, image.id)
    assert record.get("hw_qemu_guest_agent") == ("yes" if facts.guest_agent else None)
    assert record["os_distro"] and record["os_version"] and record["hubvm_digest"] == facts.file_sha256


# ---------------------------------------------------------------------------------------------------------------
# The task: `hubvm publish` in a project whose builds/vm/ is a current export


def make_current_export(project: Path, profile: Path) -> Path:
    """builds/vm/ as `hubvm export` leaves it for the profile's settings: box, qcow2, SHA256SUMS, manifest, stamp."""
    from hubvm import digests
    from hubvm.artifacts import write_checksums_and_manifest
    from hubvm.config.layers import Layers, defaults_layer, file_layer, read_file
    from hubvm.config.settings import parse
    from hubvm.layout import Layout

    s = parse(Layers((defaults_layer(project), file_layer(read_file(profile), profile.name, shared=False)),
                     project))
    layout = Layout.of(s)
    partial = layout.vm_partial
    partial.mkdir(parents=True)
    make_qcow2(partial / f"{s.vm.name}.qcow2", 8, 64)
    (partial / f"{s.vm.name}.box").write_bytes(b"box")
    box_digest = digests.box_digest(s)
    digest = digests.export_digest(s, box_digest)
    write_checksums_and_manifest(s, partial, {"Vagrant": "2.3.4"}, digest, box_digest)
    partial.replace(layout.vm_dir)
    digests.write(layout.export_stamp, digest)
    return layout.vm_dir


def test_the_publish_task_uploads_the_export_once(glance: Glance, clouds: Clouds, cli, project: Path) -> None:
    name = unique_name("task")
    profile = project / "cloud.yaml"
    profile.write_text(f"vm: {{provider: libvirt, name: {name}}}\nexport: {{formats: [qcow2]}}\n"
                       "publish: {cloud: local, tags: [course], properties: {hw_scsi_model: virtio-scsi}}\n")
    vm_dir = make_current_export(project, profile)

    dry = cli("-f", str(profile), "--dry", "publish")
    assert dry.returncode == 0, dry.stderr
    assert "[dry run] publish would" in dry.stdout
    assert not [i for i in all_images(glance) if i.name.startswith(name)]  # a dry run connects nowhere

    first = cli("-f", str(profile), "publish")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    [image] = [i for i in all_images(glance) if i.name.startswith(name)]
    record = image_record(glance, image.id)
    assert record["status"] == "active" and record["tags"] == ["course"]
    assert record["hw_qemu_guest_agent"] == "yes" and record["hw_scsi_model"] == "virtio-scsi"
    assert record["min_ram"] == 1024 and record["os_distro"] == "debian"
    assert record["os_hash_value"] == file_hash(vm_dir / f"{name}.qcow2", "sha512")
    assert "uploaded" in first.stdout.splitlines()[-1]

    again = cli("-f", str(profile), "publish")
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout.splitlines()[-1]
    assert len([i for i in all_images(glance) if i.name.startswith(name)]) == 1
