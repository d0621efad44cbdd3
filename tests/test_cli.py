"""The real `invoke` binary on a copy of the project: help, configuration layers, and bad input.

Bad input must give one line naming the setting, the value and the fix; a non-zero exit; no traceback; and
nothing under builds/ changed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import tree_digest

TASKS = ["all", "check", "clean", "destroy", "export", "pack", "provision", "render", "ssh", "up", "verify"]


def test_list_shows_every_task_with_help(invoke) -> None:
    result = invoke("--list")
    assert result.returncode == 0, result.stderr
    for name in TASKS:
        line = next((row for row in result.stdout.splitlines() if row.strip().startswith(name + " ")), "")
        assert len(line.split()) > 2, f"{name} has no help text in --list"


@pytest.mark.parametrize(("task", "flags"), [("up", ["--ip", "--data", "--provision"]), ("pack", ["--force"]),
                                             ("provision", ["--host", "--identity"]), ("ssh", ["--command"]),
                                             ("verify", ["--json", "--host"]), ("clean", ["--all"]),
                                             ("destroy", ["--yes"]), ("all", ["--ip", "--data"])])
def test_help_documents_the_flags(invoke, task: str, flags: list[str]) -> None:
    result = invoke("--help", task)
    assert result.returncode == 0, result.stderr
    for flag in flags:
        assert re.search(rf"{flag}\S*\s+\S", result.stdout), f"{flag} undocumented in --help {task}"


def rendered_vars(project: Path) -> dict:
    return yaml.safe_load((project / "builds" / "ansible" / "vars.yml").read_text())


def test_render_writes_every_generated_file(invoke, project: Path) -> None:
    result = invoke("render")
    assert result.returncode == 0, result.stderr
    builds = project / "builds"
    for path in ["packer/box.pkr.hcl", "packer/plugins.pkr.hcl", "packer/variables.pkrvars.json",
                 "http/preseed.cfg", "vagrant/Vagrantfile", "ansible/vars.yml"]:
        assert (builds / path).is_file(), path
    variables = json.loads((builds / "packer" / "variables.pkrvars.json").read_text())
    assert variables["name"] == "jupyterhub-vm"
    assert variables["disk_size"] == 20 * 1024
    assert 'ip: "192.168.56.10"' in (builds / "vagrant" / "Vagrantfile").read_text()
    assert rendered_vars(project)["base_hostname"] == "jupyterhub"


def test_user_file_env_runtime_file_and_flags_override_in_order(invoke, project: Path, home: Path) -> None:
    """~/.invoke.yaml beats the project's invoke.yaml (invoke alone ranks them the other way round), INVOKE_*
    beats ~/.invoke.yaml, -f beats INVOKE_*, and a task flag beats everything."""
    (home / ".invoke.yaml").write_text("vm:\n  hostname: fromhome\n  timezone: Europe/Berlin\n"
                                       "  cpus: 3\n  memory_mb: 3072\n")
    profile = project / "mine.yaml"
    profile.write_text("vm:\n  cpus: 4\n  ip: 192.168.56.20\n")
    env = {"INVOKE_VM_TIMEZONE": "Europe/Paris", "INVOKE_VM_CPUS": "5"}
    result = invoke("-f", str(profile), "render", "--ip", "192.168.56.30", env=env)
    assert result.returncode == 0, result.stderr
    values = rendered_vars(project)
    assert values["base_hostname"] == "fromhome"          # ~/.invoke.yaml over invoke.yaml
    assert values["base_timezone"] == "Europe/Paris"      # INVOKE_* over ~/.invoke.yaml
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert "vb.memory = 3072" in vagrantfile              # ~/.invoke.yaml, nobody above it
    assert "vb.cpus = 4" in vagrantfile                   # -f over INVOKE_*
    assert 'ip: "192.168.56.30"' in vagrantfile           # the flag over -f


def test_data_flag_and_dhcp(invoke, project: Path) -> None:
    result = invoke("render", "-i", "dhcp", "-d", "data")
    assert result.returncode == 0, result.stderr
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert 'type: "dhcp"' in vagrantfile
    assert f'"{project / "data"}", "/media/shared_data", type: "virtualbox"' in vagrantfile
    assert rendered_vars(project)["shared_data_source"] == "/media/shared_data"


BAD_INPUT = [
    # (invoke arguments, a file to pass with -f (or None), environment, words the one line must hold)
    (["render", "-i", "192.168.56.300"], None, {}, ["vm.ip", "192.168.56.300", "not an IPv4 address"]),
    (["render", "-i", "10.1.2.3"], None, {}, ["vm.ip", "outside VirtualBox's default host-only range"]),
    (["render", "-i", "192.168.99.1"], None, {"INVOKE_VM_PROVIDER": "libvirt", "INVOKE_EXPORT_FORMATS": "[qcow2]"},
     ["vm.ip", "192.168.99.1", "host's own address"]),
    (["render"], None, {"INVOKE_VM_CPUS": "four"}, ["vm.cpus", "'four'", "not a whole number"]),
    (["render"], None, {"INVOKE_EXPORT_KEEP_VAGRANT_ACCESS": "maybe"}, ["export.keep_vagrant_access", "maybe"]),
    (["render", "-d", "/no/such/folder"], None, {}, ["vm.data", "/no/such/folder", "no such folder"]),
    (["render"], None, {"INVOKE_VM_PROVIDER": "vmware"}, ["vm.provider", "vmware", "virtualbox, libvirt"]),
    (["render"], "vm:\n  os: centos7\n", {}, ["vm.os", "centos7", "debian12, ubuntu2404"]),
    (["render"], "vm:\n  cpus: 0\n", {}, ["vm.cpus", "out of range", "1 to 64"]),
    (["render"], "vm:\n  memory_mb: 100000000\n", {}, ["vm.memory_mb", "out of range"]),
    (["render"], "vm:\n  disk_gb: 2\n", {}, ["vm.disk_gb", "out of range"]),
    (["render"], "vm:\n  cpu: 4\n", {}, ["vm.cpu", "unknown setting", "did you mean vm.cpus?"]),
    (["render"], "hubb:\n  flavour: pypi\n", {}, ["hubb", "unknown setting", "did you mean hub?"]),
    (["render"], "vm:\n  ip: [unclosed\n", {}, ["malformed YAML at line 3", "fix the file's syntax"]),
    (["all", "--ip", "192.168.56.1"], None, {}, ["vm.ip", "host's own address"]),
    # up's flags are checked before its pre-task (pack) runs
    (["up", "--ip", "192.168.56.300"], None, {}, ["vm.ip", "192.168.56.300", "not an IPv4 address"]),
    (["pack", "up", "-d", "/no/such/folder"], None, {}, ["vm.data", "/no/such/folder", "no such folder"]),
    (["pack"], "image:\n  source: mirror\n", {}, ["image.source", "vm.provider libvirt"]),
]


@pytest.mark.parametrize(("args", "profile", "env", "words"), BAD_INPUT, ids=[" ".join(c[0]) + (
    f" -f {c[1].splitlines()[1].strip()}" if c[1] else "") for c in BAD_INPUT])
def test_bad_input_is_one_line_and_changes_nothing(invoke, project: Path, args: list[str], profile: str | None,
                                                   env: dict[str, str], words: list[str]) -> None:
    assert invoke("render").returncode == 0  # builds/ holds files that must survive the bad run
    before = tree_digest(project / "builds")
    extra = []
    if profile is not None:
        (project / "profile.yaml").write_text(profile)
        extra = ["-f", "profile.yaml"]
    result = invoke(*extra, *args, env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    assert tree_digest(project / "builds") == before


def test_check_tells_what_is_missing_and_how_to_get_it(invoke, project: Path) -> None:
    (project / "profile.yaml").write_text("tools:\n  vboxmanage: /nonexistent/VBoxManage\n")
    result = invoke("-f", "profile.yaml", "check")
    assert result.returncode == 1
    assert "VirtualBox" in result.stdout
    assert "https://www.virtualbox.org/wiki/Linux_Downloads" in result.stdout
    assert result.stderr.strip() == "error: missing or too old: VirtualBox"


def test_destroy_without_a_vm_destroys_nothing(invoke) -> None:
    result = invoke("destroy", "--yes")
    assert result.returncode == 0, result.stderr
    assert "no VM to destroy" in result.stdout


def test_clean_removes_rendered_files_but_keeps_boxes(invoke, project: Path) -> None:
    assert invoke("render").returncode == 0
    box = project / "builds" / "boxes" / "x.box"
    box.parent.mkdir(parents=True)
    box.write_text("box")
    result = invoke("clean")
    assert result.returncode == 0, result.stderr
    assert not (project / "builds" / "packer").exists()
    assert not (project / "builds" / "vagrant").exists()
    assert box.is_file()
    assert (project / "builds" / "README.md").is_file()


def test_clean_refuses_while_a_vm_exists(invoke, project: Path) -> None:
    machine = project / "builds" / "vagrant" / ".vagrant" / "machines" / "jupyterhub-vm" / "virtualbox"
    machine.mkdir(parents=True)
    (machine / "id").write_text("1234")
    result = invoke("clean", "--all")
    assert result.returncode == 1
    assert "destroy it first" in result.stderr
    assert (machine / "id").is_file()


def test_all_with_nothing_changed_skips_every_step(invoke, project: Path) -> None:
    """What a second `invoke all` finds after a complete first one: the box and builds/vm/ of the same inputs."""
    from hubvm import settings, stamps, steps
    from hubvm.layout import Layout

    s = settings.parse(settings.defaults(project), project)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    stamps.write(layout.box_stamp, stamps.box_digest(s))
    for artifact in steps.artifact_paths(s, layout):
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.mkdir() if artifact.name == "ovf" else artifact.write_bytes(b"x")
    stamps.write(layout.export_stamp, stamps.export_digest(s, stamps.box_digest(s)))
    before = tree_digest(project / "builds")

    result = invoke("all")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[-4:]}
    assert rows == {"pack": "skipped", "up": "skipped", "verify": "skipped", "export": "skipped"}
    assert tree_digest(project / "builds") == before

    # a changed package list leaves the box alone but not the appliance: the real run would go on to `up`
    dry = invoke("--dry", "all", env={"INVOKE_PACKAGES_PYTHON": "[scipy]"})
    assert dry.returncode == 0, dry.stderr
    assert "pack: builds/boxes/jupyterhub-vm-debian12-virtualbox.box is up to date" in dry.stdout
    assert " up --provider=virtualbox" in dry.stdout


@pytest.mark.parametrize(("task", "tool", "fix"), [
    ("all", "vboxmanage", "VirtualBox: install it from https://www.virtualbox.org/"),
    ("pack", "vboxmanage", "VirtualBox: install it from https://www.virtualbox.org/"),
    # up and export run pack first (a pre-task): hubvm.executor checks up's tools before it
    ("up", "vagrant", "Vagrant: install it: sudo apt-get install vagrant"),
    ("export", "vagrant", "Vagrant: install it: sudo apt-get install vagrant"),
])
def test_a_run_checks_every_tool_it_needs_before_the_first_step(invoke, project: Path, task: str, tool: str,
                                                                fix: str) -> None:
    (project / "profile.yaml").write_text(f"tools:\n  {tool}: /nonexistent/{tool}\n")
    result = invoke("-f", "profile.yaml", task)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and fix in line, line
    assert "==> pack" not in result.stdout
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]
