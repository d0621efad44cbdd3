"""A hub host of the end-to-end tests and the commands run against it: the real `hubvm` in a project copy, the
hub's web API over HTTPS, and the guest's files seen through its root filesystem."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import HUBVM, copy_project
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import Namespace, NspawnHost, cached_rootfs, copy_rootfs, nspawn_host, restart
from tests.e2e.hubclient import HubClient, HubError

SELF_SIGNED = "etc/hubvm/tls/self-signed.crt"
ADMIN_LOGIN = "hubadmin"
HOST_CA_CERTIFICATES = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
ADMIN_PASSWORDS = "root/hub-admin-passwords"


@dataclass
class Run:
    """One run of a command: its exit status, its output and how long it took."""

    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        """The counters of Ansible's PLAY RECAP line (ok, changed, unreachable, failed, ...)."""
        match = re.search(r"^\S+\s*:\s*(ok=\d+.*)$", self.output, re.MULTILINE)
        if not match:
            return {}
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


@dataclass
class Site:
    host: NspawnHost
    project: Path
    settings_file: Path
    key: Path
    admin_key: Path
    home: Path
    stages: StageClock
    passwords_file: Path
    login: str = "root"   # who the tool logs in as (with `key`); a copy of an export: its administrator login

    def run(self, *args: str, timeout: float = 1200, env: dict[str, str] | None = None) -> Run:
        """Run a command in the project copy, streaming its output (shown by pytest -s, kept for failures)."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        environment.update(HOME=str(self.home), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
        started = time.monotonic()
        lines = []
        with subprocess.Popen(
            args, cwd=self.project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                print(line, end="", flush=True)
                if time.monotonic() - started > timeout:
                    process.kill()
                    lines.append(f"\n(killed after {timeout:.0f} s)\n")
                    break
        return Run(process.wait(), "".join(lines), time.monotonic() - started)

    def invoke(self, *args: str, timeout: float = 1200) -> Run:
        return self.run(HUBVM, "-f", str(self.settings_file), *args, timeout=timeout)

    @property
    def target(self) -> list[str]:
        return ["--host", f"{self.login}@{self.host.addr}", "--identity", str(self.key)]

    def set_hub_settings(self, values: dict[str, object]) -> None:
        """Settings of the hub section, written into the -f file the commands read."""
        data = yaml.safe_load(self.settings_file.read_text())
        data["hub"].update(values)
        self.settings_file.write_text(yaml.safe_dump(data))

    def certificate_pem(self, path: str = SELF_SIGNED) -> str:
        return (self.host.root / path).read_text()

    def hub(self, pem: str | None = None, ca_file: Path | None = None) -> HubClient:
        """A client of the hub over HTTPS, trusting exactly the guest's certificate (or the given CA)."""
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
        else:
            context = ssl.create_default_context(cadata=pem or self.certificate_pem())
        return HubClient(f"https://{self.host.addr}", ssl_context=context)

    def admin_passwords(self) -> dict[str, str]:
        """The generated admin passwords, read from the guest's root-only file (through its root filesystem)."""
        lines = (self.host.root / ADMIN_PASSWORDS).read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))

    def import_users(self, csv_file: Path | None = None, reset: str | None = None) -> Path:
        """`hubvm users` against this host, as root with the test's key; returns the passwords file."""
        what = ["--csv", str(csv_file)] if csv_file else ["--reset", str(reset)]
        run = self.invoke("users", *what, *self.target, "--output", str(self.passwords_file), timeout=600)
        assert run.returncode == 0, run.tail()
        return self.passwords_file


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def wait_for_hub(hub: HubClient, timeout: float = 60) -> str:
    """The hub's version once it answers: after a boot the proxy listens first and says 404 until the hub has
    registered its route."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return hub.version()
        except (OSError, HubError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def passwords_of(path: Path) -> dict[str, tuple[str, str]]:
    with path.open() as file:
        return {row[0]: (row[1], row[2]) for row in csv.reader(file) if row[0] != "user"}


# ---------------------------------------------------------------------------------------------------------------
# Two hubs: A, and B a fresh copy of a newer export of it (the backup tests and benchmark)


def hub_settings(path: Path, python: list[str], admin_key: Path, hostname: str) -> Path:
    path.write_text(yaml.safe_dump({
        "vm": {"hostname": hostname, "data": "none"},
        "hub": {"flavour": "pypi", "admin_users": ["admin"], "memory_limit": "1G", "cpu_limit": 1},
        "packages": {"python": python, "r": ["r-cran-jsonlite"], "cran": [], "bioconductor": []},
        "guest": {"ca_certificates": [str(p) for p in HOST_CA_CERTIFICATES]},
        "export": {"ssh_user": ADMIN_LOGIN, "ssh_public_key": f"{admin_key}.pub"},
    }))
    return path


def provision(site: Site, what: str) -> Run:
    with site.stages.time(what):
        run = site.invoke("provision", *site.target)
    assert run.returncode == 0 and run.recap().get("failed", 1) == 0, run.tail()
    return run


def export_copy(b: Site) -> None:
    """Make B what a copy of an export is: the cleanup role (as `hubvm export` runs it), then its first boot."""
    playbook = str(Path(HUBVM).parent / "ansible-playbook")
    with b.stages.time("hub B: the export's cleanup, then the copy's first boot"):
        run = b.run(playbook, "-i", f"{b.host.addr},", "-u", "root", "--private-key", str(b.key),
                    "--ssh-common-args", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                    "-e", "@builds/ansible/vars.yml", "--tags", "cleanup", "ansible/playbook.yml",
                    env={"ANSIBLE_CONFIG": "ansible/ansible.cfg"})
        assert run.returncode == 0, run.tail()
        b.host.user, b.host.identity = ADMIN_LOGIN, b.admin_key
        restart(b.host)
        wait_for_hub(b.hub())
    b.login = ADMIN_LOGIN
    b.key = b.admin_key
    subprocess.run(["ssh-keygen", "-R", b.host.addr, "-f", str(b.project / "builds/ssh/known_hosts")],
                   capture_output=True, check=False)  # the copy made new host keys


@contextlib.contextmanager
def hub_pair(work: Path, stages: StageClock, python_a: list[str], python_b: list[str],
             prepare_b: Callable[[Site], dict[str, dict[str, Any]]] | None = None) -> Iterator[tuple[Site, Site]]:
    """Hub A, provisioned (pypi flavour, python_a), and hub B, a fresh copy of a newer export: A's image copied
    right after its provisioning, made clone-safe by the export's cleanup role, booted (its first boot makes its own
    secrets and admin passwords), then provisioned with python_b as its administrator login (and the settings
    prepare_b(B) returns, called just before). Both are stopped and their namespaces removed when the block ends,
    whatever happens."""
    key, admin_key = keygen(work / "root_key"), keygen(work / "admin_key")
    home = work / "home"
    home.mkdir(exist_ok=True)
    project = copy_project(work / "project")
    with stages.time("root filesystem (mmdebstrap, or the cached one)"):
        cached_rootfs()
    with contextlib.ExitStack() as stack:
        ns_a = stack.enter_context(Namespace(label="hubA"))
        with stages.time("hub A: boot"):
            host_a = stack.enter_context(nspawn_host(ns_a, key, work / "a", hostname="huba"))
        a = Site(host_a, project, hub_settings(work / "a.yaml", python_a, admin_key, "huba"), key, admin_key, home,
                 stages, work / "a-passwords.csv")
        provision(a, f"hub A: provision (pypi flavour, packages {', '.join(python_a)} and r-cran-jsonlite)")
        with stages.time("hub B: a copy of A's image (A powered off for the copy)"):
            host_a.process.send_signal(signal.SIGTERM)
            host_a.process.wait(timeout=60)
            copy_rootfs(host_a.root, work / "b-image")
            restart(host_a)
            wait_for_hub(a.hub())
        ns_b = stack.enter_context(Namespace(label="hubB"))
        with stages.time("hub B: boot the copy"):
            host_b = stack.enter_context(nspawn_host(ns_b, key, work / "b", hostname="hubb",
                                                     pristine=work / "b-image"))
        b = Site(host_b, project, hub_settings(work / "b.yaml", python_b, admin_key, "hubb"), key, admin_key,
                 home, stages, work / "b-passwords.csv")
        export_copy(b)
        if prepare_b is not None:
            settings = yaml.safe_load(b.settings_file.read_text())
            for section, values in prepare_b(b).items():
                settings.setdefault(section, {}).update(values)
            b.settings_file.write_text(yaml.safe_dump(settings))
        provision(b, f"hub B: provision the fresh copy with another package list ({', '.join(python_b)})"
                     + (" and a Binder repository" if prepare_b else ""))
        yield a, b
