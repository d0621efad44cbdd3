"""One validated settings object from the layered configuration.

`parse(raw, project_dir)` takes the merged mapping (invoke.yaml's defaults with every override applied) and returns
`Settings`, or raises ConfigError naming the key, the bad value and the fix. Nothing here reads invoke's context:
`hubvm.invoke_config` builds the mapping from invoke's layers.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from hubvm import PROJECT_DIR
from hubvm.errors import ConfigError, UserError

DEFAULTS_FILE = "invoke.yaml"
OS_DIR = Path("templates") / "os"

PROVIDERS = ("virtualbox", "libvirt")
ACCELERATORS = ("kvm", "tcg")
SOURCES = ("iso", "cloud", "mirror")
FLAVOURS = ("tljh", "pypi")
EXPORT_FORMATS = ("ovf", "ova", "qcow2")
SSH_VIA = ("forwarded", "ip")
DEFAULT_APPS = ("jupyterlab", "classic")
# VirtualBox >= 6.1.28 refuses host-only addresses outside this range unless /etc/vbox/networks.conf allows them.
VIRTUALBOX_HOST_ONLY = ipaddress.ip_network("192.168.56.0/21")
USER_ENVS = {"tljh": "/opt/tljh/user", "pypi": "/opt/jupyterhub/user"}

_UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_VM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCALE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}\.UTF-8$")
_MEMORY_LIMIT = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")
_DEBIAN_R_PACKAGE = re.compile(r"^r-(cran|bioc|other)-[a-z0-9][a-z0-9.+-]*$")
_R_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.]*$")
_CHECKSUM = re.compile(r"^((md5|sha1|sha256|sha512):[0-9a-fA-F]+|file:\S+|none)$")
_URL = re.compile(r"^(https?|file)://\S+$")


@dataclass(frozen=True)
class VM:
    name: str
    hostname: str
    ip: str
    data: Path | None
    cpus: int
    memory_mb: int
    disk_gb: int
    provider: str
    accelerator: str
    os: str
    timezone: str
    locale: str
    hub_host_port: int

    @property
    def dhcp(self) -> bool:
        return self.ip == "dhcp"


@dataclass(frozen=True)
class Image:
    source: str
    url: str
    checksum: str
    mirror: str


@dataclass(frozen=True)
class SSH:
    user: str
    password: str
    port: int
    via: str
    identity: Path | None
    connect_timeout: int
    wait: int


@dataclass(frozen=True)
class Tools:
    packer: str
    vagrant: str
    vboxmanage: str
    virsh: str
    qemu_img: str
    qemu_system: str
    ansible_playbook: str
    mmdebstrap: str


@dataclass(frozen=True)
class Hub:
    flavour: str
    tljh_version: str
    tljh_plugins: tuple[str, ...]
    admin_users: tuple[str, ...]
    memory_limit: str
    cpu_limit: float
    default_app: str
    port: int


@dataclass(frozen=True)
class Packages:
    python: tuple[str, ...]
    r: tuple[str, ...]
    cran: tuple[str, ...]
    bioconductor: tuple[str, ...]
    cran_repo: str


@dataclass(frozen=True)
class Guest:
    apt_mirror: str
    pip_index_url: str
    http_proxy: str
    https_proxy: str
    no_proxy: str
    ca_certificates: tuple[Path, ...]


@dataclass(frozen=True)
class Export:
    formats: tuple[str, ...]
    ssh_user: str
    ssh_public_key: Path | None
    keep_vagrant_access: bool


@dataclass(frozen=True)
class Settings:
    vm: VM
    image: Image
    ssh: SSH
    tools: Tools
    hub: Hub
    packages: Packages
    guest: Guest
    export: Export
    os_data: Mapping[str, Any] = field(repr=False, compare=False)
    project_dir: Path = PROJECT_DIR

    @property
    def user_env(self) -> str:
        """The environment the users' kernels run in (TLJH's conda env, or the pypi flavour's venv)."""
        return USER_ENVS[self.hub.flavour]

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (for digests and the manifest): paths as strings, tuples as lists."""
        sections = ("vm", "image", "ssh", "tools", "hub", "packages", "guest", "export")
        return {name: _plain(vars(getattr(self, name))) for name in sections}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------------------------
# Loading the defaults and merging layers


def yaml_error_line(path: object, error: Exception) -> str:
    """One line for a YAML syntax error: the file, the position, the problem, the fix."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{path}: malformed YAML{where}: {problem}; fix the file's syntax"


