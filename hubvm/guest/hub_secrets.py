#!/usr/bin/python3
"""hubvm-hub-secrets: what this machine's hub needs before it first answers, made on the machine itself.

- Every admin named in /etc/hubvm/hub-access.json gets a password in FirstUseAuthenticator's store (bcrypt
  hashes in a dbm file): the hash configured in /etc/hubvm/hub-admin-hashes.json, else a random password,
  kept in the passwords file (root only) and, with --boot, shown on the machine's console. An admin who
  already has a password keeps it, except that provisioning (no --boot) sets a configured hash that differs:
  the configuration wins when it is applied, and a reboot does not undo a password changed in the hub.
- With HTTPS self-signed: a certificate for this machine's host names and addresses, made when it is missing
  or lacks a name or address the machine now has.
- The pypi flavour: the token its hub and its proxy (jupyterhub-proxy.service) share, made when missing.
- /etc/issue.d/hubvm.issue: where the hub answers, and its certificate's fingerprint (no secrets).

Run by Ansible at provisioning and by hubvm-hub-secrets.service (--boot) at every boot, before the hub's units:
after an export's cleanup removed the hub's state, the first boot of each copy makes its own passwords and
certificate. Prints one "changed: ..." line for each thing it changed, and never a password on stdout.
Uses the system Python (the hubs' environments are venvs of it, so its dbm module reads the same files) and
python3-bcrypt.
"""

from __future__ import annotations

import argparse
import contextlib
import dbm
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

import bcrypt

ACCESS = "/etc/hubvm/hub-access.json"
HASHES = "/etc/hubvm/hub-admin-hashes.json"
ISSUE = "/etc/issue.d/hubvm.issue"
CONSOLE = "/dev/console"  # where whoever booted the machine reads its new passwords
# The kernel's consoles (console= on its command line): /dev/console writes reach only the last of them, so a
# screen named before a serial port (console=tty0 console=ttyS0: VirtualBox's window, a cloud's serial log) is
# written to as well
ACTIVE_CONSOLES = "/sys/class/tty/console/active"
# No look-alikes (0/O, 1/l/I): the password is read off a console and typed.
DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_password(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def write_private(path: str, text: str) -> None:
    """Replace path with a file only root can read, durably: the data and the rename are on the disk when this
    returns (a password made here must survive a power loss before anything depends on it)."""
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".hubvm-")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    folder = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_passwords_file(path: str) -> dict[str, str]:
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return {}
    passwords = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, _, password = line.partition(" ")
            passwords[name] = password.strip()
    return passwords


def write_passwords_file(path: str, passwords: dict[str, str]) -> None:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_private(path, f"# JupyterHub administrator passwords of this machine (hubvm-hub-secrets, {made}):\n"
                        "# user password\n" + "".join(f"{name} {pw}\n" for name, pw in sorted(passwords.items())))


def stored_hashes(password_db: str, names: list[str]) -> dict[str, bytes | None]:
    """Each name's entry in FirstUseAuthenticator's store (None: no password yet)."""
    os.makedirs(os.path.dirname(password_db), mode=0o700, exist_ok=True)
    with dbm.open(password_db, "c", 0o600) as db:
        return {name: db.get(name.encode("utf8")) for name in names}


def store_hashes(password_db: str, hashes: dict[str, bytes]) -> None:
    """Write hashes into FirstUseAuthenticator's store (the step that makes a password the admin's)."""
    with dbm.open(password_db, "c", 0o600) as db:
        for name, hashed in hashes.items():
            db[name.encode("utf8")] = hashed
        sync = getattr(db, "sync", None)
        if sync is not None:
            sync()


def admin_passwords(access: dict, hashes: dict[str, str], enforce: bool = True) -> tuple[dict[str, str], list[str]]:
    """Give each admin without a password one (and, with enforce, set each configured hash that differs); return
    (passwords made or recovered, admins set from a configured hash).

    The order is what makes a crash harmless: a new password is first written to the passwords file (durably),
    and only then its hash to the store. A crash between the two leaves a password in the file and none in the
    store; the next run finds it there and stores its hash, so every admin's password can always be read."""
    passwords_file = access["admin_passwords_file"]
    written = read_passwords_file(passwords_file)
    stored = stored_hashes(access["password_db"], list(access["admins"]))
    made: dict[str, str] = {}
    new_hashes: dict[str, bytes] = {}
    configured: list[str] = []
    for name in access["admins"]:
        wanted = hashes.get(name, "").encode("ascii")
        if wanted:
            if stored[name] != wanted and (enforce or stored[name] is None):
                new_hashes[name] = wanted
                configured.append(name)
        elif stored[name] is None:
            # a password written before a crash is the one to keep: it may have been shown already
            made[name] = written.get(name) or new_password(int(access["password_length"]))
            new_hashes[name] = bcrypt.hashpw(made[name].encode("utf8"), bcrypt.gensalt())
    kept = {name: pw for name, pw in {**written, **made}.items() if not hashes.get(name)}
    if kept != written:
        write_passwords_file(passwords_file, kept)
    if new_hashes:
        store_hashes(access["password_db"], new_hashes)
    return made, configured


