"""A hub host of the end-to-end tests and the commands run against it: the real `hubvm` in a project copy, the
hub's web API over HTTPS, and the guest's files seen through its root filesystem."""

from __future__ import annotations

import csv
import os
import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import HUBVM
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import NspawnHost
from tests.e2e.hubclient import HubClient, HubError

SELF_SIGNED = "etc/hubvm/tls/self-signed.crt"
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
