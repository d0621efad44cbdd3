"""`hubvm verify` and `hubvm ssh` against a real sshd: a systemd-nspawn Debian 12 host in a network namespace.

The host (tests/e2e/hosts.py) gets a stand-in for what provisioning makes, so that every check can run in
seconds: a `jupyterhub` systemd unit serving /hub/api with a version over HTTPS with a self-signed certificate
(made here with openssl for the guest's address) and redirecting plain HTTP to it, the hub role's
/etc/hubvm/hub-access.json, a password store with the admin's (stand-in) bcrypt hash, the hub's sqlite
database with an admin,
a venv at the pypi flavour's user environment holding two small distributions (one whose import name differs
from its distribution name, one whose import fails), a `jupyter` that lists the python3 and ir kernels, the
shared data folder and its /etc/skel link; and real R with one Debian R package whose R name is not its
Debian name (r-cran-rcolorbrewer is RColorBrewer), installed with apt from Debian's archive (about 20 s).
The full provisioning is proven by the provisioning tests, which run the same `hubvm verify` against the
real hub.

The host is reached at its namespace address and through TCP forwards on 127.0.0.1 (2222 when free), run by
this process. Everything runs through the real `hubvm` command in a copy of the project (tests/conftest.py),
so builds/ssh/known_hosts of the working tree is never touched.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.hosts import Namespace, NspawnHost, missing_requirements, nspawn_host

pytestmark = pytest.mark.e2e

USER_ENV = "/opt/jupyterhub/user"  # the pypi flavour's
HUB_STATE = "/opt/jupyterhub/state"
R_PACKAGE = "r-cran-rcolorbrewer"
SHARED_FILES = {"iris.csv": "sepal_length,species\n5.1,setosa\n", "README.md": "Sample data for the hub.\n"}

TLS_CERT, TLS_KEY = "/etc/hubvm/tls/self-signed.crt", "/etc/hubvm/tls/self-signed.key"
PASSWORD_DB = f"{HUB_STATE}/passwords.dbm"

FAKE_HUB = """\
import http.server, json, ssl, sys, threading

class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path.rstrip("/") == "/hub/api"
        body = json.dumps({"version": "0.0.0-verify-test"}).encode() if found else b"not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

class Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(301)
        self.send_header("Location", "https://" + self.headers.get("Host", "").split(":")[0] + ":443" + self.path)
        self.end_headers()

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
secure = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Hub)
secure.socket = context.wrap_socket(secure.socket, server_side=True)
threading.Thread(target=secure.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Redirect).serve_forever()
"""

FAKE_UNIT = f"""\
[Unit]
Description=Stand-in JupyterHub for the verify tests (answers /hub/api)

[Service]
WorkingDirectory={HUB_STATE}
ExecStart=/usr/bin/python3 /usr/local/bin/fake-hub 80 {TLS_CERT} {TLS_KEY}

[Install]
WantedBy=multi-user.target
"""

# The proxy's unit (the pypi flavour runs configurable-http-proxy apart from the hub): verify asks that it is active
FAKE_PROXY_UNIT = """\
[Unit]
Description=Stand-in for the hub's proxy (verify checks only that it is active)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

FAKE_JUPYTER = """\
#!/bin/sh
[ "$*" = "kernelspec list --json" ] || { echo "fake jupyter: unexpected $*" >&2; exit 2; }
cat <<'EOF'
{"kernelspecs": {
  "python3": {"resource_dir": "/usr/local/share/jupyter/kernels/python3",
              "spec": {"display_name": "Python 3 (ipykernel)", "language": "python"}},
  "ir": {"resource_dir": "/usr/local/share/jupyter/kernels/ir", "spec": {"display_name": "R", "language": "R"}}}}
EOF
"""


# ---------------------------------------------------------------------------------------------------------------
# A TCP forward on 127.0.0.1, run by threads of this process (closed at teardown)


