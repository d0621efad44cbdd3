"""The guest's hubvm-backup (hubvm/guest/hub_backup.py) in a sandbox of this machine: homes, a hub database, a
password store and skel in a temporary folder, Linux accounts made up. The archive it writes is read back (manifest
last, every file's sha256), a tampered one is refused, and the restore's plan follows its rules (reserved names,
other users' work, --merge keeping newer files). The restore itself, with real accounts and a real hub, runs in
tests/e2e/test_backup.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from hubvm.guest import hub_backup
from hubvm.guest.hub_backup import ACCOUNTS, FORMAT, HOMES, MANIFEST, Refused
from tests.guest.sandbox import sandbox

__all__ = ["sandbox"]  # a fixture

def archive_of(access: dict) -> bytes:
    out = io.BytesIO()
    hub_backup.create(access, out)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_the_archive_holds_accounts_homes_and_a_manifest_last(sandbox: dict) -> None:
    data = archive_of(sandbox)
    names = [m.name for m in members(data)]
    assert names[0] == ACCOUNTS and names[-1] == MANIFEST
    assert f"{HOMES}ada/work/notes.ipynb" in names and f"{HOMES}ada/shared_data" in names
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        accounts = json.load(tar.extractfile(ACCOUNTS))
    assert manifest["format"] == FORMAT
    assert [(u["name"], u["admin"]) for u in accounts["users"]] == [("ada", True), ("bo", False)]
    assert accounts["users"][0]["password_hash"].startswith("$2b$12$")
    ada = next(u for u in manifest["users"] if u["name"] == "ada")
    assert ada["files"] == 3 and ada["bytes"] == sum(p.stat().st_size for p in (sandbox["homes"] / "jupyter-ada")
                                                      .rglob("*") if p.is_file() and not p.is_symlink())
    link = manifest["members"][f"{HOMES}ada/shared_data"]
    assert (link["type"], link["link"], link["owner"]) == ("link", "/srv/shared_data", "ada")
    assert not any("cookie" in name or "jupyterhub.sqlite" in name for name in names)  # never the hub's secrets


def test_extract_checks_every_file_against_the_manifest(sandbox: dict, tmp_path: Path) -> None:
    data = archive_of(sandbox)
    staging = tmp_path / "staging"
    staging.mkdir()
    manifest, digests = hub_backup.extract(io.BytesIO(data), str(staging))
    assert digests[f"{HOMES}ada/data.csv"] == manifest["members"][f"{HOMES}ada/data.csv"]["sha256"]
    assert (staging / HOMES / "ada" / "data.csv").read_bytes() == \
        (sandbox["homes"] / "jupyter-ada" / "data.csv").read_bytes()


def _rewritten(data: bytes, change) -> bytes:
    """The archive with one member's content changed (the manifest left as it was)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source, tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info in source.getmembers():
            content = source.extractfile(info).read() if info.isfile() else None
            if content is not None:
                content = change(info.name, content)
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


@pytest.mark.parametrize(("damage", "words"), [
    ("tampered", "does not match the archive's manifest"),
    ("truncated", "damaged or truncated"),
    ("no manifest", "has no manifest"),
    ("foreign", "outside hubvm-backup/"),
])
def test_a_damaged_archive_is_refused_before_anything_is_put_in_place(sandbox: dict, tmp_path: Path, damage: str,
                                                                     words: str) -> None:
    data = archive_of(sandbox)
    if damage == "tampered":
        data = _rewritten(data, lambda name, content: b"changed" if name.endswith("notes.ipynb") else content)
    elif damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "no manifest":
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source:
            out = io.BytesIO()
            with tarfile.open(fileobj=out, mode="w:gz") as tar:
                for info in source.getmembers():
                    if info.name != MANIFEST:
                        tar.addfile(info, source.extractfile(info) if info.isfile() else None)
        data = out.getvalue()
    else:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            info = tarfile.TarInfo("../etc/passwd")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"root"))
        data = out.getvalue()
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(Refused, match=words):
        hub_backup.extract(io.BytesIO(data), str(staging))


@pytest.mark.parametrize(("name", "safe"), [
    ("hubvm-backup/homes/ada/x", True), ("hubvm-backup/../x", False), ("/hubvm-backup/x", False),
    ("other/x", False), ("hubvm-backup//x", False), ("hubvm-backup/homes/ada/.ipynb_checkpoints/a", True),
])
def test_only_members_inside_the_archive_folder_are_read(name: str, safe: bool) -> None:
    assert hub_backup.safe_member(name) is safe


def _plan(sandbox: dict, merge: bool = False, **changes: object) -> hub_backup.Plan:
    data = archive_of(sandbox)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        accounts = json.load(tar.extractfile(ACCOUNTS))
    for key, value in changes.items():
        accounts[key] = value
    return hub_backup.plan(sandbox, manifest, merge, accounts)


def test_restoring_onto_the_same_hub_changes_nothing(sandbox: dict) -> None:
    steps = _plan(sandbox)
    assert steps.conflicts == [] and steps.changes == 0 and steps.summary()["changes"] == 0


