"""Hostile and unusual input, generated (hypothesis), for every setting of the schema and through every layer.

For each setting: values of the wrong kind, out of range, with control characters, and YAML's special forms, given
through a -f file, ~/.invoke.yaml, an INVOKE_* variable, and the task flag where there is one, must give one
ConfigError line that names the setting (never another exception: that would be a traceback); valid values
must be accepted and render the same files whichever layer they come from. Most examples run at the level of
hubvm.config.layers + hubvm.config.settings + hubvm.render (the code every command runs, about 5 ms an
example); a sample runs through the whole `hubvm` program in this process, where exit status 1, one line on
stderr, no traceback and an unchanged builds/ are checked.

HYPOTHESIS_PROFILE=thorough runs 30 times as many examples (the closing notes give the counts).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubvm import render
from hubvm.config import schema
from hubvm.config import settings as hub_settings
from hubvm.config.kinds import Kind
from hubvm.config.layers import Layers, defaults_layer, env_layer, file_layer, flag_layer, read_file
from hubvm.config.validators import not_a_system_account
from hubvm.errors import ConfigError, UserError
from tests.conftest import copy_project, run_in_process, tree_digest

settings.register_profile("quick", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=240, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

FLAGS = {"vm.ip", "vm.data"}  # the settings a task flag gives (-i, -d)
# Generated examples run, per property (tests/conftest.py prints them at the end of the session)
EXAMPLES: dict[str, int] = {}


def counted(name: str) -> None:
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGenerated test@example\n"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBnotacertificate\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("properties") / "project")
    (root / "key.pub").write_text(PUBLIC_KEY)
    (root / "ca.pem").write_text(PEM)
    (root / "id_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    (root / "course").mkdir()  # a Binder repository's files, good on every vm.os (no runtime.txt)
    (root / "course" / "requirements.txt").write_text("# pinned\nsix==1.16.0\n")
    (root / "course" / "apt.txt").write_text("libxml2-dev\n")
    return root


# ---------------------------------------------------------------------------------------------------------------
# Valid values, per setting (a setting added to the schema without a strategy here fails
# test_every_setting_has_a_strategy)

HOST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
URL = st.builds(lambda host, path: f"http://{host}.example.org/{path}", HOST,
                st.from_regex(r"[a-z0-9._~-]{0,12}", fullmatch=True))
OPTIONAL_URL = st.just("") | URL
LOGIN = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True).filter(
    lambda name: not_a_system_account(name) is None)
HUB_NAME = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True).filter(
    lambda name: not_a_system_account(name) is None)
R_NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9.]{0,8}", fullmatch=True)
TOOL = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True) | st.just("/opt/my tools/bin/tool")


def port(low: int = 1024) -> st.SearchStrategy[int]:
    return st.integers(low, 65535)


VALID: dict[str, st.SearchStrategy[Any]] = {
    "vm.name": st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    "vm.hostname": HOST,
    "vm.ip": st.builds(lambda a, b: f"192.168.{a}.{b}", st.integers(56, 63), st.integers(2, 254)) | st.just("dhcp"),
    "vm.data": st.sampled_from(["none", "data"]),
    "vm.cpus": st.integers(1, 64),
    "vm.memory_mb": st.integers(1024, 262144),
    "vm.disk_gb": st.integers(8, 2048),
    "vm.provider": st.sampled_from(["virtualbox", "libvirt"]),
    "vm.accelerator": st.sampled_from(["kvm", "tcg"]),
    "vm.os": st.sampled_from(["debian12", "ubuntu2404"]),
    "vm.timezone": st.sampled_from(["Etc/UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Asia/Kolkata"]),
    "vm.locale": st.sampled_from(["C.UTF-8", "en_US.UTF-8", "de_DE.UTF-8", "pt_BR.UTF-8", "zh_CN.UTF-8"]),
    "vm.hub_host_port": port(),
    "vm.hub_https_host_port": port(),
    "build.mode": st.sampled_from(["vm", "native"]),
    "image.source": st.sampled_from(["iso", "cloud", "mirror"]),
    "image.url": OPTIONAL_URL,
    "image.checksum": st.just("") | st.builds(lambda h: f"sha256:{h}", st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    "image.mirror": OPTIONAL_URL,
    "ssh.user": LOGIN,
    "ssh.password": st.from_regex(r"[A-Za-z0-9!#%&()*+,./:;<=>?@\[\]^_{|}~-]{1,24}", fullmatch=True),
    "ssh.port": port(),
    "ssh.via": st.sampled_from(["forwarded", "ip"]),
    "ssh.identity": st.sampled_from(["", "id_key"]),
    "ssh.connect_timeout": st.integers(1, 600),
    "ssh.wait": st.integers(0, 3600),
    **{f"tools.{name}": TOOL for name in ("packer", "vagrant", "vboxmanage", "virsh", "qemu_img", "qemu_system",
                                          "ansible_playbook", "mmdebstrap")},
    "hub.flavour": st.sampled_from(["tljh", "pypi"]),
    "hub.tljh_version": st.sampled_from(["2.0.0", "1.0", "2.1.0rc1"]),
    "hub.tljh_plugins": st.lists(st.sampled_from(["tljh-plasma", "git+https://github.com/a/b@v1", "x==1.0"]),
                                 unique=True, max_size=3),
    "hub.admin_users": st.lists(HUB_NAME, min_size=1, max_size=3, unique=True),
    "hub.memory_limit": st.builds(lambda n: f"{n}G", st.integers(1, 64))
    | st.builds(lambda n: f"{n}M", st.integers(128, 8192)),
    "hub.cpu_limit": st.integers(1, 256) | st.sampled_from([0.25, 0.5, 1.5]),
    "hub.default_app": st.sampled_from(["jupyterlab", "classic"]),
    "hub.port": port(1).filter(lambda p: p != 22),
    "hub.signup": st.sampled_from(["closed", "open"]),
    "hub.admin_password_hashes": st.just({}) | st.builds(
        lambda tail: {"admin": "$2b$12$" + tail}, st.from_regex(r"[./A-Za-z0-9]{53}", fullmatch=True)),
    "hub.https": st.sampled_from(["self-signed", "files", "acme", "off"]),
    "hub.https_port": port(1).filter(lambda p: p not in (22, 80)),
    "hub.https_cert_file": st.sampled_from(["", "ca.pem"]),
    "hub.https_key_file": st.sampled_from(["", "id_key"]),
    "hub.https_acme_domain": st.just("") | st.builds(lambda h: f"{h}.example.org", HOST),
    "hub.https_acme_email": st.sampled_from(["", "teacher@example.org"]),
    "hub.spawner": st.sampled_from(["local", "slurm"]),
    "material.nbgitpuller": st.booleans(),
    "material.repo": st.just("") | st.builds(
        lambda form, host, name: form.format(host=host, name=name), st.sampled_from(
            ["https://{host}.example.org/teaching/{name}", "http://{host}:8080/{name}.git", "git@{host}:org/{name}",
             "ssh://git@{host}:2222/{name}.git"]), HOST, st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)),
    "material.branch": st.sampled_from(["", "main", "fall/2026", "v1.0"])
    | st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True),
    "material.open": st.just("") | st.from_regex(r"[a-z0-9][a-z0-9 _-]{0,8}(/[a-z0-9][a-z0-9._-]{0,8}){0,2}",
                                                 fullmatch=True),
    "material.app": st.sampled_from(["", "jupyterlab", "classic"]),
    "cluster.controller": st.just("") | HOST,
    "cluster.compute": st.lists(st.builds(lambda user, n, port: f"{user}10.0.0.{n}{port}",
                                          st.sampled_from(["", "root@", "admin@"]), st.integers(2, 250),
                                          st.sampled_from(["", ":22", ":2222"])), unique=True, max_size=3),
    "cluster.partition": st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True),
    "cluster.time_limit": st.sampled_from(["60", "8:00:00", "1-00:00:00", "30:00", "2-12"]),
    "cluster.sbatch_options": st.lists(st.sampled_from(["--account=teaching", "--qos=normal", "--exclusive"]),
                                       unique=True, max_size=2),
    "cluster.home": st.sampled_from(["nfs", "site"]),
    "cluster.limits": st.sampled_from(["cgroup", "none"]),
    "cluster.slurm_conf": st.sampled_from(["", "ca.pem"]),
    "cluster.munge_key": st.sampled_from(["", "id_key"]),
    "packages.python": st.lists(st.sampled_from(["numpy", "pandas>=2", "scikit-learn", "requests[socks]"]),
                                unique=True, max_size=3),
    "packages.r": st.lists(st.from_regex(r"r-cran-[a-z][a-z0-9.]{0,8}", fullmatch=True), unique=True, max_size=3),
    "packages.cran": st.lists(R_NAME, unique=True, max_size=3),
    "packages.bioconductor": st.lists(R_NAME, unique=True, max_size=3),
    "packages.cran_repo": URL,
    "packages.binder": st.sampled_from(["", "course"]),
    "guest.apt_mirror": OPTIONAL_URL,
    "guest.pip_index_url": OPTIONAL_URL,
    "guest.http_proxy": OPTIONAL_URL,
    "guest.https_proxy": OPTIONAL_URL,
    "guest.no_proxy": st.lists(HOST | st.just(".example.org") | st.just("10.0.0.0/8"), min_size=1, max_size=4).map(
        ",".join),
    "guest.ca_certificates": st.sampled_from([[], ["ca.pem"]]),
    "export.formats": st.lists(st.sampled_from(["ovf", "ova", "qcow2"]), min_size=1, unique=True),
    "export.compression": st.sampled_from(["zlib", "zstd", "none"]),
    "export.ssh_user": LOGIN,
    "export.ssh_public_key": st.sampled_from(["", "key.pub"]),
    "export.keep_vagrant_access": st.booleans(),
    "publish.cloud": st.just("") | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,12}", fullmatch=True),
    "publish.image_name": st.just("") | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._+:@()-]{0,20}", fullmatch=True),
    "publish.disk_format": st.sampled_from(["qcow2", "raw"]),
    "publish.visibility": st.sampled_from(["private", "shared", "community", "public"]),
    "publish.tags": st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), unique=True, max_size=3),
    "publish.properties": st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                                          st.from_regex(r"[a-z0-9 ._-]{0,12}", fullmatch=True), max_size=3),
    "publish.min_disk_gb": st.integers(0, 65536),
    "publish.min_ram_mb": st.integers(0, 16777216),
    "publish.disk_bus": st.sampled_from(["", "virtio", "scsi", "sata", "ide"]),
    "publish.active_timeout": st.integers(10, 86400),
}

# YAML spellings that a YAML file reads as something other than the text a person typed
YAML_FORMS = ["yes", "no", "on", "off", "null", "~", "2001-01-01", ".inf", "-.nan", "0x1F", "1e3", "0o17", "[a, b]",
              "{a: 1}", "&anchor x", "'quoted'", '"tab\\there"', "|\n    block", ">-\n    folded", "!!binary aGk=",
              "[]", "{}", "''"]


# ---------------------------------------------------------------------------------------------------------------
# Giving a value through a layer


def _yaml_text(key: str, value_text: str) -> str:
    section, _, name = key.partition(".")
    return f"{section}:\n  {name}: {value_text}\n"


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return yaml.safe_dump(list(value), default_flow_style=True).strip()
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def layers_with(project: Path, tmp: Path, key: str, layer: str, value: Any = None, raw_yaml: str | None = None
                ) -> tuple[Layers, Any]:
    """The run's layers and the task's flag layer, with `value` (or a raw YAML spelling) given through `layer`."""
    base = [defaults_layer(project)]
    flags = None
    if layer in ("file", "home"):
        text = _yaml_text(key, raw_yaml if raw_yaml is not None else yaml.safe_dump(value, default_flow_style=True)
                          .removesuffix("\n...\n").strip())
        path = tmp / ("profile.yaml" if layer == "file" else ".invoke.yaml")
        path.write_text(text)
        base.append(file_layer(read_file(path), str(path), shared=(layer == "home")))
    elif layer == "env":
        base.append(env_layer({schema.BY_KEY[key].env_var: raw_yaml if raw_yaml is not None else _env_text(value)}))
    elif layer == "flag":
        flags = flag_layer({key: value})
    return Layers(tuple(base), project), flags


def outcome(project: Path, tmp: Path, key: str, layer: str, value: Any = None, raw_yaml: str | None = None
            ) -> tuple[str, str]:
    """("ok", the rendered files) or ("error", its one line without the layer's name). Any other exception
    propagates: at the command line it would be a traceback."""
    try:
        layers, flags = layers_with(project, tmp, key, layer, value, raw_yaml)
        s = hub_settings.parse(layers, flags)
    except (ConfigError, UserError) as error:
        message = str(error)
        assert "\n" not in message, message
        for marker in (" (in ", " (from "):
            if marker in message:
                head, _, tail = message.partition(marker)
                message = head + tail[tail.index(")") + 1:]
        return "error", message
    plan = render.plan(s)
    return "ok", "\n".join(f"{f.path.relative_to(project)} {f.mode:o}\n{f.text}" for f in plan)


def assert_refused(result: tuple[str, str], key: str) -> None:
    status, message = result
    assert status == "error", f"{key}: accepted"
    assert key.split(".")[0] in message and (key in message or schema.BY_KEY[key].env_var in message), message


def layers_of_setting(key: str) -> list[str]:
    return ["file", "home", "env", *(["flag"] if key in FLAGS else [])]


# ---------------------------------------------------------------------------------------------------------------
# The properties


def test_every_setting_has_a_strategy() -> None:
    assert sorted(VALID) == sorted(list(schema.BY_KEY))


@pytest.mark.parametrize("key", list(schema.BY_KEY))
def test_valid_values_render_the_same_whichever_layer_they_come_from(key: str, project: Path,
                                                                     tmp_path: Path) -> None:
    @given(value=VALID[key])
    def check(value: Any) -> None:
        counted("valid values, every layer")
        results = {layer: outcome(project, tmp_path, key, layer, value) for layer in layers_of_setting(key)}
        assert len(set(results.values())) == 1, {layer: r[1][:200] for layer, r in results.items()}

    check()


def _wrong_kind(kind: Kind) -> st.SearchStrategy[Any]:
    scalars = st.text(string.ascii_letters, min_size=1, max_size=8) | st.floats(allow_nan=False) | st.booleans()
    nested = st.lists(scalars, max_size=3) | st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=4),
                                                             scalars, min_size=1, max_size=2)
    wrong = {
        "text": st.booleans() | nested,
        "integer": st.text(string.ascii_letters, min_size=1, max_size=6) | st.floats(allow_nan=False).filter(
            lambda f: not f.is_integer()) | st.booleans() | nested,
        "number": st.text(string.ascii_letters, min_size=1, max_size=6) | st.booleans() | nested,
        "boolean": st.integers() | st.text(string.ascii_letters, min_size=1, max_size=6) | nested,
        "list": st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=4), scalars, min_size=1,
                                max_size=2) | st.lists(st.lists(scalars, max_size=2), min_size=1, max_size=2)
        | st.booleans(),
        "mapping": st.lists(scalars, min_size=1, max_size=3) | st.text(string.ascii_letters, min_size=1, max_size=6)
        | st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=4), st.lists(scalars, min_size=1,
                                                                                          max_size=2), min_size=1,
                          max_size=2),
    }
    return wrong[kind.name]


@pytest.mark.parametrize("key", list(schema.BY_KEY))
def test_values_of_the_wrong_kind_are_one_line_naming_the_setting(key: str, project: Path, tmp_path: Path) -> None:
    @given(value=_wrong_kind(schema.BY_KEY[key].kind), layer=st.sampled_from(["file", "home"]))
    def check(value: Any, layer: str) -> None:
        counted("wrong kind")
        assert_refused(outcome(project, tmp_path, key, layer, value), key)

    check()


TEXTUAL = [s.key for s in schema.SETTINGS if s.kind.name in ("text", "list", "mapping")]


@pytest.mark.parametrize("key", TEXTUAL)
def test_control_characters_are_refused_in_every_layer(key: str, project: Path, tmp_path: Path) -> None:
    controls = st.sampled_from(["\n", "\r", "\t", "\x1b", "\x7f", "\x0b", "\x00"])

    @given(value=VALID[key], control=controls, at=st.integers(0, 40), layer=st.sampled_from(layers_of_setting(key)))
    def check(value: Any, control: str, at: int, layer: str) -> None:
        counted("control characters")
        if layer == "env" and control == "\x00":
            control = "\n"  # an environment variable cannot hold NUL
        if isinstance(value, dict):
            value = {**value, "k": "v"[:at] + control + "v"[at:]}
        elif isinstance(value, list):
            value = [*value, "x"]
            value[-1] = value[-1][:at] + control + value[-1][at:]
        else:
            text = str(value)
            value = text[:at] + control + text[at:]
        assert_refused(outcome(project, tmp_path, key, layer, value), key)

    check()


NUMERIC = [s for s in schema.SETTINGS if s.kind.name in ("integer", "number")]


@pytest.mark.parametrize("key", [s.key for s in NUMERIC])
def test_numbers_out_of_range_are_refused_in_every_layer(key: str, project: Path, tmp_path: Path) -> None:
    setting = schema.BY_KEY[key]
    low, high = (0, 256) if key == "hub.cpu_limit" else _range(setting)

    @given(value=st.integers(max_value=low - 1) | st.integers(min_value=high + 1),
           layer=st.sampled_from(layers_of_setting(key)))
    def check(value: int, layer: str) -> None:
        counted("out of range")
        if value < 0 and layer == "env":
            value = -value if -value > high else high + 1  # "-1" is not a number there: refused for that reason
        if key == "hub.cpu_limit" and value == 0:
            value = -1 if layer != "env" else 300
        assert_refused(outcome(project, tmp_path, key, layer, value), key)

    check()


def _range(setting: schema.Setting) -> tuple[int, int]:
    fix = schema.fix_of(setting) or ""
    numbers = [int(n) for n in fix.replace(" to ", " ").split() if n.isdigit()]
    return numbers[0], numbers[1]


@pytest.mark.parametrize("key", [s.key for s in schema.SETTINGS if s.kind.name == "text"])
def test_yaml_special_forms_are_either_refused_in_one_line_or_taken_as_typed(key: str, project: Path,
                                                                             tmp_path: Path) -> None:
    """`hostname: yes` is the boolean true to YAML: it must be refused (quote it), never turned into "True"."""
    for form in YAML_FORMS:
        counted("YAML forms")
        status, message = outcome(project, tmp_path, key, "file", raw_yaml=form)
        read = yaml.safe_load(_yaml_text(key, form))[key.split(".")[0]][key.split(".")[1]]
        if isinstance(read, (bool, list, dict)) or read is None or not isinstance(read, (str, int, float)):
            assert status == "error" and key in message, (form, message)
        elif status == "error":
            assert key in message, (form, message)


def test_a_sample_through_the_whole_program(project: Path, tmp_path: Path) -> None:
    """Exit status 1, one line on stderr, no traceback, builds/ unchanged: for a generated bad value of each kind,
    through each layer, through the `hubvm` program itself."""
    home = tmp_path / "home"
    home.mkdir()
    assert run_in_process(project, home, ["render"]).code == 0
    before = tree_digest(project / "builds")
    cases: list[tuple[str, str, Callable[[], tuple[list[str], dict[str, str]]]]] = []
    for key, text in [("vm.cpus", "four"), ("vm.hostname", "bad\\nname"), ("hub.cpu_limit", "-2"),
                      ("export.formats", "{a: 1}"), ("ssh.user", "root"), ("guest.no_proxy", "a b")]:
        env_value = yaml.safe_load(f"x: \"{text}\"")["x"]
        cases.append((key, "env", lambda key=key, v=env_value: (["render"], {schema.BY_KEY[key].env_var: v})))
        profile = tmp_path / f"{key}.yaml"
        profile.write_text(_yaml_text(key, f'"{text}"' if key != "export.formats" else text))
        cases.append((key, "file", lambda p=profile: (["-f", str(p), "render"], {})))
    cases.append(("vm.ip", "flag", lambda: (["render", "-i", "300.1.1.1"], {})))
    for key, layer, make in cases:
        counted("whole program")
        args, env = make()
        result = run_in_process(project, home, args, env)
        assert result.code == 1, (key, layer, result.stdout, result.stderr)
        assert len(result.lines) == 1 and result.lines[0].startswith("error: "), (key, layer, result.stderr)
        assert key in result.lines[0] or schema.BY_KEY[key].env_var in result.lines[0], result.lines[0]
        assert "Traceback" not in result.stderr + result.stdout
    assert tree_digest(project / "builds") == before