class Forward:
    """127.0.0.1:listen_port -> target:target_port; counts the connections it accepted."""

    def __init__(self, target: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target, target_port)
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.open_sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.open_sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()
        for sock in self.open_sockets:
            with contextlib.suppress(OSError):
                sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def forward_ssh(addr: str) -> Forward:
    """The loopback forward of SSH, on 2222 like Vagrant's when it is free (else any free port)."""
    try:
        return Forward(addr, 22, 2222)
    except OSError:
        return Forward(addr, 22)


# ---------------------------------------------------------------------------------------------------------------
# The test host


@dataclass
class Lab:
    host: NspawnHost
    key: Path             # authorised for root
    wrong_key: Path       # not authorised
    data: Path            # the host's data folder (vm.data)
    ssh_forward: Forward
    hub_forward: Forward
    https_forward: Forward
    workdir: Path

    def config(self, **sections: dict) -> Path:
        """A settings file for `hubvm -f`: what the stand-in host has, merged with `sections`."""
        import yaml

        body: dict = {
            "vm": {"hostname": "hubtest", "data": str(self.data), "hub_host_port": self.hub_forward.port,
                   "hub_https_host_port": self.https_forward.port},
            "hub": {"flavour": "pypi", "admin_users": ["admin"]},
            "packages": {"python": ["hubvm-probe-data>=1.0"], "r": [R_PACKAGE]},
            "material": {"nbgitpuller": False},  # its check runs against the real hub (test_provision.py)
            "ssh": {"connect_timeout": 5, "wait": 0},
        }
        for name, values in sections.items():
            body.setdefault(name, {}).update(values)
        path = self.workdir / f"settings-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(body))
        return path


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def _stand_in_hub(host: NspawnHost, data: Path) -> None:
    """What provisioning would make, as far as verify looks (see module doc)."""
    root = host.root
    host.ssh(f"python3 -m venv --without-pip {USER_ENV}")
    purelib = host.ssh(f"{USER_ENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'")
    site = purelib.stdout.strip()
    distributions = {
        # distribution name -> (version, module, module source)
        "hubvm-probe-data": ("1.2", "hubprobe", "VALUE = 42\n"),
        "broken-pkg": ("0.1", "brokenmod", 'raise ImportError("libfoo.so.1: cannot open shared object file")\n'),
    }
    for name, (version, module, source) in distributions.items():
        info = f"{site}/{name.replace('-', '_')}-{version}.dist-info"
        _write(root, f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        _write(root, f"{info}/top_level.txt", module + "\n")
        _write(root, f"{info}/RECORD", f"{module}/__init__.py,,\n")
        _write(root, f"{site}/{module}/__init__.py", source)
    _write(root, f"{USER_ENV}/bin/jupyter", FAKE_JUPYTER, 0o755)
    _write(root, "/usr/local/bin/fake-hub", FAKE_HUB, 0o755)
    # HTTPS self-signed and closed sign-up as the hub role makes them (the role's defaults, which verify expects
    # until the settings have hub.https and hub.signup), and the admin's password in the hub's store
    tls = root / TLS_CERT.lstrip("/")
    tls.parent.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(root / TLS_KEY.lstrip("/")), "-out", str(tls), "-days", "2",
                    "-subj", "/CN=hubtest", "-addext", f"subjectAltName=DNS:hubtest,IP:{host.addr},IP:127.0.0.1"],
                   check=True, capture_output=True)
    _write(root, "/etc/hubvm/hub-access.json", json.dumps({
        "https": "self-signed", "https_port": 443, "http_port": 80, "signup": "closed", "tls_cert": TLS_CERT,
        "password_db": PASSWORD_DB}))
    _write(root, "/etc/systemd/system/jupyterhub.service", FAKE_UNIT)
    _write(root, "/etc/systemd/system/jupyterhub-proxy.service", FAKE_PROXY_UNIT)
    host.ssh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
             f" r-base-core {R_PACKAGE} >/dev/null", timeout=900)
    for name, text in SHARED_FILES.items():
        _write(root, f"/srv/shared_data/{name}", text)
    host.ssh(
        f"set -e; mkdir -p {HUB_STATE}; ln -sfn /srv/shared_data /etc/skel/shared_data;"
        f" python3 -c \"import sqlite3; db = sqlite3.connect('{HUB_STATE}/jupyterhub.sqlite');"
        " db.execute('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, admin BOOLEAN)');"
        " db.execute(\\\"INSERT INTO users (name, admin) VALUES ('admin', 1), ('student', 0)\\\"); db.commit()\";"
        f" chmod 600 {HUB_STATE}/jupyterhub.sqlite;"
        f" python3 -c \"import dbm; db = dbm.open('{PASSWORD_DB}', 'c', 0o600);"
        r""" db['admin'] = b'\x242b\x2412\x24' + b'x' * 53";"""  # $2b$12$..., no $ for the shell to expand
        " systemctl daemon-reload; systemctl enable --now jupyterhub-proxy jupyterhub")
    _wait_for_hub(host)


