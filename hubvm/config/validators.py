"""Validators: the checks of one setting's value, and the library they are made from.

A validator takes the key, the value (already of the setting's kind) and a `Context` (the project folder and the
other raw values); it returns the normalised value or raises ConfigError naming the key, the value and the fix.
Strings are matched whole (`re.fullmatch`) and no string may hold a control character (a newline would end a
line of a preseed file, a systemd unit, /etc/environment or a shell command).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm.errors import ConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")



@dataclass
class Context:
    """What a check may look at besides its value: the project folder and the other merged raw values."""

    project_dir: Path
    raw: Mapping[str, Mapping[str, Any]]

    def get(self, key: str) -> Any:
        section, _, leaf = key.partition(".")
        return self.raw.get(section, {}).get(leaf)

    def path(self, key: str, value: str) -> Path:
        """A path setting: ~ expanded, relative to the project; `~nosuchuser/x` is an error, not a folder."""
        expanded = os.path.expanduser(value)
        if expanded.startswith("~"):
            raise ConfigError(key, value, f"names a home folder of an unknown user ({value.split('/')[0]})",
                              "write the path out, or use ~/ for your own home")
        path = Path(expanded)
        return path if path.is_absolute() else self.project_dir / path


Validator = Callable[[str, Any, Context], Any]


def no_control_characters(key: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ConfigError(key, value, "holds a control character (a line break, a tab, ...)",
                          "remove it; a value is one line of plain text")


def with_fix(fix: str) -> Callable[[Validator], Validator]:
    """Attach the fix a check suggests, so that a value of the wrong kind gets the same advice."""

    def attach(check: Validator) -> Validator:
        check.fix = fix  # type: ignore[attr-defined]
        return check

    return attach


def text(pattern: str | None = None, fix: str = "set a value", allow_empty: bool = False,
         refuse: Callable[[str], str | None] | None = None) -> Validator:
    """Text matched whole against `pattern`; `refuse` returns a problem for values the pattern lets through."""
    compiled = re.compile(pattern) if pattern else None

    def check(key: str, value: Any, _: Context) -> str:
        no_control_characters(key, value)
        if value == "":
            if allow_empty:
                return value
            raise ConfigError(key, value, "is empty", fix)
        if compiled is not None and not compiled.fullmatch(value):
            raise ConfigError(key, value, "is not valid", fix)
        problem = refuse(value) if refuse else None
        if problem:
            raise ConfigError(key, value, problem, fix)
        return value

    return with_fix(fix)(check)


def integer(low: int, high: int, unit: str = "", refuse: Mapping[int, str] | None = None) -> Validator:
    def check(key: str, value: int, _: Context) -> int:
        if not low <= value <= high:
            raise ConfigError(key, value, "is out of range", f"set a number from {low} to {high}{unit}")
        if refuse and value in refuse:
            raise ConfigError(key, value, refuse[value], f"set another number from {low} to {high}{unit}")
        return value

    return with_fix(f"set a number from {low} to {high}{unit}")(check)


def number(low_exclusive: float, high: float, fix: str) -> Validator:
    def check(key: str, value: float, _: Context) -> float:
        if not low_exclusive < value <= high:
            raise ConfigError(key, value, "is out of range", fix)
        return value

    return with_fix(fix)(check)


def choice(*choices: str) -> Validator:
    def check(key: str, value: str, _: Context) -> str:
        if value not in choices:
            raise ConfigError(key, value, "is not one of the choices", f"use one of: {', '.join(choices)}")
        return value

    check.choices = choices  # type: ignore[attr-defined]
    return with_fix(f"use one of: {', '.join(choices)}")(check)


def boolean(key: str, value: bool, _: Context) -> bool:
    return value


def list_of(item: Validator, allow_empty: bool = True, unique: bool = True) -> Validator:
    def check(key: str, value: tuple[str, ...], context: Context) -> tuple[Any, ...]:
        if not value and not allow_empty:
            raise ConfigError(key, list(value), "is empty", "give at least one entry")
        if unique:
            seen = [v for i, v in enumerate(value) if v in value[:i]]
            if seen:
                raise ConfigError(key, list(value), f"lists {seen[0]!r} twice", "list each entry once")
        return tuple(item(key, entry, context) for entry in value)

    return check


def mapping_of(key_pattern: str, value: Validator, fix: str) -> Validator:
    compiled = re.compile(key_pattern)

    def check(key: str, mapping: dict[str, str], context: Context) -> dict[str, str]:
        for name, item in mapping.items():
            no_control_characters(key, name)
            if not compiled.fullmatch(name):
                raise ConfigError(key, name, "is not a valid key", fix)
            value(f"{key}.{name}", item, context)
        return dict(mapping)

    return with_fix(fix)(check)


def optional(inner: Validator) -> Validator:
    def check(key: str, value: Any, context: Context) -> Any:
        return None if value == "" else inner(key, value, context)

    return check


def existing_file(kind: str = "") -> Validator:
    """A readable file; kind "pem" wants a PEM certificate, "public key" an OpenSSH public key."""

    def check(key: str, value: str, context: Context) -> Path:
        no_control_characters(key, value)
        path = context.path(key, value)
        if not path.is_file():
            what = "a folder" if path.is_dir() else "no such file"
            raise ConfigError(key, value, f"{what} ({path})", "give the path of an existing file")
        try:
            content = path.read_bytes()[:1 << 20].decode("utf-8", "replace")
        except OSError as error:
            raise ConfigError(key, value, f"cannot be read ({error.strerror})",
                              "give a file you can read (check its permissions)") from None
        if kind == "pem" and "-----BEGIN CERTIFICATE-----" not in content:
            raise ConfigError(key, value, "holds no PEM certificate", "give a PEM file (-----BEGIN CERTIFICATE-----)")
        if kind == "public key" and not re.fullmatch(r"(ssh-|ecdsa-|sk-)[\w@.-]+ [A-Za-z0-9+/=]+( [^\n]*)?\n?",
                                                     content.strip() + "\n"):
            raise ConfigError(key, value, "is not one OpenSSH public key", "give a .pub file (ssh-ed25519 AAAA...)")
        if kind == "private key" and "PRIVATE KEY-----" not in content:
            raise ConfigError(key, value, "holds no private key", "give the private key file (not the .pub)")
        return path

    return check


# Accounts a login or a hub admin must never be: root, and the system accounts of Debian and Ubuntu (base-passwd
# and the services this tool installs). A login named like one of these would be merged into it, or deleted.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "nogroup", "sshd", "messagebus", "syslog", "uuidd", "tss",
    "polkitd", "dnsmasq", "landscape", "pollinate", "lxd", "tcpdump", "usbmux", "fwupd-refresh", "statd",
    "systemd-coredump", "admin-hub", "jupyterhub", "libvirt-qemu", "libvirt-dnsmasq", "_apt", "ntp", "chrony",
    "postfix", "ubuntu", "debian",
})


def not_a_system_account(value: str) -> str | None:
    if value in SYSTEM_ACCOUNTS or value.startswith(("systemd-", "_")):
        return "is root or a system account"
    return None


UNIX_NAME = r"[a-z][a-z0-9_-]{0,31}"
# Hub user names: JupyterHub's names of the pypi flavour's configuration (the Linux account is "jupyter-" + name)
HUB_NAME = r"[a-z][a-z0-9_-]{0,22}"
HOST_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
# A machine for SSH: [user@]address[:port] (a host name, an IPv4 address, or an IPv6 address in brackets)
HOST_SPEC = (r"([a-z_][a-z0-9_.-]{0,31}@)?([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
             r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?")
# Slurm's time limits: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
SLURM_TIME = r"[0-9]+|[0-9]+:[0-5][0-9]|[0-9]+:[0-5][0-9]:[0-5][0-9]|[0-9]+-[0-9]+(:[0-5][0-9](:[0-5][0-9])?)?"
# No quotes, $, backquotes, backslashes or spaces: URLs reach /etc/environment, apt and preseed files
URL = r"(https?)://[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+"
HASHES = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


def ip_address(key: str, value: str, context: Context) -> str:
    no_control_characters(key, value)
    if value == "dhcp":
        return value
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(key, value, "is not an IPv4 address",
                          'write four numbers like 192.168.56.10, or "dhcp"') from None
    if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified \
            or address.is_reserved:
        raise ConfigError(key, value, "is a loopback, link-local, multicast or reserved address",
                          "use a host-only address such as 192.168.56.10")
    if not address.is_private:
        raise ConfigError(key, value, "is not a private address", "use a host-only address such as 192.168.56.10")
    network = ipaddress.IPv4Network(f"{address}/24", strict=False)
    if address in (network.network_address, network.broadcast_address):
        raise ConfigError(key, value, f"is the network or broadcast address of {network}",
                          f"use a host address such as {network.network_address + 10}")
    if address == network.network_address + 1:
        raise ConfigError(key, value, f"is the host's own address on {network} (the host-only adapter takes .1)",
                          f"use another address such as {network.network_address + 10}")
    if context.get("vm.provider") == "virtualbox" and address not in VIRTUALBOX_HOST_ONLY:
        raise ConfigError(key, value, f"is outside VirtualBox's default host-only range {VIRTUALBOX_HOST_ONLY}",
                          "use an address such as 192.168.56.10, or allow the range in /etc/vbox/networks.conf")
    return str(address)


# VirtualBox >= 6.1.28 refuses host-only addresses outside this range unless /etc/vbox/networks.conf allows them.
VIRTUALBOX_HOST_ONLY = ipaddress.ip_network("192.168.56.0/21")


def data_folder(key: str, value: str, context: Context) -> Path | None:
    no_control_characters(key, value)
    if value in ("none", ""):
        return None
    path = context.path(key, value)
    if not path.is_dir():
        raise ConfigError(key, value, f"no such folder ({path})", 'create it, or set "none" to ship sample files')
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(key, value, f"cannot be read ({path})", "give a folder you can read")
    return path


def folder(fix: str) -> Validator:
    """A readable folder, or "" for none (None)."""

    def check(key: str, value: str, context: Context) -> Path | None:
        no_control_characters(key, value)
        if value == "":
            return None
        path = context.path(key, value)
        if not path.is_dir():
            what = "a file, not a folder" if path.is_file() else "no such folder"
            raise ConfigError(key, value, f"{what} ({path})", fix)
        if not os.access(path, os.R_OK | os.X_OK):
            raise ConfigError(key, value, f"cannot be read ({path})", "give a folder you can read")
        return path

    return check


OS_DIR = Path("templates") / "packer" / "os"


def known_os(key: str, value: str, context: Context) -> str:
    known = sorted(p.stem for p in (context.project_dir / OS_DIR).glob("*.yaml"))
    if value not in known:
        raise ConfigError(key, value, "is not a known OS", f"use one of: {', '.join(known)}")
    return value


@functools.cache
def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def timezone(key: str, value: str, _: Context) -> str:
    no_control_characters(key, value)
    zones = _time_zones()
    if value not in zones:
        near = difflib.get_close_matches(value, sorted(zones), n=1)
        raise ConfigError(key, value, "is not a time zone name", f"did you mean {near[0]}?" if near else
                          "use a tz database name such as Europe/Berlin or Etc/UTC")
    return value


LOCALES_FILE = Path(__file__).with_name("locales.txt")


@functools.cache
def _locales() -> frozenset[str]:
    lines = LOCALES_FILE.read_text().splitlines()
    return frozenset(f"{line.strip()}.UTF-8" for line in lines if line.strip() and not line.startswith("#"))


@with_fix("write a UTF-8 locale such as en_US.UTF-8 or C.UTF-8")
def locale(key: str, value: str, _: Context) -> str:
    """A UTF-8 locale the guest can generate (locales.txt: glibc's list of supported locales)."""
    no_control_characters(key, value)
    known = _locales()
    if value not in known:
        near = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.85)
        raise ConfigError(key, value, "is not a UTF-8 locale the guest can generate",
                          f"did you mean {near[0]}?" if near else "write one such as en_US.UTF-8, de_DE.UTF-8 or "
                          "C.UTF-8 (hubvm/config/locales.txt lists them)")
    return value


