"""The tljh flavour's exact commands, on a real systemd host, with a stand-in for TLJH's installer.

TLJH's real installer downloads TLJH, Miniforge and traefik from GitHub, which this machine cannot reach. So the
roles base and hub run (`--tags base,hub`, hub_flavour tljh) against a systemd-nspawn Debian 12 guest whose
installer URL points at a stand-in (file:// in the guest). The stand-in records its command line and
environment, then makes what the playbook relies on afterwards: a `tljh-config` (which records each call and
keeps the configuration, as TLJH does, in config/config.yaml), and jupyterhub/traefik units whose hub answers
/hub/api on http.port. The tests assert the installer's exact arguments and environment (proxy and CA settings
passed through), that a failed install fails the play, that tljh-config sets only values that differ and
reloads what reads them, and that an unchanged second run changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import Namespace, NspawnHost, nspawn_host, remove_stale_namespaces

pytestmark = pytest.mark.e2e

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
CALLS = "/root/tljh-calls.jsonl"
FAIL_FLAG = "/root/fake-tljh-fail"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

FAKE_BOOTSTRAP = r'''
"""Stand-in for TLJH's bootstrap.py (see tests/e2e/test_tljh_flavour.py)."""
import json, os, pathlib, subprocess, sys

CALLS = pathlib.Path("/root/tljh-calls.jsonl")
ENV_NAMES = ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
             "REQUESTS_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "CONDA_SSL_VERIFY", "TLJH_INSTALL_PREFIX"]
with CALLS.open("a") as calls:
    calls.write(json.dumps({"tool": "bootstrap", "argv": sys.argv[1:],
                            "env": {k: os.environ[k] for k in ENV_NAMES if k in os.environ}}) + "\n")
if pathlib.Path("/root/fake-tljh-fail").exists():
    print("stand-in installer: failing as asked", file=sys.stderr)
    sys.exit(1)

prefix = pathlib.Path(os.environ.get("TLJH_INSTALL_PREFIX", "/opt/tljh"))
for sub in ("hub/bin", "config", "state"):
    (prefix / sub).mkdir(parents=True, exist_ok=True)
# The user environment, made once as TLJH makes it (an upgrade keeps it), with what a fresh one has from TLJH's
# requirements-user-env-extras.txt as far as the roles look: pip, and nbgitpuller (a stand-in distribution)
user_env = prefix / "user"
if not (user_env / "bin" / "pip").exists():
    subprocess.run([sys.executable, "-m", "venv", str(user_env)], check=True)
    site = subprocess.run([str(user_env / "bin" / "python"), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True,
                          text=True).stdout.strip()
    info = pathlib.Path(site) / "nbgitpuller-1.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nbgitpuller\nVersion: 1.3.0\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("nbgitpuller/__init__.py,,\nnbgitpuller-1.3.0.dist-info/METADATA,,\n"
                                 "nbgitpuller-1.3.0.dist-info/INSTALLER,,\nnbgitpuller-1.3.0.dist-info/RECORD,,\n")
    (pathlib.Path(site) / "nbgitpuller").mkdir()
    (pathlib.Path(site) / "nbgitpuller" / "__init__.py").write_text("__version__ = '1.3.0'\n")
config_file = prefix / "config" / "config.yaml"
config = json.loads(config_file.read_text()) if config_file.exists() else {}
admins = [sys.argv[i + 1] for i, arg in enumerate(sys.argv) if arg == "--admin"]
config.setdefault("users", {})["admin"] = admins
config_file.write_text(json.dumps(config))