def proxy_token(access: dict) -> bool:
    """The token the hub and its proxy share (pypi flavour: an environment file both units read), made once per
    machine; True if made."""
    path = access.get("proxy_env_file") or ""
    if not path or os.path.isfile(path):
        return False
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_private(path, f"CONFIGPROXY_AUTH_TOKEN={secrets.token_hex(32)}\n")
    return True


def host_names() -> list[str]:
    """This machine's names and addresses, as subjectAltName entries (DNS:..., IP:...)."""
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.strip(".").lower()
        if DNS_NAME.fullmatch(name):
            names.add(name)
    addresses = {"127.0.0.1", "::1"}
    try:
        shown = subprocess.run(["ip", "-j", "address", "show", "scope", "global"], capture_output=True, text=True,
                               check=True).stdout
        for interface in json.loads(shown or "[]"):
            for info in interface.get("addr_info", []):
                if info.get("local") and info.get("scope") == "global":
                    addresses.add(str(ipaddress.ip_address(info["local"])))
    except (OSError, subprocess.CalledProcessError, ValueError) as error:
        print(f"hubvm-hub-secrets: cannot list the addresses ({error}); the certificate names only host names",
              file=sys.stderr)
    return [f"DNS:{n}" for n in sorted(names)] + [f"IP:{a}" for a in sorted(addresses)]


def self_signed_certificate(access: dict) -> bool:
    """Make the self-signed certificate when it is missing or lacks one of this machine's names; True if made."""
    cert, key = access["tls_cert"], access["tls_key"]
    names_file = cert + ".names"
    wanted = host_names()
    try:
        with open(names_file) as file:
            recorded = set(json.load(file))
    except (OSError, ValueError):
        recorded = set()
    if os.path.isfile(cert) and os.path.isfile(key) and set(wanted) <= recorded:
        return False
    os.makedirs(os.path.dirname(cert), mode=0o755, exist_ok=True)
    common_name = next((n[4:] for n in wanted if n.startswith("DNS:") and n != "DNS:localhost"), "localhost")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(cert)) as scratch:
        new_key, new_cert = os.path.join(scratch, "key.pem"), os.path.join(scratch, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", new_key, "-out", new_cert, "-days", str(int(access["self_signed_days"])),
             "-subj", f"/CN={common_name}",
             "-addext", "subjectAltName=" + ",".join(wanted),
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature",
             "-addext", "extendedKeyUsage=serverAuth"],
            check=True, capture_output=True)
        os.chmod(new_key, 0o600)
        os.chmod(new_cert, 0o644)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
    with open(names_file, "w") as file:
        json.dump(wanted, file)
    return True


def certificate_fingerprint(path: str) -> str:
    """SHA-256 fingerprint of a PEM certificate's first block, as AB:CD:... (what browsers show)."""
    der = subprocess.run(["openssl", "x509", "-in", path, "-outform", "DER"], capture_output=True,
                         check=True).stdout
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def hub_urls(access: dict) -> list[str]:
    """Where the hub answers: each global address of this machine (the names from the certificate or ip)."""
    https = access["https"] != "off"
    port = int(access["https_port"] if https else access["http_port"])
    default = 443 if https else 80
    scheme = "https" if https else "http"
    urls = []
    for name in host_names():
        kind, _, value = name.partition(":")
        if kind == "IP" and not ipaddress.ip_address(value).is_loopback:
            host = f"[{value}]" if ":" in value else value
            urls.append(f"{scheme}://{host}{'' if port == default else f':{port}'}/")
    return urls