def memory_limit(key: str, value: str, _: Context) -> str:
    no_control_characters(key, value)
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT])", value)
    if not match:
        raise ConfigError(key, value, "is not a memory size", "write a number and a unit K, M, G or T, such as 2G")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if float(match.group(1)) * units[match.group(2)] < 128 << 20:
        raise ConfigError(key, value, "is less than 128M, too little for a notebook server", "set 512M or more, "
                          "such as 2G")
    return value


def version(key: str, value: str, _: Context) -> str:
    from packaging.version import InvalidVersion, Version

    no_control_characters(key, value)
    try:
        Version(value)
    except InvalidVersion:
        raise ConfigError(key, value, "is not a version", "write a release such as 2.0.0") from None
    return value


def requirement(vcs: bool = False) -> Validator:
    """A pip requirement (name, extras, version, marker, or `name @ URL`); with vcs, also pip's `git+https://...`."""

    def check(key: str, value: str, _: Context) -> str:
        from packaging.requirements import InvalidRequirement, Requirement

        no_control_characters(key, value)
        if vcs and re.fullmatch(r"git\+https://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+", value):
            return value
        try:
            Requirement(value)
        except InvalidRequirement:
            forms = "such as pandas or numpy>=1.26" + (", or git+https://host/repo.git@ref" if vcs else "")
            raise ConfigError(key, value, "is not a pip requirement", f"write a name with an optional version, "
                              f"{forms}") from None
        return value

    return check


