"""Which machine a command talks to, and the SSH options every SSH client of the tool uses (one place).

A target is `[user@]address[:port]` given with --host, or the Vagrant VM as `vagrant ssh-config` reports it.
Host keys go to a project-scoped known_hosts file (builds/ssh/known_hosts): a rebuilt VM on a reused address
brings new keys, and the user's ~/.ssh/known_hosts is never edited.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from hubvm.errors import UserError

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Target:
    host: str
    user: str
    port: int = 22
    identity: Path | None = None
    password: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def parse(spec: str, default_user: str, identity: Path | None = None) -> Target:
    """`[user@]address[:port]`, IPv6 in brackets (`[::1]:2222`); a bad spec is a one-line UserError."""
    fix = "write --host [user@]address[:port], such as vagrant@127.0.0.1:2222"
    user, _, rest = spec.rpartition("@")
    user = user or default_user
    if not re.match(r"^[a-z_][a-z0-9_.-]*$", user):
        raise UserError(f"--host {spec!r}: {user!r} is not a login name; {fix}")
    port_text = ""
    if rest.startswith("["):
        host, closed, tail = rest[1:].partition("]")
        if not closed:
            raise UserError(f"--host {spec!r}: the address's '[' is not closed; {fix}")
        if tail:
            if not tail.startswith(":"):
                raise UserError(f"--host {spec!r}: unexpected {tail!r} after the address; {fix}")
            port_text = tail[1:]
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host = rest
    if not host or not (_HOST.match(host) or is_ip(host)):
        raise UserError(f"--host {spec!r}: {host!r} is not a host name or address; {fix}")
    port = 22
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise UserError(f"--host {spec!r}: port {port_text!r} is not a number from 1 to 65535; {fix}")
        port = int(port_text)
    if identity is not None and not identity.is_file():
        raise UserError(f"--identity {str(identity)!r}: no such file; give the private key's path")
    return Target(host, user, port, identity)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def from_ssh_config(text: str) -> Target:
    """The target `vagrant ssh-config` describes (HostName, User, Port, IdentityFile)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key not in fields:
            fields[key] = value.strip().strip('"')
    if "HostName" not in fields:
        raise UserError("vagrant ssh-config reported no HostName: is the VM running? (hubvm up)")
    identity = Path(fields["IdentityFile"]) if "IdentityFile" in fields else None
    return Target(fields["HostName"], fields.get("User", "vagrant"), int(fields.get("Port", "22")), identity)


def ssh_options(known_hosts: Path, connect_timeout: int) -> list[str]:
    """OpenSSH options shared by every SSH client the tool starts (ansible-playbook, ssh)."""
    return [
        "-o", f"UserKnownHostsFile={known_hosts}",
        # the first key seen for an address is recorded, a changed key is refused (see hubvm.verify.run.connect)
        "-o", "StrictHostKeyChecking=accept-new",
        # plain names (Debian's ssh_config hashes them), so that a person can read and edit the file
        "-o", "HashKnownHosts=no",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "ServerAliveInterval=30",
    ]


def describe_auth(target: Target) -> str:
    if target.identity is not None:
        return f"key {target.identity}"
    return "ssh-agent, ~/.ssh keys or the password ssh.password"
