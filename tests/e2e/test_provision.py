"""Provisioning proven on a real systemd host: `hubvm provision --host` with the pypi flavour, then what a user
sees (login, a server, Python and R kernels computing 5*4), `hubvm verify`, idempotence, and the export cleanup.

The host is a Debian 12 systemd-nspawn guest in a network namespace of this test (tests/e2e/hosts.py), reached
as root with a key made here. The host's CA certificates (/usr/local/share/ca-certificates/*.crt: this
machine's TLS-intercepting proxy) reach the guest through the project's own setting guest.ca_certificates.
Everything runs through the real `hubvm` command in a private copy of the project, so the working tree's
builds/ is never touched. Tests depend on each other's order (file order): provision, check, provision again,
clean up for export, reboot.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import HUBVM, copy_project
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import Namespace, NspawnHost, cached_rootfs, nspawn_host, remove_stale_namespaces, restart
from tests.e2e.hubclient import HubClient, HubError

pytestmark = pytest.mark.e2e

PYTHON_PACKAGES = {"six": "six", "idna": "idna"}  # distribution -> import name
R_PACKAGES = {"r-cran-jsonlite": "jsonlite", "r-cran-r6": "R6"}  # Debian package -> R library
USER, PASSWORD = "alice", "correct-horse-battery"
ADMIN_USER = "hubadmin"
HOST_CA_CERTIFICATES = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


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
    settings: Path
    key: Path
    admin_key: Path
    home: Path
    stages: StageClock

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
        return self.run(HUBVM, "-f", str(self.settings), *args, timeout=timeout)

    @property
    def target(self) -> list[str]:
        return ["--host", f"root@{self.host.addr}", "--identity", str(self.key)]

    def hub(self) -> HubClient:
        return HubClient(f"http://{self.host.addr}")


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def site(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory, stages: StageClock) -> Iterator[Site]:
    remove_stale_namespaces()
    workdir = tmp_path_factory.mktemp("provision")
    key, admin_key = _keygen(workdir / "root_key"), _keygen(workdir / "admin_key")
    home = workdir / "home"
    home.mkdir()
    project = copy_project(workdir / "project")
    settings = workdir / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "vm": {"hostname": "hubtest", "timezone": "Europe/Berlin", "data": "none"},
                "hub": {"flavour": "pypi", "admin_users": ["admin"], "memory_limit": "1G", "cpu_limit": 1},
                "packages": {"python": list(PYTHON_PACKAGES), "r": list(R_PACKAGES), "cran": [], "bioconductor": []},
                "guest": {"ca_certificates": [str(path) for path in HOST_CA_CERTIFICATES]},
                "export": {"ssh_user": ADMIN_USER, "ssh_public_key": f"{admin_key}.pub"},
            }
        )
    )
    with stages.time("root filesystem (mmdebstrap, or the cached one)"):
        cached_rootfs()
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(Namespace(label="prov"))
        with stages.time("copy the root filesystem and boot the guest"):
            host = stack.enter_context(nspawn_host(ns, key, workdir, hostname="hubtest"))
        yield Site(host, project, settings, key, admin_key, home, stages)


@pytest.fixture(scope="module")
def first_provision(site: Site) -> Run:
    with site.stages.time("first provision (hubvm provision --host, pypi flavour)"):
        run = site.invoke("provision", *site.target)
    if run.returncode != 0 or run.recap().get("failed", 1) != 0:
        pytest.fail(f"the first provision failed ({run.returncode}):\n{run.tail()}")
    return run


def test_first_provision_succeeds(first_provision: Run) -> None:
    recap = first_provision.recap()
    print(f"first provision: {recap} in {first_provision.seconds:.0f} s")
    assert recap["changed"] > 0 and recap["failed"] == 0 and recap["unreachable"] == 0


def test_the_host_ca_reached_the_guest_through_the_setting(site: Site, first_provision: Run) -> None:
    vars_file = yaml.safe_load((site.project / "builds/ansible/vars.yml").read_text())
    assert [cert["name"] for cert in vars_file["base_ca_certificates"]] == [p.name for p in HOST_CA_CERTIFICATES]
    installed = site.host.ssh("ls /usr/local/share/ca-certificates/ && cat /etc/pip.conf").stdout
    for path in HOST_CA_CERTIFICATES:
        assert path.name in installed
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in installed


def test_hub_answers_its_api(site: Site, first_provision: Run) -> None:
    version = site.hub().version()
    print(f"JupyterHub {version}")
    assert re.match(r"\d+\.\d+", version)


def test_verify_passes(site: Site, first_provision: Run) -> None:
    with site.stages.time("hubvm verify"):
        run = site.invoke("verify", *site.target, timeout=300)
    assert run.returncode == 0, run.tail()


def test_user_logs_in_and_runs_python_and_r_kernels(site: Site, first_provision: Run) -> None:
    hub = site.hub()
    with site.stages.time("log in (first use sets the password) and start a server"):
        hub.login(USER, PASSWORD)
        hub.start_server()
    assert {"python3", "ir"} <= set(hub.kernelspecs())
    with site.stages.time("5*4 in a Python kernel and in an R kernel"):
        python = hub.run_code("python3", "5*4")
        r = hub.run_code("ir", "5*4")
    assert (python.text, python.error) == ("20", "")
    assert (r.text, r.error) == ("[1] 20", "")


def test_a_second_login_needs_the_first_password(site: Site, first_provision: Run) -> None:
    hub = site.hub()
    with pytest.raises(Exception, match="login as alice failed"):
        hub.login(USER, "some-other-password")


def test_every_configured_package_imports_in_the_kernels(site: Site, first_provision: Run) -> None:
    hub = site.hub()
    hub.login(USER, PASSWORD)
    hub.start_server()
    imports = ", ".join(PYTHON_PACKAGES.values())
    python = hub.run_code("python3", f"import {imports}; print('imported')")
    assert (python.text, python.error) == ("imported", "")
    libraries = "; ".join(f"library({name})" for name in R_PACKAGES.values())
    r = hub.run_code("ir", f"{libraries}; cat('loaded')")
    assert (r.text, r.error) == ("loaded", "")


def test_users_servers_run_with_limits_as_their_own_account(site: Site, first_provision: Run) -> None:
    unit = site.host.ssh(f"systemctl show jupyter-{USER} -p MemoryMax -p CPUQuotaPerSecUSec -p User").stdout
    assert "MemoryMax=1073741824" in unit and "CPUQuotaPerSecUSec=1s" in unit
    home = site.host.ssh(f"stat -c '%U %a' /home/jupyter-{USER} && readlink /home/jupyter-{USER}/shared_data")
    assert home.stdout.split() == [f"jupyter-{USER}", "700", "/srv/shared_data"]


def test_second_provision_changes_nothing(site: Site, first_provision: Run) -> None:
    with site.stages.time("second provision (idempotence)"):
        run = site.invoke("provision", *site.target)
    assert run.returncode == 0, run.tail()
    recap = run.recap()
    print(f"second provision: {recap} in {run.seconds:.0f} s")
    changed = re.findall(r"^changed: \[.*$|^TASK \[.*$", run.output, re.MULTILINE)
    assert recap["changed"] == 0, "\n".join(changed)


def test_cleanup_makes_a_clone_safe_image(site: Site, first_provision: Run) -> None:
    """The cleanup role (--tags cleanup), then a reboot as the first boot of a copy of the image."""
    host = site.host
    # A stand-in for the build login of a Vagrant box: password, key and passwordless sudo.
    host.ssh(
        "useradd --create-home --shell /bin/bash vagrant && echo vagrant:vagrant | chpasswd && "
        "install -d -m 700 -o vagrant -g vagrant ~vagrant/.ssh && "
        "install -m 600 -o vagrant -g vagrant ~/.ssh/authorized_keys ~vagrant/.ssh/ && "
        "echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant && chmod 440 /etc/sudoers.d/vagrant"
    )
    before = _instance_identity(host)
    command = [
        str(Path(HUBVM).parent / "ansible-playbook"),
        "-i", f"{host.addr},", "-u", "vagrant", "--become", "--private-key", str(site.key),
        "--ssh-common-args", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "-e", "@builds/ansible/vars.yml", "--tags", "cleanup", "ansible/playbook.yml",
    ]  # fmt: skip
    with site.stages.time("cleanup for export (--tags cleanup, as the vagrant login)"):
        run = site.run(*command, timeout=600, env={"ANSIBLE_CONFIG": "ansible/ansible.cfg"})
    assert run.returncode == 0, run.tail()
    # No new SSH connection works now (no host keys): look at the guest's files from outside.
    assert (host.root / "etc/machine-id").read_text() == ""
    assert list((host.root / "etc/ssh").glob("ssh_host_*")) == []
    assert not (host.root / "var/lib/jupyterhub/jupyterhub_cookie_secret").exists()

    host.user, host.identity = ADMIN_USER, site.admin_key
    with site.stages.time("first boot of the cleaned image"):
        restart(host)
    after = _instance_identity(host)
    for name in ("machine-id", "host key", "cookie secret"):
        assert after[name] and after[name] != before[name], name
    assert host.ssh("getent passwd vagrant || echo gone").stdout.strip() == "gone"
    assert host.ssh("test -e /etc/sudoers.d/vagrant || echo gone").stdout.strip() == "gone"
    denied = host.ssh("true", check=False, user="root", identity=site.key)
    assert denied.returncode != 0
    _wait_for_hub(site.hub())
    # The users' passwords went with the hub's secrets: alice chooses a new one.
    site.hub().login(USER, "a-new-password-after-export")


def _instance_identity(host: NspawnHost, timeout: float = 60) -> dict[str, str]:
    """What must differ between two copies of an image: machine ID, SSH host key, the hub's cookie secret."""
    files = {
        "machine-id": "etc/machine-id",
        "host key": "etc/ssh/ssh_host_ed25519_key.pub",
        "cookie secret": "var/lib/jupyterhub/jupyterhub_cookie_secret",
    }
    deadline = time.monotonic() + timeout
    while not all((host.root / path).exists() for path in files.values()):  # the hub makes its secret at start
        if time.monotonic() > deadline:
            raise TimeoutError(f"missing in the guest: {[p for p in files.values() if not (host.root / p).exists()]}")
        time.sleep(1)
    return {name: (host.root / path).read_text().strip() for name, path in files.items()}


def _wait_for_hub(hub: HubClient, timeout: float = 60) -> str:
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
