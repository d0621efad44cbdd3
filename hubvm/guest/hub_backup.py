"""hubvm-backup: a class's work out of this hub and into another one: accounts, passwords, homes, shared data.

    hubvm-backup create            the archive on stdout (a gzip-compressed tar); nothing is written on this disk
    hubvm-backup plan [--merge]    {"manifest", "accounts"} of an archive on stdin: what restore would do, or why not
    hubvm-backup restore [--merge] the archive on stdin: accounts, passwords, homes and shared data put back

What an archive holds (every member below hubvm-backup/): accounts.json (the hub's users, which are admins, and
each one's bcrypt hash from the password store), homes/NAME/... (each user's home), shared_data/... (the shared
folder, when it is a folder of this machine and not a synced host folder), tls/ (the certificate and key of
hub.https files), and, last, manifest.json: where it came from (this machine's image.json, host name, flavour,
sign-up, HTTPS), the users, and every member with its type, size, mode, modification time, owner (a hub user, or
none) and sha256. Never in it: host keys, the hub's cookie secret, its database, its tokens, the proxy's token.

Consistency: `create` stops the hub and the users' running servers for as long as it reads (the proxy keeps
answering; it shows the hub's error page meanwhile), so that accounts, passwords and files are read at one moment
and no notebook is half-saved in the archive; then it starts the hub again (users start their servers again).

`restore` first extracts the archive into a staging folder on the same file system as /home, checks every file
against the manifest, and plans; a damaged archive, a reserved user name, or another user's files in the way
(without --merge) stop it there, and nothing has changed. Then, with the hub stopped: the Linux accounts
(jupyter-NAME, made as the hub's spawner makes them, so numeric ids may differ from the old machine's), the files
(owned by the new accounts), the passwords, the admins' flags and the users in the hub. --merge keeps files that
are not in the archive, and never replaces a file that is newer than the archive's without saying so (it keeps
it). Restoring the same archive again changes nothing. Prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import contextlib
import dbm
import gzip
import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from hubvm.guest import accounts, hub_users
from hubvm.guest.hub_users import BadInput, HubFailure

FORMAT = "hubvm-backup/1"
ROOT = "hubvm-backup"
ACCOUNTS = f"{ROOT}/accounts.json"
MANIFEST = f"{ROOT}/manifest.json"
HOMES = f"{ROOT}/homes/"
SHARED = f"{ROOT}/shared_data/"
TLS = f"{ROOT}/tls/"
SKEL = "/etc/skel"
HUB_UNIT = "jupyterhub.service"
BLOCK = 1 << 20


class Refused(Exception):
    """The archive or this machine is not fit for the restore asked (exit status 2, nothing changed)."""


# ---------------------------------------------------------------------------------------------------------------
# This machine


def system_name(access: dict, name: str) -> str:
    return access["system_user_prefix"] + name


def home_of(access: dict, name: str) -> str | None:
    login = _login(system_name(access, name))
    return login.pw_dir if login else None


def hub_users_in_database(access: dict) -> dict[str, bool]:
    """name -> admin, as the hub's database has them (read-only)."""
    path = access["database"]
    if not os.path.isfile(path):
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {name: bool(admin) for name, admin in db.execute("SELECT name, admin FROM users")}
    finally:
        db.close()


def password_hashes(access: dict) -> dict[str, str]:
    try:
        with dbm.open(access["password_db"], "r") as db:
            return {key.decode(): db[key].decode() for key in db.keys()}  # noqa: SIM118 (dbm.gnu does not iterate)
    except dbm.error:
        return {}


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def running_servers(access: dict) -> list[str]:
    """The units of users' servers that run now (jupyter-NAME.service, SystemdSpawner's and TLJH's)."""
    listed = systemctl("list-units", "--type=service", "--state=active", "--plain", "--no-legend",
                       f"{access['system_user_prefix']}*.service").stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


