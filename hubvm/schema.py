"""Every setting of the tool, declared once: its key, its kind, what a good value is, the fix to suggest, its doc.

From this one table come: the type check of each configuration layer (`Kind.accepts`), the parsing of INVOKE_*
variables (`Kind.from_env`), the validation of the merged value (`Setting.check`), the "did you mean" suggestions
(`keys()`), and the tests that hold invoke.yaml's keys and comments and the README's tables to it. The defaults
stay in invoke.yaml (the design's one place for them); this module says what they mean and what is allowed.

Checks take the key, the value (already of the setting's kind) and a `Context` (the project folder and the other
raw values); they return the normalised value or raise ConfigError naming the key, the value and the fix. Strings
are matched whole (`re.fullmatch`) and no string may hold a control character (a newline would end a line of a
preseed file, a systemd unit, /etc/environment or a shell command).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------------
# Kinds: the shape of a value in a layer, and how an INVOKE_* string becomes one


@dataclass(frozen=True)
class Kind:
    name: str          # text | integer | number | boolean | list
    wanted: str        # how the kind is described in an error ("a whole number", ...)

    def accepts(self, value: Any) -> bool:
        """Whether a value read from a YAML/JSON layer has this kind (before any range or pattern check)."""
        if self.name == "text":
            return isinstance(value, (str, int, float)) and not isinstance(value, bool)
        if self.name == "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and _DIGITS.fullmatch(value.strip()) is not None)
        if self.name == "number":
            return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                isinstance(value, str) and _parse_number(value) is not None)
        if self.name == "boolean":
            return isinstance(value, bool)
        if self.name == "list":
            if isinstance(value, str):
                return True  # one item where a list is wanted: a common slip, taken as a list of one
            return isinstance(value, (list, tuple)) and all(
                isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value)
        if self.name == "mapping":
            return isinstance(value, Mapping) and all(
                isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                for k, v in value.items())
        raise AssertionError(self.name)

    def coerce(self, value: Any) -> Any:
        """A value this kind accepts, in its canonical Python type."""
        if self.name == "text":
            return value if isinstance(value, str) else _number_text(value)
        if self.name == "integer":
            return int(value) if isinstance(value, int) else int(value.strip())
        if self.name == "number":
            number = float(value) if not isinstance(value, str) else _parse_number(value)
            return int(number) if float(number).is_integer() else number
        if self.name == "list":
            if isinstance(value, str):
                return (value,) if value else ()
            return tuple(item if isinstance(item, str) else _number_text(item) for item in value)
        if self.name == "mapping":
            return {k: v if isinstance(v, str) else _number_text(v) for k, v in sorted(value.items())}
        return value

    def from_env(self, text: str) -> Any:
        """An INVOKE_* string as a value of this kind; raises ValueError with the reason."""
        if self.name == "text":
            return text
        if self.name == "integer":
            if not _DIGITS.fullmatch(text.strip()):
                raise ValueError("is not a whole number")
            return int(text.strip())
        if self.name == "number":
            number = _parse_number(text)
            if number is None:
                raise ValueError("is not a number")
            return self.coerce(number)  # "2" is 2, as it is in a YAML file
        if self.name == "boolean":
            word = text.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError("is not true or false")
        if self.name == "list":
            return _env_list(text)
        if self.name == "mapping":
            return _env_mapping(text)
        raise AssertionError(self.name)


TEXT = Kind("text", "text")
INTEGER = Kind("integer", "a whole number")
NUMBER = Kind("number", "a number")
BOOLEAN = Kind("boolean", "true or false")
LIST = Kind("list", "a list such as [a, b]")
MAPPING = Kind("mapping", "a mapping such as {key: value}")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes '²', which int() refuses
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _parse_number(text: str) -> float | None:
    if not re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and "e" not in repr(value) \
        else str(value)


def _env_list(text: str) -> tuple[str, ...]:
    """`[a, b]` (a YAML flow list) or one item; "" is the empty list."""
    import yaml

    stripped = text.strip()
    if not stripped:
        return ()
    if not stripped.startswith("["):
        return (text,)
    try:
        value = yaml.safe_load(stripped)
    except yaml.YAMLError:
        raise ValueError("is not a YAML list such as [a, b]") from None
    if not isinstance(value, list) or not LIST.accepts(value):
        raise ValueError("is not a list of plain values such as [a, b]")
    return LIST.coerce(value)


def _env_mapping(text: str) -> dict[str, str]:
    """`{a: b, c: d}` (a YAML flow mapping); "" is the empty mapping."""
    import yaml

    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError("is not a YAML mapping such as {key: value}") from None
    if not MAPPING.accepts(value):
        raise ValueError("is not a mapping of plain values such as {key: value}")
    return MAPPING.coerce(value)


# ---------------------------------------------------------------------------------------------------------------
# Checks of one value


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


Check = Callable[[str, Any, Context], Any]


def no_control_characters(key: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ConfigError(key, value, "holds a control character (a line break, a tab, ...)",
                          "remove it; a value is one line of plain text")


def with_fix(fix: str) -> Callable[[Check], Check]:
    """Attach the fix a check suggests, so that a value of the wrong kind gets the same advice."""

    def attach(check: Check) -> Check:
        check.fix = fix  # type: ignore[attr-defined]
        return check

    return attach


def text(pattern: str | None = None, fix: str = "set a value", allow_empty: bool = False,
         refuse: Callable[[str], str | None] | None = None) -> Check:
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


def integer(low: int, high: int, unit: str = "", refuse: Mapping[int, str] | None = None) -> Check:
    def check(key: str, value: int, _: Context) -> int:
        if not low <= value <= high:
            raise ConfigError(key, value, "is out of range", f"set a number from {low} to {high}{unit}")
        if refuse and value in refuse:
            raise ConfigError(key, value, refuse[value], f"set another number from {low} to {high}{unit}")
        return value

    return with_fix(f"set a number from {low} to {high}{unit}")(check)


def number(low_exclusive: float, high: float, fix: str) -> Check:
    def check(key: str, value: float, _: Context) -> float:
        if not low_exclusive < value <= high:
            raise ConfigError(key, value, "is out of range", fix)
        return value

    return with_fix(fix)(check)


def choice(*choices: str) -> Check:
    def check(key: str, value: str, _: Context) -> str:
        if value not in choices:
            raise ConfigError(key, value, "is not one of the choices", f"use one of: {', '.join(choices)}")
        return value

    return with_fix(f"use one of: {', '.join(choices)}")(check)


def boolean(key: str, value: bool, _: Context) -> bool:
    return value


def list_of(item: Check, allow_empty: bool = True, unique: bool = True) -> Check:
    def check(key: str, value: tuple[str, ...], context: Context) -> tuple[Any, ...]:
        if not value and not allow_empty:
            raise ConfigError(key, list(value), "is empty", "give at least one entry")
        if unique:
            seen = [v for i, v in enumerate(value) if v in value[:i]]
            if seen:
                raise ConfigError(key, list(value), f"lists {seen[0]!r} twice", "list each entry once")
        return tuple(item(key, entry, context) for entry in value)

    return check


def mapping_of(key_pattern: str, value: Check, fix: str) -> Check:
    compiled = re.compile(key_pattern)

    def check(key: str, mapping: dict[str, str], context: Context) -> dict[str, str]:
        for name, item in mapping.items():
            no_control_characters(key, name)
            if not compiled.fullmatch(name):
                raise ConfigError(key, name, "is not a valid key", fix)
            value(f"{key}.{name}", item, context)
        return dict(mapping)

    return with_fix(fix)(check)


def optional(inner: Check) -> Check:
    def check(key: str, value: Any, context: Context) -> Any:
        return None if value == "" else inner(key, value, context)

    return check


def existing_file(kind: str = "") -> Check:
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


def requirement(vcs: bool = False) -> Check:
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


# ---------------------------------------------------------------------------------------------------------------
# The settings


@dataclass(frozen=True)
class Setting:
    key: str           # section.name
    kind: Kind
    check: Check
    doc: str           # the comment beside the key in invoke.yaml

    @property
    def section(self) -> str:
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        return self.key.partition(".")[2]

    @property
    def env_var(self) -> str:
        return "INVOKE_" + self.key.replace(".", "_").upper()


def _s(key: str, kind: Kind, check: Check, doc: str) -> Setting:
    return Setting(key, kind, check, doc)


SETTINGS: tuple[Setting, ...] = (
    # vm
    _s("vm.name", TEXT, text(r"[a-z0-9][a-z0-9-]{0,62}", "use lower-case letters, digits and dashes, such as "
                             "jupyterhub-vm"), "name of the VM, the box and the exported appliance"),
    _s("vm.hostname", TEXT, text(HOST_LABEL, "use lower-case letters, digits and dashes, such as jupyterhub"),
       "host name inside the guest"),
    _s("vm.ip", TEXT, ip_address, 'host-only address of the VM, or "dhcp"; VirtualBox allows 192.168.56.0/21 by '
       "default"),
    _s("vm.data", TEXT, data_folder, 'host folder offered to every hub user as ~/shared_data, or "none" (sample '
       "files)"),
    _s("vm.cpus", INTEGER, integer(1, 64), "virtual CPUs, 1 to 64"),
    _s("vm.memory_mb", INTEGER, integer(1024, 262144, " MiB"), "memory in MiB, 1024 to 262144 (the hub needs at "
       "least 1 GiB)"),
    _s("vm.disk_gb", INTEGER, integer(8, 2048, " GiB"), "disk size in GiB, 8 to 2048"),
    _s("vm.provider", TEXT, choice("virtualbox", "libvirt"), "virtualbox | libvirt"),
    _s("vm.accelerator", TEXT, choice("kvm", "tcg"), "QEMU/libvirt only: kvm | tcg (software emulation, ~6x "
       "slower; hosts without working KVM)"),
    _s("vm.os", TEXT, known_os, 'debian12 (Debian 12 "bookworm") | ubuntu2404 (Ubuntu 24.04 "noble")'),
    _s("vm.timezone", TEXT, timezone, "guest time zone, a name from the tz database"),
    _s("vm.locale", TEXT, text(r"([a-z]{2,3}_[A-Z]{2}|C)\.UTF-8", "write a UTF-8 locale such as en_US.UTF-8 or "
                               "C.UTF-8"), "guest locale"),
    _s("vm.hub_host_port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "host port forwarded to the hub (127.0.0.1:8080 -> guest port hub.port)"),
    _s("vm.hub_https_host_port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "host port forwarded to the hub's HTTPS (127.0.0.1:8443 -> guest port hub.https_port)"),
    # build
    _s("build.mode", TEXT, choice("vm", "native"), "vm (Packer's box, provisioned in a VM by Vagrant) | native "
       "(image.source mirror: provisioned in a container, booted once to verify)"),
    # image
    _s("image.source", TEXT, choice("iso", "cloud", "mirror"), "iso (installer + preseed/autoinstall) | cloud "
       "(official cloud image) | mirror (built from a package mirror, no installer)"),
    _s("image.url", TEXT, image_url, 'base image URL or path; "" takes the OS\'s default for the source '
       "(templates/packer/os/<os>.yaml)"),
    _s("image.checksum", TEXT, checksum, '"sha256:<hex>" or "file:<URL of a SHA256SUMS>"; "" takes the default\'s '
       "checksum"),
    _s("image.mirror", TEXT, text(URL, 'set an http:// or https:// URL, or "" for the default', allow_empty=True),
       'package mirror for source "mirror"; "" takes the OS\'s default (deb.debian.org)'),
    # ssh
    _s("ssh.user", TEXT, text(UNIX_NAME, "use a Unix login name such as vagrant (not root or a system account)",
                              refuse=not_a_system_account), "login of the build VM (Vagrant's convention)"),
    # typed into preseed/autoinstall and Packer's `echo '...' | sudo -S`: no quotes, spaces, backslashes, $ or `
    _s("ssh.password", TEXT, text(r"[^'\"\\\s`$]{1,128}", "use letters, digits and punctuation other than quotes, "
                                  "backslash, $ and `"), "its build-time password (the exported image locks it, "
       "but for export.keep_vagrant_access)"),
    _s("ssh.port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "Vagrant's forwarded SSH port on 127.0.0.1"),
    _s("ssh.via", TEXT, choice("forwarded", "ip"), "how verify/ssh reach the VM: forwarded (127.0.0.1:port) | ip "
       "(vm.ip, or the DHCP lease)"),
    _s("ssh.identity", TEXT, optional(existing_file("private key")), 'private key for verify/ssh/provision; "" '
       "uses the key Vagrant reports"),
    _s("ssh.connect_timeout", INTEGER, integer(1, 600, " seconds"), "seconds for one SSH connection attempt"),
    _s("ssh.wait", INTEGER, integer(0, 3600, " seconds"), "seconds verify and ssh keep retrying while the VM boots "
       "(SSH, then the hub)"),
    # tools
    *(_s(f"tools.{name}", TEXT, tool_command, doc) for name, doc in (
        ("packer", "Packer"), ("vagrant", "Vagrant"), ("vboxmanage", "VirtualBox's VBoxManage"),
        ("virsh", "libvirt's virsh"), ("qemu_img", "qemu-img"), ("qemu_system", "QEMU for x86_64 guests"),
        ("ansible_playbook", "Ansible's ansible-playbook"), ("mmdebstrap", "mmdebstrap (image.source mirror)"))),
    # hub
    _s("hub.flavour", TEXT, choice("tljh", "pypi"), "tljh (The Littlest JupyterHub's installer, needs GitHub) | "
       "pypi (Debian packages + PyPI)"),
    _s("hub.tljh_version", TEXT, version, "TLJH release the installer pins"),
    _s("hub.tljh_plugins", LIST, list_of(requirement(vcs=True)), "TLJH plugins, pip specs (or git+https://...) "
       "passed as --plugin"),
    _s("hub.admin_users", LIST, list_of(text(HUB_NAME, "use names of lower-case letters, digits, - and _, such "
                                              "as admin (not root or a system account)", refuse=not_a_system_account),
                                         allow_empty=False),
       "hub administrators; each gets a password before the hub first answers (below)"),
    _s("hub.memory_limit", TEXT, memory_limit, "memory limit of each user's server"),
    _s("hub.cpu_limit", NUMBER, number(0, 256, "set a number of CPUs above 0, such as 1 or 0.5"),
       "CPU limit of each user's server"),
    _s("hub.default_app", TEXT, choice("jupyterlab", "classic"), "jupyterlab | classic (Notebook 7)"),
    _s("hub.port", INTEGER, integer(1, 65535, refuse={22: "is the guest's SSH port"}),
       "port the hub listens on inside the guest (HTTP; redirected to HTTPS when hub.https is on)"),
    _s("hub.signup", TEXT, choice("closed", "open"), "closed (only accounts that exist: admins, imported users) | "
       "open (anyone reaching the hub makes an account)"),
    _s("hub.admin_password_hashes", MAPPING, mapping_of(
        HUB_NAME, text(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}", "give a bcrypt hash ($2b$12$...), such as "
                       "python3 -c 'import bcrypt; print(bcrypt.hashpw(b\"...\", bcrypt.gensalt()).decode())' prints"),
        "write {admin: $2b$12$...}: an admin's name and the bcrypt hash of their password"),
       "admin -> bcrypt hash of their password; an admin not listed gets one generated on the machine"),
    _s("hub.https", TEXT, choice("self-signed", "files", "acme", "off"), "self-signed (made on each copy) | files "
       "(hub.https_cert_file/key_file) | acme (Let's Encrypt) | off"),
    _s("hub.https_port", INTEGER, integer(1, 65535, refuse={22: "is the guest's SSH port"}),
       "port of the hub's HTTPS inside the guest"),
    _s("hub.https_cert_file", TEXT, optional(existing_file("pem")), 'hub.https files: the certificate (PEM, its '
       'chain after it); ""'),
    _s("hub.https_key_file", TEXT, optional(existing_file("private key")), "hub.https files: its private key "
       '(PEM); ""'),
    _s("hub.https_acme_domain", TEXT, text(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
                                           "give the hub's public DNS name, such as hub.example.org",
                                           allow_empty=True), "hub.https acme: the hub's public DNS name"),
    _s("hub.https_acme_email", TEXT, text(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}",
                                          "give an e-mail address for Let's Encrypt's notices", allow_empty=True),
       "hub.https acme: the e-mail address Let's Encrypt writes to"),
    # packages
    _s("packages.python", LIST, list_of(requirement()), "pip requirements installed where the users' kernels run"),
    _s("packages.r", LIST, list_of(text(r"r-(cran|bioc|other)-[a-z0-9][a-z0-9.+-]*", "use Debian package names "
                                        "such as r-cran-ggplot2")), "R packages by their Debian/Ubuntu package "
       "names (r-cran-*, r-bioc-*)"),
    _s("packages.cran", LIST, list_of(text(r"[A-Za-z][A-Za-z0-9.]*", "use CRAN package names such as ggplot2")),
       "R packages installed from CRAN sources (needs CRAN reachable)"),
    _s("packages.bioconductor", LIST, list_of(text(r"[A-Za-z][A-Za-z0-9.]*", "use Bioconductor package names "
                                                   "such as limma")), "R packages installed with BiocManager "
       "(needs Bioconductor reachable)"),
    _s("packages.cran_repo", TEXT, text(URL, "set an http:// or https:// URL"), "CRAN mirror for packages.cran "
       "and packages.bioconductor"),
    # guest
    _s("guest.apt_mirror", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'apt mirror for the guest; "" keeps the distribution\'s default'),
    _s("guest.pip_index_url", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'PyPI index (or mirror) for pip in the guest; "" keeps pypi.org'),
    _s("guest.http_proxy", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'proxy for HTTP in the guest (apt, pip, curl); "" for none'),
    _s("guest.https_proxy", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'proxy for HTTPS in the guest; "" for none'),
    _s("guest.no_proxy", TEXT, no_proxy, "hosts, domains and networks the guest reaches without the proxy"),
    _s("guest.ca_certificates", LIST, list_of(existing_file("pem")), "host paths of PEM CA certificates the guest "
       "must trust (a TLS-intercepting proxy's CA)"),
    # export
    _s("export.formats", LIST, list_of(choice("ovf", "ova", "qcow2"), allow_empty=False), "what builds/vm/ holds: "
       "ovf (OVF + VMDK) | ova | qcow2 (libvirt, OpenStack)"),
    _s("export.compression", TEXT, choice("zlib", "zstd", "none"), "the qcow2's compression: zlib (any QEMU) | zstd "
       "(about 5x faster to make; QEMU >= 5.1) | none"),
    _s("export.ssh_user", TEXT, text(UNIX_NAME, "use a Unix login name such as hubadmin (not root or a system "
                                     "account)", refuse=not_a_system_account),
       "login created in the exported appliance for its administrator"),
    _s("export.ssh_public_key", TEXT, optional(existing_file("public key")), 'public key file authorised for '
       'export.ssh_user; "": the appliance has no SSH logins'),
    _s("export.keep_vagrant_access", BOOLEAN, boolean, "keep the vagrant user, its password and Vagrant's "
       "insecure key in the exported image"),
    # publish
    _s("publish.cloud", TEXT, text(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "give the name of a cloud in clouds.yaml, or "
                                   '"" for OS_CLOUD and the OS_* variables', allow_empty=True),
       'a cloud of clouds.yaml; "" reads OS_CLOUD or the OS_* variables (as openstack does)'),
    _s("publish.image_name", TEXT, text(r"[A-Za-z0-9][A-Za-z0-9 ._+:@()-]{0,254}", "use letters, digits, spaces and "
                                        '._+:@()- (at most 255), or "" for the default', allow_empty=True),
       '"" = <vm.name>-<distro>-<version>-<export date>-<first 8 of the qcow2\'s sha256>'),
    _s("publish.disk_format", TEXT, choice("qcow2", "raw"), "qcow2, or raw (converted locally with qemu-img; what "
       "Ceph-backed clouds want)"),
    _s("publish.visibility", TEXT, choice("private", "shared", "community", "public"), "private | shared | "
       "community | public (public usually needs the cloud admins' policy)"),
    _s("publish.tags", LIST, list_of(text(r"[A-Za-z0-9][A-Za-z0-9 ._:@/+-]{0,254}", "use tags of letters, digits and "
                                          "._:@/+- such as jupyterhub")), "Glance image tags"),
    _s("publish.properties", MAPPING, mapping_of(
        r"[a-z][a-z0-9_:.-]{0,254}", text(r"[^\x00-\x1f\x7f]{0,255}", "use one line of text"),
        "write {hw_scsi_model: virtio-scsi}: lower-case keys, one-line values"),
       "extra Glance properties over the derived ones (e.g. hw_scsi_model: virtio-scsi)"),
    _s("publish.min_disk_gb", INTEGER, integer(0, 65536, " GiB"), "0 = the qcow2's virtual size rounded up to whole "
       "GiB"),
    _s("publish.min_ram_mb", INTEGER, integer(0, 16777216, " MiB"), "the smallest flavor RAM the hub runs in"),
    _s("publish.disk_bus", TEXT, choice("", "virtio", "scsi", "sata", "ide"), 'hw_disk_bus; "" keeps Nova\'s default '
       "(virtio)"),
    _s("publish.active_timeout", INTEGER, integer(10, 86400, " seconds"), "seconds to wait for the uploaded image "
       "to become active"),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))


def all_keys() -> list[str]:
    return list(BY_KEY)


def section_keys(section: str) -> list[str]:
    return [s.name for s in SETTINGS if s.section == section]


def fix_of(setting: Setting) -> str | None:
    """The fix a setting's check suggests, where it has one."""
    return getattr(setting.check, "fix", None)


def suggest(word: str, choices: list[str], cutoff: float = 0.5) -> str | None:
    """The nearest of `choices` to `word` (case-insensitive), or None."""
    lowered = {c.lower(): c for c in choices}
    near = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[near[0]] if near else None