tljh_config = prefix / "hub" / "bin" / "tljh-config"
tljh_config.write_text("""#!/usr/bin/python3
import json, pathlib, re, subprocess, sys
record = {"tool": "tljh-config", "argv": sys.argv[1:]}
pathlib.Path("/root/tljh-calls.jsonl").open("a").write(json.dumps(record) + "\\n")
path = pathlib.Path(__file__).resolve().parents[2] / "config" / "config.yaml"
config = json.loads(path.read_text())
action, *args = sys.argv[1:]
if action in ("set", "add-item"):
    key, value = args
    if re.fullmatch(r"\\d+", value): value = int(value)
    elif re.fullmatch(r"\\d+\\.\\d*", value): value = float(value)
    elif value.lower() in ("true", "false"): value = value.lower() == "true"
    node = config
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    if action == "set":
        node[key.split(".")[-1]] = value
    else:
        node.setdefault(key.split(".")[-1], []).append(value)
    path.write_text(json.dumps(config))
elif action == "reload":
    unit = {"hub": "jupyterhub", "proxy": "traefik"}[args[0] if args else "hub"]
    subprocess.run(["systemctl", "restart", unit], check=True)
    if unit == "traefik":
        subprocess.run(["systemctl", "restart", "jupyterhub"], check=True)  # the stand-in hub serves http.port
else:
    sys.exit("stand-in tljh-config: unsupported " + action)
""")
tljh_config.chmod(0o755)

(prefix / "hub" / "fake_hub.py").write_text("""import http.server, json, pathlib, ssl, subprocess, threading
# The stand-in hub and proxy: /hub/api on http.port, or (https.enabled) on https.port with https.tls.cert, or a
# certificate of its own as traefik serves while it has none from Let's Encrypt, and HTTP redirecting to HTTPS.
config = json.loads((pathlib.Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
http_port = int(config.get("http", {}).get("port", 80))
https = config.get("https", {})
class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path.rstrip("/") == "/hub/api"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"version": "2.0.0-stand-in"}).encode() if ok else b"{}")
class Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(301)
        self.send_header("Location", "https://" + self.headers.get("Host", "").split(":")[0] + self.path)
        self.end_headers()
if not https.get("enabled"):
    http.server.ThreadingHTTPServer(("0.0.0.0", http_port), Hub).serve_forever()
tls = https.get("tls", {})
cert, key = tls.get("cert"), tls.get("key")
if not cert:
    cert, key = "/run/fake-traefik.crt", "/run/fake-traefik.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=TRAEFIK DEFAULT CERT"],
                   check=True, capture_output=True)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
secure = http.server.ThreadingHTTPServer(("0.0.0.0", int(https.get("port", 443))), Hub)
secure.socket = context.wrap_socket(secure.socket, server_side=True)
threading.Thread(target=http.server.ThreadingHTTPServer(("0.0.0.0", http_port), Redirect).serve_forever,
                 daemon=True).start()
secure.serve_forever()
""")
install = "[Install]\nWantedBy=multi-user.target\n"
units = {
    "jupyterhub": f"[Service]\nExecStart=/usr/bin/python3 {prefix}/hub/fake_hub.py\n{install}",
    "traefik": f"[Service]\nExecStart=/bin/sleep infinity\n{install}",
}
for name, text in units.items():
    pathlib.Path(f"/etc/systemd/system/{name}.service").write_text(text)
