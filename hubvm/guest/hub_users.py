#!/usr/bin/python3
"""hubvm-users: create the hub's users for a class, or give one user a new password.

    hubvm-users import < class.csv    CSV rows "user name[,full name]" on stdin (a header row, blank rows and
                                      rows starting with # are skipped); creates the users that do not exist
                                      yet, each with a random password
    hubvm-users reset NAME            a new random password for one existing user

Prints JSON on stdout: {"new": [{"name": ..., "password": ...}, ...], "unchanged": [names]} - passwords only
of the users created (or reset) by this run, so a second import of the same rows prints none and changes
nothing. Bad input is one line on stderr naming the row, exit status 2, and nothing changed; a failure of
the hub is one line, exit status 1, after the JSON of the users made before it (with an "error" key).

Each password goes into FirstUseAuthenticator's store (a bcrypt hash, as the hub's login checks it) before
the user is created in the hub through its REST API, with the token of the hub service hubvm-users (the
hub's configuration makes it). Settings come from /etc/hubvm/hub-access.json (written by the hub role).
Names are checked like the hub checks them (its username_pattern), and system account names are refused.
"""

from __future__ import annotations

import csv
import dbm
import json
import pwd
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import bcrypt

ACCESS = "/etc/hubvm/hub-access.json"
ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
HEADER_NAMES = {"user", "username", "user name", "user_name", "name", "login"}
RESERVED = {"root", "admin-api", "hub", "user", "jupyterhub"}
TIMEOUT = 30


class BadInput(Exception):
    """Input the caller can fix (exit status 2)."""


class HubFailure(Exception):
    """The hub or its state failed us (exit status 1)."""


def read_access(path: str | None = None) -> dict:
    """The hub role's access settings; a missing or broken file is one line (HubFailure)."""
    path = path or ACCESS
    try:
        with open(path) as file:
            access = json.load(file)
    except FileNotFoundError:
        raise HubFailure(f"{path} is missing: provision this machine first (hubvm provision)") from None
    except (OSError, ValueError) as error:
        raise HubFailure(f"{path} cannot be read ({error}); provision this machine again (hubvm provision)") \
            from None
    if not isinstance(access, dict):
        raise HubFailure(f"{path} cannot be read (it holds no settings); provision this machine again "
                         "(hubvm provision)")
    missing = sorted({"password_db", "password_length", "username_pattern", "api_url", "users_token_file"}
                     - set(access))
    if missing:
        raise HubFailure(f"{path} lacks {', '.join(missing)}; provision this machine again (hubvm provision)")
    return access


def check_name(name: str, pattern: str, where: str) -> None:
    if not re.fullmatch(pattern, name):
        raise BadInput(f"{where}: {name!r} is not a hub user name (lower-case letters, digits, '.', '_', '-', "
                       f"starting with a letter or digit, matching {pattern})")
    if name in RESERVED:
        raise BadInput(f"{where}: {name!r} is reserved; choose another name")
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        return
    if account.pw_uid < 1000 or account.pw_uid >= 60000:
        raise BadInput(f"{where}: {name!r} is a system account of this machine; choose another name")