def load_yaml_file(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file; a malformed file is a one-line UserError naming the file and the position."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(yaml_error_line(path, error)) from None
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror}); check the path") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a {type(data).__name__}, not a mapping of settings; see invoke.yaml")
    return data


# Sections of invoke.yaml that configure invoke itself, not the tool
INVOKE_SECTIONS = frozenset({"tasks"})


def defaults(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """invoke.yaml: every setting with its default; its keys are the only keys there are."""
    return {k: v for k, v in load_yaml_file(project_dir / DEFAULTS_FILE).items() if k not in INVOKE_SECTIONS}


def merge(base: Mapping[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge like invoke: dicts merge key by key, any other value (lists included) replaces."""
    result = {k: (merge(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = merge(result[key], value)
            else:
                result[key] = merge(value) if isinstance(value, Mapping) else value
    return result


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"vm.ip": "dhcp"} -> {"vm": {"ip": "dhcp"}}; None values (flags not given) are dropped."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, leaf = key.partition(".")
        nested.setdefault(section, {})[leaf] = value
    return nested


def unknown_keys(layer: Mapping[str, Any], known: Mapping[str, Any], ignore: frozenset[str]) -> None:
    """Raise ConfigError for the first key of `layer` that `known` lacks, suggesting the nearest known key."""
    for section, body in layer.items():
        if section in ignore:
            continue
        if section not in known:
            raise ConfigError(section, body, "unknown setting", _suggest(section, list(known)))
        if not isinstance(body, Mapping):
            raise ConfigError(section, body, "is a section, not a value", f"set keys under it, see {DEFAULTS_FILE}")
        for key, value in body.items():
            if key not in known[section]:
                choices = [f"{section}.{k}" for k in known[section]]
                raise ConfigError(f"{section}.{key}", value, "unknown setting", _suggest(f"{section}.{key}", choices))


def _suggest(key: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    return f"did you mean {near[0]}?" if near else f"the known keys are in {DEFAULTS_FILE}"


# ---------------------------------------------------------------------------------------------------------------
# Checks of single values. Each takes (key, value, context) and returns the normalised value or raises ConfigError.

Check = Callable[[str, Any, "_Context"], Any]


@dataclass
class _Context:
    project_dir: Path
    raw: Mapping[str, Any]

    def path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.project_dir / path


def _integer(low: int, high: int, unit: str = "") -> Check:
    def check(key: str, value: Any, _: _Context) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
            raise ConfigError(key, value, "is not a whole number", f"set a number from {low} to {high}{unit}")
        number = int(value)
        if not low <= number <= high:
            raise ConfigError(key, value, "is out of range", f"set a number from {low} to {high}{unit}")
        return number

    return check


def _choice(choices: tuple[str, ...]) -> Check:
    def check(key: str, value: Any, _: _Context) -> str:
        if value not in choices:
            raise ConfigError(key, value, "is not one of the choices", f"use one of: {', '.join(choices)}")
        return value

    return check


def _text(pattern: re.Pattern[str] | None = None, hint: str = "", allow_empty: bool = False) -> Check:
    def check(key: str, value: Any, _: _Context) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "is not text", hint or "quote the value")
        if value == "" and allow_empty:
            return value
        if value == "" or (pattern is not None and not pattern.match(value)):
            raise ConfigError(key, value, "is not valid", hint or "set a value")
        return value

    return check


def _url(allow_empty: bool = True) -> Check:
    return _text(_URL, "set an http:// or https:// URL" + (', or "" for none' if allow_empty else ""), allow_empty)


def _boolean(key: str, value: Any, _: _Context) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "is not true or false", "set true or false (unquoted)")
    return value


def _list_of(item: Check, allow_empty: bool = True) -> Check:
    def check(key: str, value: Any, context: _Context) -> tuple[Any, ...]:
        if isinstance(value, str):  # one value where a list is wanted is a common slip: accept it
            value = [value] if value else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "is not a list", "write a YAML list such as [a, b]")
        if not value and not allow_empty:
            raise ConfigError(key, value, "is empty", "give at least one entry")
        return tuple(item(key, entry, context) for entry in value)

    return check


def _existing_file(pem: bool = False, public_key: bool = False) -> Check:
    def check(key: str, value: Any, context: _Context) -> Path:
        path = context.path(str(value))
        if not path.is_file():
            raise ConfigError(key, value, f"no such file ({path})", "give the path of an existing file")
        text = path.read_text(errors="replace")
        if pem and "-----BEGIN CERTIFICATE-----" not in text:
            raise ConfigError(key, value, "holds no PEM certificate", "give a PEM file (-----BEGIN CERTIFICATE-----)")
        if public_key and not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", text.strip()):
            raise ConfigError(key, value, "is not an OpenSSH public key", "give a .pub file (ssh-ed25519 AAAA...)")
        return path

    return check


def _optional(check: Check) -> Check:
    def wrapped(key: str, value: Any, context: _Context) -> Any:
        return None if value in ("", None) else check(key, value, context)

    return wrapped


def _ip(key: str, value: Any, context: _Context) -> str:
    if value == "dhcp":
        return value
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(key, value, "is not an IPv4 address",
                          'write four numbers like 192.168.56.10, or "dhcp"') from None
    if not address.is_private:
        raise ConfigError(key, value, "is not a private address", "use a host-only address such as 192.168.56.10")
    network = ipaddress.IPv4Network(f"{address}/24", strict=False)
    if address in (network.network_address, network.broadcast_address):
        raise ConfigError(key, value, f"is the network or broadcast address of {network}", "use a host address such as "
                          f"{network.network_address + 10}")
    if address == network.network_address + 1:
        raise ConfigError(key, value, f"is the host's own address on {network} (the host-only adapter takes .1)",
                          f"use another address such as {network.network_address + 10}")
    if context.raw["vm"]["provider"] == "virtualbox" and address not in VIRTUALBOX_HOST_ONLY:
        raise ConfigError(key, value, f"is outside VirtualBox's default host-only range {VIRTUALBOX_HOST_ONLY}",
                          "use an address such as 192.168.56.10, or allow the range in /etc/vbox/networks.conf")
    return str(address)


def _data_folder(key: str, value: Any, context: _Context) -> Path | None:
    if value in ("none", "", None):
        return None
    path = context.path(str(value))
    if not path.is_dir():
        raise ConfigError(key, value, f"no such folder ({path})", 'create it, or set "none" to ship sample files')
    return path


def _os(key: str, value: Any, context: _Context) -> str:
    known = sorted(p.stem for p in (context.project_dir / OS_DIR).glob("*.yaml"))
    if value not in known:
        raise ConfigError(key, value, "is not a known OS", f"use one of: {', '.join(known)}")
    return value


def _timezone(key: str, value: Any, _: _Context) -> str:
    zones = zoneinfo.available_timezones()
    if not isinstance(value, str) or (zones and value not in zones):
        near = difflib.get_close_matches(str(value), sorted(zones), n=1)
        raise ConfigError(key, value, "is not a time zone name", f"did you mean {near[0]}?" if near else
                          "use a tz database name such as Europe/Berlin or Etc/UTC")
    return value


def _memory_limit(key: str, value: Any, _: _Context) -> str:
    if not isinstance(value, str) or not _MEMORY_LIMIT.match(value):
        raise ConfigError(key, value, "is not a memory size", "write a number and a unit K, M, G or T, such as 2G")
    return value


def _positive_number(key: str, value: Any, _: _Context) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 256:
        raise ConfigError(key, value, "is not a CPU count", "set a number above 0, such as 1 or 0.5")
    return float(value)


def _version(key: str, value: Any, _: _Context) -> str:
    try:
        Version(str(value))
    except InvalidVersion:
        raise ConfigError(key, value, "is not a version", "write a release such as 2.0.0") from None
    return str(value)


def _requirement(key: str, value: Any, _: _Context) -> str:
    try:
        Requirement(str(value))
    except InvalidRequirement:
        raise ConfigError(key, value, "is not a pip requirement", "write a name with an optional version, "
                          "such as pandas or numpy>=1.26") from None
    return str(value)


def _checksum(key: str, value: Any, context: _Context) -> str:
    if value != "" and not (isinstance(value, str) and _CHECKSUM.match(value)):
        raise ConfigError(key, value, "is not a checksum", 'write "sha256:<hex>" or "file:<URL of a SHA256SUMS file>"')
    return value


CHECKS: dict[str, dict[str, Check]] = {
    "vm": {
        "name": _text(_VM_NAME, "use lower-case letters, digits and dashes, such as jupyterhub-vm"),
        "hostname": _text(_HOST_LABEL, "use lower-case letters, digits and dashes, such as jupyterhub"),
        "ip": _ip,
        "data": _data_folder,
        "cpus": _integer(1, 64),
        "memory_mb": _integer(1024, 262144, " MiB"),
        "disk_gb": _integer(8, 2048, " GiB"),
        "provider": _choice(PROVIDERS),
        "accelerator": _choice(ACCELERATORS),
        "os": _os,
        "timezone": _timezone,
        "locale": _text(_LOCALE, "write a UTF-8 locale such as en_US.UTF-8"),
        "hub_host_port": _integer(1024, 65535),
    },
    "image": {
        "source": _choice(SOURCES),
        "url": _text(None, "give a URL or a path", allow_empty=True),
        "checksum": _checksum,
        "mirror": _url(),
    },
    "ssh": {
        "user": _text(_UNIX_NAME, "use a Unix login name such as vagrant"),
        # it is typed into preseed/autoinstall and Packer's `echo '...' | sudo -S`: no quotes, spaces or backslashes
        "password": _text(re.compile(r"^[^'\"\\\s`$]+$"), "use letters, digits and punctuation other than quotes, "
                          "backslash, $ and `"),
        "port": _integer(1, 65535),
        "via": _choice(SSH_VIA),
        "identity": _optional(_existing_file()),
        "connect_timeout": _integer(1, 600, " seconds"),
        "wait": _integer(0, 3600, " seconds"),
    },
    "tools": dict.fromkeys(
        ("packer", "vagrant", "vboxmanage", "virsh", "qemu_img", "qemu_system", "ansible_playbook", "mmdebstrap"),
        _text(None, "give a command name or a path"),
    ),
    "hub": {
        "flavour": _choice(FLAVOURS),
        "tljh_version": _version,
        "tljh_plugins": _list_of(_requirement),
        "admin_users": _list_of(_text(_UNIX_NAME, "use Unix login names such as admin"), allow_empty=False),
        "memory_limit": _memory_limit,
        "cpu_limit": _positive_number,
        "default_app": _choice(DEFAULT_APPS),
        "port": _integer(1, 65535),
    },
    "packages": {
        "python": _list_of(_requirement),
        "r": _list_of(_text(_DEBIAN_R_PACKAGE, "use Debian package names such as r-cran-ggplot2")),
        "cran": _list_of(_text(_R_NAME, "use CRAN package names such as ggplot2")),
        "bioconductor": _list_of(_text(_R_NAME, "use Bioconductor package names such as limma")),
        "cran_repo": _url(allow_empty=False),
    },
    "guest": {
        "apt_mirror": _url(),
        "pip_index_url": _url(),
        "http_proxy": _url(),
        "https_proxy": _url(),
        "no_proxy": _text(None, allow_empty=True),
        "ca_certificates": _list_of(_existing_file(pem=True)),
    },
    "export": {
        "formats": _list_of(_choice(EXPORT_FORMATS), allow_empty=False),
        "ssh_user": _text(_UNIX_NAME, "use a Unix login name such as hubadmin"),
        "ssh_public_key": _optional(_existing_file(public_key=True)),
        "keep_vagrant_access": _boolean,
    },
}

SECTIONS = {"vm": VM, "image": Image, "ssh": SSH, "tools": Tools, "hub": Hub, "packages": Packages,
            "guest": Guest, "export": Export}


def parse(raw: Mapping[str, Any], project_dir: Path = PROJECT_DIR) -> Settings:
    """Validate the merged configuration and build Settings; the first problem raises ConfigError."""
    known = defaults(project_dir)
    unknown_keys(raw, known, frozenset())
    context = _Context(project_dir, raw)
    values: dict[str, dict[str, Any]] = {}
    for section, checks in CHECKS.items():
        body = raw.get(section, {})
        values[section] = {key: check(f"{section}.{key}", body.get(key), context) for key, check in checks.items()}
    os_data = load_yaml_file(project_dir / OS_DIR / f"{values['vm']['os']}.yaml")
    settings = Settings(**{name: cls(**values[name]) for name, cls in SECTIONS.items()},
                        os_data=os_data, project_dir=project_dir)
    _cross_checks(settings)
    return settings


def _cross_checks(s: Settings) -> None:
    """Rules between settings; each names the key a user would change."""
    if s.ssh.port == s.vm.hub_host_port:
        raise ConfigError("vm.hub_host_port", s.vm.hub_host_port, "is also ssh.port", "pick another host port")
    if s.image.source == "mirror" and s.vm.provider != "libvirt":
        raise ConfigError("image.source", "mirror", "builds a qcow2 disk for QEMU, which VirtualBox cannot boot",
                          "use iso or cloud with vm.provider virtualbox, or set vm.provider libvirt")
    if s.image.source == "cloud" and not s.image.url and s.vm.provider not in s.os_data.get("cloud", {}):
        raise ConfigError("image.source", "cloud", f"{s.os_data['name']} publishes no cloud image for "
                          f"{s.vm.provider}", "use image.source iso, or give image.url and image.checksum")
    if s.image.url and not s.image.checksum:
        raise ConfigError("image.checksum", "", "is empty while image.url is set",
                          'give "sha256:<hex>" or "file:<URL of a SHA256SUMS>"')
    if s.vm.provider == "libvirt" and {"ovf", "ova"} & set(s.export.formats):
        raise ConfigError("export.formats", list(s.export.formats), "ovf and ova come from VirtualBox builds",
                          "use [qcow2] with vm.provider libvirt")
    if s.export.ssh_user == s.ssh.user and not s.export.keep_vagrant_access:
        raise ConfigError("export.ssh_user", s.export.ssh_user, "is the build user the export removes",
                          "pick another name such as hubadmin")
    if s.ssh.via == "ip" and s.vm.dhcp and s.vm.provider == "virtualbox":
        raise ConfigError("ssh.via", "ip", "needs a known address, and VirtualBox reports no DHCP lease",
                          "set vm.ip to a static address, or ssh.via forwarded")


def image_source(s: Settings) -> dict[str, str]:
    """The base image's URL and checksum: the configured ones, else the OS's defaults for the source."""
    if s.image.url:
        return {"url": s.image.url, "checksum": s.image.checksum}
    if s.image.source == "iso":
        return {"url": s.os_data["iso"]["url"], "checksum": s.os_data["iso"]["checksum"]}
    if s.image.source == "cloud":
        return dict(s.os_data["cloud"][s.vm.provider])
    return {"url": s.image.mirror or s.os_data["mirror"]["url"], "checksum": "none"}