@contextlib.contextmanager
def hub_stopped(access: dict, servers: list[str] | None = None) -> Iterator[list[str]]:
    """The hub stopped (and the given users' servers, default all), started again afterwards, failure or not."""
    stopped = running_servers(access) if servers is None else servers
    systemctl("stop", HUB_UNIT)
    if stopped:
        systemctl("stop", *stopped)
    try:
        yield stopped
    finally:
        systemctl("start", HUB_UNIT)


def walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below top (relative path, lstat), symbolic links not followed, in a stable order."""
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in [*dirs, *sorted(files)]:
            path = os.path.join(folder, name)
            yield os.path.relpath(path, top), os.lstat(path)


def owner_name(access: dict, uid: int) -> str | None:
    """The hub user a file of the shared folder belongs to (None: root or anyone else)."""
    try:
        login = pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
    prefix = access["system_user_prefix"]
    return login[len(prefix):] if login.startswith(prefix) else None


# ---------------------------------------------------------------------------------------------------------------
# create


class HashingReader(io.RawIOBase):
    """A file read once, its sha256 computed on the way (tarfile reads exactly the size it was told)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        self.hash.update(data)
        buffer[:len(data)] = data
        return len(data)


@dataclass
class Writer:
    """Adds members to the archive stream and records each in the manifest."""

    tar: tarfile.TarFile
    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    def data(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(payload), int(time.time()), 0o600
        self.tar.addfile(info, io.BytesIO(payload))
        self.members[name] = {"type": "file", "size": len(payload), "mode": 0o600, "mtime": info.mtime,
                              "sha256": hashlib.sha256(payload).hexdigest(), "owner": None}

    def entry(self, name: str, path: str, st: os.stat_result, owner: str | None) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        record = {"mode": info.mode, "mtime": info.mtime, "owner": owner}
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            record.update(type="dir", size=0)
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self.tar.addfile(info)
            record.update(type="link", size=0, link=info.linkname)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            with open(path, "rb") as file:
                reader = HashingReader(file)
                self.tar.addfile(info, io.BufferedReader(reader, BLOCK))
            record.update(type="file", size=st.st_size, sha256=reader.hash.hexdigest())
        else:
            return  # sockets, fifos, devices: nothing a user's work is made of
        self.members[name] = record


def source_facts(access: dict) -> dict[str, Any]:
    try:
        with open(access.get("image_file") or "/etc/hubvm/image.json") as file:
            image = json.load(file)
    except (OSError, ValueError):
        image = {}
    return {"image": image, "host": socket.gethostname(), "flavour": access.get("flavour"),
            "signup": access.get("signup"), "https": access.get("https")}


def create(access: dict, out: IO[bytes]) -> dict[str, Any]:
    """Write the archive to `out`; returns the manifest."""
    # an archive cut short has no manifest (its last member): restore and the host refuse it, complete-looking or not
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar, hub_stopped(access) as stopped:
        writer = Writer(tar)
        admins = hub_users_in_database(access)
        for name in access.get("admins", []):
            admins.setdefault(name, True)
        hashes = password_hashes(access)
        users = [{"name": name, "admin": admin, "password_hash": hashes.get(name)}
                 for name, admin in sorted(admins.items())]
        writer.data(ACCOUNTS, json.dumps({"users": users}, indent=1).encode())
        homes: dict[str, dict[str, int]] = {}
        for user in users:
            home = home_of(access, user["name"])
            if home is None or not os.path.isdir(home):
                continue
            counted = homes.setdefault(user["name"], {"files": 0, "bytes": 0})
            for relative, st in walk(home):
                writer.entry(f"{HOMES}{user['name']}/{relative}", os.path.join(home, relative), st, user["name"])
                if stat.S_ISREG(st.st_mode):
                    counted["files"] += 1
                    counted["bytes"] += st.st_size
        shared = access.get("shared_data_dir") or ""
        if shared and os.path.isdir(shared) and not os.path.islink(shared):
            for relative, st in walk(shared):
                writer.entry(f"{SHARED}{relative}", os.path.join(shared, relative), st, owner_name(access, st.st_uid))
        if access.get("https") == "files":
            for key in ("tls_cert", "tls_key"):
                path = access.get(key) or ""
                if os.path.isfile(path):
                    with open(path, "rb") as file:
                        writer.data(f"{TLS}{os.path.basename(path)}", file.read())
        files = [m for name, m in writer.members.items() if m["type"] == "file" and name.startswith((HOMES, SHARED))]
        manifest = {
            "format": FORMAT,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": source_facts(access),
            "users": [{"name": u["name"], "admin": u["admin"], **homes.get(u["name"], {"files": 0, "bytes": 0})}
                      for u in users],
            "files": len(files),
            "bytes": sum(m["size"] for m in files),
            "servers_stopped": len(stopped),
            "members": writer.members,
        }
        writer.data(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# plan


def skel_entries() -> dict[str, tuple[str, str]]:
    """What a new account's home holds (relative path -> (type, content digest or link target))."""
    found = {}
    if os.path.isdir(SKEL):
        for relative, st in walk(SKEL):
            path = os.path.join(SKEL, relative)
            if stat.S_ISLNK(st.st_mode):
                found[relative] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[relative] = ("file", file_sha256(path))
            elif stat.S_ISDIR(st.st_mode):
                found[relative] = ("dir", "")
    return found


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def user_files(home: str, skel: dict[str, tuple[str, str]]) -> dict[str, os.stat_result]:
    """What a home holds beyond what every new account starts with."""
    found = {}
    for relative, st in walk(home):
        path = os.path.join(home, relative)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
        if relative in skel and skel[relative][0] == kind and (
                kind == "dir" or (kind == "link" and os.readlink(path) == skel[relative][1])
                or (kind == "file" and file_sha256(path) == skel[relative][1])):
            continue
        if kind != "dir":
            found[relative] = st
    return found


def check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise Refused(f"this is not a hubvm backup of format {FORMAT} (found {found!r}); give an archive that "
                      "hubvm backup wrote")
    if not isinstance(manifest.get("members"), dict) or not isinstance(manifest.get("users"), list):
        raise Refused("the archive's manifest lacks its members or users; make the backup again")
    return manifest


@dataclass
class Plan:
    """What a restore does on this machine (see `plan`)."""

    accounts: list[str] = field(default_factory=list)        # Linux accounts to make
    hub_users: list[str] = field(default_factory=list)       # hub users to create
    admins: list[str] = field(default_factory=list)          # to make admins
    passwords: dict[str, str] = field(default_factory=dict)  # name -> bcrypt hash to store
    writes: list[str] = field(default_factory=list)          # members to put in place
    kept_newer: list[str] = field(default_factory=list)      # members whose file here is newer: kept
    replaced: list[str] = field(default_factory=list)        # members whose older file here is replaced
    kept_passwords: list[str] = field(default_factory=list)  # users whose password here differs: kept (--merge)
    notes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.accounts) + len(self.hub_users) + len(self.admins) + len(self.passwords) + len(self.writes)

    def summary(self) -> dict[str, Any]:
        return {"accounts": len(self.accounts), "hub_users": len(self.hub_users), "admins": self.admins,
                "passwords": sorted(self.passwords), "files": len(self.writes), "kept_newer": self.kept_newer,
                "replaced": self.replaced, "kept_passwords": self.kept_passwords, "notes": self.notes,
                "changes": self.changes}


def target_path(access: dict, member: str, home_of_user: dict[str, str]) -> str | None:
    """Where a member goes on this machine (None: nowhere, e.g. a shared folder that is a synced host folder)."""
    if member.startswith(HOMES):
        name, _, relative = member[len(HOMES):].partition("/")
        home = home_of_user.get(name)
        return os.path.join(home, relative) if home and relative else None
    if member.startswith(SHARED):
        shared = access.get("shared_data_dir") or ""
        if not shared or os.path.islink(shared):
            return None
        return os.path.join(shared, member[len(SHARED):])
    if member.startswith(TLS):
        return None
    return None


def plan(access: dict, manifest: dict[str, Any], merge: bool, accounts: dict[str, Any]) -> Plan:
    """What restoring this archive changes here, and what stops it (`conflicts`, empty when it may go on)."""
    result = Plan()
    pattern = access["username_pattern"]
    backup_users = {u["name"]: u for u in accounts["users"]}
    for name in backup_users:
        try:
            hub_users.check_name(name, pattern, "the backup's user")
        except BadInput as error:
            raise Refused(f"{error} on this machine; this image reserves that name") from None
        login = _login(system_name(access, name))
        if login is not None and (login.pw_uid < 1000 or login.pw_uid >= 60000):
            raise Refused(f"the backup's user {name!r}: {login.pw_name} is a system account of this machine")
    here = hub_users_in_database(access)
    hashes = password_hashes(access)
    skel = skel_entries()
    prefix = access["system_user_prefix"]
    with_accounts = {login[len(prefix):] for login in _logins() if login.startswith(prefix)}
    homes = {name: home for name in set(backup_users) | set(here) | with_accounts if (home := home_of(access, name))}
    files_here = {name: user_files(home, skel) for name, home in homes.items() if os.path.isdir(home)}
    configured_admins = set(access.get("admins", []))
    # users of this hub that are not in the backup, with files of their own: another class's work (the backup's own
    # users' files that the backup does not have are simply kept: a restore never deletes)
    for name in sorted(set(files_here) - set(backup_users)):
        if files_here[name] and not merge:
            result.conflicts.append(f"{name} (not in the backup) has {len(files_here[name])} files here")
    members = manifest["members"]
    for name, user in sorted(backup_users.items()):
        has_home = any(m.startswith(f"{HOMES}{name}/") for m in manifest["members"])
        if has_home and _login(system_name(access, name)) is None:
            result.accounts.append(name)
        if name not in here:
            result.hub_users.append(name)
        if user.get("admin") and not here.get(name):
            result.admins.append(name)
        wanted, current = user.get("password_hash"), hashes.get(name)
        fresh_admin = name in configured_admins and not files_here.get(name)
        if wanted and wanted != current:
            if current is None or fresh_admin:
                result.passwords[name] = wanted
            elif merge:
                result.kept_passwords.append(name)
            else:
                result.conflicts.append(f"{name} has another password here")
    home_of_user = {name: homes.get(name) or os.path.join("/home", system_name(access, name))
                    for name in backup_users}
    for member, meta in sorted(members.items()):
        if meta.get("type") != "file":
            continue
        path = target_path(access, member, home_of_user)
        if path is None:
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            result.writes.append(member)
            continue
        if not stat.S_ISREG(st.st_mode):
            result.conflicts.append(f"{path} is not a file here")
            continue
        if st.st_size == meta["size"] and file_sha256(path) == meta["sha256"]:
            continue  # the same: nothing to do
        if member.startswith(SHARED) or merge:
            if int(st.st_mtime) > meta["mtime"]:
                result.kept_newer.append(member)
            else:
                result.replaced.append(member)
                result.writes.append(member)
        else:
            result.conflicts.append(f"{path} differs from the backup's")
    if any(m.startswith(TLS) for m in members) and access.get("https") == "files":
        result.notes.append("the backup's HTTPS certificate is not restored: this machine's (hub.https files) stays")
    return result


def _logins() -> list[str]:
    """Every Linux account's name."""
    return [entry.pw_name for entry in pwd.getpwall()]


def _login(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# restore


def safe_member(name: str) -> bool:
    parts = name.split("/")
    return name.startswith(f"{ROOT}/") and ".." not in parts and "" not in parts[1:] and not name.startswith("/")


def extract(stream: IO[bytes], staging: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the archive into staging (regular files only, by their member names); return its manifest and each
    file's sha256 as read. A damaged or foreign archive is Refused."""
    digests: dict[str, str] = {}
    manifest = None
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for info in tar:
                if not safe_member(info.name):
                    raise Refused(f"the archive holds a member outside {ROOT}/ ({info.name!r}); it is not hubvm's")
                if not info.isfile():
                    continue
                source = tar.extractfile(info)
                assert source is not None
                if info.name == MANIFEST:
                    manifest = json.loads(source.read())
                    continue
                path = os.path.join(staging, info.name)
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                digest = hashlib.sha256()
                with open(path, "wb") as out:
                    for block in iter(lambda source=source: source.read(BLOCK), b""):
                        digest.update(block)
                        out.write(block)
                digests[info.name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, OSError, zlib_error(), ValueError) as error:
        raise Refused(f"the archive is damaged or truncated ({error}); nothing was changed") from None
    if manifest is None:
        raise Refused("the archive has no manifest (it ends early); nothing was changed")
    check_manifest(manifest)
    for name, meta in manifest["members"].items():
        if meta.get("type") == "file" and digests.get(name) != meta.get("sha256"):
            raise Refused(f"{name} does not match the archive's manifest; nothing was changed")
    return manifest, digests


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def no_link_on_the_way(path: str, top: str) -> bool:
    """Whether no folder between top and path is a symbolic link (a file is never written through one)."""
    relative = os.path.relpath(os.path.dirname(path), top)
    current = top
    for part in [] if relative == "." else relative.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return False
    return not os.path.islink(top)


def make_account(access: dict, name: str) -> None:
    """The Linux account a user's server runs as, as the hub's spawner makes it (hubvm.guest.accounts)."""
    accounts.ensure(name, access["system_user_prefix"], access.get("cluster_accounts_dir") or "")


def put_in_place(access: dict, manifest: dict[str, Any], staging: str, chosen: list[str]) -> list[str]:
    """Move the chosen members from staging to their places, owned by their users; folders and links too."""
    skipped = []
    members = manifest["members"]
    names = sorted({m.split("/")[2] for m in members if m.startswith(HOMES)})
    home_of_user = {name: home_of(access, name) or "" for name in names}
    tops = {**{f"{HOMES}{n}/": h for n, h in home_of_user.items()}, SHARED: access.get("shared_data_dir") or ""}

    def owner(meta: dict[str, Any]) -> tuple[int, int]:
        login = _login(system_name(access, meta["owner"])) if meta.get("owner") else None
        return (login.pw_uid, login.pw_gid) if login else (0, 0)

    def top_of(member: str) -> str:
        return next(top for prefix, top in tops.items() if member.startswith(prefix))

    for member, meta in sorted(members.items()):  # folders first: they sort before what they hold
        path = target_path(access, member, home_of_user)
        if path is None or meta["type"] != "dir":
            continue
        if not no_link_on_the_way(path, top_of(member)):
            skipped.append(member)
            continue
        if not os.path.isdir(path):
            os.mkdir(path, meta["mode"])
            os.chown(path, *owner(meta))
    for member in chosen:
        meta = members[member]
        path = target_path(access, member, home_of_user)
        if path is None or not no_link_on_the_way(path, top_of(member)):
            skipped.append(member)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        staged = os.path.join(staging, member)
        os.chmod(staged, meta["mode"])
        os.chown(staged, *owner(meta))
        os.utime(staged, (meta["mtime"], meta["mtime"]))
        if os.path.lexists(path) and not os.path.isfile(path):
            skipped.append(member)
            continue
        shutil.move(staged, path)  # a rename within /home; a copy to a shared folder elsewhere
    for member, meta in sorted(members.items()):
        path = target_path(access, member, home_of_user)
        if path is None or meta["type"] != "link" or os.path.lexists(path):
            continue
        if no_link_on_the_way(path, top_of(member)):
            os.symlink(meta["link"], path)
            os.lchown(path, *owner(meta))
    return skipped


def drop_passwords_shown(access: dict, names: list[str]) -> None:
    """Admins whose password now comes from the backup leave the file of generated admin passwords."""
    from hubvm.guest import hub_secrets

    path = access["admin_passwords_file"]
    written = hub_secrets.read_passwords_file(path)
    kept = {name: password for name, password in written.items() if name not in names}
    if kept != written:
        hub_secrets.write_passwords_file(path, kept)


def restore(access: dict, stream: IO[bytes], merge: bool) -> dict[str, Any]:
    os.makedirs("/home", exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".hubvm-restore-", dir="/home")
    try:
        manifest, _ = extract(stream, staging)
        with open(os.path.join(staging, ACCOUNTS)) as file:
            accounts = json.load(file)
        steps = plan(access, manifest, merge, accounts)
        if steps.conflicts:
            raise Refused(conflict_line(steps))
        if not steps.changes:
            return {"restored": steps.summary()}
        names = sorted({u["name"] for u in accounts["users"]})
        servers = [f"{system_name(access, n)}.service" for n in names
                   if f"{system_name(access, n)}.service" in running_servers(access)]
        with hub_stopped(access, servers):
            for name in steps.accounts:
                if _login(system_name(access, name)) is None:
                    make_account(access, name)
            skipped = put_in_place(access, manifest, staging, steps.writes)
            if steps.passwords:
                from hubvm.guest import hub_secrets

                hub_secrets.store_hashes(access["password_db"], {n: h.encode() for n, h in steps.passwords.items()})
                drop_passwords_shown(access, [n for n in steps.passwords if n in access.get("admins", [])])
        hub = hub_users.Hub(access, "restore_token_file")
        hub.wait()
        admins = {u["name"] for u in accounts["users"] if u.get("admin")}
        for name in steps.hub_users:
            hub.create(name, admin=name in admins)
        for name in steps.admins:
            if name not in steps.hub_users:
                hub.make_admin(name)
        return {"restored": {**steps.summary(), "skipped": skipped, "servers_stopped": len(servers)}}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def conflict_line(steps: Plan) -> str:
    first = "; ".join(steps.conflicts[:3]) + (f"; and {len(steps.conflicts) - 3} more" if len(steps.conflicts) > 3
                                               else "")
    return (f"this hub already has other work: {first}; nothing was changed. Restore with --merge to keep it "
            "(a newer file here is never replaced)")


# ---------------------------------------------------------------------------------------------------------------
# The command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubvm-backup", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("action", choices=("create", "plan", "restore"))
    parser.add_argument("--merge", action="store_true", help="restore beside the work already on this hub")
    args = parser.parse_args(argv)
    try:
        access = hub_users.read_access()
        for key in ("database", "system_user_prefix", "username_pattern"):
            if key not in access:
                raise HubFailure(f"{hub_users.ACCESS} lacks {key}; provision this machine again (hubvm provision)")
        if args.action == "create":
            manifest = create(access, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            print(json.dumps({"users": len(manifest["users"]), "files": manifest["files"],
                              "bytes": manifest["bytes"], "servers_stopped": manifest["servers_stopped"]}),
                  file=sys.stderr)
            return 0
        if args.action == "plan":
            given = json.load(sys.stdin)  # {"manifest": ..., "accounts": ...}, as the host read them from the archive
            manifest = check_manifest(given.get("manifest") if isinstance(given, dict) else None)
            steps = plan(access, manifest, args.merge, given.get("accounts") or {"users": []})
            if steps.conflicts:
                raise Refused(conflict_line(steps))
            print(json.dumps({"plan": steps.summary()}))
            return 0
        print(json.dumps(restore(access, sys.stdin.buffer, args.merge)))
        return 0
    except Refused as error:
        print(f"hubvm-backup: {error}", file=sys.stderr)
        return 2
    except (HubFailure, BadInput, OSError, subprocess.CalledProcessError, sqlite3.Error, ValueError) as error:
        print(f"hubvm-backup: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
