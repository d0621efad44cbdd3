"""`hubvm backup` and `hubvm restore`: a class's work carried from one hub to another (or to the same one again).

backup: the guest's hubvm-backup (hubvm/guest/hub_backup.py) writes the archive to its standard output; it is
streamed over SSH straight into FILE.partial here (nothing is copied onto the guest's disk), with progress, then
read through once to check that it is complete (its manifest, last, lists every file with its sha256), and only
then renamed to FILE, with FILE.sha256 beside it. An interrupted backup leaves only the .partial file.

restore: the archive is checked here first (its sha256 file, when there is one; every member against the
manifest; the format), then the guest plans the restore from the manifest and the accounts (refusing reserved
names and other users' work unless --merge) and says whether there is anything to change; only then is the archive
streamed to the guest's hubvm-backup restore. Every refusal is one line and changes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm import guest
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.guest.hub_backup import ACCOUNTS, FORMAT, MANIFEST, ROOT
from hubvm.layout import Layout
from hubvm.report import Progress, duration, human_bytes

BLOCK = 1 << 20
GUEST_TIMEOUT = 3600  # seconds without a byte from the guest before the transfer is given up


@dataclass(frozen=True)
class Archive:
    """What a checked archive holds: its manifest and accounts, and the file's own sha256 and size."""

    path: Path
    manifest: dict[str, Any]
    accounts: dict[str, Any]
    sha256: str
    size: int


def read_archive(path: Path) -> Archive:
    """Read a backup through once: it must be a complete hubvm backup whose every file matches its manifest; any
    problem is one UserError line."""
    digest = hashlib.sha256()
    found: dict[str, str] = {}
    manifest = accounts = None

    class Hashed:
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        def read(self, size: int = -1) -> bytes:
            data = self.stream.read(size)
            digest.update(data)
            return data

    try:
        with path.open("rb") as raw, tarfile.open(fileobj=Hashed(raw), mode="r|gz") as tar:  # type: ignore[call-overload]
            for info in tar:
                if not info.name.startswith(f"{ROOT}/"):
                    raise UserError(f"{path} is not a hubvm backup (it holds {info.name!r}); give a file that hubvm "
                                    "backup wrote")
                if not info.isfile():
                    continue
                member = tar.extractfile(info)
                assert member is not None
                if info.name in (MANIFEST, ACCOUNTS):
                    data = json.loads(member.read())
                    manifest, accounts = (data, accounts) if info.name == MANIFEST else (manifest, data)
                    continue
                h = hashlib.sha256()
                for block in iter(lambda member=member: member.read(BLOCK), b""):
                    h.update(block)
                found[info.name] = h.hexdigest()
            while raw.read(BLOCK):  # what follows the tar's end, so that the file's sha256 covers it all
                pass
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give the archive hubvm backup wrote") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as error:
        raise UserError(f"{path} is damaged or truncated ({str(error)[:120] or type(error).__name__}); nothing was "
                        "changed") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(accounts, dict):
        what = "it ends before its manifest" if manifest is None else "its manifest is not hubvm's " + FORMAT
        raise UserError(f"{path} is not a complete hubvm backup ({what}); nothing was changed")
    for name, meta in manifest.get("members", {}).items():
        if meta.get("type") == "file" and name not in (MANIFEST, ACCOUNTS) and found.get(name) != meta.get("sha256"):
            raise UserError(f"{path} is damaged: {name} does not match its manifest; nothing was changed")
    return Archive(path, manifest, accounts, digest.hexdigest(), path.stat().st_size)


def check_sidecar(path: Path, archive: Archive) -> None:
    """FILE.sha256 (when there is one) must name the archive's sha256."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    recorded = sidecar.read_text().split()[:1]
    if recorded != [archive.sha256]:
        raise UserError(f"{path} does not match {sidecar.name} (sha256 {archive.sha256[:16]}..., recorded "
                        f"{(recorded or ['nothing'])[0][:16]}...): the file changed since the backup; nothing was "
                        "changed")


def default_output(layout: Layout, host: str, now: float | None = None) -> Path:
    """builds/backups/<host>-<UTC time>.tar.gz."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", host).strip("_") or "vm"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return layout.backups_dir / f"{safe}-{stamp}.tar.gz"


def guest_command(action: str, merge: bool = False) -> str:
    root = 'if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; '
    return f"{root}$SUDO {guest.BACKUP_TOOL} {action}" + (" --merge" if merge else "")


def summary_line(manifest: dict[str, Any]) -> str:
    users = manifest.get("users", [])
    admins = sum(1 for u in users if u.get("admin"))
    return (f"{len(users)} users ({admins} admins), {manifest.get('files', 0)} files, "
            f"{human_bytes(manifest.get('bytes', 0))}")


# ---------------------------------------------------------------------------------------------------------------
# Over SSH


def _exec(conn: Any, command: str) -> Any:
    """A channel running `command` on the guest (paramiko, under fabric's connection): bytes in and out."""
    channel = conn.client.get_transport().open_session()
    channel.settimeout(GUEST_TIMEOUT)
    channel.exec_command(command)
    return channel


def _stderr_line(channel: Any) -> str:
    data = b""
    while channel.recv_stderr_ready():
        data += channel.recv_stderr(BLOCK)
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def receive(conn: Any, command: str, out: Any, progress: Progress) -> tuple[int, int, str]:
    """Run `command`, writing its standard output to `out`; returns (exit status, bytes, its stderr)."""
    channel = _exec(conn, command)
    received, errors = 0, b""
    while True:
        data = channel.recv(BLOCK)
        if not data:
            break
        out.write(data)
        received += len(data)
        progress.update(received)
        while channel.recv_stderr_ready():
            errors += channel.recv_stderr(BLOCK)
    status = channel.recv_exit_status()
    while channel.recv_stderr_ready():
        errors += channel.recv_stderr(BLOCK)
    channel.close()
    return status, received, errors.decode("utf-8", "replace")


