"""The schema: one declaration per setting, held to invoke.yaml (keys and comments) and to the README's table;
each kind's parsing; the checks of single values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hubvm import schema
from hubvm.errors import ConfigError
from tests.conftest import REPO


def invoke_yaml_comments(path: Path = REPO / "invoke.yaml") -> dict[str, str]:
    """{"vm.ip": "its comment", ...} from invoke.yaml's key lines (a comment may go on over indented '#' lines)."""
    comments: dict[str, str] = {}
    section = key = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            key = None
            continue
        top = re.match(r"^(\w+):", line)
        if top:
            section, key = top.group(1), None
            continue
        leaf = re.match(r"^  (\w+):[^#]*(?:#\s*(.*))?$", line)
        if leaf and section is not None:
            key = f"{section}.{leaf.group(1)}"
            comments[key] = (leaf.group(2) or "").strip()
            continue
        more = re.match(r"^\s+#\s*(.*)$", line)
        if more and key is not None:
            comments[key] = f"{comments[key]} {more.group(1).strip()}".strip()
    return {k: v for k, v in comments.items() if not k.startswith("tasks.")}


def test_invoke_yaml_has_exactly_the_schema_keys_each_with_the_schema_doc() -> None:
    comments = invoke_yaml_comments()
    assert sorted(comments) == sorted(schema.all_keys())
    for setting in schema.SETTINGS:
        assert comments[setting.key] == setting.doc, setting.key


def test_readme_lists_every_key_of_every_section() -> None:
    readme = (REPO / "README.md").read_text()
    for section in schema.SECTIONS:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{section}` |")), None)
        assert row is not None, f"README has no row for {section}"
        listed = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", row.split("|")[2]))
        assert [name for name in listed if name in schema.section_keys(section)] == schema.section_keys(section), \
            section


def test_every_setting_has_an_env_variable_of_its_own() -> None:
    variables = [s.env_var for s in schema.SETTINGS]
    assert len(set(variables)) == len(variables)
    assert schema.BY_KEY["vm.hub_host_port"].env_var == "INVOKE_VM_HUB_HOST_PORT"


@pytest.mark.parametrize(("kind", "text", "value"), [
    (schema.INTEGER, "4", 4), (schema.INTEGER, " 12 ", 12),
    (schema.NUMBER, "0.5", 0.5), (schema.NUMBER, "2", 2.0),
    (schema.BOOLEAN, "yes", True), (schema.BOOLEAN, "OFF", False), (schema.BOOLEAN, "0", False),
    (schema.LIST, "[numpy, scipy]", ("numpy", "scipy")), (schema.LIST, "pandas", ("pandas",)), (schema.LIST, "", ()),
    (schema.TEXT, "a b", "a b"),
])
def test_environment_strings_become_values_of_the_kind(kind: schema.Kind, text: str, value: object) -> None:
    assert kind.from_env(text) == value


@pytest.mark.parametrize(("kind", "text"), [
    (schema.INTEGER, "²"), (schema.INTEGER, "4.0"), (schema.INTEGER, "-1"), (schema.INTEGER, ""),
    (schema.NUMBER, "nan"), (schema.NUMBER, "inf"), (schema.NUMBER, "1e400"), (schema.NUMBER, "½"),
    (schema.BOOLEAN, "maybe"), (schema.BOOLEAN, ""),
    (schema.LIST, "[unclosed"), (schema.LIST, "[[nested]]"), (schema.LIST, "[a: b]"), (schema.LIST, "[null]"),
])
def test_environment_strings_of_the_wrong_kind_are_refused(kind: schema.Kind, text: str) -> None:
    with pytest.raises(ValueError):
        kind.from_env(text)


@pytest.mark.parametrize(("kind", "value", "accepted"), [
    (schema.TEXT, "x", True), (schema.TEXT, 5, True), (schema.TEXT, True, False), (schema.TEXT, ["x"], False),
    (schema.TEXT, {"a": 1}, False), (schema.TEXT, None, False),
    (schema.INTEGER, 5, True), (schema.INTEGER, "5", True), (schema.INTEGER, True, False), (schema.INTEGER, 5.5, False),
    (schema.NUMBER, 0.5, True), (schema.NUMBER, "0.5", True), (schema.NUMBER, False, False),
    (schema.BOOLEAN, True, True), (schema.BOOLEAN, "true", False), (schema.BOOLEAN, 1, False),
    (schema.LIST, ["a", 1], True), (schema.LIST, "a", True), (schema.LIST, [None], False),
    (schema.LIST, [["a"]], False),
    (schema.LIST, {"a": 1}, False), (schema.LIST, [True], False),
])
def test_each_kind_accepts_only_its_shapes(kind: schema.Kind, value: object, accepted: bool) -> None:
    assert kind.accepts(value) is accepted


def check(key: str, value: object, raw: dict | None = None) -> object:
    setting = schema.BY_KEY[key]
    context = schema.Context(REPO, raw or {"vm": {"provider": "libvirt"}})
    return setting.check(key, setting.kind.coerce(value) if setting.kind.accepts(value) else value, context)


@pytest.mark.parametrize(("key", "value"), [
    ("vm.locale", "C.UTF-8"), ("vm.locale", "de_DE.UTF-8"), ("hub.tljh_plugins", ["git+https://github.com/a/b@v1"]),
    ("hub.tljh_plugins", ["tljh-plasma==0.2"]), ("hub.cpu_limit", 0.5), ("image.checksum", "sha256:" + "a" * 64),
    ("image.checksum", "md5:" + "0" * 32), ("guest.no_proxy", "localhost,127.0.0.1,.example.org,10.0.0.0/8"),
    ("guest.no_proxy", ""), ("vm.ip", "10.20.30.40"), ("hub.admin_users", ["teacher", "ta-2"]),
    ("tools.packer", "/opt/my tools/packer"), ("ssh.user", "builder"),
])
def test_good_values_pass(key: str, value: object) -> None:
    check(key, value)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("vm.hostname", "hub\n", "control character"), ("vm.name", "vm\r", "control character"),
    ("ssh.password", "pa\tss", "control character"), ("guest.apt_mirror", "http://deb.example.org\n", "control"),
    ("vm.locale", "en_US.UTF-8\n", "control character"), ("vm.locale", "en_US", "not valid"),
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
