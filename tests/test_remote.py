"""hubvm.remote without a machine: which target verify and ssh reach, dry runs that connect nowhere, host keys
recorded and read, and the one-line connection failures."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import paramiko
import pytest
from invoke import Config, MockContext, Result

from hubvm import remote, settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.remote import Endpoint
from hubvm.target import Target
from tests.conftest import settings_with

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


PROJECT: Path | None = None


@pytest.fixture(autouse=True)
def _project(project: Path) -> None:
    global PROJECT
    PROJECT = project


def parse(**overrides: object) -> settings.Settings:
    assert PROJECT is not None
    return settings_with(PROJECT, **{"tools.vagrant": "vagrant", **overrides})


@pytest.fixture
def layout(project: Path) -> Layout:
    """The project copy's layout with a rendered Vagrantfile and a created VM (Vagrant's machine id)."""
    lay = Layout.of(settings_with(project))
    lay.vagrant_dir.mkdir(parents=True)
    lay.vagrantfile.write_text("# rendered\n")
    lay.vagrant_machine_id.parent.mkdir(parents=True)
    lay.vagrant_machine_id.write_text("1b2c3d\n")
    return lay


def mock(run: dict, dry: bool = False) -> MockContext:
    """A MockContext answering commands that end with each key (they run as `cd builds/vagrant && .../vagrant ...`)."""
    answers = {re.compile(rf".*{re.escape(command)}$"): result for command, result in run.items()}
    return MockContext(config=Config(overrides={"run": {"dry": dry}}), run=answers)


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


def test_missing_vagrantfile_is_one_line(project: Path) -> None:
    lay = Layout.of(settings_with(project))
    with pytest.raises(UserError, match=r"no Vagrant VM: .*Vagrantfile is missing; run hubvm up, or give --host"):
        remote.resolve(mock({}), parse(), lay, None, None)


def test_vagrant_not_running_is_one_line(layout: Layout) -> None:
    c = mock({"vagrant ssh-config": Result("", stderr="The provider for this Vagrant-managed machine is reporting "
                                                     "that it is not yet ready\nfor SSH. Depending on your provider "
                                                     "this can carry different meanings.\n", exited=1)})
    with pytest.raises(UserError) as caught:
        remote.resolve(c, parse(), layout, None, None)
    assert str(caught.value) == ("vagrant ssh-config failed (The provider for this Vagrant-managed machine is "
                                 "reporting that it is not yet ready for SSH); is the VM running? (hubvm up)")


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
    remote.run_verify(c, parse(), None, None, False)
    out = capsys.readouterr().out
    assert "verify (dry run, no connection): vagrant@127.0.0.1:2200 (vagrant ssh-config)" in out
    assert "hub service" in out and "package pandas" in out and "R package r-cran-data.table" in out
    assert remote.run_ssh(c, parse(), None, None, "uptime") == 0
    assert "would run 'uptime' on vagrant@127.0.0.1:2200" in capsys.readouterr().out
    remote.run_verify(c, parse(), None, None, True)
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
    assert remote.run_ssh(c, parse(), None, None, None) == 0
    command, kwargs = seen[0]
    assert kwargs["pty"] is True
    assert f"UserKnownHostsFile={layout.known_hosts}" in command
    assert command.endswith("-p 2200 -i /work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/"
                            "private_key -o IdentitiesOnly=yes vagrant@127.0.0.1")


# ---------------------------------------------------------------------------------------------------------------
# Host keys


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




def test_a_vm_that_was_never_created_is_not_asked_of_vagrant(layout: Layout) -> None:
    """`vagrant ssh-config` would write builds/vagrant/.vagrant/ (also under --dry)."""
    layout.vagrant_machine_id.unlink()
    c = mock({})  # no command may run
    endpoint = remote.resolve(c, parse(), layout, None, None, dry=True)
    assert not endpoint.reachable and "not created yet" in endpoint.source
    with pytest.raises(UserError, match="no Vagrant VM has been created"):
        remote.resolve(c, parse(), layout, None, None)
