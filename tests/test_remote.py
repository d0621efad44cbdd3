"""hubvm.remote without a machine: target resolution, host keys, the probe script's sections and each check."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import paramiko
import pytest
from invoke import Config, MockContext, Result

from hubvm import checks, remote, settings
from hubvm.checks import Check, Section
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.remote import Endpoint
from hubvm.target import Target, remove_host_entries
from tests.conftest import REPO

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
    return settings.parse(settings.merge(settings.defaults(REPO), settings.dotted(overrides)), REPO)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A layout under tmp_path with a rendered Vagrantfile (its content does not matter here)."""
    lay = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    lay.vagrant_dir.mkdir(parents=True)
    lay.vagrantfile.write_text("# rendered\n")
    return lay


def mock(run: dict, dry: bool = False) -> MockContext:
    return MockContext(config=Config(overrides={"run": {"dry": dry}}), run=run)


# ---------------------------------------------------------------------------------------------------------------
# Target resolution


def test_vagrant_forwarded_uses_the_port_vagrant_assigned(layout: Layout) -> None:
    s = parse()
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8081\n"),
              "vagrant port --guest 443": Result("8443\n")})
    endpoint = remote.resolve(c, s, layout, None, None)
    assert endpoint.target == Target("127.0.0.1", "vagrant", 2200, Path(
        "/work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/private_key"))
    assert endpoint.hub_url == "http://127.0.0.1:8081/hub/api"
    assert endpoint.https_address == ("127.0.0.1", 8443)
    assert endpoint.api_url == "https://127.0.0.1:8443/hub/api"
    assert endpoint.vagrant and endpoint.source == "vagrant ssh-config"


def test_vagrant_port_unsupported_falls_back_to_the_configured_hub_port(layout: Layout) -> None:
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG),
              "vagrant port --guest 80": Result("", stderr="not supported", exited=1),
              "vagrant port --guest 443": Result("", stderr="not supported", exited=1)})
    endpoint = remote.resolve(c, parse(), layout, None, None)
    assert endpoint.hub_url == "http://127.0.0.1:8080/hub/api"
    assert endpoint.https_address is None  # HTTPS not forwarded: the host's HTTPS checks are not run


def test_vagrant_ip_uses_the_configured_address_and_vagrants_key(layout: Layout) -> None:
    s = parse(**{"ssh.via": "ip"})
    endpoint = remote.resolve(mock({"vagrant ssh-config": Result(SSH_CONFIG)}), s, layout, None, None)
    assert (endpoint.target.host, endpoint.target.port, endpoint.target.user) == ("192.168.56.10", 22, "vagrant")
    assert endpoint.target.identity is not None and endpoint.target.identity.name == "private_key"
    assert endpoint.hub_url == "http://192.168.56.10:80/hub/api"
    assert endpoint.api_url == "https://192.168.56.10:443/hub/api"


def test_vagrant_ip_with_dhcp_takes_the_address_vagrant_libvirt_reports(layout: Layout) -> None:
    s = parse(**{"ssh.via": "ip", "vm.ip": "dhcp", "vm.provider": "libvirt", "export.formats": ["qcow2"]})
    reported = SSH_CONFIG.replace("127.0.0.1", "192.168.121.37").replace("Port 2200", "Port 22")
    endpoint = remote.resolve(mock({"vagrant ssh-config": Result(reported)}), s, layout, None, None)
    assert str(endpoint.target) == "vagrant@192.168.121.37:22"
    assert endpoint.hub_url == "http://192.168.121.37:80/hub/api"


def test_identity_flag_wins_over_vagrants_key(layout: Layout, tmp_path: Path) -> None:
    key = tmp_path / "mykey"
    key.write_text("x")
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")})
    assert remote.resolve(c, parse(), layout, None, str(key)).target.identity == key


