"""Host keys in the project's known_hosts (builds/ssh/known_hosts), never in ~/.ssh/known_hosts: a key seen for
the first time is recorded; a changed one is refused (hubvm.verify.connect), except for the tool's own Vagrant VM
when Vagrant's machine id changed since its key was recorded, whose stale entries are replaced."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from pathlib import Path

import paramiko

from hubvm.layout import Layout
from hubvm.verify.target import Target


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def record_host_key(known_hosts: Path, name: str, key: paramiko.PKey) -> None:
    """Append one entry (OpenSSH's format, so ansible-playbook and ssh read it too)."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with known_hosts.open("a") as file:
        file.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class RecordNewHost(paramiko.MissingHostKeyPolicy):
    """First sight of a host: record its key in the project's known_hosts (a changed key is not 'missing')."""

    def __init__(self, known_hosts: Path, on_record: Callable[[], None] = lambda: None) -> None:
        self.known_hosts = known_hosts
        self.on_record = on_record

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.on_record()



def known_hosts_names(target: Target) -> list[str]:
    """How OpenSSH and paramiko name a host in known_hosts: `addr`, or `[addr]:port` off port 22."""
    return [target.host] if target.port == 22 else [f"[{target.host}]:{target.port}"]


def _hashed(name: str, salt_b64: str) -> str:
    """OpenSSH's hashed known_hosts form of a name: |1|base64(salt)|base64(HMAC-SHA1(salt, name))."""
    salt = base64.b64decode(salt_b64)
    return f"|1|{salt_b64}|{base64.b64encode(hmac.new(salt, name.encode(), hashlib.sha1).digest()).decode()}"


def _entry_matches(field: str, names: set[str]) -> bool:
    """Whether a known_hosts host field (plain, comma separated, or hashed |1|salt|hash) names one of `names`."""
    for entry in field.split(","):
        if entry.startswith("|1|"):
            if any(_hashed(name, entry.split("|")[2]) == entry for name in names):
                return True
        elif entry in names:
            return True
    return False


def remove_host_entries(known_hosts: Path, names: Sequence[str]) -> int:
    """Remove exactly the lines of known_hosts that name one of `names` (hashed entries included); return how many."""
    if not known_hosts.is_file():
        return 0
    wanted = set(names)
    kept, removed = [], 0
    for line in known_hosts.read_text().splitlines(keepends=True):
        fields = line.split()
        if fields and not line.startswith("#"):
            host_field = fields[1] if fields[0].startswith("@") and len(fields) > 1 else fields[0]
            if _entry_matches(host_field, wanted):
                removed += 1
                continue
        kept.append(line)
    if removed:
        known_hosts.write_text("".join(kept))
    return removed


def vagrant_machine_id(layout: Layout) -> str | None:
    """Vagrant's id of the VM (a new one at every `vagrant up` after a destroy), or None when there is none."""
    try:
        return layout.vagrant_machine_id.read_text().strip() or None
    except OSError:
        return None



def read_stamp(layout: Layout) -> str | None:
    try:
        return layout.known_hosts_stamp.read_text().strip() or None
    except OSError:
        return None

