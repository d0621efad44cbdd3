"""hubvm.verify.endpoint without a machine: which target verify and ssh reach (--host, or the Vagrant VM as
`vagrant ssh-config` reports it), where this host reaches the hub, and the one-line failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from invoke import Result

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.verify import endpoint as endpoints
from hubvm.verify.target import Target
from tests.conftest import settings_with
from tests.verify.helpers import SSH_CONFIG, mock

VmSettings = Callable[..., Settings]


def test_vagrant_forwarded_uses_the_port_vagrant_assigned(layout: Layout, vm_settings: VmSettings) -> None:
    s = vm_settings()
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8081\n"),
              "vagrant port --guest 443": Result("8443\n")})
    endpoint = endpoints.resolve(c, s, layout, None, None)
    assert endpoint.target == Target("127.0.0.1", "vagrant", 2200, Path(
        "/work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/private_key"))
    assert endpoint.hub_url == "http://127.0.0.1:8081/hub/api"
    assert endpoint.https_address == ("127.0.0.1", 8443)
    assert endpoint.api_url == "https://127.0.0.1:8443/hub/api"
    assert endpoint.vagrant and endpoint.source == "vagrant ssh-config"


def test_vagrant_port_unsupported_falls_back_to_the_configured_hub_port(layout: Layout,
                                                                        vm_settings: VmSettings) -> None:
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG),
              "vagrant port --guest 80": Result("", stderr="not supported", exited=1),
              "vagrant port --guest 443": Result("", stderr="not supported", exited=1)})
    endpoint = endpoints.resolve(c, vm_settings(), layout, None, None)
    assert endpoint.hub_url == "http://127.0.0.1:8080/hub/api"
    assert endpoint.https_address is None  # HTTPS not forwarded: the host's HTTPS checks are not run


def test_vagrant_ip_uses_the_configured_address_and_vagrants_key(layout: Layout, vm_settings: VmSettings) -> None:
    s = vm_settings(**{"ssh.via": "ip"})
    endpoint = endpoints.resolve(mock({"vagrant ssh-config": Result(SSH_CONFIG)}), s, layout, None, None)
    assert (endpoint.target.host, endpoint.target.port, endpoint.target.user) == ("192.168.56.10", 22, "vagrant")
    assert endpoint.target.identity is not None and endpoint.target.identity.name == "private_key"
    assert endpoint.hub_url == "http://192.168.56.10:80/hub/api"
    assert endpoint.api_url == "https://192.168.56.10:443/hub/api"


def test_vagrant_ip_with_dhcp_takes_the_address_vagrant_libvirt_reports(layout: Layout,
                                                                        vm_settings: VmSettings) -> None:
    s = vm_settings(**{"ssh.via": "ip", "vm.ip": "dhcp", "vm.provider": "libvirt", "export.formats": ["qcow2"]})
    reported = SSH_CONFIG.replace("127.0.0.1", "192.168.121.37").replace("Port 2200", "Port 22")
    endpoint = endpoints.resolve(mock({"vagrant ssh-config": Result(reported)}), s, layout, None, None)
    assert str(endpoint.target) == "vagrant@192.168.121.37:22"
    assert endpoint.hub_url == "http://192.168.121.37:80/hub/api"


def test_identity_flag_wins_over_vagrants_key(layout: Layout, vm_settings: VmSettings, tmp_path: Path) -> None:
    key = tmp_path / "mykey"
    key.write_text("x")
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")})
    assert endpoints.resolve(c, vm_settings(), layout, None, str(key)).target.identity == key


def test_host_flag(tmp_path: Path, layout: Layout, vm_settings: VmSettings) -> None:
    key = tmp_path / "id"
    key.write_text("x")
    c = mock({})  # no command may run
    endpoint = endpoints.resolve(c, vm_settings(), layout, "root@10.1.2.3", str(key))
    assert endpoint.target == Target("10.1.2.3", "root", 22, key)
    assert endpoint.hub_url == "http://10.1.2.3:80/hub/api"
    assert endpoint.https_address == ("10.1.2.3", 443)
    assert not endpoint.vagrant


def test_host_on_loopback_off_port_22_is_a_forwarded_vm(layout: Layout, vm_settings: VmSettings) -> None:
    endpoint = endpoints.resolve(mock({}), vm_settings(), layout, "127.0.0.1:2222", None)
    assert endpoint.hub_url == "http://127.0.0.1:8080/hub/api"
    assert endpoint.target.password == "vagrant"  # no key anywhere: the configured password


def test_missing_vagrantfile_is_one_line(project: Path, vm_settings: VmSettings) -> None:
    lay = Layout.of(settings_with(project))
    with pytest.raises(UserError, match=r"no Vagrant VM: .*Vagrantfile is missing; run hubvm up, or give --host"):
        endpoints.resolve(mock({}), vm_settings(), lay, None, None)


def test_vagrant_not_running_is_one_line(layout: Layout, vm_settings: VmSettings) -> None:
    c = mock({"vagrant ssh-config": Result("", stderr="The provider for this Vagrant-managed machine is reporting "
                                                     "that it is not yet ready\nfor SSH. Depending on your provider "
                                                     "this can carry different meanings.\n", exited=1)})
    with pytest.raises(UserError) as caught:
        endpoints.resolve(c, vm_settings(), layout, None, None)
    assert str(caught.value) == ("vagrant ssh-config failed (The provider for this Vagrant-managed machine is "
                                 "reporting that it is not yet ready for SSH); is the VM running? (hubvm up)")


def test_dry_run_without_a_vm_guesses_from_the_configuration(layout: Layout, vm_settings: VmSettings) -> None:
    c = mock({"vagrant ssh-config": Result("", stderr="VM not created\n", exited=1)}, dry=True)
    endpoint = endpoints.resolve(c, vm_settings(), layout, None, None, dry=True)
    assert str(endpoint.target) == "vagrant@127.0.0.1:2222"
    assert "not running now" in endpoint.source and not endpoint.reachable


def test_a_vm_that_was_never_created_is_not_asked_of_vagrant(layout: Layout, vm_settings: VmSettings) -> None:
    """`vagrant ssh-config` would write builds/vagrant/.vagrant/ (also under --dry)."""
    layout.vagrant_machine_id.unlink()
    c = mock({})  # no command may run
    endpoint = endpoints.resolve(c, vm_settings(), layout, None, None, dry=True)
    assert not endpoint.reachable and "not created yet" in endpoint.source
    with pytest.raises(UserError, match="no Vagrant VM has been created"):
        endpoints.resolve(c, vm_settings(), layout, None, None)
