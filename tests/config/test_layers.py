"""The configuration layers read by the tool itself: every problem with a file is one line; each layer is checked
for known keys and the kind of each value before anything is merged; the order of precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubvm.config import layers
from hubvm.errors import ConfigError, UserError
from tests.conftest import REPO


def read(tmp_path: Path, name: str, content: bytes | str) -> dict:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return layers.read_file(path, name)


@pytest.mark.parametrize(("name", "content", "words"), [
    ("bad.yaml", "vm:\n  ip: [unclosed\n", "malformed YAML at line 3"),
    ("bad.yaml", "vm: {cpus: 2\n", "malformed YAML"),
    ("list.yaml", "- vm\n- hub\n", "holds a list, not a mapping"),
    ("scalar.yaml", "just text\n", "holds a single value"),
    ("twice.yaml", "vm:\n  cpus: 2\nvm:\n  cpus: 4\n", "the key 'vm' appears twice (line 1 and line 3)"),
    ("twice.yaml", "vm:\n  cpus: 2\n  cpus: 4\n", "the key 'cpus' appears twice"),
    ("twice.json", '{"vm": {"cpus": 2, "cpus": 4}}', "the key 'cpus' appears twice"),
    ("bad.json", '{"vm": ', "malformed JSON at line 1"),
    ("list.json", "[1, 2]", "holds a list"),
    ("profile.txt", "vm: {}\n", "must end in .yaml, .yml or .json"),
    ("latin1.yaml", b"vm:\n  hostname: caf\xe9\n", "not UTF-8"),
    ("keys.yaml", "1: x\n", "section name 1 is not text"),
])
def test_each_problem_with_a_file_is_one_line(tmp_path: Path, name: str, content: str | bytes, words: str) -> None:
    with pytest.raises(UserError) as caught:
        read(tmp_path, name, content)
    message = str(caught.value)
    assert message.startswith(name + ": ")
    assert words in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        layers.read_file(tmp_path / "nothing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(UserError, match="is a folder"):
        layers.read_file(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file; tests/test_program.py covers it as nobody")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("vm: {}\n")
    path.chmod(0)
    with pytest.raises(UserError, match="permission denied"):
        layers.read_file(path)


def test_an_empty_file_and_an_empty_section_override_nothing(tmp_path: Path) -> None:
    assert read(tmp_path, "empty.yaml", "") == {}
    assert read(tmp_path, "comments.yaml", "# nothing yet\n") == {}
    assert read(tmp_path, "empty.json", "") == {}
    assert layers.file_layer({"vm": None}, "x.yaml", shared=False).values == {}


@pytest.mark.parametrize(("data", "shared", "words"), [
    ({"vm": {"cpu": 4}}, False, "vm.cpu = 4: unknown setting (in x.yaml); did you mean vm.cpus?"),
    ({"hubb": {"flavour": "pypi"}}, False, "did you mean hub?"),
    ({"hubb": {"flavour": "pypi"}}, True, "did you mean hub?"),
    ({"VM": {"ip": "dhcp"}}, True, "did you mean vm?"),
    ({"docker": {"x": 1}}, False, "the sections are vm, build, image"),
    ({"vm": 5}, False, "is a section, not a value"),
    ({"vm": ["ip"]}, False, "is a section, not a value"),
    ({"vm": {"cpus": None}}, False, "vm.cpus = None: is empty"),
    ({"vm": {"cpus": "four"}}, False, "is not a whole number (in x.yaml)"),
    ({"vm": {"cpus": {"a": 1}}}, False, "is not a whole number"),
    ({"vm": {"name": ["a"]}}, False, "is not text"),
    ({"vm": {"name": True}}, False, "unquoted yes/no/on/off are true/false in YAML"),
    ({"packages": {"python": [None]}}, False, "is not a list"),
    ({"packages": {"python": {"numpy": 1}}}, False, "is not a list"),
    ({"export": {"keep_vagrant_access": "yes"}}, False, "is not true or false"),
    ({"run": 5}, True, "run is invoke's own section and must hold keys"),
])
def test_a_layer_is_checked_on_its_own(data: dict, shared: bool, words: str) -> None:
    with pytest.raises((ConfigError, UserError)) as caught:
        layers.file_layer(data, "x.yaml", shared=shared)
    assert words in str(caught.value)


def test_another_programs_section_in_a_shared_file_is_left_alone() -> None:
    layer = layers.file_layer({"docker": {"x": 1}, "run": {"echo": True}, "vm": {"cpus": 3}}, "~/.invoke.yaml",
                              shared=True)
    assert layer.values == {"vm": {"cpus": 3}}


def test_values_are_normalised_to_their_kind() -> None:
    layer = layers.file_layer({"vm": {"cpus": "4", "hostname": 123}, "hub": {"tljh_version": 2.1},
                               "packages": {"python": "pandas"}}, "x.yaml", shared=False)
    assert layer.values == {"vm": {"cpus": 4, "hostname": "123"}, "hub": {"tljh_version": "2.1"},
                            "packages": {"python": ("pandas",)}}


def test_environment_variables_by_kind() -> None:
    layer = layers.env_layer({"INVOKE_HUB_CPU_LIMIT": "0.5", "INVOKE_VM_CPUS": "3", "INVOKE_PACKAGES_PYTHON": "[a, b]",
                              "INVOKE_EXPORT_KEEP_VAGRANT_ACCESS": "no", "INVOKE_RUN_ECHO": "1",
                              "INVOKE_RUNTIME_CONFIG": "x.yaml", "INVOKE_OTHERTOOL_X": "1", "PATH": "/bin"})
    assert layer.values == {"hub": {"cpu_limit": 0.5}, "vm": {"cpus": 3}, "packages": {"python": ("a", "b")},
                            "export": {"keep_vagrant_access": False}}


@pytest.mark.parametrize(("environ", "words"), [
    ({"INVOKE_VM_CPU": "4"}, "INVOKE_VM_CPU = '4': is not a variable of this tool; did you mean INVOKE_VM_CPUS?"),
    ({"INVOKE_HUBB_PORT": "80"}, "did you mean INVOKE_HUB_PORT?"),
    ({"INVOKE_VM_CPUS": "four"}, "vm.cpus = 'four': is not a whole number (from INVOKE_VM_CPUS)"),
    ({"INVOKE_VM_CPUS": "²"}, "is not a whole number"),
    ({"INVOKE_HUB_CPU_LIMIT": "half"}, "hub.cpu_limit = 'half': is not a number"),
    ({"INVOKE_PACKAGES_PYTHON": "[a, [b]]"}, "is not a list of plain values"),
    ({"INVOKE_EXPORT_KEEP_VAGRANT_ACCESS": "maybe"}, "is not true or false"),
])
def test_bad_environment_variables_are_one_line(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        layers.env_layer(environ)
    assert words in str(caught.value)


def test_layers_merge_in_order_and_remember_where_each_value_came_from() -> None:
    defaults = layers.defaults_layer(REPO)
    user = layers.file_layer({"vm": {"cpus": 3, "hostname": "home"}}, "~/.invoke.yaml", shared=True)
    env = layers.env_layer({"INVOKE_VM_CPUS": "5"})
    runtime = layers.file_layer({"vm": {"hostname": "profile"}}, "mine.yaml", shared=False)
    flags = layers.flag_layer({"vm.ip": "dhcp", "vm.data": None})
    values, sources = layers.Layers((defaults, user, env, runtime), REPO).merged(flags)
    assert (values["vm"]["cpus"], sources["vm.cpus"]) == (5, "INVOKE_VM_CPUS")
    assert (values["vm"]["hostname"], sources["vm.hostname"]) == ("profile", "mine.yaml")
    assert (values["vm"]["ip"], sources["vm.ip"]) == ("dhcp", "task flags")
    assert (values["vm"]["data"], sources["vm.data"]) == ("none", "invoke.yaml")


def test_defaults_must_define_every_setting(tmp_path: Path) -> None:
    (tmp_path / "invoke.yaml").write_text("vm:\n  name: x\n")
    with pytest.raises(UserError, match=r"has no default for vm\.hostname"):
        layers.defaults_layer(tmp_path)
