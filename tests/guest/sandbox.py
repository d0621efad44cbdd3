"""A hub's state in a temporary folder, for hubvm-backup without a machine: a hub database with ada (admin) and
bo, their bcrypt hashes in a password store, ada's home (a notebook, a data file, the shared data link), skel, and
made-up Linux accounts (hubvm-backup's account lookups point at the folder)."""

from __future__ import annotations

import contextlib
import dbm
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from hubvm.guest import hub_backup

PATTERN = "^[a-z0-9][a-z0-9_.-]{0,23}$"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A hub's state below tmp_path: users ada (admin) and bo in the database, their hashes, ada's home."""
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "jupyterhub.sqlite")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, admin BOOLEAN)")
    db.execute("INSERT INTO users (name, admin) VALUES ('ada', 1), ('bo', 0)")
    db.commit()
    db.close()
    with dbm.open(str(state / "passwords.dbm"), "c") as store:
        store[b"ada"] = b"$2b$12$" + b"a" * 53
        store[b"bo"] = b"$2b$12$" + b"b" * 53
    skel = tmp_path / "skel"
    skel.mkdir()
    (skel / ".bashrc").write_text("# skel\n")
    homes = tmp_path / "home"
    ada = homes / "jupyter-ada"
    (ada / "work").mkdir(parents=True)
    (ada / ".bashrc").write_text("# skel\n")
    (ada / "work" / "notes.ipynb").write_text('{"cells": []}\n')
    (ada / "data.csv").write_bytes(os.urandom(3 * hub_backup.BLOCK + 17))
    os.symlink("/srv/shared_data", ada / "shared_data")

    def login(name: str) -> SimpleNamespace | None:
        home = homes / name
        return SimpleNamespace(pw_name=name, pw_uid=1000 + len(name), pw_gid=1000 + len(name), pw_dir=str(home)) \
            if home.is_dir() else None

    monkeypatch.setattr(hub_backup, "_login", login)
    monkeypatch.setattr(hub_backup, "_logins", lambda: sorted(p.name for p in homes.iterdir()))
    monkeypatch.setattr(hub_backup, "SKEL", str(skel))
    monkeypatch.setattr(hub_backup, "hub_stopped", lambda access, servers=None: contextlib.nullcontext([]))
    return {"database": str(state / "jupyterhub.sqlite"), "password_db": str(state / "passwords.dbm"),
            "system_user_prefix": "jupyter-", "username_pattern": PATTERN, "admins": ["ada"], "flavour": "pypi",
            "signup": "closed", "https": "off", "shared_data_dir": "", "image_file": str(tmp_path / "image.json"),
            "homes": homes}