def test_host_flag(tmp_path: Path, layout: Layout) -> None:
    key = tmp_path / "id"
    key.write_text("x")
    c = mock({})  # no command may run
    endpoint = remote.resolve(c, parse(), layout, "root@10.1.2.3", str(key))
    assert endpoint.target == Target("10.1.2.3", "root", 22, key)
    assert endpoint.hub_url == "http://10.1.2.3:80/hub/api"
    assert endpoint.https_address == ("10.1.2.3", 443)
    assert not endpoint.vagrant


def test_host_on_loopback_off_port_22_is_a_forwarded_vm(layout: Layout) -> None:
    endpoint = remote.resolve(mock({}), parse(), layout, "127.0.0.1:2222", None)
    assert endpoint.hub_url == "http://127.0.0.1:8080/hub/api"
    assert endpoint.target.password == "vagrant"  # no key anywhere: the configured password


def test_missing_vagrantfile_is_one_line(tmp_path: Path) -> None:
    lay = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    with pytest.raises(UserError, match=r"no Vagrant VM: .*Vagrantfile is missing; run invoke up, or give --host"):
        remote.resolve(mock({}), parse(), lay, None, None)


def test_vagrant_not_running_is_one_line(layout: Layout) -> None:
    c = mock({"vagrant ssh-config": Result("", stderr="The provider for this Vagrant-managed machine is reporting "
                                                     "that it is not yet ready\nfor SSH. Depending on your provider "
                                                     "this can carry different meanings.\n", exited=1)})
    with pytest.raises(UserError) as caught:
        remote.resolve(c, parse(), layout, None, None)
    assert str(caught.value) == ("vagrant ssh-config failed (The provider for this Vagrant-managed machine is "
                                 "reporting that it is not yet ready for SSH); is the VM running? (invoke up)")


def test_dry_run_without_a_vm_guesses_from_the_configuration(layout: Layout) -> None:
    c = mock({"vagrant ssh-config": Result("", stderr="VM not created\n", exited=1)}, dry=True)
    endpoint = remote.resolve(c, parse(), layout, None, None, dry=True)
    assert str(endpoint.target) == "vagrant@127.0.0.1:2222"
    assert "not running now" in endpoint.source and not endpoint.reachable


# ---------------------------------------------------------------------------------------------------------------
# Dry runs open no connection


def test_dry_verify_opens_no_connection(layout: Layout, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import fabric

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run constructed a fabric Connection")

    monkeypatch.setattr(fabric, "Connection", forbidden)
    monkeypatch.setattr(remote, "ask_hub", forbidden)
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")}, dry=True)
    remote.run_verify(c, parse(), layout, None, None, False)
    out = capsys.readouterr().out
    assert "verify (dry run, no connection): vagrant@127.0.0.1:2200 (vagrant ssh-config)" in out
    assert "hub service" in out and "package pandas" in out and "R package r-cran-data.table" in out
    assert remote.run_ssh(c, parse(), layout, None, None, "uptime") == 0
    assert "would run 'uptime' on vagrant@127.0.0.1:2200" in capsys.readouterr().out
    remote.run_verify(c, parse(), layout, None, None, True)
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"] == "vagrant@127.0.0.1:2200" and {c["passed"] for c in plan["checks"]} == {None}


def test_dry_interactive_ssh_prints_the_ssh_command(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    import fabric

    monkeypatch.setattr(fabric, "Connection", None)
    seen = []
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")}, dry=True)
    real_run = c.run

    def run(command: str, **kwargs: object) -> Result:
        if command.startswith("ssh "):
            seen.append((command, kwargs))
            return Result(command=command)
        return real_run(command, **kwargs)

    c.run = run  # type: ignore[method-assign]
    assert remote.run_ssh(c, parse(), layout, None, None, None) == 0
    command, kwargs = seen[0]
    assert kwargs["pty"] is True
    assert f"UserKnownHostsFile={layout.known_hosts}" in command
    assert command.endswith("-p 2200 -i /work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/"
                            "private_key -o IdentitiesOnly=yes vagrant@127.0.0.1")


# ---------------------------------------------------------------------------------------------------------------
# Host keys


def test_remove_host_entries_removes_exactly_that_host_plain_and_hashed(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path)))
    known = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2222")
    known.write_text(
        f"[127.0.0.1]:2222 ssh-ed25519 {key.get_base64()}\n"
        f"{hashed} ssh-ed25519 {key.get_base64()}\n"
        f"[127.0.0.1]:2200 ssh-ed25519 {key.get_base64()}\n"
        f"127.0.0.1 ssh-ed25519 {key.get_base64()}\n")
    assert remove_host_entries(known, ["[127.0.0.1]:2222"]) == 2
    assert known.read_text().splitlines() == [f"[127.0.0.1]:2200 ssh-ed25519 {key.get_base64()}",
                                              f"127.0.0.1 ssh-ed25519 {key.get_base64()}"]