def send(conn: Any, command: str, source: Any, progress: Progress | None = None) -> tuple[int, str, str]:
    """Run `command` with `source` (bytes, or a file) on its standard input; returns (status, stdout, stderr)."""
    channel = _exec(conn, command)
    sent = 0
    chunks = [source] if isinstance(source, bytes) else iter(lambda: source.read(BLOCK), b"")
    for chunk in chunks:
        channel.sendall(chunk)
        sent += len(chunk)
        if progress is not None:
            progress.update(sent)
    channel.shutdown_write()
    out, err = b"", b""
    while True:
        data = channel.recv(BLOCK)
        if not data:
            break
        out += data
    status = channel.recv_exit_status()
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(BLOCK)
    channel.close()
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _guest_failure(target: str, status: int, stderr: str) -> UserError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {status}"
    if status == 127 or "command not found" in message or "No such file" in message:
        message = f"{guest.BACKUP_TOOL} is missing; provision the machine first (hubvm provision)"
    return UserError(f"{target}: {message.removeprefix('hubvm-backup: ')}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The tasks


def run_backup(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None,
               output: str | None) -> Path | None:
    from hubvm.verify.connect import connect
    from hubvm.verify.endpoint import resolve

    dry = bool(c.config.run.dry)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    target = str(endpoint.target)
    path = Path(output).expanduser() if output else default_output(layout, endpoint.target.host)
    if path.exists():
        raise UserError(f"--output {str(path)!r} exists; give a new file name (a backup is never overwritten)")
    if dry:
        print(f"backup (dry run, no connection): would stop the hub and its users' servers on {target} for the "
              f"backup, stream it into {path}.partial and rename it to {path} once checked")
        return None
    started = time.monotonic()
    _say(f"backup: {target} -> {path} (the hub and users' servers stop while it is read, then the hub starts)")
    conn = connect(s, layout, endpoint, _say)
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(None, _say, "backup", "received")
    try:
        try:
            with partial.open("wb") as out:
                status, received, stderr = receive(conn, guest_command("create"), out, progress)
        finally:
            conn.close()
        if status != 0:
            raise _guest_failure(target, status, stderr)
        _say(progress.summary(received))
        archive = read_archive(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    path.with_name(path.name + ".sha256").write_text(f"{archive.sha256}  {path.name}\n")
    print(f"backup: {path} ({human_bytes(archive.size)}, sha256 {archive.sha256[:16]}...): "
          f"{summary_line(archive.manifest)} from {target} in {duration(time.monotonic() - started)}")
    return path


def run_restore(c: Any, s: Settings, layout: Layout, file: str, host: str | None, identity: str | None,
                merge: bool) -> dict[str, Any] | None:
    from hubvm.verify.connect import connect
    from hubvm.verify.endpoint import resolve

    path = Path(file).expanduser()
    started = time.monotonic()
    archive = read_archive(path)
    check_sidecar(path, archive)
    source = archive.manifest.get("source", {})
    image = source.get("image", {})
    _say(f"restore: {path} checked: {summary_line(archive.manifest)}, made {archive.manifest.get('created')} on "
         f"{source.get('host')} ({image.get('name', '?')}, {image.get('os', '?')}, hubvm {image.get('hubvm', '?')})")
    dry = bool(c.config.run.dry)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    target = str(endpoint.target)
    if dry:
        print(f"restore (dry run, no connection): would plan, then restore {path} onto {target}"
              + (" beside its own work (--merge)" if merge else ""))
        return None
    conn = connect(s, layout, endpoint, _say)
    try:
        planned = json.dumps({"manifest": archive.manifest, "accounts": archive.accounts}).encode()
        status, out, err = send(conn, guest_command("plan", merge), planned)
        if status != 0:
            raise _guest_failure(target, status, err)
        plan = json.loads(out.strip().splitlines()[-1])["plan"]
        if not plan["changes"]:
            print(f"restore: {target} already holds everything {path.name} restores: nothing changed "
                  f"({duration(time.monotonic() - started)})")
            return plan
        _say(f"restore: {plan['hub_users']} hub users, {plan['accounts']} accounts, {len(plan['passwords'])} "
             f"passwords and {plan['files']} files to put on {target}; streaming the archive")
        progress = Progress(archive.size, _say, "restore", "sent")
        with path.open("rb") as stream:
            status, out, err = send(conn, guest_command("restore", merge), stream, progress)
        if status != 0:
            raise _guest_failure(target, status, err)
        _say(progress.summary(archive.size))
    finally:
        conn.close()
    done = json.loads(out.strip().splitlines()[-1])["restored"]
    notes = [f"kept {len(done['kept_newer'])} newer files of this hub: {', '.join(done['kept_newer'][:3])}"
             ] if done.get("kept_newer") else []
    notes += [f"kept the passwords {', '.join(done['kept_passwords'])} have here"] if done.get("kept_passwords") else []
    notes += list(done.get("notes", []))
    print(f"restore: {target} got {done['hub_users']} hub users, {len(done['passwords'])} passwords, "
          f"{done['files']} files, admins {', '.join(done['admins']) or 'unchanged'} in "
          f"{duration(time.monotonic() - started)}" + "".join(f"; {note}" for note in notes))
    return done
