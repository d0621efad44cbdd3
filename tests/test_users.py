"""hubvm.users without a machine: the class CSV, the guest command, hubvm-users' answer, the passwords file; and
the guest tool's own row checks agreeing with the host's."""

from __future__ import annotations

import base64
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from invoke import Config, MockContext

from hubvm import users
from hubvm.config import settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.users import NewPassword, Row
from tests.conftest import REPO, settings_with

# The pypi hub's username_pattern with the default prefix "jupyter-" (the role's hub_username_pattern)


def parse(**overrides: object) -> settings.Settings:
    return settings_with(REPO, **overrides)


def test_rows_skip_the_header_blank_rows_and_comments() -> None:
    text = ("\ufeffUser name,Full name\n\n# the morning group\nada,Ada Lovelace\n"
            'grace,"Hopper, Grace"\n  alan  ,\nkatherine\n')
    assert users.parse_rows(text, "class.csv") == [
        Row(4, "ada", "Ada Lovelace"), Row(5, "grace", "Hopper, Grace"), Row(6, "alan", ""), Row(7, "katherine")]


def test_read_rows_strips_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "class.csv"
    path.write_bytes("\ufeffada\n".encode())
    assert users.read_rows(path) == [Row(1, "ada")]


@pytest.mark.parametrize(("text", "message"), [
    ("ada\nAda\n", "class.csv row 2: 'Ada' has capitals; write it in lower case ('ada'), as the hub stores it"),
    ("ada\nbob smith\n", "class.csv row 2: 'bob smith' is not a hub user name; use 1-24 lower-case letters"),
    ("-ada\n", "class.csv row 1: '-ada' is not a hub user name"),
    ("a" * 25 + "\n", "class.csv row 1: 'aaaaaaaaaaaaaaaaaaaaaaaaa' is not a hub user name"),
    ("root\n", "class.csv row 1: 'root' is a system account name; choose another name"),
    ("systemd-journal\n", "class.csv row 1: 'systemd-journal' is a system account name"),
    ("ada\nbob\nada,Ada\n", "class.csv row 3: 'ada' is already on row 1; list each user once"),
    ("ada,Ada,extra\n", "class.csv row 1: 3 columns; write user name[,full name]"),
    (",Nobody\n", "class.csv row 1: the user name is empty"),
    ("name\n# nobody yet\n", "--csv 'class.csv': no users in it"),
])
def test_bad_rows_are_one_line_naming_the_row(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        users.parse_rows(text, "class.csv")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_missing_csv_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^--csv '.*nope.csv': no such file; give a CSV file"):
        users.read_rows(tmp_path / "nope.csv")


def test_guest_command_carries_the_names_and_quotes_a_reset() -> None:
    command = users.guest_command([Row(1, "ada", "Ada Lovelace"), Row(2, "grace")])
    encoded = re.search(r"printf %s (\S+) \| base64 -d \| \$SUDO /usr/local/sbin/hubvm-users import$", command)
    assert encoded and base64.b64decode(encoded.group(1)).decode() == "ada\ngrace\n"  # full names stay here
    subprocess.run(["bash", "-n", "-c", command], check=True)
    reset = users.guest_command(reset="ada")
    assert reset.endswith("$SUDO /usr/local/sbin/hubvm-users reset ada")
    assert shlex.quote("x; rm") in users.guest_command(reset="x; rm")


def test_parse_answer() -> None:
    out = '{"new": [{"name": "ada", "password": "pw1"}], "unchanged": ["grace"]}\n'
    assert users.parse_answer(out, "", 0, "root@h:22") == ([NewPassword("ada", "pw1")], ["grace"], "")
    reset = '{"new": [{"name": "ada", "password": "pw2", "reset": true}], "unchanged": []}'
    assert users.parse_answer(reset, "", 0, "t")[0] == [NewPassword("ada", "pw2", True)]
    partial = '{"new": [{"name": "ada", "password": "pw1"}], "unchanged": [], "error": "the hub said 500"}'
    assert users.parse_answer(partial, "hubvm-users: the hub said 500\n", 1, "t")[2] == "the hub said 500"
    with pytest.raises(UserError, match=r"^root@h:22: hubvm-users: row 3: 'root' is a system account"):
        users.parse_answer("", "hubvm-users: row 3: 'root' is a system account of this machine\n", 2, "root@h:22")
    with pytest.raises(UserError, match=r"hubvm-users is missing; provision the machine first"):
        users.parse_answer("", "bash: /usr/local/sbin/hubvm-users: No such file or directory\n", 127, "t")
    with pytest.raises(UserError, match=r"^t: hubvm-users failed \(exit status 1\): sudo: a password is required"):
        users.parse_answer("", "sudo: a password is required\n", 1, "t")


def test_passwords_file_is_private_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "out" / "passwords.csv"
    users.write_passwords(path, [NewPassword("ada", "pw1"), NewPassword("grace", "pw2")],
                          {"ada": "Ada Lovelace", "grace": "Hopper, Grace"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == 'user,full name,password\nada,Ada Lovelace,pw1\ngrace,"Hopper, Grace",pw2\n'
    path.chmod(0o644)  # even a file someone opened up is written back private
    users.write_passwords(path, [NewPassword("ada", "pw3", True), NewPassword("alan", "pw4")], {"alan": "Turing"})
    assert path.read_text() == ('user,full name,password\nada,Ada Lovelace,pw3\ngrace,"Hopper, Grace",pw2\n'
                                "alan,Turing,pw4\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert users.read_passwords(path)["grace"] == ("Hopper, Grace", "pw2")


def test_default_output_is_per_machine(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    assert users.default_output(layout, "10.1.2.3") == tmp_path / "builds/users/10.1.2.3-passwords.csv"
    assert users.default_output(layout, "fe80::1").name == "fe80_1-passwords.csv"


def test_run_users_needs_one_action_and_a_dry_run_connects_nowhere(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    layout = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    c = MockContext(config=Config(overrides={"run": {"dry": True}}), run={})
    with pytest.raises(UserError, match="give either --csv FILE"):
        users.run_users(c, parse(), layout, None, None, "root@10.1.2.3", None)
    with pytest.raises(UserError, match="give either --csv FILE"):
        users.run_users(c, parse(), layout, "a.csv", "ada", "root@10.1.2.3", None)
    with pytest.raises(UserError, match=r"^--reset: 'Ada' has capitals"):
        users.run_users(c, parse(), layout, None, "Ada", "root@10.1.2.3", None)
    csv_file = tmp_path / "class.csv"
    csv_file.write_text("ada\ngrace\n")
    assert users.run_users(c, parse(), layout, str(csv_file), None, "root@10.1.2.3", None) is None
    out = capsys.readouterr().out
    assert out.startswith("users (dry run, no connection): would create the users of 2 rows on root@10.1.2.3:22")
    assert not (tmp_path / "builds/users").exists()