def checksum(key: str, value: str, _: Context) -> str:
    no_control_characters(key, value)
    if value in ("", "none"):
        return value
    algorithm, _sep, digest = value.partition(":")
    if algorithm == "file" and re.fullmatch(URL, digest):
        return value
    if algorithm in HASHES and re.fullmatch(rf"[0-9a-fA-F]{{{HASHES[algorithm]}}}", digest):
        return value
    if algorithm in HASHES:
        problem = f"is not a {algorithm} digest ({HASHES[algorithm]} hex digits)"
    else:
        problem = "is not a checksum"
    raise ConfigError(key, value, problem, 'write "sha256:<64 hex digits>" or "file:<URL of a SHA256SUMS file>"')


def image_url(key: str, value: str, context: Context) -> str:
    no_control_characters(key, value)
    if value == "" or re.fullmatch(URL, value):
        return value
    local = value[len("file://"):] if value.startswith("file://") else value
    if "://" in local or not local:
        raise ConfigError(key, value, "is not an http(s) URL or a local file", "give a URL or the path of an image")
    path = context.path(key, local)
    if not path.is_file():
        raise ConfigError(key, value, f"no such file ({path})", "give the path of an existing image, or a URL")
    return str(path)


def no_proxy(key: str, value: str, _: Context) -> str:
    """Comma-separated host names, domains (.example.org), addresses and networks, as curl, pip and apt read it."""
    no_control_characters(key, value)
    entry = r"(\*|\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9.]+(/[0-9]{1,2})?|\[?[0-9A-Fa-f:]+\]?(/[0-9]{1,3})?)"
    if value and not re.fullmatch(rf"{entry}(,{entry})*", value):
        raise ConfigError(key, value, "is not a comma-separated list of hosts, domains and networks",
                          "write it like localhost,127.0.0.1,.example.org,10.0.0.0/8 (no spaces)")
    return value


