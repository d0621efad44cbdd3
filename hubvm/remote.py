"""verify and ssh: reach the VM (or any --host) over SSH with fabric, run named checks, open a shell.

The target is the Vagrant VM as `vagrant ssh-config` reports it (Vagrant's forwarded port on 127.0.0.1, or the
host-only address with ssh.via ip), or `--host [user@]address[:port]`. Host keys live in the project's
known_hosts (builds/ssh/known_hosts), never in ~/.ssh/known_hosts:
- a key seen for the first time is recorded;
- a changed key is refused with one line naming the entry to remove (`ssh-keygen -R ... -f ...`), except for the
  Vagrant VM when Vagrant's machine id changed since the key was recorded: the tool rebuilt that VM, so its new
  keys are expected; exactly the stale entries are replaced and the user is told in one line.

`verify` runs every guest probe in one SSH round-trip (one shell script whose sections are parsed here), asks the
hub's API from the host with urllib, and turns the outputs into `Check`s with pure functions, so the evaluation is
tested without a machine. Under `hubvm --dry` nothing connects: the plan (target, hub URL, checks and their
expectations) is printed. `vagrant ssh-config` is a read-only probe and runs even then, so the plan names the
port Vagrant really assigned; when the VM does not exist yet the plan says so instead of failing.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import shlex
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import paramiko

from hubvm import tools
from hubvm.checks import (
    HTTP_TIMEOUT,
    AccessExpected,
    Check,
    HostAnswer,
    HttpsAnswer,
    Section,
    access_expected,
    checks_table,
    evaluate,
    hub_url,
    hub_version,
    parse_sections,
    pem_to_der,
    planned,
    probe_script,
    shared_data_entries,
    summary,
    waited_seconds,
)
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import duration
from hubvm.settings import Settings
from hubvm.shell import Shell, is_dry, q
from hubvm.target import Target, from_ssh_config, is_ip, known_hosts_names, remove_host_entries, ssh_options
from hubvm.target import parse as parse_target
from hubvm.vagrant import vm_exists

PROBE_TIMEOUT = 600       # seconds for the probe script (imports are slow in an emulated VM)
RETRY_PAUSE = 2.0         # seconds between connection attempts


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Endpoint:
    """Where verify/ssh go: the SSH target, the hub's API as seen from this host, and how it was found."""

    target: Target
    hub_url: str
    source: str               # "--host", "vagrant ssh-config", or why the target is a guess (dry run only)
    vagrant: bool             # the tool's own Vagrant VM (its changed host keys may be expected, see module doc)
    reachable: bool = True    # False only in a dry run before the VM exists
    # Where this host reaches the hub's HTTPS port (None: HTTPS off, or a forwarded VM whose HTTPS port is not)
    https_address: tuple[str, int] | None = None

    @property
    def api_url(self) -> str:
        """The hub API as verify asks it from this host: over HTTPS when the hub has it."""
        if self.https_address is None:
            return self.hub_url
        host, port = self.https_address
        return hub_url(host, port, "https")


def checks_json(endpoint: Endpoint, checks: Sequence[Check], seconds: float) -> str:
    return json.dumps({
        "target": str(endpoint.target),
        "hub_url": endpoint.hub_url,
        "passed": sum(c.passed is True for c in checks),
        "failed": sum(c.passed is False for c in checks),
        "seconds": round(seconds, 1),
        "checks": [asdict(c) for c in checks],
    }, indent=2)


# ---------------------------------------------------------------------------------------------------------------
# Target resolution


