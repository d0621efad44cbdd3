"""The guest's hubvm-users (hubvm/guest/hub_users.py) without a hub: rows checked like the host checks them, and
a machine that was never provisioned answered in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubvm import users
from hubvm.errors import UserError
from hubvm.guest import hub_users

GUEST_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,23}$"


def test_the_guest_tool_checks_rows_like_the_host() -> None:
    good = "user name,full name\nada,Ada\n\n# comment\ngrace\nalan.turing\nk_j-2\n"
    assert hub_users.read_rows(good, GUEST_PATTERN) == [row.name for row in users.parse_rows(good, "x")]
    for bad in ("Ada\n", "bob smith\n", "a" * 25 + "\n", "root\n", "ada\nada\n"):
        with pytest.raises(UserError):
            users.parse_rows(bad, "x")
        with pytest.raises(hub_users.BadInput):
            hub_users.read_rows(bad, GUEST_PATTERN)


@pytest.mark.parametrize(("content", "words"), [
    (None, "is missing: provision this machine first (hubvm provision)"),
    ("{not json", "cannot be read"),
    (json.dumps({"password_db": "/x"}), "lacks api_url, password_length, username_pattern, users_token_file"),
])
def test_an_unprovisioned_machine_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              content: str | None, words: str) -> None:
    access = tmp_path / "hub-access.json"
    if content is not None:
        access.write_text(content)
    monkeypatch.setattr(hub_users, "ACCESS", str(access))
    monkeypatch.setattr(hub_users.sys, "stdin", __import__("io").StringIO("ada\n"))
    assert hub_users.main(["import"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hubvm-users: {access} ") and words in err and "\n" not in err