def test_recorded_keys_are_read_by_paramiko(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path)))
    known = tmp_path / "ssh" / "known_hosts"
    remote.record_host_key(known, "[10.0.0.2]:2222", key)
    keys = paramiko.HostKeys(str(known))
    assert keys.lookup("[10.0.0.2]:2222")["ssh-ed25519"] == key
    assert remote.fingerprint(key).startswith("ssh-ed25519 SHA256:")


def _keypair(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_connection_reasons() -> None:
    import errno

    refused = paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 2222): OSError(errno.ECONNREFUSED,
                                                                                            "refused")})
    assert remote.connection_reason(refused, 10) == "connection refused"
    assert remote.connection_reason(TimeoutError(), 10) == "no answer within 10 s"
    assert remote.connection_reason(paramiko.SSHException("Error reading SSH protocol banner"), 10) \
        == "no SSH greeting (sshd not ready?)"


def test_nothing_listening_is_one_line_after_the_wait(layout: Layout) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = parse(**{"ssh.wait": 0, "ssh.connect_timeout": 2})
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", port), "http://127.0.0.1:1/hub/api", "--host", False)
    with pytest.raises(UserError) as caught:
        remote.connect(s, layout, endpoint, lambda message: None)
    assert str(caught.value) == (f"cannot reach vagrant@127.0.0.1:{port}: connection refused; is the machine up, "
                                 f"with sshd listening on port {port}?")


# ---------------------------------------------------------------------------------------------------------------
# The probe script and its sections


def test_probe_script_is_valid_bash_and_names_every_section() -> None:
    s = parse()
    script = checks.probe_script(s)
    subprocess.run(["bash", "-n", "-c", script], check=True)
    for name in ("os", "hostname", "timezone", "disk", "service", "api", "admins", "kernels", "shared_data",
                 "python", "r", "starting"):
        assert f"echo @@hubvm-section {name}\n" in script
    assert "/opt/tljh/user/bin/python" in script and "numpy pandas matplotlib" in script
    assert "ggplot2 data.table" in script


def test_probe_script_leaves_out_empty_package_sections() -> None:
    script = checks.probe_script(parse(**{"packages.python": [], "packages.r": []}))
    assert "section python" not in script and "section r\n" not in script


def _fake_systemctl(bin_dir: Path, states: Path) -> None:
    """A `systemctl` that reports the boot finished and the hub in the state named by the first line of STATES,
    consuming one line per `is-active` call (the last line stays)."""
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  is-system-running) echo running ;;
  is-active) head -n1 {states}; [ "$(wc -l < {states})" -gt 1 ] && sed -i 1d {states} ;;