def vagrant_machine_id(layout: Layout) -> str | None:
    """Vagrant's id of the VM (a new one at every `vagrant up` after a destroy), or None when there is none."""
    try:
        return layout.vagrant_machine_id.read_text().strip() or None
    except OSError:
        return None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def resolve(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None,
            dry: bool = False) -> Endpoint:
    """The target of verify/ssh: --host, else the Vagrant VM (see module doc); a problem is one UserError line."""
    key = Path(identity).expanduser() if identity else None
    if host:
        target = parse_target(host, default_user=s.ssh.user, identity=key or s.ssh.identity)
        if target.identity is None:
            target = replace(target, password=s.ssh.password)
        # A loopback address off port 22 is a forwarded VM: its hub is forwarded too (vm.hub_host_port).
        forwarded = _is_loopback(target.host) and target.port != 22
        url = hub_url(target.host, s.vm.hub_host_port if forwarded else s.hub.port)
        https_port = s.vm.hub_https_host_port if forwarded else access_expected(s).https_port
        return Endpoint(target, url, "--host", vagrant=False, https_address=_https_address(s, target.host, https_port))
    if key is not None and not key.is_file():
        raise UserError(f"--identity {identity!r}: no such file; give the private key's path")
    vagrant = q(tools.command(s, "vagrant"))
    if not layout.vagrantfile.is_file():
        if dry:
            return _guess(s, key, f"the Vagrant VM, not created yet ({layout.vagrantfile} is missing)")
        raise UserError(f"no Vagrant VM: {layout.vagrantfile} is missing; run hubvm up, or give --host")
    if not vm_exists(layout):  # not asked of Vagrant: it would write builds/vagrant/.vagrant/, even under --dry
        if dry:
            return _guess(s, key, "the Vagrant VM, not created yet")
        raise UserError("no Vagrant VM has been created (builds/vagrant/.vagrant holds none); run hubvm up, or "
                        "give --host")
    result = Shell(c).probe(f"{vagrant} ssh-config", cwd=layout.vagrant_dir)
    if not result.ok:
        # Vagrant's messages run over several lines and sentences: the first sentence says what is wrong
        message = " ".join((result.stderr or result.stdout or "").split())
        reason = message.split(". ")[0].rstrip(".")[:200] or f"exit status {result.exited}"
        if dry:
            return _guess(s, key, f"the Vagrant VM, not running now: {reason}")
        raise UserError(f"vagrant ssh-config failed ({reason}); is the VM running? (hubvm up)")
    reported = from_ssh_config(result.stdout)
    identity_file = key or s.ssh.identity or reported.identity
    if s.ssh.via == "forwarded":
        target = replace(reported, identity=identity_file)
        port = Shell(c).probe(f"{vagrant} port --guest {s.hub.port}", cwd=layout.vagrant_dir)
        text = (port.stdout or "").strip() if port.ok else ""
        host_port = int(text) if text.isdigit() else s.vm.hub_host_port
        url = hub_url("127.0.0.1", host_port)
        https_port = None
        if access_expected(s).on:
            forwarded = Shell(c).probe(f"{vagrant} port --guest {access_expected(s).https_port}",
                                       cwd=layout.vagrant_dir)
            text = (forwarded.stdout or "").strip() if forwarded.ok else ""
            https_port = int(text) if text.isdigit() else None
        https = _https_address(s, "127.0.0.1", https_port)
    else:
        address = reported.host if s.vm.dhcp else s.vm.ip
        target = Target(address, reported.user, 22, identity_file)
        url = hub_url(address, s.hub.port)
        https = _https_address(s, address, access_expected(s).https_port)
    if target.identity is None:
        target = replace(target, password=s.ssh.password)
    return Endpoint(target, url, "vagrant ssh-config", vagrant=True, https_address=https)


def _https_address(s: Settings, host: str, port: int | None) -> tuple[str, int] | None:
    """Where verify checks HTTPS from this host: None when HTTPS is off or its port is not reachable from here
    (a forwarded VM whose Vagrantfile does not forward it); acme is checked at its public name."""
    access = access_expected(s)
    if not access.on or port is None:
        return None
    if access.https == "acme" and access.acme_domain:
        return access.acme_domain, access.https_port
    return host, port


def _guess(s: Settings, key: Path | None, why: str) -> Endpoint:
    """The target a dry run would use once the VM runs (from the configuration alone)."""
    if s.ssh.via == "forwarded":
        target = Target("127.0.0.1", s.ssh.user, s.ssh.port, key or s.ssh.identity)
        url = hub_url("127.0.0.1", s.vm.hub_host_port)
    else:
        address = "<dhcp lease>" if s.vm.dhcp else s.vm.ip
        target = Target(address, s.ssh.user, 22, key or s.ssh.identity)
        url = hub_url(address, s.hub.port)
    return Endpoint(target, url, why, vagrant=True, reachable=False)


