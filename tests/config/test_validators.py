"""The validators of single values: good values pass, bad ones are refused with the reason, on one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubvm.config import schema
from hubvm.config.validators import Context
from hubvm.errors import ConfigError
from tests.conftest import REPO


def check(key: str, value: object, raw: dict | None = None) -> object:
    setting = schema.BY_KEY[key]
    context = Context(REPO, raw or {"vm": {"provider": "libvirt"}})
    return setting.check(key, setting.kind.coerce(value) if setting.kind.accepts(value) else value, context)


@pytest.mark.parametrize(("key", "value"), [
    ("vm.locale", "C.UTF-8"), ("vm.locale", "de_DE.UTF-8"), ("hub.tljh_plugins", ["git+https://github.com/a/b@v1"]),
    ("hub.tljh_plugins", ["tljh-plasma==0.2"]), ("hub.cpu_limit", 0.5), ("image.checksum", "sha256:" + "a" * 64),
    ("image.checksum", "md5:" + "0" * 32), ("guest.no_proxy", "localhost,127.0.0.1,.example.org,10.0.0.0/8"),
    ("guest.no_proxy", ""), ("vm.ip", "10.20.30.40"), ("hub.admin_users", ["teacher", "ta-2"]),
    ("tools.packer", "/opt/my tools/packer"), ("ssh.user", "builder"),
    ("material.repo", "git@github.com:org/course.git"), ("material.repo", "https://git.example.org/course"),
    ("material.repo", ""), ("material.branch", "fall/2026"), ("material.branch", ""),
    ("material.open", "week 1/intro.ipynb"), ("material.app", ""),
])
def test_good_values_pass(key: str, value: object) -> None:
    check(key, value)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("vm.hostname", "hub\n", "control character"), ("vm.name", "vm\r", "control character"),
    ("ssh.password", "pa\tss", "control character"), ("guest.apt_mirror", "http://deb.example.org\n", "control"),
    ("vm.locale", "en_US.UTF-8\n", "control character"), ("vm.locale", "en_US", "not a UTF-8 locale"),
    ("vm.locale", "xx_XX.UTF-8", "not a UTF-8 locale the guest can generate"),
    ("image.checksum", "sha256:abc", "64 hex digits"), ("image.checksum", "md5:" + "0" * 64, "32 hex digits"),
    ("image.checksum", "crc:1", "not a checksum"),
    ("image.url", "/no/such/image.qcow2", "no such file"), ("image.url", "ftp://x/y", "not an http(s) URL"),
    ("ssh.user", "root", "root or a system account"), ("ssh.user", "www-data", "system account"),
    ("ssh.user", "systemd-network", "system account"), ("export.ssh_user", "root", "root or a system account"),
    ("hub.admin_users", ["admin", "root"], "root or a system account"),
    ("hub.admin_users", ["admin", "admin"], "twice"), ("hub.port", 22, "SSH port"),
    ("vm.hub_host_port", 80, "out of range"), ("ssh.port", 22, "out of range"),
    ("hub.memory_limit", "0G", "less than 128M"), ("hub.memory_limit", "2GB", "not a memory size"),
    ("hub.cpu_limit", 0, "out of range"),
    ("vm.ip", "127.0.0.5", "loopback"), ("vm.ip", "169.254.10.10", "link-local"), ("vm.ip", "0.0.0.0", "loopback"),
    ("guest.no_proxy", "localhost, 127.0.0.1", "comma-separated"), ("guest.no_proxy", "a;rm -rf /", "comma"),
    ("guest.https_proxy", "http://proxy:3128 x", "not valid"), ("guest.http_proxy", "http://'x'@p", "not valid"),
    ("vm.data", "~nosuchuser/data", "unknown user"), ("tools.vagrant", " ", "is empty"),
    ("hub.tljh_plugins", ["git+ssh://x/y"], "not a pip requirement"),
    ("packages.python", ["numpy\nscipy"], "control character"),
    ("material.repo", "https://host/course x", "holds a space"), ("material.repo", "/srv/course.git", "not an"),
    ("material.repo", "https://t:secret@host/course", "holds a password"), ("material.repo", "https://h/\n", "control"),
    ("material.branch", "-main", "not valid"), ("material.branch", "a..b", "not valid"),
    ("material.branch", "main.lock", "not valid"), ("material.open", "/etc/passwd", "starts with /"),
    ("material.open", "a/../b", ". or .. part"), ("material.app", "lab", "not one of the choices"),
])
def test_bad_values_are_refused_with_the_reason(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check(key, value, {"vm": {"provider": "libvirt"}})
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_virtualbox_addresses_must_be_in_its_host_only_range() -> None:
    with pytest.raises(ConfigError, match="host-only range"):
        check("vm.ip", "10.20.30.40", {"vm": {"provider": "virtualbox"}})


def test_a_key_file_must_be_readable_and_of_its_kind(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    public = tmp_path / "id_ed25519.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@host\n")
    assert check("ssh.identity", str(private)) == private
    assert check("export.ssh_public_key", str(public)) == public
    with pytest.raises(ConfigError, match="not one OpenSSH public key"):
        check("export.ssh_public_key", str(private))
    with pytest.raises(ConfigError, match="holds no private key"):
        check("ssh.identity", str(public))
    with pytest.raises(ConfigError, match="a folder"):
        check("ssh.identity", str(tmp_path))


def test_an_unknown_locale_is_refused_with_the_nearest_known_one() -> None:
    with pytest.raises(ConfigError) as caught:
        check("vm.locale", "de_DX.UTF-8")
    assert str(caught.value) == ("vm.locale = 'de_DX.UTF-8': is not a UTF-8 locale the guest can generate; "
                                 "did you mean de_DE.UTF-8?")
    with pytest.raises(ConfigError, match=r"such as en_US\.UTF-8"):
        check("vm.locale", "xx_XX.UTF-8")
    for known in ("C.UTF-8", "en_US.UTF-8", "pt_BR.UTF-8", "zh_CN.UTF-8", "aa_ER.UTF-8"):
        assert check("vm.locale", known) == known