def _wait_for_hub(host: NspawnHost, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while host.ssh("curl -fsSk https://127.0.0.1:443/hub/api", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the stand-in hub does not answer")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reasons = missing_requirements(nspawn=True) + ([] if shutil.which("ssh-keygen") else ["ssh-keygen not found"])
    if reasons:
        pytest.skip("; ".join(reasons))
    workdir = tmp_path_factory.mktemp("verify")
    key, wrong_key = _keygen(workdir / "root_key"), _keygen(workdir / "wrong_key")
    data = workdir / "data"
    data.mkdir()
    for name, text in SHARED_FILES.items():
        (data / name).write_text(text)
    started = time.monotonic()
    with Namespace(label="vfy") as ns, nspawn_host(ns, key, workdir, hostname="hubtest") as host:
        _stand_in_hub(host, data)
        ssh_forward, hub_forward = forward_ssh(ns.guest_addr), Forward(ns.guest_addr, 80)
        https_forward = Forward(ns.guest_addr, 443)
        print(f"test host ready in {time.monotonic() - started:.0f} s: {ns.guest_addr}, forwards "
              f"127.0.0.1:{ssh_forward.port} -> :22, 127.0.0.1:{hub_forward.port} -> :80")
        try:
            yield Lab(host, key, wrong_key, data, ssh_forward, hub_forward, https_forward, workdir)
        finally:
            ssh_forward.close()
            hub_forward.close()
            https_forward.close()


Cli = Callable[..., subprocess.CompletedProcess]


def rows(out: str) -> dict[str, str]:
    """The table's lines by check name (the name is everything before the first run of two spaces)."""
    return {line.split("  ")[0]: line for line in out.splitlines() if "  " in line}


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Passing runs


def test_verify_passes_at_the_namespace_address(lab: Lab, cli: Cli) -> None:
    addr = lab.host.addr
    result = cli("-f", str(lab.config()), "verify", "--host", f"root@{addr}", "--identity", str(lab.key))
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    for name in ("os", "hub service", "proxy service", "hub api (guest)", "hub api (host)", "https mode",
                 "https certificate", "http redirect", "admin user admin", "hub users", "admin password admin",
                 "sign-up", "kernel python3", "kernel ir", "package hubvm-probe-data", f"R package {R_PACKAGE}",
                 "shared data", "timezone", "hostname", "disk space"):
        assert table[name].endswith("pass"), result.stdout
    assert "1.2, import hubprobe ok" in table["package hubvm-probe-data"]
    assert f"https://{addr}:443/hub/api" in table["hub api (host)"]
    assert "SHA-256 " in table["https certificate"] and f"301 https://{addr}:443/hub/api" in table["http redirect"]
    assert "RColorBrewer 1.1-3 loads" in table[f"R package {R_PACKAGE}"]
    assert "20 of 20 checks passed" in result.stdout


def test_verify_json_through_the_loopback_forward(lab: Lab, cli: Cli, project: Path) -> None:
    port = lab.ssh_forward.port
    result = cli("-f", str(lab.config()), "verify", "--host", f"root@127.0.0.1:{port}",
                    "--identity", str(lab.key), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == f"root@127.0.0.1:{port}" and report["failed"] == 0
    assert report["hub_url"] == f"http://127.0.0.1:{lab.hub_forward.port}/hub/api"
    # HTTPS through its forward (vm.hub_https_host_port): the host's HTTPS checks run there
    found = {c["name"]: c for c in report["checks"]}
    assert found["hub api (host)"]["passed"] and found["https certificate"]["passed"]
    assert found["hub api (host)"]["expected"].endswith(f"https://127.0.0.1:{lab.https_forward.port}/hub/api")
    assert found["https mode"]["found"] == "self-signed on port 443"
    # the key was recorded in the project's known_hosts, under the forward's name
    assert (project / "builds/ssh/known_hosts").read_text().startswith(f"[127.0.0.1]:{port} ssh-ed25519 ")


def test_verify_the_vagrant_vm_and_accept_its_new_keys_after_a_rebuild(lab: Lab, cli: Cli,
                                                                         project: Path) -> None:
    """No --host: the target comes from `vagrant ssh-config` (a stand-in vagrant, tools.vagrant)."""
    port = lab.ssh_forward.port
    vagrant = lab.workdir / "fake-vagrant"
    vagrant.write_text(
        "#!/bin/sh\n"
        f'case "$*" in\n'
        f'  ssh-config) printf "Host jupyterhub-vm\\n  HostName 127.0.0.1\\n  User root\\n  Port {port}\\n'
        f'  IdentityFile {lab.key}\\n" ;;\n'
        f'  "port --guest 80") echo {lab.hub_forward.port} ;;\n'
        '  *) echo "fake vagrant: $*" >&2; exit 1 ;;\nesac\n')
    vagrant.chmod(0o755)
    vagrant_dir = project / "builds/vagrant"
    machine = vagrant_dir / ".vagrant/machines/jupyterhub-vm/virtualbox"
    machine.mkdir(parents=True)
    (vagrant_dir / "Vagrantfile").write_text("# stand-in\n")
    (machine / "id").write_text("machine-1")
    config = lab.config(tools={"vagrant": str(vagrant)})

    first = cli("-f", str(config), "verify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"root@127.0.0.1:{port} (vagrant ssh-config" in first.stderr

    # The VM is rebuilt (new machine id) and brings a new host key: the stale entry is replaced.
    known_hosts = project / "builds/ssh/known_hosts"
    old_key = _keygen(lab.workdir / f"old_host_key_{time.monotonic_ns()}").with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {old_key[0]} {old_key[1]}\n")
    (machine / "id").write_text("machine-2")
    rebuilt = cli("-f", str(config), "verify")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"host key of [127.0.0.1]:{port} changed: the VM was rebuilt" in rebuilt.stderr
    assert old_key[1] not in known_hosts.read_text()

    # Same machine, changed key: refused.
    known_hosts.write_text(f"[127.0.0.1]:{port} {old_key[0]} {old_key[1]}\n")
    same = cli("-f", str(config), "verify")
    assert_one_line_error(same, f"host key of [127.0.0.1]:{port} changed since", "ssh-keygen -R")


def test_ssh_runs_one_command_and_returns_its_status(lab: Lab, cli: Cli) -> None:
    config = str(lab.config())
    base = ["-f", config, "ssh", "--host", f"root@{lab.host.addr}", "--identity", str(lab.key)]
    hostname = cli(*base, "-c", "hostname")
    assert (hostname.returncode, hostname.stdout.strip()) == (0, "hubtest"), hostname.stderr
    assert cli(*base, "-c", "exit 3").returncode == 3


def test_ssh_interactive_shell_through_the_system_client(lab: Lab, cli: Cli) -> None:
    port = lab.ssh_forward.port
    result = cli("-f", str(lab.config()), "ssh", "--host", f"root@127.0.0.1:{port}", "--identity",
                    str(lab.key), stdin="echo shell-on-$(hostname)\nexit 7\n")
    assert "shell-on-hubtest" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 7


def test_dry_run_opens_no_connection(lab: Lab, cli: Cli) -> None:
    watched = Forward(lab.host.addr, 22)
    try:
        result = cli("--dry", "-f", str(lab.config()), "verify", "--host", f"root@127.0.0.1:{watched.port}",
                        "--identity", str(lab.key))
        ssh = cli("--dry", "-f", str(lab.config()), "ssh", "--host", f"root@127.0.0.1:{watched.port}",
                     "--identity", str(lab.key), "-c", "hostname")
        time.sleep(0.2)
        assert watched.accepted == 0
    finally:
        watched.close()
    assert result.returncode == 0 and ssh.returncode == 0, result.stderr + ssh.stderr
    assert "verify (dry run, no connection)" in result.stdout and "package hubvm-probe-data" in result.stdout
    assert "would run 'hostname'" in ssh.stdout


# ---------------------------------------------------------------------------------------------------------------
# Failures: each one line (or the failing check's line) and a non-zero exit


def test_nothing_listening(lab: Lab, cli: Cli) -> None:
    port = free_port()
    result = cli("-f", str(lab.config()), "verify", "--host", f"root@127.0.0.1:{port}",
                    "--identity", str(lab.key))
    assert_one_line_error(result, f"cannot reach root@127.0.0.1:{port}: connection refused")
    at_namespace = cli("-f", str(lab.config(ssh={"wait": 3})), "verify", "--host", f"root@{lab.host.addr}:2200",
                          "--identity", str(lab.key))
    assert_one_line_error(at_namespace, f"cannot reach root@{lab.host.addr}:2200 after 3 s: connection refused")


def test_verify_waits_for_sshd_while_the_machine_boots(lab: Lab, cli: Cli) -> None:
    """Nothing listens at first; 3 s later the forward opens (like a booting VM): verify retries and passes."""
    port = free_port()
    opened: list[Forward] = []
    timer = threading.Timer(3, lambda: opened.append(Forward(lab.host.addr, 22, port)))
    timer.start()
    try:
        result = cli("-f", str(lab.config(ssh={"wait": 60})), "verify", "--host", f"root@127.0.0.1:{port}",
                        "--identity", str(lab.key))
    finally:
        timer.cancel()
        for forward in opened:
            forward.close()
    assert f"waiting for SSH on root@127.0.0.1:{port} (connection refused), up to 60 s" in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_waits_while_the_hub_starts(lab: Lab, cli: Cli) -> None:
    """Right after a restart the hub is still starting (a 5 s ExecStartPre stands for the first boot's new
    secrets and database): verify waits for it instead of reporting it down, says so, and passes."""
    dropin = "/etc/systemd/system/jupyterhub.service.d/slow-start.conf"
    lab.host.ssh(f"mkdir -p {Path(dropin).parent} && printf '[Service]\\nExecStartPre=/bin/sleep 5\\n' > {dropin}"
                 " && systemctl daemon-reload && systemctl restart --no-block jupyterhub"
                 " && test $(systemctl is-active jupyterhub) = activating")
    try:
        result = cli("-f", str(lab.config(ssh={"wait": 60})), "verify", "--host", f"root@{lab.host.addr}",
                        "--identity", str(lab.key))
    finally:
        lab.host.ssh(f"rm -f {dropin} && systemctl daemon-reload")
        _wait_for_hub(lab.host)
    assert f"root@{lab.host.addr}:22 was still starting (boot or hub); waited" in result.stderr, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(result.stdout)["hub api (guest)"].endswith("pass")


def test_wrong_key(lab: Lab, cli: Cli) -> None:
    result = cli("-f", str(lab.config()), "verify", "--host", f"root@{lab.host.addr}",
                    "--identity", str(lab.wrong_key))
    assert_one_line_error(result, "authentication failed with key", str(lab.wrong_key))
    ssh = cli("-f", str(lab.config()), "ssh", "--host", f"root@{lab.host.addr}", "--identity",
                 str(lab.wrong_key), "-c", "true")
    assert_one_line_error(ssh, "authentication failed")


def test_changed_host_key_of_a_host_is_refused(lab: Lab, cli: Cli, project: Path) -> None:
    known_hosts = project / "builds/ssh/known_hosts"
    known_hosts.parent.mkdir(parents=True)
    other = _keygen(lab.workdir / f"other_{time.monotonic_ns()}").with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"{lab.host.addr} {other[0]} {other[1]}\n")
    result = cli("-f", str(lab.config()), "verify", "--host", f"root@{lab.host.addr}", "--identity", str(lab.key))
    assert_one_line_error(result, f"host key of {lab.host.addr} changed since", f"ssh-keygen -R '{lab.host.addr}'")
    assert known_hosts.read_text() == f"{lab.host.addr} {other[0]} {other[1]}\n"  # left as it was


def test_configured_package_missing_or_broken(lab: Lab, cli: Cli) -> None:
    config = lab.config(packages={"python": ["hubvm-probe-data", "broken-pkg", "not-installed-pkg",
                                             "hubvm-probe-data>=2"], "r": [R_PACKAGE, "r-cran-ggplot2"]})
    result = cli("-f", str(config), "verify", "--host", f"root@{lab.host.addr}", "--identity", str(lab.key))
    table = rows(result.stdout)
    assert table["package not-installed-pkg"].endswith("FAIL") and "not installed" in table["package not-installed-pkg"]
    assert "ImportError: libfoo.so.1" in table["package broken-pkg"] and table["package broken-pkg"].endswith("FAIL")
    assert table["hub service"].endswith("pass") and table[f"R package {R_PACKAGE}"].endswith("pass")
    assert "not installed" in table["R package r-cran-ggplot2"] and table["R package r-cran-ggplot2"].endswith("FAIL")
    assert_one_line_error(result, "4 of 24 checks failed: package broken-pkg, package not-installed-pkg, "
                                  "package hubvm-probe-data, R package r-cran-ggplot2")


def test_hub_stopped(lab: Lab, cli: Cli) -> None:
    lab.host.ssh("systemctl stop jupyterhub")
    try:
        result = cli("-f", str(lab.config()), "verify", "--host", f"root@{lab.host.addr}",
                        "--identity", str(lab.key))
    finally:
        lab.host.ssh("systemctl start jupyterhub")
        _wait_for_hub(lab.host)
    table = rows(result.stdout)
    assert "inactive" in table["hub service"] and table["hub service"].endswith("FAIL")
    assert table["hub api (guest)"].endswith("FAIL") and table["hub api (host)"].endswith("FAIL")
    assert table["kernel python3"].endswith("pass") and table["admin password admin"].endswith("pass")
    assert_one_line_error(result, "5 of 20 checks failed: hub service, hub api (guest), hub api (host), "
                                  "https certificate, http redirect")


def test_admin_missing_and_wrong_settings_fail_their_checks(lab: Lab, cli: Cli) -> None:
    config = lab.config(hub={"admin_users": ["admin", "ada"]},
                        vm={"hostname": "jupyterhub", "timezone": "Europe/Berlin"})
    result = cli("-f", str(config), "verify", "--host", f"root@{lab.host.addr}", "--identity", str(lab.key))
    table = rows(result.stdout)
    assert "not an admin (admins: admin)" in table["admin user ada"]
    assert "the first visitor could choose this admin's password" in table["admin password ada"]
    assert table["hostname"].endswith("FAIL") and "hubtest" in table["hostname"]
    assert table["timezone"].endswith("FAIL") and "Etc/UTC" in table["timezone"]
    assert_one_line_error(result, "4 of 22 checks failed: admin user ada, admin password ada, timezone, hostname")

