"""Validation of the merged configuration: each bad value is one ConfigError naming the key, the value, where it
came from and the fix; the rules between settings; the shipped profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubvm.config import settings
from hubvm.config.layers import Layers, defaults_layer, file_layer, read_file
from hubvm.errors import ConfigError
from tests.conftest import REPO, settings_with


def parse(**overrides: object) -> settings.Settings:
    """Settings from invoke.yaml with dotted overrides such as parse(**{"vm.ip": "dhcp"})."""
    return settings_with(REPO, **overrides)


def test_defaults_are_valid() -> None:
    s = parse()
    assert s.vm.ip == "192.168.56.10"
    assert s.vm.provider == "virtualbox"
    assert s.vm.data is None
    assert s.hub.admin_users == ("admin",)
    assert s.user_env == "/opt/tljh/user"
    assert s.hub_paths.state_dir == "/opt/tljh/state"
    assert s.os_data["codename"] == "bookworm"


@pytest.mark.parametrize("profile", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_profile_is_valid(profile: str) -> None:
    path = REPO / "config" / profile
    s = settings.parse(Layers((defaults_layer(REPO), file_layer(read_file(path), profile, shared=False)), REPO))
    assert s.vm.name


BAD = [
    # (overrides, key in the message, words of the problem, words of the fix)
    ({"vm.ip": "192.168.56.300"}, "vm.ip", "not an IPv4 address", "192.168.56.10"),
    ({"vm.ip": "10.0.0.10"}, "vm.ip", "outside VirtualBox's default host-only range", "192.168.56.10"),
    ({"vm.ip": "192.168.99.1"}, "vm.ip", "host's own address", "192.168.99.10"),
    ({"vm.ip": "192.168.56.0"}, "vm.ip", "network or broadcast address", "192.168.56.10"),
    ({"vm.ip": "192.168.56.255"}, "vm.ip", "network or broadcast address", "192.168.56.10"),
    ({"vm.ip": "8.8.8.8"}, "vm.ip", "not a private address", "192.168.56.10"),
    ({"vm.data": "/no/such/folder"}, "vm.data", "no such folder", 'set "none"'),
    ({"vm.provider": "vmware"}, "vm.provider", "not one of the choices", "virtualbox, libvirt"),
    ({"vm.os": "centos7"}, "vm.os", "not a known OS", "debian12, ubuntu2404"),
    ({"vm.cpus": 0}, "vm.cpus", "out of range", "1 to 64"),
    ({"vm.cpus": 65}, "vm.cpus", "out of range", "1 to 64"),
    ({"vm.cpus": "four"}, "vm.cpus", "not a whole number", "1 to 64"),
    ({"vm.memory_mb": 512}, "vm.memory_mb", "out of range", "1024 to 262144 MiB"),
    ({"vm.disk_gb": 4}, "vm.disk_gb", "out of range", "8 to 2048 GiB"),
    ({"vm.disk_gb": True}, "vm.disk_gb", "not a whole number", "8 to 2048"),
    ({"vm.timezone": "Europe/Berln"}, "vm.timezone", "not a time zone name", "Europe/Berlin"),
    ({"vm.hostname": "Jupyter_Hub"}, "vm.hostname", "not valid", "lower-case"),
    ({"image.source": "floppy"}, "image.source", "not one of the choices", "iso, cloud, mirror"),
    ({"image.url": "https://example.org/x.iso"}, "image.checksum", "is empty while image.url is set", "sha256:"),
    ({"image.checksum": "12345"}, "image.checksum", "not a checksum", "sha256:"),
    ({"image.checksum": "sha256:12345"}, "image.checksum", "64 hex digits", "sha256:"),
    ({"image.source": "mirror"}, "image.source", "VirtualBox cannot boot", "vm.provider libvirt"),
    ({"export.formats": []}, "export.formats", "is empty", "at least one"),
    ({"export.formats": ["vdi"]}, "export.formats", "not one of the choices", "ovf, ova, qcow2"),
    ({"hub.flavour": "zero-to-jupyterhub"}, "hub.flavour", "not one of the choices", "tljh, pypi"),
    ({"hub.admin_users": []}, "hub.admin_users", "is empty", "at least one"),
    ({"hub.memory_limit": "2 gigs"}, "hub.memory_limit", "not a memory size", "2G"),
    ({"hub.tljh_version": "latest"}, "hub.tljh_version", "not a version", "2.0.0"),
    ({"packages.python": ["numpy>>1"]}, "packages.python", "not a pip requirement", "numpy>=1.26"),
    ({"packages.r": ["ggplot2"]}, "packages.r", "not valid", "r-cran-ggplot2"),
    ({"guest.https_proxy": "proxy:3128"}, "guest.https_proxy", "not valid", "http://"),
    ({"guest.ca_certificates": ["/no/such.crt"]}, "guest.ca_certificates", "no such file", "existing file"),
    ({"ssh.identity": "/no/such/key"}, "ssh.identity", "no such file", "existing file"),
    ({"ssh.password": "it's"}, "ssh.password", "not valid", "other than quotes"),
    ({"ssh.port": 8080}, "vm.hub_host_port", "is also ssh.port", "another host port"),
    ({"export.keep_vagrant_access": "yes"}, "export.keep_vagrant_access", "not true or false", "true or false"),
    ({"export.ssh_user": "vagrant"}, "export.ssh_user", "build user the export removes", "hubadmin"),
    ({"vm.cpu": 4}, "vm.cpu", "unknown setting", "did you mean vm.cpus?"),
    ({"vn.ip": "dhcp"}, "vn", "unknown setting", "did you mean vm?"),
    ({"ssh.user": "root"}, "ssh.user", "root or a system account", "such as vagrant"),
    ({"export.ssh_user": "root"}, "export.ssh_user", "root or a system account", "hubadmin"),
    ({"hub.admin_users": ["root"]}, "hub.admin_users", "root or a system account", "such as admin"),
    ({"hub.port": 22}, "hub.port", "the guest's SSH port", "another number"),
    ({"vm.hub_host_port": 80}, "vm.hub_host_port", "out of range", "need root"),
    ({"hub.memory_limit": "0G"}, "hub.memory_limit", "less than 128M", "2G"),
    ({"vm.hostname": "hub\n"}, "vm.hostname", "control character", "one line"),
    ({"packages.python": ["numpy", None]}, "packages.python", "not a list", "YAML list"),
    ({"vm.provider": "libvirt", "vm.ip": "127.0.0.2", "export.formats": ["qcow2"]}, "vm.ip", "loopback",
     "host-only address"),
    ({"image.url": "/no/such.qcow2", "image.checksum": "none"}, "image.url", "no such file", "existing image"),
    ({"material.repo": "ftp://host/course"}, "material.repo", "it is ftp://", "such as https://github.com/"),
]


@pytest.mark.parametrize(("overrides", "key", "problem", "fix"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_value_names_key_value_and_fix(overrides: dict, key: str, problem: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**overrides)
    message = str(caught.value)
    assert caught.value.key == key
    assert message.startswith(f"{key} = ")
    if caught.value.value != "" and "also" not in message and "VirtualBox cannot" not in message and \
            "build user" not in message:
        assert "(in overrides)" in message or "(from overrides)" in message
    assert problem in message
    assert fix in message
    assert "\n" not in message


def test_virtualbox_range_applies_only_to_virtualbox() -> None:
    s = parse(**{"vm.provider": "libvirt", "vm.ip": "10.20.30.40", "export.formats": ["qcow2"]})
    assert s.vm.ip == "10.20.30.40"


def test_ovf_and_ova_come_from_every_provider_and_build_mode(tmp_path: Path) -> None:
    """A libvirt or native build makes the OVA from its own disk (hubvm.ovf); a VirtualBox build from vagrant's."""
    libvirt = parse(**{"vm.provider": "libvirt", "image.source": "mirror", "export.formats": ["qcow2", "ova", "ovf"]})
    assert libvirt.export.formats == ("qcow2", "ova", "ovf")
    assert parse(**{"vm.provider": "libvirt", "export.formats": ["ova"]}).export.formats == ("ova",)
    key = tmp_path / "admin_key"
    key.write_text("private\n")
    key.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests admin\n")
    native = {"build.mode": "native", "image.source": "mirror", "vm.provider": "libvirt",
              "export.ssh_public_key": str(key.with_suffix(".pub"))}
    assert parse(**native, **{"export.formats": ["qcow2", "ova"]}).export.formats == ("qcow2", "ova")
    with pytest.raises(ConfigError, match=r"^export.formats = \['ova'\]: lacks qcow2, the disk build.mode native "
                                          r"boots to verify the appliance and puts in its box; add qcow2, such as "
                                          r"\[qcow2, ova\]$"):
        parse(**native, **{"export.formats": ["ova"]})