esac
exit 0
""")
    fake.chmod(0o755)


def _run_wait(s: settings.Settings, bin_dir: Path) -> tuple[int, float]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", checks._wait_script(s)], capture_output=True, text=True, env=env,
                            timeout=60)
    return checks.waited_seconds(Section(result.returncode, result.stdout.strip())), time.monotonic() - started


def test_wait_script_waits_while_the_hub_is_starting(tmp_path: Path) -> None:
    """Real bash with a fake systemctl: the hub is activating for two polls, then inactive (so no API call)."""
    states = tmp_path / "states"
    states.write_text("activating\nactivating\ninactive\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, took = _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")
    assert 3 <= waited <= 6 and took < 10


def test_wait_script_is_bounded_by_ssh_wait(tmp_path: Path) -> None:
    states = tmp_path / "states"
    states.write_text("activating\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, _ = _run_wait(parse(**{"ssh.wait": 3}), tmp_path / "bin")
    assert 3 <= waited <= 5
    states.write_text("failed\n")
    assert _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")[0] == 0
    assert checks._wait_script(parse(**{"ssh.wait": 0})) == "echo 0"


def test_parse_sections() -> None:
    output = ("noise\n@@hubvm-section os\nID=debian\n@@hubvm-status 0\n"
              "@@hubvm-section service\ninactive\n@@hubvm-status 3\n@@hubvm-section kernels\n{")
    sections = checks.parse_sections(output)
    assert sections["os"] == Section(0, "ID=debian")
    assert sections["service"] == Section(3, "inactive")
    assert sections["kernels"].status == -1


def test_probe_script_runs_here(tmp_path: Path) -> None:
    """The real script on this machine: every section ends, and the python importer maps names to modules."""
    s = parse(**{"packages.python": ["PyYAML", "paramiko>=2", "no-such-package-xyz"], "packages.r": []})
    script = checks.probe_script(s).replace(s.user_env, str(Path(subprocess.sys.executable).parent.parent))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    sections = checks.parse_sections(result.stdout)
    assert {"os", "hostname", "disk", "python"} <= set(sections)
    found = {c.name: c for c in checks.check_python(s, sections["python"])}
    assert found["package PyYAML"].passed and "import yaml ok" in found["package PyYAML"].found
    assert found["package paramiko"].passed
    assert found["package no-such-package-xyz"].found == "not installed"
    assert checks.check_disk(sections["disk"]).found.endswith("GiB")


# ---------------------------------------------------------------------------------------------------------------
# Checks from canned outputs

OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
              'VERSION_CODENAME=bookworm\nID=debian\n')


def test_check_os() -> None:
    s = parse()
    assert checks.check_os(s, Section(0, OS_RELEASE)) == Check("os", "Debian 12 (bookworm)",
                                                               "Debian GNU/Linux 12 (bookworm)", True)
    jammy = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_CODENAME=jammy\n'
    assert checks.check_os(s, Section(0, jammy)).passed is False
    noble = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_CODENAME=noble\n'
    assert checks.check_os(parse(**{"vm.os": "ubuntu2404"}), Section(0, noble)).passed is True


def test_check_service() -> None:
    assert checks.check_service(Section(0, "active")).passed is True
    failed = checks.check_service(Section(3, "inactive"))
    assert (failed.found, failed.passed) == ("inactive", False)


def test_check_api_guest() -> None:
    s = parse()
    good = Section(0, '@@hubvm-item {"status": 200, "body": "{\\"version\\": \\"5.2.1\\"}"}')
    assert checks.check_api_guest(s, good).found == "JupyterHub 5.2.1"
    refused = Section(0, '@@hubvm-item {"error": "URLError: <urlopen error [Errno 111] Connection refused>"}')
    assert checks.check_api_guest(s, refused).passed is False
    other = Section(0, '@@hubvm-item {"status": 200, "body": "<html>nginx</html>"}')
    assert "no JupyterHub version" in checks.check_api_guest(s, other).found


def test_ask_hub_from_the_host() -> None:
    import http.server
    import threading

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"version": "6.1.1"}' if self.path == "/hub/api" else b"no"
            self.send_response(200 if self.path == "/hub/api" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert remote.ask_hub(f"http://127.0.0.1:{port}/hub/api") == (True, "JupyterHub 6.1.1")
        assert remote.ask_hub(f"http://127.0.0.1:{port}/other") == (False, "HTTP 404")
    finally:
        server.shutdown()
        server.server_close()
    assert remote.ask_hub(f"http://127.0.0.1:{port}/hub/api", timeout=2)[1].startswith("no answer: ")


def test_check_admins() -> None:
    s = parse(**{"hub.admin_users": ["admin", "ada"]})
    sec = Section(0, '@@hubvm-item {"database": "/opt/tljh/state/jupyterhub.sqlite", "admins": ["admin"]}')
    admin, ada = checks.check_admins(s, sec)
    assert admin == Check("admin user admin", "admin in the hub's database", "admin", True)
    assert (ada.found, ada.passed) == ("not an admin (admins: admin)", False)
    nodb = checks.check_admins(s, Section(0, '@@hubvm-item {"error": "no hub database (looked at /x)"}'))
    assert all(c.passed is False and "no hub database" in c.found for c in nodb)


def test_check_kernels() -> None:
    listing = json.dumps({"kernelspecs": {"python3": {"spec": {"display_name": "Python 3 (ipykernel)"}}}})
    python3, ir = checks.check_kernels(Section(0, listing))
    assert python3.passed and python3.found == "registered (Python 3 (ipykernel))"
    assert (ir.passed, ir.found) == (False, "missing (have: python3)")
    missing = checks.check_kernels(Section(127, "bash: /opt/tljh/user/bin/jupyter: No such file or directory"))
    assert all(not c.passed and "No such file" in c.found for c in missing)


def test_check_python() -> None:
    s = parse(**{"packages.python": ["numpy>=3", "pandas", "scikit-learn", "missingpkg"]})
    items = [
        {"name": "numpy", "version": "2.1.3", "module": "numpy"},
        {"name": "pandas", "version": "2.2.3", "module": "pandas", "error": "import pandas: ImportError: bad"},
        {"name": "scikit-learn", "version": "1.5.2", "module": "sklearn"},
        {"name": "missingpkg", "error": "not installed"},
    ]
    sec = Section(0, "\n".join("@@hubvm-item " + json.dumps(i) for i in items))
    numpy, pandas, sklearn, missing = checks.check_python(s, sec)
    assert (numpy.passed, numpy.found) == (False, "2.1.3 (outside >=3)")
    assert (pandas.passed, pandas.found) == (False, "2.2.3: import pandas: ImportError: bad")
    assert sklearn == Check("package scikit-learn", "scikit-learn imports in /opt/tljh/user",
                            "1.5.2, import sklearn ok", True)
    assert (missing.name, missing.found, missing.passed) == ("package missingpkg", "not installed", False)


def test_check_r_matches_debians_lowercase_names() -> None:
    s = parse(**{"packages.r": ["r-cran-rcolorbrewer", "r-cran-data.table", "r-cran-ggplot2"]})
    sec = Section(0, "@@hubvm-item rcolorbrewer\tRColorBrewer\t1.1-3\tok\n"
                     "@@hubvm-item data.table\tdata.table\t1.14.8\tok\n"
                     "@@hubvm-item ggplot2\t\t\tnot installed\n")
    brewer, table, ggplot = checks.check_r(s, sec)
    assert brewer == Check("R package r-cran-rcolorbrewer", "library(rcolorbrewer) loads", "RColorBrewer 1.1-3 loads",
                           True)
    assert table.passed
    assert (ggplot.passed, ggplot.found) == (False, "not installed")
    no_r = checks.check_r(s, Section(127, "Rscript not found"))
    assert all(c.found == "Rscript not found" for c in no_r)


def test_check_shared_data() -> None:
    s = parse()
    good = checks.check_shared_data(s, Section(0, "link /srv/shared_data\niris.csv\nREADME.md"), None)
    assert (good.passed, good.found) == (True, "2 entries, linked")
    unlinked = checks.check_shared_data(s, Section(0, "link\niris.csv"), ["iris.csv", "cars.csv"])
    assert unlinked.passed is False
    assert unlinked.found == "1 entries; /etc/skel/shared_data -> nothing; missing cars.csv"
    absent = checks.check_shared_data(s, Section(1, "link"), None)
    assert (absent.passed, absent.found) == (False, "/srv/shared_data missing")


def test_shared_data_expects_vm_data_or_the_shipped_samples(tmp_path: Path) -> None:
    assert checks.shared_data_entries(parse()) == sorted(
        p.name for p in (REPO / "ansible/roles/shared_data/files/samples").iterdir())
    (tmp_path / "a.csv").write_text("x")
    s = parse(**{"vm.data": str(tmp_path)})
    assert checks.shared_data_entries(s) == ["a.csv"]
    check = checks.planned(s, "http://x/hub/api")[-4]
    assert check.expected == "/srv/shared_data holds the 1 entries of vm.data, /etc/skel/shared_data links it"


def test_check_timezone_hostname_disk() -> None:
    s = parse(**{"vm.timezone": "Europe/Berlin"})
    assert checks.check_timezone(s, Section(0, "Europe/Berlin")).passed
    assert not checks.check_timezone(s, Section(0, "Etc/UTC")).passed
    assert checks.check_timezone(parse(), Section(0, "UTC")).passed  # the same zone under another name
    assert checks.check_timezone(s, Section(0, "/usr/share/zoneinfo/Europe/Berlin")).found == "Europe/Berlin"
    assert checks.check_hostname(s, Section(0, "jupyterhub\n")).passed
    assert not checks.check_hostname(s, Section(0, "debian\n")).passed
    df = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 20511312 5000000 15511312 25% /\n"
    assert checks.check_disk(Section(0, df)) == Check("disk space", ">= 1.0 GiB free on /", "14.8 GiB free of 19.6 GiB",
                                                      True)
    full = df.replace("15511312", "512000")
    assert checks.check_disk(Section(0, full)).passed is False


def test_evaluate_without_output_fails_every_check_and_plans_the_same_names() -> None:
    s = parse()
    refused = checks.HttpsAnswer("127.0.0.1", None, "connection refused", redirect_error="no answer: refused")
    results = checks.evaluate(s, {}, (False, "no answer: refused"), "http://127.0.0.1:8080/hub/api", None, refused)
    assert all(c.passed is False for c in results)
    names = [c.name for c in results]
    assert names == [c.name for c in checks.planned(s, "http://127.0.0.1:8080/hub/api")]
    assert names == ["os", "hub service", "hub api (guest)", "hub api (host)", "https mode", "https certificate",
                     "http redirect", "admin user admin", "admin password admin", "sign-up", "kernel python3",
                     "kernel ir", "package numpy", "package pandas", "package matplotlib", "R package r-cran-ggplot2",
                     "R package r-cran-data.table", "shared data", "timezone", "hostname", "disk space"]


# ---------------------------------------------------------------------------------------------------------------
# Output


def test_table_json_and_summary() -> None:
    results = [Check("os", "Debian 12 (bookworm)", "Debian GNU/Linux 12 (bookworm)", True),
               Check("hub service", "jupyterhub active", "inactive", False),
               Check("package pandas", "pandas imports in /opt/tljh/user", "not installed", False)]
    text = checks.checks_table(results)
    assert text.splitlines()[0].split() == ["check", "expected", "found", "result"]
    assert text.splitlines()[3].startswith("hub service") and text.splitlines()[3].endswith("FAIL")
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", 2222), "http://127.0.0.1:8080/hub/api", "--host", False)
    data = json.loads(remote.checks_json(endpoint, results, 1.23))
    assert data["target"] == "vagrant@127.0.0.1:2222" and (data["passed"], data["failed"]) == (1, 2)
    assert data["checks"][1] == {"name": "hub service", "expected": "jupyterhub active", "found": "inactive",
                                 "passed": False}
    assert checks.summary(results) == "2 of 3 checks failed: hub service, package pandas"
    assert checks.summary(results[:1]) is None