def describe_auth(target: Target) -> str:
    if target.identity is not None:
        return f"key {target.identity}"
    return "ssh-agent, ~/.ssh keys or the password ssh.password"


# ---------------------------------------------------------------------------------------------------------------
# Host keys (project known_hosts)


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


# ---------------------------------------------------------------------------------------------------------------
# Connecting


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
            recorded = _read_stamp(layout)
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


def _read_stamp(layout: Layout) -> str | None:
    try:
        return layout.known_hosts_stamp.read_text().strip() or None
    except OSError:
        return None


def ask_hub(url: str, timeout: float = HTTP_TIMEOUT, context: ssl.SSLContext | None = None) -> HostAnswer:
    """GET the hub API from this host, directly (no proxy: the hub is on loopback or a host-only network)."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as answer:
            return hub_version(answer.status, answer.read(4000).decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except urllib.error.URLError as error:
        reason = error.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return False, f"no answer: {text}"
    except (OSError, ValueError) as error:
        return False, f"no answer: {getattr(error, 'strerror', None) or error}"


def pinned_context(pem: str, check_hostname: bool) -> ssl.SSLContext:
    """A TLS context that trusts exactly this certificate (a self-signed one, or the leaf of a chain)."""
    context = ssl.create_default_context(cadata=pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = check_hostname
    return context


def served_certificate(host: str, port: int, timeout: float = HTTP_TIMEOUT) -> tuple[bytes | None, str]:
    """The certificate a TLS server presents (DER), read without trusting it; or None and why not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sni = None if is_ip(host) else host
            with context.wrap_socket(sock, server_hostname=sni) as tls:
                return tls.getpeercert(binary_form=True), ""
    except (OSError, ssl.SSLError) as error:
        return None, getattr(error, "strerror", None) or str(error)


def trusted_for(host: str, port: int, timeout: float = HTTP_TIMEOUT) -> tuple[bool, str]:
    """Whether the system's CAs trust the server's chain for its name (acme)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                ssl.create_default_context().wrap_socket(sock, server_hostname=host):
            return True, ""
    except ssl.SSLCertVerificationError as error:
        return False, error.verify_message or str(error)
    except (OSError, ssl.SSLError) as error:
        return False, getattr(error, "strerror", None) or str(error)


def http_redirect(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[tuple[int, str] | None, str]:
    """(status, Location) of a GET of a plain-HTTP URL, the redirect not followed."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port or 80, timeout=timeout)
    try:
        connection.request("GET", parsed.path or "/")
        response = connection.getresponse()
        return (response.status, response.getheader("Location") or ""), ""
    except OSError as error:
        return None, f"no answer: {error.strerror or error}"
    finally:
        connection.close()


def check_hub_over_https(s: Settings, endpoint: Endpoint, access_section: Section | None
                         ) -> tuple[HttpsAnswer | None, HostAnswer | None]:
    """The host's side of the HTTPS checks: the certificate served, HTTP's redirect, and the hub API over HTTPS
    with a context pinned to the guest's own certificate (self-signed, files) or the system's CAs (acme).
    With HTTPS on but its port not reachable from here (a forwarded VM whose Vagrantfile does not forward it)
    the host's checks are not run (None): plain HTTP only redirects to a port this host cannot reach."""
    access: AccessExpected = access_expected(s)
    if endpoint.https_address is None:
        return None, (None if access.on else ask_hub(endpoint.hub_url))
    host, port = endpoint.https_address
    served, error = served_certificate(host, port)
    trusted, trust_error = trusted_for(host, port) if access.https == "acme" else (None, "")
    redirect, redirect_error = http_redirect(endpoint.hub_url)
    expected_sha = None
    if access.https == "files" and access.cert_file is not None:
        try:
            expected_sha = hashlib.sha256(pem_to_der(access.cert_file.read_text())).hexdigest()
        except (OSError, IndexError, ValueError):
            expected_sha = None
    answer = HttpsAnswer(host, served, error, trusted, trust_error, redirect, redirect_error, expected_sha)
    items = access_section.json_items() if access_section else []
    guest_pem = items[0].get("cert_pem") if items else None
    if access.https == "acme":
        return answer, ask_hub(endpoint.api_url)
    if not guest_pem:
        return answer, (False, "the guest named no certificate to check the hub's against")
    return answer, ask_hub(endpoint.api_url, context=pinned_context(guest_pem, access.https == "self-signed"))


