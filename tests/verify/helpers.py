"""What several verify test files share: settings from the repository's invoke.yaml, certificates made with
openssl and the guest's access section naming them, canned check results, and a MockContext answering Vagrant's
commands."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import textwrap
from pathlib import Path

from invoke import Config, MockContext

from hubvm.config import settings
from hubvm.verify.certificates import pem_to_der
from hubvm.verify.checks import Check
from hubvm.verify.expected import AccessExpected
from hubvm.verify.probe import Section
from tests.conftest import REPO, settings_with

SELF_SIGNED = AccessExpected("self-signed", 443, "closed")

SSH_CONFIG = textwrap.dedent("""\
    Host jupyterhub-vm
      HostName 127.0.0.1
      User vagrant
      Port 2200
      UserKnownHostsFile /dev/null
      StrictHostKeyChecking no
      PasswordAuthentication no
      IdentityFile /work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/private_key
      IdentitiesOnly yes
      LogLevel FATAL
    """)


def parse(**overrides: object) -> settings.Settings:
    """The repository's settings with overrides (for the tests that need no project copy)."""
    return settings_with(REPO, **overrides)


def make_certificate(directory: Path, name: str, san: str, issuer: tuple[Path, Path] | None = None
                     ) -> tuple[Path, Path]:
    """A certificate made with openssl like hubvm-hub-secrets makes it (self-signed), or signed by issuer."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key)]
    if issuer is None:
        subprocess.run(["openssl", "req", "-x509", *ec, "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:FALSE"],
                       check=True, capture_output=True)
    else:
        request, extensions = directory / f"{name}.csr", directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={san}\n")
        subprocess.run(["openssl", "req", *ec, "-out", str(request), "-subj", f"/CN={name}"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(issuer[1]), "-CAkey",
                        str(issuer[0]), "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile",
                        str(extensions)], check=True, capture_output=True)
    return key, cert


def der(cert: Path) -> bytes:
    return pem_to_der(cert.read_text())


def access_section(cert: Path | None, **fields: object) -> Section:
    """The probe script's access section as the guest prints it (hub_access.py), naming `cert` if given."""
    item: dict[str, object] = {"https": "self-signed", "https_port": 443, "http_port": 80, "signup": "closed",
                               "password_db": "/var/lib/jupyterhub/passwords.dbm",
                               "admins": {"admin": "bcrypt"}}
    if cert is not None:
        item.update(tls_cert=str(cert), cert_sha256=hashlib.sha256(der(cert)).hexdigest(), cert_pem=cert.read_text())
    item.update(fields)
    return Section(0, "@@hubvm-item " + json.dumps(item))


def mock(run: dict, dry: bool = False) -> MockContext:
    """A MockContext answering commands that end with each key (they run as `cd builds/vagrant && .../vagrant ...`)."""
    answers = {re.compile(rf".*{re.escape(command)}$"): result for command, result in run.items()}
    return MockContext(config=Config(overrides={"run": {"dry": dry}}), run=answers)


# Results of three checks, one passed (the table, the summary and verify's JSON are made of them)
RESULTS = [Check("os", "Debian 12 (bookworm)", "Debian GNU/Linux 12 (bookworm)", True),
           Check("hub service", "jupyterhub active", "inactive", False),
           Check("package pandas", "pandas imports in /opt/tljh/user", "not installed", False)]
