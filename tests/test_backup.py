"""hubvm.backup without a machine: an archive the guest's program writes is read back whole and checked (manifest,
every file's sha256, the sha256 file beside it); damaged, truncated and foreign files are one line each; the
default file name; dry runs connect nowhere. The transfers themselves run in tests/e2e/test_backup.py."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from invoke import Config, MockContext

from hubvm import backup
from hubvm.config import settings
from hubvm.errors import UserError
from hubvm.guest import hub_backup
from hubvm.layout import Layout
from tests.conftest import settings_with
from tests.guest.sandbox import sandbox

__all__ = ["sandbox"]  # a fixture


@pytest.fixture
def archive(sandbox: dict, tmp_path: Path) -> Path:
    path = tmp_path / "class.tar.gz"
    with path.open("wb") as out:
        hub_backup.create(sandbox, out)
    return path


def test_a_complete_archive_is_read_with_its_manifest_accounts_and_sha256(archive: Path) -> None:
    import hashlib

    found = backup.read_archive(archive)
    assert found.manifest["format"] == backup.FORMAT and [u["name"] for u in found.accounts["users"]] == ["ada", "bo"]
    assert found.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest() and found.size == archive.stat().st_size
    assert backup.summary_line(found.manifest) == f"2 users (1 admins), 3 files, " \
        f"{backup.human_bytes(found.manifest['bytes'])}"


def _damaged(archive: Path, how: str) -> Path:
    data = bytearray(archive.read_bytes())
    bad = archive.with_name(f"{how}.tar.gz")
    if how == "corrupted":
        middle = len(data) // 2
        data[middle:middle + 32] = bytes(b ^ 0xFF for b in data[middle:middle + 32])
    elif how == "truncated":
        data = data[:len(data) * 2 // 3]
    elif how == "empty":
        data = bytearray()
    elif how == "foreign":
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            info = tarfile.TarInfo("notes.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        data = bytearray(out.getvalue())
    elif how == "not gzip":
        data = bytearray(b"PK\x03\x04 a zip, not a backup")
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(("how", "words"), [
    ("corrupted", "is damaged"), ("truncated", "damaged or truncated"), ("empty", "damaged or truncated"),
    ("foreign", "is not a hubvm backup"), ("not gzip", "damaged or truncated"),
])
def test_a_damaged_or_foreign_archive_is_one_line(archive: Path, how: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        backup.read_archive(_damaged(archive, how))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_archive_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file; give the archive hubvm backup wrote"):
        backup.read_archive(tmp_path / "nothing.tar.gz")


def test_the_sha256_file_beside_the_archive_must_match(archive: Path) -> None:
    found = backup.read_archive(archive)
    sidecar = archive.with_name(archive.name + ".sha256")
    backup.check_sidecar(archive, found)  # none: nothing to compare
    sidecar.write_text(f"{found.sha256}  {archive.name}\n")
    backup.check_sidecar(archive, found)
    sidecar.write_text(f"{'0' * 64}  {archive.name}\n")
    with pytest.raises(UserError, match=r"does not match class\.tar\.gz\.sha256"):
        backup.check_sidecar(archive, found)


def test_the_default_file_is_per_machine_and_time(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "vm", "debian12", "libvirt")
    assert backup.default_output(layout, "10.0.0.2", now=0).name == "10.0.0.2-19700101T000000Z.tar.gz"
    assert backup.default_output(layout, "fe80::1", now=0).parent == tmp_path / "builds" / "backups"


def test_the_guest_commands_run_as_root() -> None:
    assert backup.guest_command("create").endswith("$SUDO /usr/local/sbin/hubvm-backup create")
    assert backup.guest_command("restore", merge=True).endswith("hubvm-backup restore --merge")


def _dry() -> MockContext:
    return MockContext(config=Config(overrides={"run": {"dry": True}}), run={})


def test_dry_runs_connect_nowhere(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_with()
    layout = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    assert backup.run_backup(_dry(), s, layout, "root@10.0.0.2", None, str(tmp_path / "b.tar.gz")) is None
    assert "backup (dry run, no connection)" in capsys.readouterr().out and not (tmp_path / "b.tar.gz").exists()
    assert backup.run_restore(_dry(), s, layout, str(archive), "root@10.0.0.2", None, merge=False) is None
    assert "restore (dry run, no connection)" in capsys.readouterr().out


def test_a_backup_never_overwrites_a_file(tmp_path: Path) -> None:
    existing = tmp_path / "old.tar.gz"
    existing.write_text("an older backup")
    s: settings.Settings = settings_with()
    with pytest.raises(UserError, match="exists; give a new file name"):
        backup.run_backup(_dry(), s, Layout(tmp_path, "v", "debian12", "virtualbox"), "root@10.0.0.2", None,
                          str(existing))
    assert existing.read_text() == "an older backup"