def write_issue(access: dict, fingerprint: str) -> None:
    """The login prompt's preamble: where the hub answers and how to check its certificate (no secrets)."""
    lines = ["JupyterHub on this machine: " + (", ".join(hub_urls(access)) or "see its address (ip address)")]
    if fingerprint:
        lines.append(f"  certificate SHA-256 fingerprint: {fingerprint}")
    lines.append("  administrator passwords: shown here at the first boot; root can read "
                 f"{access['admin_passwords_file']}")
    os.makedirs(os.path.dirname(ISSUE), exist_ok=True)
    with open(ISSUE, "w") as file:
        file.write("\n".join(lines) + "\n\n")


def show_on_console(generated: dict[str, str], fingerprint: str, access: dict) -> None:
    """Write the new admin passwords to the console (never to the journal), for whoever booted the machine."""
    lines = ["", "hubvm: JupyterHub administrator passwords of this machine "
             f"(root can read them again in {access['admin_passwords_file']}):"]
    lines += [f"hubvm:     {name}  {password}" for name, password in sorted(generated.items())]
    urls = hub_urls(access)
    if urls:
        lines.append("hubvm: the hub answers at " + ", ".join(urls))
    if fingerprint:
        lines.append(f"hubvm: its certificate's SHA-256 fingerprint is {fingerprint}")
    problems = []
    written = 0
    for device in console_devices():
        try:
            console = os.open(device, os.O_WRONLY | os.O_NOCTTY)
        except OSError as error:
            problems.append(f"{device}: {error.strerror}")
            continue
        with os.fdopen(console, "w") as file:
            file.write("\r\n".join(lines) + "\r\n\r\n")
        written += 1
    if not written:
        print(f"hubvm-hub-secrets: cannot write to the console ({'; '.join(problems)})", file=sys.stderr)


def console_devices() -> list[str]:
    """/dev/console, and each virtual terminal the kernel also uses as a console but /dev/console does not reach
    (every active console but the last)."""
    try:
        with open(ACTIVE_CONSOLES) as file:
            active = file.read().split()
    except OSError:
        active = []
    screens = [name for name in active[:-1] if re.fullmatch(r"tty[0-9]+", name)]
    return [CONSOLE, *(f"/dev/{name}" for name in screens)]


def read_access(path: str | None = None) -> dict:
    """The hub role's access settings; a missing or broken file is one line (Failure)."""
    path = path or ACCESS
    try:
        with open(path) as file:
            access = json.load(file)
    except FileNotFoundError:
        raise Failure(f"{path} is missing: provision this machine first (hubvm provision)") from None
    except (OSError, ValueError) as error:
        raise Failure(f"{path} cannot be read ({error}); provision this machine again (hubvm provision)") from None
    if not isinstance(access, dict):
        raise Failure(f"{path} cannot be read (it holds no settings); provision this machine again (hubvm provision)")
    missing = sorted({"admins", "password_db", "password_length", "admin_passwords_file", "https"} - set(access))
    if missing:
        raise Failure(f"{path} lacks {', '.join(missing)}; provision this machine again (hubvm provision)")
    return access


class Failure(Exception):
    """What stops this program: one line on stderr, exit status 1."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubvm-hub-secrets", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--boot", action="store_true",
                        help="the boot run: fill in missing passwords only, and show new ones on /dev/console")
    args = parser.parse_args(argv)
    try:
        access = read_access()
    except Failure as error:
        print(f"hubvm-hub-secrets: {error}", file=sys.stderr)
        return 1
    try:
        with open(HASHES) as file:
            hashes = json.load(file)
    except FileNotFoundError:
        hashes = {}
    generated, configured = admin_passwords(access, hashes, enforce=not args.boot)
    for name in sorted(generated):
        print(f"changed: made a password for admin {name} (in {access['admin_passwords_file']})")
    for name in configured:
        print(f"changed: set admin {name}'s password from the configured hash")
    if proxy_token(access):
        print(f"changed: made the token the hub and its proxy share ({access['proxy_env_file']})")
    fingerprint = ""
    if access["https"] == "self-signed" and self_signed_certificate(access):
        print(f"changed: made a self-signed certificate {access['tls_cert']}")
    if access.get("tls_cert") and os.path.isfile(access["tls_cert"]):
        fingerprint = certificate_fingerprint(access["tls_cert"])
    if os.path.isdir(os.path.dirname(ISSUE)):
        write_issue(access, fingerprint)
    if generated and args.boot:
        show_on_console(generated, fingerprint, access)
    return 0


if __name__ == "__main__":
    sys.exit(main())