def test_relative_data_folder_is_relative_to_the_project() -> None:
    assert parse(**{"vm.data": "data"}).vm.data == REPO / "data"


def test_a_single_string_where_a_list_is_wanted_is_accepted() -> None:
    assert parse(**{"packages.python": "pandas"}).packages.python == ("pandas",)


def test_ca_certificate_must_hold_a_pem(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        parse(**{"guest.ca_certificates": [str(not_pem)]})


def test_public_key_must_be_an_openssh_public_key(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not one OpenSSH public key"):
        parse(**{"export.ssh_public_key": str(private)})


def test_a_fractional_cpu_limit_and_the_c_locale_are_accepted() -> None:
    s = parse(**{"hub.cpu_limit": 0.5, "vm.locale": "C.UTF-8"})
    assert (s.hub.cpu_limit, s.vm.locale) == (0.5, "C.UTF-8")


def test_the_error_names_the_layer_a_bad_value_came_from() -> None:
    env = Layers((defaults_layer(REPO),), REPO)
    with pytest.raises(ConfigError, match=r"vm.cpus = 0: is out of range \(from task flags\)"):
        settings.parse(env, file_layer({"vm": {"cpus": 0}}, "task flags", shared=False))


def test_cloud_source_needs_a_cloud_image_for_the_provider() -> None:
    with pytest.raises(ConfigError, match="publishes no cloud image for virtualbox"):
        parse(**{"image.source": "cloud"})
    s = parse(**{"image.source": "cloud", "vm.os": "ubuntu2404"})
    assert settings.image_source(s)["url"].endswith(".ova")


@pytest.mark.parametrize(("overrides", "words"), [
    ({"hub.spawner": "slurm"}, "hub.spawner = 'slurm': runs users' servers as Slurm jobs, which the pypi flavour"),
    ({"cluster.compute": ["root@10.0.0.5"]}, "cluster.compute = ['root@10.0.0.5']: is set while hub.spawner is local"),
    ({"hub.flavour": "pypi", "hub.spawner": "slurm", "cluster.controller": "slurm.example.org"},
     "cluster.slurm_conf = '': is empty while cluster.controller is the site's slurm.example.org"),
])
def test_a_cluster_needs_the_pypi_flavour_and_a_controller_hubvm_makes_or_the_sites(overrides: dict,
                                                                                  words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(**overrides)
    assert str(caught.value).startswith(words)


def test_nbgitpuller_off_refuses_a_package_list_that_installs_it() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(**{"material.nbgitpuller": False, "packages.python": ["numpy", "NbGitPuller==1.2.2"]})
    assert str(caught.value) == ("material.nbgitpuller = False: is false while packages.python installs nbgitpuller "
                                 "(the hub role would remove what the python role installs); set "
                                 "material.nbgitpuller true, or take nbgitpuller out of packages.python")
    assert settings_with(**{"packages.python": ["nbgitpuller"]}).material.nbgitpuller is True


def test_a_cluster_of_the_hub_and_its_compute_nodes_is_accepted() -> None:
    s = settings_with(**{"hub.flavour": "pypi", "hub.spawner": "slurm",
                         "cluster.compute": ["root@10.0.0.5", "10.0.0.6:2222", "admin@[fd00::7]:22"]})
    assert s.cluster.compute == ("root@10.0.0.5", "10.0.0.6:2222", "admin@[fd00::7]:22")