subprocess.run(["systemctl", "daemon-reload"], check=True)
subprocess.run(["systemctl", "enable", "--now", "jupyterhub", "traefik"], check=True)
'''


@dataclass
class Guest:
    host: NspawnHost
    key: Path
    workdir: Path
    stages: StageClock

    def provision(self, **variables: object) -> subprocess.CompletedProcess:
        """Roles base and hub, tljh flavour, with the stand-in installer and the given variables on top."""
        values = {
            "hub_flavour": "tljh",
            "hub_tljh_bootstrap_url": "file:///root/fake-tljh-bootstrap.py",
            "hub_tljh_version": "2.0.0",
            "hub_admin_users": ["admin"],
            "hub_tljh_plugins": [],
            "hub_memory_limit": "2G",
            "hub_cpu_limit": 2,
            "hub_default_app": "jupyterlab",
            "hub_port": 80,
            "hub_user_env": "/opt/tljh/user",
            "base_hostname": "tljhtest",
            **variables,
        }
        vars_file = self.workdir / f"vars-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(values))
        command = [
            ANSIBLE_PLAYBOOK, "-i", f"{self.host.addr},", "-u", "root", "--private-key", str(self.key),
            "--ssh-common-args", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "-e", f"@{vars_file}", "--tags", "base,hub", "ansible/playbook.yml",
        ]  # fmt: skip
        environment = {"ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), "PATH": "/usr/bin:/bin"}
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=environment)
        print(result.stdout[-3000:], result.stderr[-2000:])
        return result

    def calls(self) -> list[dict]:
        """The stand-in installer's and tljh-config's calls so far, and forget them."""
        text = self.host.ssh(f"cat {CALLS} 2>/dev/null; rm -f {CALLS}").stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def config(self) -> dict:
        return json.loads(self.host.ssh("cat /opt/tljh/config/config.yaml").stdout)


def recap(output: str) -> dict[str, int]:
    import re

    match = re.search(r"^\S+\s*:\s*(ok=\d+.*)$", output, re.MULTILINE)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))} if match else {}


@pytest.fixture(scope="module")
def guest(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory, stages: StageClock) -> Iterator[Guest]:
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not found")
    remove_stale_namespaces()
    workdir = tmp_path_factory.mktemp("tljh")
    key = workdir / "root_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(Namespace(label="tljh"))
        host = stack.enter_context(nspawn_host(ns, key, workdir, hostname="tljhtest"))
        (host.root / "root" / "fake-tljh-bootstrap.py").write_text(FAKE_BOOTSTRAP)
        yield Guest(host, key, workdir, stages)


def test_a_failed_install_fails_the_play(guest: Guest) -> None:
    guest.host.ssh(f"touch {FAIL_FLAG}")
    with guest.stages.time("tljh flavour: failing installer (roles base and hub)"):
        result = guest.provision()
    guest.host.ssh(f"rm {FAIL_FLAG}")
    assert result.returncode != 0
    assert "Install (or upgrade to) TLJH 2.0.0" in result.stdout
    assert recap(result.stdout)["failed"] == 1
    assert [call["tool"] for call in guest.calls()] == ["bootstrap"]
    listed = guest.host.ssh("ls /usr/local/lib/hubvm/").stdout.split()
    assert "tljh-bootstrap.py" in listed and not [name for name in listed if name.startswith("tljh-installed-")]


# The settings of the install test, given again unchanged to the idempotence test
INSTALL_SETTINGS = {
    "hub_admin_users": ["admin", "ada"],
    "hub_tljh_plugins": ["tljh-plugin-one==1.0", "git+https://example.org/tljh-plugin-two"],
    "hub_memory_limit": "1G",
    "hub_cpu_limit": 1.5,
    "hub_default_app": "classic",
    "base_pip_index_url": "https://pypi.org/simple",
}


def test_installer_command_environment_and_settings(guest: Guest) -> None:
    with guest.stages.time("tljh flavour: install"):
        result = guest.provision(**INSTALL_SETTINGS)
    assert result.returncode == 0, result.stdout[-3000:]
    calls = guest.calls()
    bootstrap = calls[0]
    assert bootstrap["tool"] == "bootstrap"
    assert bootstrap["argv"] == [
        "--version", "2.0.0", "--admin", "admin", "--admin", "ada",
        "--plugin", "tljh-plugin-one==1.0", "git+https://example.org/tljh-plugin-two",
    ]  # fmt: skip
    assert bootstrap["env"] == {
        "no_proxy": "localhost,127.0.0.1",
        "NO_PROXY": "localhost,127.0.0.1",
        "PIP_INDEX_URL": "https://pypi.org/simple",
        "REQUESTS_CA_BUNDLE": CA_BUNDLE,
        "PIP_CERT": CA_BUNDLE,
        "SSL_CERT_FILE": CA_BUNDLE,
        "CONDA_SSL_VERIFY": CA_BUNDLE,
        "TLJH_INSTALL_PREFIX": "/opt/tljh",
    }
    config_calls = [call["argv"] for call in calls[1:]]
    # http.port is not in a new TLJH's config.yaml (80 is its default), so it is set too; by default sign-up is
    # closed and HTTPS self-signed, with the certificate hubvm-hub-secrets made before the installer ran.
    assert config_calls == [
        ["set", "limits.memory", "1G"],
        ["set", "limits.cpu", "1.5"],
        ["set", "user_environment.default_app", "classic"],
        ["set", "auth.FirstUseAuthenticator.create_users", "false"],
        ["set", "http.port", "80"],
        ["set", "https.enabled", "true"],
        ["set", "https.port", "443"],
        ["set", "https.tls.cert", "/etc/hubvm/tls/self-signed.crt"],
        ["set", "https.tls.key", "/etc/hubvm/tls/self-signed.key"],
        ["reload", "hub"],
        ["reload", "proxy"],
    ]
    assert guest.config() == {
        "users": {"admin": ["admin", "ada"]},
        "limits": {"memory": "1G", "cpu": 1.5},
        "user_environment": {"default_app": "classic"},
        "auth": {"FirstUseAuthenticator": {"create_users": False}},
        "http": {"port": 80},
        "https": {"enabled": True, "port": 443,
                  "tls": {"cert": "/etc/hubvm/tls/self-signed.crt", "key": "/etc/hubvm/tls/self-signed.key"}},
    }
    assert "JupyterHub 2.0.0-stand-in answers at https://127.0.0.1:443" in result.stdout
    # TLJH's own nbgitpuller (a fresh install's) is found and kept: git is there, nothing is downloaded
    assert re.search(r"TASK \[hub : Install nbgitpuller in /opt/tljh/user\] \*+\nok: ", result.stdout), \
        result.stdout[-3000:]
    assert guest.host.ssh("/opt/tljh/user/bin/pip show nbgitpuller && git --version").stdout.count("1.3.0") == 1


def test_admins_had_passwords_before_the_installer_started_the_hub(guest: Guest) -> None:
    """hubvm-hub-secrets ran before TLJH's installer: each admin has a bcrypt hash in TLJH's password store, the
    generated passwords are root's alone, and TLJH's hub is told where the store is and about hubvm-users."""
    stored = guest.host.ssh(
        "python3 -c 'import dbm; db = dbm.open(\"/opt/tljh/state/passwords.dbm\", \"r\"); "
        "print(*sorted(k.decode() + \"=\" + db[k][:4].decode() for k in db.keys()))'"
    ).stdout.split()
    assert stored == ["ada=$2b$", "admin=$2b$"]
    passwords = guest.host.ssh("stat -c %a /root/hub-admin-passwords && grep -v '^#' /root/hub-admin-passwords")
    mode, *lines = passwords.stdout.splitlines()
    assert mode == "600" and sorted(line.split()[0] for line in lines) == ["ada", "admin"]
    extra = guest.host.ssh("cat /opt/tljh/config/jupyterhub_config.d/hubvm-access.py").stdout
    assert 'c.FirstUseAuthenticator.dbm_path = "/opt/tljh/state/passwords.dbm"' in extra
    assert '"/opt/tljh/state/hubvm-users.token"' in extra
    units = guest.host.ssh("systemctl show -p Requires jupyterhub traefik").stdout
    assert units.count("hubvm-hub-secrets.service") == 2


def test_an_unchanged_second_run_changes_nothing(guest: Guest) -> None:
    with guest.stages.time("tljh flavour: second run, same settings"):
        result = guest.provision(**INSTALL_SETTINGS)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result.stdout)["changed"] == 0, result.stdout[-3000:]
    assert guest.calls() == []


# The settings of the test below, kept by the HTTPS tests after it (which then change only what they test)
LATER_SETTINGS = {"hub_admin_users": ["admin", "grace"], "hub_memory_limit": "3G", "hub_cpu_limit": 1.5,
                  "hub_default_app": "classic"}


def test_new_settings_rerun_the_installer_with_the_proxy_and_set_what_differs(guest: Guest) -> None:
    # The proxy address is the host end of this test's own veth: nothing listens there and nothing is fetched
    # (every package is installed already), it only has to be passed on.
    proxy = f"http://{guest.host.ns.host_addr}:3128"
    with guest.stages.time("tljh flavour: new admins, limits and a proxy"):
        result = guest.provision(**LATER_SETTINGS, base_http_proxy=proxy, base_https_proxy=proxy)
    assert result.returncode == 0, result.stdout[-3000:]
    bootstrap, *config_calls = guest.calls()
    assert bootstrap["argv"] == ["--version", "2.0.0", "--admin", "admin", "--admin", "grace"]
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        assert bootstrap["env"][name] == proxy
    assert [call["argv"] for call in config_calls] == [["set", "limits.memory", "3G"], ["reload", "hub"]]
    assert guest.config()["users"]["admin"] == ["admin", "grace"]
    assert "grace " in guest.host.ssh("cat /root/hub-admin-passwords").stdout  # the new admin got a password
    apt_proxy = guest.host.ssh("cat /etc/apt/apt.conf.d/80hubvm-proxy").stdout
    assert f'Acquire::http::Proxy "{proxy}";' in apt_proxy
    assert f"https_proxy={proxy}" in guest.host.ssh("cat /etc/environment").stdout


def _certificate_files(workdir: Path) -> tuple[Path, Path]:
    key, cert = workdir / "given.key", workdir / "given.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=hub.example.org"],
                   check=True, capture_output=True)
    return cert, key


def test_https_files_and_open_signup_through_tljh_config(guest: Guest) -> None:
    cert, key = _certificate_files(guest.workdir)
    with guest.stages.time("tljh flavour: HTTPS files, open sign-up"):
        result = guest.provision(**LATER_SETTINGS, hub_https="files", hub_https_cert_file=str(cert),
                                 hub_https_key_file=str(key), hub_signup="open")
    assert result.returncode == 0, result.stdout[-3000:]
    assert [call["argv"] for call in guest.calls()] == [
        ["set", "auth.FirstUseAuthenticator.create_users", "true"],
        ["set", "https.tls.cert", "/etc/hubvm/tls/hub.crt"],
        ["set", "https.tls.key", "/etc/hubvm/tls/hub.key"],
        ["reload", "hub"],
        ["reload", "proxy"],
    ]
    installed = guest.host.ssh("stat -c '%n %a' /etc/hubvm/tls/hub.crt /etc/hubvm/tls/hub.key").stdout.split()
    assert installed == ["/etc/hubvm/tls/hub.crt", "644", "/etc/hubvm/tls/hub.key", "600"]
    assert (guest.host.root / "etc/hubvm/tls/hub.crt").read_text() == cert.read_text()


def test_https_acme_through_tljh_config(guest: Guest) -> None:
    """TLJH's own Let's Encrypt client (traefik): only its settings can be checked here, no public DNS name."""
    with guest.stages.time("tljh flavour: HTTPS acme"):
        result = guest.provision(**LATER_SETTINGS, hub_https="acme", hub_https_acme_domain="hub.example.org",
                                 hub_https_acme_email="teacher@example.org")
    assert result.returncode == 0, result.stdout[-3000:]
    assert [call["argv"] for call in guest.calls()] == [
        ["set", "auth.FirstUseAuthenticator.create_users", "false"],
        ["add-item", "https.letsencrypt.domains", "hub.example.org"],
        ["set", "https.tls.cert", ""],
        ["set", "https.tls.key", ""],
        ["set", "https.letsencrypt.email", "teacher@example.org"],
        ["reload", "hub"],
        ["reload", "proxy"],
    ]
    assert guest.config()["https"] == {"enabled": True, "port": 443, "tls": {"cert": "", "key": ""},
                                       "letsencrypt": {"domains": ["hub.example.org"], "email": "teacher@example.org"}}


def test_nbgitpuller_off_removes_it_from_tljhs_user_environment(guest: Guest) -> None:
    """material.nbgitpuller false: the nbgitpuller TLJH's installer put into a fresh user environment goes."""
    with guest.stages.time("tljh flavour: nbgitpuller off"):
        result = guest.provision(**LATER_SETTINGS, hub_https="acme", hub_https_acme_domain="hub.example.org",
                                 hub_https_acme_email="teacher@example.org", hub_nbgitpuller=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result.stdout)["changed"] == 1, result.stdout[-3000:]
    assert re.search(r"TASK \[hub : Remove nbgitpuller from /opt/tljh/user\] \*+\nchanged: ", result.stdout)
    gone = guest.host.ssh("/opt/tljh/user/bin/pip show nbgitpuller", check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr
    guest.calls()
