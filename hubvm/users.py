"""Accounts for a class: hub users from a CSV file, each with a random password, on the Vagrant VM or any --host.

The host side of `hubvm users --csv FILE [--reset NAME] [--host ... --identity ...]`:
- `read_rows` parses and validates the CSV (user name, optional full name; a header row, blank rows and rows
  starting with # are skipped); a bad row is one UserError line naming the file, the row and the fix;
- `guest_command` is the one command run over SSH: the guest's /usr/local/sbin/hubvm-users (installed by the hub
  role), fed the validated names, which creates the users the hub does not have yet and prints JSON with the
  passwords of those it created (or reset), so a second run of the same file changes nothing;
- `write_passwords` merges the new passwords into a local CSV file (user, full name, password) that only the
  caller can read (mode 0600), created on the first run and updated on later ones.
`run_users` ties them together for the task. Nothing here imports invoke.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm import guest
from hubvm.config.settings import Settings
from hubvm.config.validators import SYSTEM_ACCOUNTS, not_a_system_account
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import duration
from hubvm.shell import q

GUEST_TOOL = guest.USERS_TOOL
# Hub user names that stay valid Linux names once prefixed with "jupyter-" (32 characters at most): the pypi hub's
# username_pattern, and what the guest's hubvm-users checks again with the hub's own pattern.
USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,23}")
# The system accounts (hubvm.schema, the one list) and names the hub or the appliance use: never a student's login
SYSTEM_NAMES = SYSTEM_ACCOUNTS | frozenset({"vagrant", "hubadmin", "hub", "user", "admin-api"})
HEADER_NAMES = frozenset({"user", "username", "user name", "user_name", "name", "login"})
GUEST_TIMEOUT = 600       # seconds for hubvm-users (bcrypt takes about 0.3 s a user in an emulated VM)
OUTPUT_HEADER = ["user", "full name", "password"]


@dataclass(frozen=True)
class Row:
    line: int
    name: str
    full_name: str = ""


@dataclass(frozen=True)
class NewPassword:
    name: str
    password: str
    reset: bool = False


def check_name(name: str, where: str) -> None:
    """A hub user name, checked like the hub checks it; a problem is one UserError line naming `where`."""
    if not name:
        raise UserError(f"{where}: the user name is empty; write one per row: user name[,full name]")
    if name != name.lower() and USER_NAME.fullmatch(name.lower()):
        raise UserError(f"{where}: {name!r} has capitals; write it in lower case ({name.lower()!r}), as the hub "
                        "stores it")
    if not USER_NAME.fullmatch(name):
        raise UserError(f"{where}: {name!r} is not a hub user name; use 1-24 lower-case letters, digits, '.', '_' "
                        "or '-', starting with a letter or digit")
    if name in SYSTEM_NAMES or not_a_system_account(name):
        raise UserError(f"{where}: {name!r} is a system account name; choose another name")


def read_rows(path: Path) -> list[Row]:
    """The rows of a class CSV file, validated (see module doc)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of a name
    except FileNotFoundError:
        raise UserError(f"--csv {str(path)!r}: no such file; give a CSV file of rows user name[,full name]") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--csv {str(path)!r}: cannot read it ({error}); give a UTF-8 CSV file") from None
    return parse_rows(text, str(path))


def parse_rows(text: str, source: str) -> list[Row]:
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), start=1):
        cells = [cell.strip() for cell in cells]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        where = f"{source} row {number}"
        if not rows and not seen and cells[0].lower() in HEADER_NAMES:
            continue
        if len(cells) > 2:
            raise UserError(f"{where}: {len(cells)} columns; write user name[,full name] (quote a full name that "
                            "holds a comma)")
        name = cells[0]
        check_name(name, where)
        if name in seen:
            raise UserError(f"{where}: {name!r} is already on row {seen[name]}; list each user once")
        seen[name] = number
        rows.append(Row(number, name, cells[1] if len(cells) > 1 else ""))
    if not rows:
        raise UserError(f"--csv {source!r}: no users in it; write one row per user: user name[,full name]")
    return rows


def guest_command(rows: Sequence[Row] = (), reset: str | None = None) -> str:
    """The shell command run on the guest: hubvm-users as root (through sudo unless logged in as root), with the
    names passed inside the command (base64), so no standard input is needed."""
    root = 'if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; '
    if reset is not None:
        return f"{root}$SUDO {GUEST_TOOL} reset {q(reset)}"
    payload = "".join(f"{row.name}\n" for row in rows)
    encoded = base64.b64encode(payload.encode()).decode()
    return f"{root}printf %s {encoded} | base64 -d | $SUDO {GUEST_TOOL} import"