def tool_command(key: str, value: str, _: Context) -> str:
    no_control_characters(key, value)
    if not value.strip():
        raise ConfigError(key, value, "is empty", "give a command name or a path")
    return value


# Course material (nbgitpuller links): the repository's URL as git takes it, its branch, and a path inside it.
# Characters a URL never needs (and a shell or a link would mangle): whitespace, quotes, backslash, <>, {}, |, ^, `
_NOT_IN_URL = re.compile(r"[\s\"'\\<>{}|^`]")
# scp-like SSH, as git reads it: [user@]host:path, with no slash before the colon
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(?!//)(.+)")
_URL_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
GIT_URL_FIX = ("write the repository's URL, such as https://github.com/org/course.git or "
               "git@github.com:org/course.git")


def repository_folder(url: str) -> str:
    """The folder `git clone URL` makes: the URL's last path component without a trailing / or .git
    (https://host/org/course.git -> course, git@host:course -> course); "" when the URL names none."""
    path = url.rstrip("/")
    if "://" in path:
        path = path.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path else ""
    elif _SCP_LIKE.fullmatch(path):
        path = path.split(":", 1)[1]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    name = name[:-len(".git")] if name.endswith(".git") else name
    return "" if name in (".", "..") else name


def git_url_problem(value: str) -> str | None:
    """What is wrong with a git URL for a class's link (None when nothing): http(s)://host/path,
    ssh://[user@]host[:port]/path or scp-like [user@]host:path."""
    if _CONTROL.search(value):
        return "holds a control character (a line break, a tab, ...)"
    bad = _NOT_IN_URL.search(value)
    if bad:
        return "holds a space" if bad.group().isspace() else f"holds {bad.group()!r}, which a URL never needs"
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme not in ("https", "http", "ssh"):
            return f"is not an https://, http:// or SSH URL (it is {scheme}://)"
        authority, _, path = rest.partition("/")
        credentials, at, host_port = authority.rpartition("@")
        host = host_port.rsplit(":", 1)[0] if not host_port.endswith("]") else host_port
        port = host_port[len(host) + 1:]
        if not _URL_HOST.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            return "names no valid host"
        if at and scheme != "ssh" and ":" in credentials:
            return "holds a password, which every student would see in the link"
        if "#" in path or "?" in path:
            return "has a query or fragment (?, #), which git does not take"
    elif not _SCP_LIKE.fullmatch(value):
        return "is not an https://, http:// or SSH (user@host:path) URL"
    if not repository_folder(value):
        return "names no repository (its path is empty)"
    return None


git_url = text(fix=GIT_URL_FIX, allow_empty=True, refuse=git_url_problem)  # a course repository's URL, or ""


# A branch (or tag) name as git check-ref-format allows it, simplified: no leading - / ., no .., //, @{, /. or
# .lock/, not ending in / . or .lock
GIT_BRANCH = r"(?![-/.])(?!.*(\.\.|//|@\{|/\.|\.lock/))[A-Za-z0-9._/+@-]{1,200}(?<![/.])(?<!\.lock)"


def repository_path_problem(value: str) -> str | None:
    """What is wrong with a path inside a repository (None when nothing): relative, no . or .. parts."""
    if _CONTROL.search(value):
        return "holds a control character (a line break, a tab, ...)"
    if value.startswith("/") or "\\" in value:
        return "is not a path inside the repository (it starts with / or holds a backslash)"
    parts = value.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, . or .. part"
    return None


REPOSITORY_PATH_FIX = 'write a path inside the repository, such as week1/intro.ipynb, or "" for its folder'


# A path inside the course repository, or "" for its folder
repository_path = text(fix=REPOSITORY_PATH_FIX, allow_empty=True, refuse=repository_path_problem)