# ---------------------------------------------------------------------------------------------------------------
# The tasks' entry points


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_verify(c: Any, s: Settings, host: str | None, identity: str | None, as_json: bool) -> None:
    """`verify`: resolve the target, connect, run the checks, print them; a failed check is a UserError."""
    layout = Layout.of(s)
    dry = is_dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry:
        checks = planned(s, endpoint.api_url)
        if as_json:
            print(checks_json(endpoint, checks, 0.0))
            return
        print(f"verify (dry run, no connection): {endpoint.target} ({endpoint.source})\n"
              f"  login with {describe_auth(endpoint.target)}; hub API from this host: {endpoint.api_url}")
        print(checks_table(checks))
        return
    started = time.monotonic()
    _say(f"verify: connecting to {endpoint.target} ({endpoint.source}, {describe_auth(endpoint.target)})")
    conn = connect(s, layout, endpoint, _say)
    try:
        _say(f"verify: running the checks on {endpoint.target}")
        result = _run_guest(conn, f"bash -c {shlex.quote(probe_script(s))}", endpoint.target)
    finally:
        conn.close()
    sections = parse_sections(result.stdout)
    waited = waited_seconds(sections.get("starting"))
    if waited:
        _say(f"verify: {endpoint.target} was still starting (boot or hub); waited {duration(waited)} before checking")
    https_answer, host_answer = check_hub_over_https(s, endpoint, sections.get("access"))
    checks = evaluate(s, sections, host_answer, endpoint.api_url, shared_data_entries(s), https_answer)
    seconds = time.monotonic() - started
    if as_json:
        print(checks_json(endpoint, checks, seconds))
    else:
        print(checks_table(checks))
        passed = sum(c.passed is True for c in checks)
        print(f"{passed} of {len(checks)} checks passed on {endpoint.target} in {duration(seconds)}")
    problem = summary(checks)
    if problem:
        raise UserError(problem)


def _run_guest(conn: Any, command: str, target: Target) -> Any:
    import invoke

    try:
        return conn.run(command, hide=True, warn=True, echo=False, pty=False, in_stream=False,
                        timeout=PROBE_TIMEOUT)
    except invoke.CommandTimedOut:
        raise UserError(f"{target}: the checks did not finish within {PROBE_TIMEOUT} s") from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise UserError(f"{target}: the connection broke while running the checks ({error})") from None


def ssh_command(s: Settings, layout: Layout, target: Target) -> list[str]:
    """The OpenSSH command line of an interactive shell (same known_hosts and options as the tool's other clients)."""
    command = ["ssh", *ssh_options(layout.known_hosts, s.ssh.connect_timeout), "-p", str(target.port)]
    if target.identity is not None:
        command += ["-i", str(target.identity), "-o", "IdentitiesOnly=yes"]
    host = f"[{target.host}]" if ":" in target.host else target.host
    return [*command, f"{target.user}@{host}"]


def run_ssh(c: Any, s: Settings, host: str | None, identity: str | None, command: str | None) -> int:
    """`ssh`: an interactive shell (the system ssh client), or one command via fabric; returns its status."""
    layout = Layout.of(s)
    dry = is_dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry and command is not None:
        print(f"ssh (dry run, no connection): would run {command!r} on {endpoint.target} via {endpoint.source}")
        return 0
    if not dry:
        # Host key policy, retries and one-line errors before anything else; the shell then finds the key recorded.
        conn = connect(s, layout, endpoint, _say)
        if command is None:
            conn.close()
        else:
            try:
                result = conn.run(command, warn=True, pty=False, echo=False, in_stream=False)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise UserError(f"{endpoint.target}: the connection broke ({error})") from None
            finally:
                conn.close()
            return result.exited
    result = c.run(shlex.join(ssh_command(s, layout, endpoint.target)), pty=True, warn=True)
    return result.exited if result is not None else 0
