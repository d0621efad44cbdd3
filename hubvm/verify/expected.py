"""What verify expects of a machine, from the settings: the hub's URLs, who may log in and HTTPS, the packages and
kernels, the shared data. Pure; the probe script (hubvm.verify.probe) and the evaluation (hubvm.verify.checks)
both read it here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from hubvm import binder, guest
from hubvm.config.settings import Settings

# What the Ansible roles make (the contract verify checks), from the one place that declares it
HUB_SERVICE = guest.HUB_SERVICE
SHARED_DATA = guest.SHARED_DATA_DIR
SKEL_LINK = guest.SKEL_LINK
SYSTEM_USER_PREFIX = guest.SYSTEM_USER_PREFIX
# The sample files the shared_data role ships when vm.data is none (relative to the project)
SAMPLES_DIR = Path("ansible/roles/shared_data/files/samples")
KERNELS = ("python3", "ir")
MIN_FREE_BYTES = 1 << 30
HTTP_TIMEOUT = 5          # seconds for one hub API request (from the guest and from the host)
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})
# Who may log in, and HTTPS (the hub role's /etc/hubvm/hub-access.json: password store, sign-up, HTTPS mode,
# certificate path)
HUB_ACCESS = guest.HUB_ACCESS
DEFAULT_HTTPS, DEFAULT_HTTPS_PORT, DEFAULT_SIGNUP = "self-signed", 443, "closed"
HTTPS_MODES = ("off", "self-signed", "files", "acme")


def hub_url(address: str, port: int, scheme: str = "http") -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}/hub/api"


@dataclass(frozen=True)
class AccessExpected:
    """What verify expects of who may log in and of HTTPS (from the settings)."""

    https: str = DEFAULT_HTTPS                 # off, self-signed, files, acme
    https_port: int = DEFAULT_HTTPS_PORT
    signup: str = DEFAULT_SIGNUP               # open, closed
    acme_domain: str = ""
    cert_file: Path | None = None              # files: the certificate given (its first block is the hub's)

    @property
    def on(self) -> bool:
        return self.https != "off"


def access_expected(s: Settings) -> AccessExpected:
    """What the settings say of sign-up and HTTPS."""
    return AccessExpected(https=s.hub.https, https_port=s.hub.https_port, signup=s.hub.signup,
                          acme_domain=s.hub.https_acme_domain, cert_file=s.hub.https_cert_file)


def guest_hub_url(s: Settings) -> str:
    """The hub's API from inside the guest: through its proxy, over HTTPS when HTTPS is on."""
    access = access_expected(s)
    if access.on:
        return hub_url("127.0.0.1", access.https_port, "https")
    return hub_url("127.0.0.1", s.hub.port)



def r_names(s: Settings) -> list[tuple[str, str]]:
    """(configured name, R package name to look for) for every R package the configuration installs."""
    names = []
    for debian in s.packages.r:
        names.append((debian, debian.split("-", 2)[2]))  # r-cran-data.table -> data.table
    names += [(name, name) for name in (*s.packages.cran, *s.packages.bioconductor)]
    return names


def python_names(s: Settings) -> list[tuple[str, Requirement]]:
    """(as configured, parsed) for packages.python, then the Binder folder's requirements.txt (and the files it
    includes), each said where it comes from."""
    names = [(spec, Requirement(spec)) for spec in s.packages.python]
    folder = binder.of(s)
    if folder:
        python = binder.RUNTIMES[s.vm.os]["python"]
        guest = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "python_version": python,
                 "python_full_version": f"{python}.0", "implementation_name": "cpython", "extra": ""}
        for r in folder.requirements:
            parsed = Requirement(r.text)
            if parsed.marker is None or parsed.marker.evaluate(guest):   # a Windows-only line is not expected
                names.append((f"{r.text} ({folder.config_prefix}{r.file} line {r.line})", parsed))
    return names




def shared_data_entries(s: Settings) -> list[str] | None:
    """The top-level entries the guest's shared data must hold: those of vm.data, or the shipped sample files."""
    folder = s.vm.data or s.project_dir / SAMPLES_DIR
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return None