def read_rows(text: str, pattern: str) -> list[str]:
    """The user names of the CSV rows, validated; duplicates are an error."""
    names: dict[str, int] = {}
    for number, row in enumerate(csv.reader(text.lstrip("\ufeff").splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        if not names and cells[0].lower() in HEADER_NAMES:
            continue
        name = cells[0]
        where = f"row {number}"
        check_name(name, pattern, where)
        if name in names:
            raise BadInput(f"{where}: {name!r} repeats row {names[name]}")
        names[name] = number
    return list(names)


class Hub:
    """The hub's REST API on loopback, with a hub service's token (hubvm-users', or another `token_key` of the
    access settings)."""

    def __init__(self, access: dict, token_key: str = "users_token_file") -> None:
        self.url = access["api_url"].rstrip("/")
        try:
            with open(access[token_key]) as file:
                self.token = file.read().strip()
        except OSError as error:
            raise HubFailure(f"cannot read the service token {access[token_key]} ({error.strerror}); "
                             "has the hub started? (systemctl status jupyterhub)") from None
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body or {}).encode() if method in ("POST", "PATCH") else None
        request = urllib.request.Request(self.url + path, method=method, data=data,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with self.opener.open(request, timeout=TIMEOUT) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError as error:
            reason = getattr(error, "reason", error)
            raise HubFailure(f"the hub's API at {self.url} does not answer ({reason}); "
                             "is the hub running? (systemctl status jupyterhub)") from None

    def exists(self, name: str) -> bool:
        status, body = self.request("GET", "/users/" + urllib.parse.quote(name))
        if status == 200:
            return True
        if status == 404:
            return False
        raise HubFailure(f"GET /hub/api/users/{name} answered {status}: {body[:200]!r}")

    def create(self, name: str, admin: bool = False) -> None:
        status, body = self.request("POST", "/users/" + urllib.parse.quote(name), {"admin": True} if admin else None)
        if status not in (200, 201):
            raise HubFailure(f"creating the hub user {name} answered {status}: {body[:200]!r}")

    def make_admin(self, name: str) -> None:
        status, body = self.request("PATCH", "/users/" + urllib.parse.quote(name), {"admin": True})
        if status != 200:
            raise HubFailure(f"making {name} an admin answered {status}: {body[:200]!r}")

    def wait(self, seconds: float = 300) -> None:
        """Until the hub's API answers (after a start)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                status, _ = self.request("GET", "/")
                if status == 200:
                    return
            except HubFailure:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise HubFailure(f"the hub's API at {self.url} did not answer within {seconds:.0f} s")
            time.sleep(1)


def has_password(access: dict, name: str) -> bool:
    try:
        with dbm.open(access["password_db"], "r") as db:
            return name.encode("utf8") in db
    except dbm.error:
        return False     # no store yet


def set_password(access: dict, name: str) -> str:
    password = "".join(secrets.choice(ALPHABET) for _ in range(int(access["password_length"])))
    hashed = bcrypt.hashpw(password.encode("utf8"), bcrypt.gensalt())
    with dbm.open(access["password_db"], "c", 0o600) as db:
        db[name.encode("utf8")] = hashed
    return password


def import_users(access: dict, text: str) -> dict:
    names = read_rows(text, access["username_pattern"])
    hub = Hub(access)
    new: list[dict] = []
    unchanged: list[str] = []
    try:
        for name in names:
            exists = hub.exists(name)
            if exists and has_password(access, name):
                unchanged.append(name)
                continue
            # The password first: a user the hub knows without one could be claimed at its first login.
            password = set_password(access, name)
            if not exists:
                hub.create(name)
            new.append({"name": name, "password": password})
    except HubFailure as error:
        # The users made so far are kept: their passwords must reach the caller all the same.
        return {"new": new, "unchanged": unchanged, "error": str(error)}
    return {"new": new, "unchanged": unchanged}


def reset_user(access: dict, name: str) -> dict:
    check_name(name, access["username_pattern"], "reset")
    hub = Hub(access)
    if not hub.exists(name):
        raise BadInput(f"reset: the hub has no user {name!r}; import it first")
    return {"new": [{"name": name, "password": set_password(access, name), "reset": True}], "unchanged": []}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: hubvm-users import < rows.csv | hubvm-users reset NAME"
    if argv[:1] == ["import"] and len(argv) == 1:
        action = "import"
    elif argv[:1] == ["reset"] and len(argv) == 2:
        action = "reset"
    else:
        print(usage, file=sys.stderr)
        return 2
    try:
        access = read_access()
    except HubFailure as error:
        print(f"hubvm-users: {error}", file=sys.stderr)
        return 1
    try:
        result = import_users(access, sys.stdin.read()) if action == "import" else reset_user(access, argv[1])
    except BadInput as error:
        print(f"hubvm-users: {error}", file=sys.stderr)
        return 2
    except HubFailure as error:
        print(f"hubvm-users: {error}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    print()
    if "error" in result:
        print(f"hubvm-users: {result['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