def test_another_users_work_or_a_changed_file_refuses_unless_merge(sandbox: dict) -> None:
    data = archive_of(sandbox)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        accounts = json.load(tar.extractfile(ACCOUNTS))
    carl = sandbox["homes"] / "jupyter-carl"
    carl.mkdir()
    (carl / "thesis.ipynb").write_text("{}")
    notes = sandbox["homes"] / "jupyter-ada" / "work" / "notes.ipynb"
    notes.write_text('{"cells": [1]}\n')  # changed here after the backup: newer than the archive's
    steps = hub_backup.plan(sandbox, manifest, False, accounts)
    assert any("carl (not in the backup) has 1 files here" in c for c in steps.conflicts)
    assert any("notes.ipynb differs from the backup's" in c for c in steps.conflicts)
    line = hub_backup.conflict_line(steps)
    assert "nothing was changed" in line and "--merge" in line and "\n" not in line
    os.utime(notes, (manifest["members"][f"{HOMES}ada/work/notes.ipynb"]["mtime"] + 60,) * 2)
    merged = hub_backup.plan(sandbox, manifest, True, accounts)
    assert merged.conflicts == [] and merged.kept_newer == [f"{HOMES}ada/work/notes.ipynb"] and merged.writes == []
    os.utime(notes, (manifest["members"][f"{HOMES}ada/work/notes.ipynb"]["mtime"] - 60,) * 2)
    older = hub_backup.plan(sandbox, manifest, True, accounts)
    assert older.replaced == [f"{HOMES}ada/work/notes.ipynb"] and older.writes == older.replaced


def test_a_name_this_image_reserves_is_refused(sandbox: dict) -> None:
    with pytest.raises(Refused, match="'root'"):
        _plan(sandbox, users=[{"name": "root", "admin": False, "password_hash": None}])
    with pytest.raises(Refused, match="'jupyterhub'"):
        _plan(sandbox, users=[{"name": "jupyterhub", "admin": False, "password_hash": None}])


def test_new_users_get_accounts_passwords_and_admin_flags(sandbox: dict) -> None:
    data = archive_of(sandbox)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        accounts = json.load(tar.extractfile(ACCOUNTS))
    accounts["users"].append({"name": "cy", "admin": True, "password_hash": "$2b$12$" + "c" * 53})
    manifest["members"][f"{HOMES}cy/a.txt"] = {"type": "file", "size": 1, "sha256": "0" * 64, "mode": 0o644,
                                                "mtime": 1, "owner": "cy"}
    steps = hub_backup.plan(sandbox, manifest, False, accounts)
    assert steps.accounts == ["cy"] and steps.hub_users == ["cy"] and steps.admins == ["cy"]
    assert steps.passwords == {"cy": "$2b$12$" + "c" * 53} and steps.conflicts == []


def test_a_fresh_copys_admin_takes_the_backups_password_another_user_keeps_theirs(sandbox: dict) -> None:
    hashes = {"ada": "$2b$12$" + "x" * 53, "bo": "$2b$12$" + "y" * 53}
    users = [{"name": "ada", "admin": True, "password_hash": hashes["ada"]},
             {"name": "bo", "admin": False, "password_hash": hashes["bo"]}]
    (sandbox["homes"] / "jupyter-ada" / "data.csv").unlink()  # ada: an admin here, but with work: not fresh
    for path in (sandbox["homes"] / "jupyter-ada").rglob("*"):
        if path.is_file() and path.name != ".bashrc":
            path.unlink()
    for path in (sandbox["homes"] / "jupyter-ada").iterdir():
        if path.is_symlink():
            path.unlink()
    steps = _plan(sandbox, users=users)
    assert "ada" in steps.passwords  # the copy's own admin, no files of its own: the backup's password
    assert any("bo has another password here" in c for c in steps.conflicts)
    merged = _plan(sandbox, merge=True, users=users)
    assert merged.kept_passwords == ["bo"] and "bo" not in merged.passwords


def test_an_unprovisioned_machine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hubvm.guest import hub_users

    monkeypatch.setattr(hub_users, "ACCESS", str(tmp_path / "missing.json"))
    assert hub_backup.main(["create"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hubvm-backup: ") and "provision this machine first" in err and "\n" not in err


def test_plan_refuses_a_foreign_manifest_in_one_line(sandbox: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from hubvm.guest import hub_users

    access_file = tmp_path / "access.json"
    access_file.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in sandbox.items()}
                                      | {"password_length": 16, "api_url": "http://127.0.0.1:1/hub/api",
                                         "users_token_file": "/x"}))
    monkeypatch.setattr(hub_users, "ACCESS", str(access_file))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"manifest": {"format": "other/9"}, "accounts": {}})))
    assert hub_backup.main(["plan"]) == 2
    assert "not a hubvm backup of format hubvm-backup/1" in capsys.readouterr().err


def test_the_archive_is_gzip_with_a_fixed_header_time(sandbox: dict) -> None:
    data = archive_of(sandbox)
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0"  # mtime 0: no clock in the header
    assert gzip.decompress(data)  # a complete gzip stream