def parse_answer(stdout: str, stderr: str, exited: int, target: str) -> tuple[list[NewPassword], list[str], str]:
    """(new passwords, unchanged names, error) from hubvm-users' output; bad input is a UserError."""
    message = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    if exited == 2:
        raise UserError(f"{target}: {message or 'hubvm-users refused the input'}")
    if exited == 127 or "command not found" in message or "No such file" in message:
        raise UserError(f"{target}: {GUEST_TOOL} is missing; provision the machine first (hubvm provision)")
    answer: dict[str, Any] | None = None
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    if answer is None:
        raise UserError(f"{target}: hubvm-users failed (exit status {exited}): {message or 'no answer'}")
    new = [NewPassword(item["name"], item["password"], bool(item.get("reset"))) for item in answer.get("new", [])]
    error = answer.get("error", "") or (message if exited != 0 else "")
    return new, list(answer.get("unchanged", [])), error


def read_passwords(path: Path) -> dict[str, tuple[str, str]]:
    """name -> (full name, password) of a passwords file written before (empty when there is none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries: dict[str, tuple[str, str]] = {}
    for cells in csv.reader(io.StringIO(text)):
        if len(cells) == 3 and cells != OUTPUT_HEADER:
            entries[cells[0]] = (cells[1], cells[2])
    return entries


def write_passwords(path: Path, new: Sequence[NewPassword], full_names: dict[str, str]) -> Path:
    """Merge new passwords into path (user, full name, password): only the caller can read it (0600). A user
    already listed gets the new password (a reset); the others are appended."""
    entries = read_passwords(path)
    for item in new:
        full_name = full_names.get(item.name) or entries.get(item.name, ("", ""))[0]
        entries[item.name] = (full_name, item.password)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    for name, (full_name, password) in entries.items():
        writer.writerow([name, full_name, password])
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as file:
            file.write(buffer.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def default_output(layout: Layout, host: str) -> Path:
    """builds/users/<host>-passwords.csv: one file per machine, since each has its own users."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", host).strip("_") or "vm"
    return layout.users_dir / f"{safe}-passwords.csv"


def run_users(c: Any, s: Settings, layout: Layout, csv_file: str | None, reset: str | None, host: str | None,
              identity: str | None, output: str | None = None) -> Path | None:
    """`hubvm users`: import the users of a CSV file (or reset one user's password) on the Vagrant VM or --host,
    and merge the new passwords into a local file readable only by the caller; returns that file (None in a dry
    run). Problems are one UserError line."""
    # fabric and paramiko are loaded only when the task runs
    from hubvm.verify.connect import connect
    from hubvm.verify.endpoint import resolve

    if bool(csv_file) == bool(reset):
        raise UserError("give either --csv FILE (rows user name[,full name]) or --reset NAME")
    rows = read_rows(Path(csv_file).expanduser()) if csv_file else []
    if reset is not None:
        check_name(reset, "--reset")
    dry = bool(c.config.run.dry)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    target = str(endpoint.target)
    path = Path(output).expanduser() if output else default_output(layout, endpoint.target.host)
    command = guest_command(rows, reset)
    what = f"reset the password of {reset}" if reset else f"create the users of {len(rows)} rows"
    if dry:
        print(f"users (dry run, no connection): would {what} on {target} ({endpoint.source}) with {GUEST_TOOL}, "
              f"then write the new passwords to {path} (mode 0600)")
        return None
    started = time.monotonic()
    print(f"users: {what} on {target}", file=sys.stderr, flush=True)
    conn = connect(s, layout, endpoint, lambda line: print(line, file=sys.stderr, flush=True))
    try:
        result = conn.run(command, hide=True, warn=True, echo=False, pty=False, in_stream=False,
                          timeout=GUEST_TIMEOUT)
    except Exception as error:  # invoke's CommandTimedOut, paramiko's and the socket's errors
        raise UserError(f"{target}: running {GUEST_TOOL} failed ({type(error).__name__}: {error})") from None
    finally:
        conn.close()
    new, unchanged, error = parse_answer(result.stdout, result.stderr, result.exited, target)
    if new:
        write_passwords(path, new, {row.name: row.full_name for row in rows})
    seconds = time.monotonic() - started
    done = "reset" if reset else "new"
    kept = f", {len(unchanged)} unchanged" if not reset else ""
    where = f"; their passwords are in {path} (only you can read it)" if new else "; no password changed"
    print(f"users: {len(new)} {done}{kept} on {target}{where} ({duration(seconds)})")
    if error:
        raise UserError(f"{target}: {error}")
    return path
