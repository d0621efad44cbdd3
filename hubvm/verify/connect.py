"""An SSH connection to a target (fabric), retried while the machine boots, with the project's host-key policy
(hubvm.verify.hostkeys); every failure is one UserError line."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import paramiko

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.hostkeys import (
    RecordNewHost,
    fingerprint,
    known_hosts_names,
    read_stamp,
    remove_host_entries,
    vagrant_machine_id,
)
from hubvm.verify.target import Target, describe_auth

RETRY_PAUSE = 2.0         # seconds between connection attempts


def connection_reason(error: BaseException, connect_timeout: int) -> str:
    """A few words for why one connection attempt failed."""
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        errnos = {getattr(e, "errno", None) for e in error.errors.values()}
        import errno as errno_codes

        if errnos <= {errno_codes.ECONNREFUSED}:
            return "connection refused"
        first = next(iter(error.errors.values()))
        return getattr(first, "strerror", None) or str(first)
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {connect_timeout} s"
    if isinstance(error, EOFError):
        return "the connection closed before the SSH greeting"
    if isinstance(error, paramiko.SSHException):
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        return "no SSH greeting (sshd not ready?)" if "banner" in text else text
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def _connection(s: Settings, target: Target) -> Any:
    import fabric

    kwargs: dict[str, Any] = {"banner_timeout": s.ssh.connect_timeout, "auth_timeout": s.ssh.connect_timeout}
    if target.identity is not None:
        kwargs.update(key_filename=[str(target.identity)], look_for_keys=False, allow_agent=False)
    elif target.password:
        kwargs["password"] = target.password
    # lazy: no ~/.ssh/config or fabric.yml changes who we talk to; the target is fully explicit
    return fabric.Connection(target.host, user=target.user, port=target.port, config=fabric.Config(lazy=True),
                             connect_kwargs=kwargs, connect_timeout=s.ssh.connect_timeout)


def connect(s: Settings, layout: Layout, endpoint: Endpoint, say: Callable[[str], None]) -> Any:
    """An open fabric Connection, retrying until ssh.wait while the machine boots; failures are one UserError line."""
    target = endpoint.target
    known_hosts = layout.known_hosts
    hint = ("is the VM running? (hubvm up)" if endpoint.vagrant
            else f"is the machine up, with sshd listening on port {target.port}?")
    machine_id = vagrant_machine_id(layout) if endpoint.vagrant else None

    def stamp() -> None:
        if machine_id:
            layout.known_hosts_stamp.write_text(machine_id + "\n")

    started = time.monotonic()
    deadline = started + s.ssh.wait
    announced = replaced = False
    while True:
        conn = _connection(s, target)
        if known_hosts.is_file():
            conn.client.get_host_keys().load(str(known_hosts))
        conn.client.set_missing_host_key_policy(RecordNewHost(known_hosts, stamp))
        try:
            conn.open()
            return conn
        except paramiko.BadHostKeyException as error:
            conn.close()
            names = known_hosts_names(target)
            recorded = read_stamp(layout)
            if endpoint.vagrant and not replaced and machine_id and machine_id != recorded:
                remove_host_entries(known_hosts, names)
                say(f"host key of {names[0]} changed: the VM was rebuilt (Vagrant machine {machine_id[:12]}), "
                    f"replaced its entry in {known_hosts}")
                replaced = True
                continue
            raise UserError(
                f"host key of {names[0]} changed since {known_hosts} recorded it (now {fingerprint(error.key)}, "
                f"was {fingerprint(error.expected_key)}): if the machine was rebuilt, run "
                f"ssh-keygen -R '{names[0]}' -f {known_hosts}; otherwise do not trust this connection") from None
        except paramiko.PasswordRequiredException:
            conn.close()
            raise UserError(f"{target}: the key {target.identity} is protected by a passphrase; add it to ssh-agent "
                            "and leave --identity/ssh.identity empty, or give an unprotected key") from None
        except paramiko.AuthenticationException:
            conn.close()
            raise UserError(f"{target}: authentication failed with {describe_auth(target)}; give the right key "
                            "with --identity (or ssh.identity)") from None
        except socket.gaierror as error:
            conn.close()
            raise UserError(f"{target}: cannot resolve {target.host!r} ({error.strerror}); check the address") \
                from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            conn.close()
            reason = connection_reason(error, s.ssh.connect_timeout)
        if time.monotonic() + RETRY_PAUSE > deadline:
            waited = f" after {s.ssh.wait} s" if s.ssh.wait else ""
            raise UserError(f"cannot reach {target}{waited}: {reason}; {hint}")
        if not announced:
            say(f"waiting for SSH on {target} ({reason}), up to {s.ssh.wait} s ...")
            announced = True
        time.sleep(RETRY_PAUSE)

