"""The `hubvm` command on a copy of the project: listing and help, the configuration layers in their order, and
bad input of every kind as one line (exit 1, no traceback, builds/ unchanged).

Most cases run the real command as a process (`cli`); the many-input cases run the same program in this process
(`run_in_process`), which is the same code without a new interpreter each time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from hubvm.program import plain_parse_error
from tests.conftest import INVOKE, copy_project, run_in_process, tree_digest

TASKS = ["all", "check", "clean", "destroy", "export", "pack", "provision", "publish", "render", "ssh", "up",
         "verify"]


def rendered_vars(project: Path) -> dict:
    return yaml.safe_load((project / "builds" / "ansible" / "vars.yml").read_text())


def test_list_shows_every_task_with_help(cli) -> None:
    result = cli("--list")
    assert result.returncode == 0, result.stderr
    for name in TASKS:
        line = next((row for row in result.stdout.splitlines() if row.strip().startswith(name + " ")), "")
        assert len(line.split()) > 2, f"{name} has no help text in --list"


@pytest.mark.parametrize(("task", "flags"), [("up", ["--ip", "--data", "--provision"]), ("pack", ["--force"]),
                                             ("provision", ["--host", "--identity"]), ("ssh", ["--command"]),
                                             ("verify", ["--json", "--host"]), ("clean", ["--all"]),
                                             ("destroy", ["--yes"]), ("all", ["--ip", "--data"]),
                                             ("check", ["--json"])])
def test_help_documents_the_flags(cli, task: str, flags: list[str]) -> None:
    result = cli("--help", task)
    assert result.returncode == 0, result.stderr
    for flag in flags:
        assert re.search(rf"{flag}\S*\s+\S", result.stdout), f"{flag} undocumented in --help {task}"


def test_render_writes_every_generated_file(cli, project: Path) -> None:
    result = cli("render")
    assert result.returncode == 0, result.stderr
    builds = project / "builds"
    for path in ["packer/box.pkr.hcl", "packer/plugins.pkr.hcl", "packer/variables.pkrvars.json",
                 "packer/http/preseed.cfg", "vagrant/Vagrantfile", "ansible/vars.yml"]:
        assert (builds / path).is_file(), path
    variables = json.loads((builds / "packer" / "variables.pkrvars.json").read_text())
    assert variables["name"] == "jupyterhub-vm"
    assert variables["disk_size"] == 20 * 1024
    assert "ip: '192.168.56.10'" in (builds / "vagrant" / "Vagrantfile").read_text()
    assert rendered_vars(project)["base_hostname"] == "jupyterhub"


def test_every_layer_overrides_the_ones_below_it(project: Path, home: Path, tmp_path: Path) -> None:
    """invoke.yaml < /etc/invoke.yaml < ~/.invoke.yaml < INVOKE_* < -f < task flags (invoke alone ranks the
    project's invoke.yaml above the personal files)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "invoke.yaml").write_text("vm:\n  hostname: frometc\n  locale: de_DE.UTF-8\n  cpus: 2\n"
                                     "guest:\n  no_proxy: etc.example.org\n")
    (home / ".invoke.yaml").write_text("vm:\n  hostname: fromhome\n  timezone: Europe/Berlin\n"
                                       "  cpus: 3\n  memory_mb: 3072\n")
    profile = project / "mine.yaml"
    profile.write_text("vm:\n  cpus: 4\n  ip: 192.168.56.20\n")
    env = {"INVOKE_VM_TIMEZONE": "Europe/Paris", "INVOKE_VM_CPUS": "5"}
    result = run_in_process(project, home, ["-f", str(profile), "render", "--ip", "192.168.56.30"], env,
                            system_prefix=f"{etc}/")
    assert result.code == 0, result.stderr
    values = rendered_vars(project)
    assert values["base_locale"] == "de_DE.UTF-8"          # /etc over invoke.yaml
    assert values["base_no_proxy"] == "etc.example.org"
    assert values["base_hostname"] == "fromhome"           # ~/.invoke.yaml over /etc
    assert values["base_timezone"] == "Europe/Paris"       # INVOKE_* over ~/.invoke.yaml
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert "vb.memory = 3072" in vagrantfile               # ~/.invoke.yaml, nobody above it
    assert "vb.cpus = 4" in vagrantfile                    # -f over INVOKE_*
    assert "ip: '192.168.56.30'" in vagrantfile            # the flag over -f


def test_the_same_layers_through_the_real_command(cli, project: Path, home: Path) -> None:
    (home / ".invoke.yaml").write_text("vm:\n  hostname: fromhome\n")
    result = cli("render", env={"INVOKE_HUB_CPU_LIMIT": "0.5"})
    assert result.returncode == 0, result.stderr
    values = rendered_vars(project)
    assert (values["base_hostname"], values["hub_cpu_limit"]) == ("fromhome", 0.5)


def test_plain_invoke_hands_over_to_hubvm(cli, project: Path, home: Path) -> None:
    (home / ".invoke.yaml").write_text("vm:\n  hostname: fromhome\n")
    result = cli("render", binary=INVOKE, env={"INVOKE_HUB_CPU_LIMIT": "0.5"})
    assert result.returncode == 0, result.stderr
    values = rendered_vars(project)
    assert (values["base_hostname"], values["hub_cpu_limit"]) == ("fromhome", 0.5)


def test_data_flag_and_dhcp(cli, project: Path) -> None:
    result = cli("render", "-i", "dhcp", "-d", "data")
    assert result.returncode == 0, result.stderr
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert 'type: "dhcp"' in vagrantfile
    assert f"'{project / 'data'}', '/media/shared_data', type: \"virtualbox\"" in vagrantfile
    assert rendered_vars(project)["shared_data_source"] == "/media/shared_data"


def test_a_folder_name_that_ruby_would_run_is_written_as_text(cli, project: Path) -> None:
    folder = project / "#{system('touch pwned')}'x"
    folder.mkdir()
    result = cli("render", "-d", str(folder))
    assert result.returncode == 0, result.stderr
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert "'" + str(folder).replace("'", "\\'") + "'" in vagrantfile


def test_a_foreign_section_in_the_personal_file_is_left_alone(cli, project: Path, home: Path) -> None:
    (home / ".invoke.yaml").write_text("docker:\n  host: tcp://x\nrun:\n  echo: false\nvm:\n  cpus: 3\n")
    result = cli("render")
    assert result.returncode == 0, result.stderr
    assert "vb.cpus = 3" in (project / "builds" / "vagrant" / "Vagrantfile").read_text()


BAD_INPUT = [
    # (arguments, a file to pass with -f (or None), environment, words the one line must hold)
    (["render", "-i", "192.168.56.300"], None, {}, ["vm.ip", "192.168.56.300", "not an IPv4 address"]),
    (["render", "-i", "10.1.2.3"], None, {}, ["vm.ip", "outside VirtualBox's default host-only range"]),
    (["render", "-i", "192.168.99.1"], None, {"INVOKE_VM_PROVIDER": "libvirt", "INVOKE_EXPORT_FORMATS": "[qcow2]"},
     ["vm.ip", "192.168.99.1", "host's own address"]),
    (["render"], None, {"INVOKE_VM_CPUS": "four"}, ["vm.cpus", "'four'", "not a whole number"]),
    (["render"], None, {"INVOKE_EXPORT_KEEP_VAGRANT_ACCESS": "maybe"}, ["export.keep_vagrant_access", "maybe"]),
    (["render"], None, {"INVOKE_VM_CPU": "4"}, ["INVOKE_VM_CPU", "did you mean INVOKE_VM_CPUS?"]),
    (["render", "-d", "/no/such/folder"], None, {}, ["vm.data", "/no/such/folder", "no such folder"]),
    (["render"], None, {"INVOKE_VM_PROVIDER": "vmware"}, ["vm.provider", "vmware", "virtualbox, libvirt"]),
    (["render"], "vm:\n  os: centos7\n", {}, ["vm.os", "centos7", "debian12, ubuntu2404"]),
    (["render"], "vm:\n  cpus: 0\n", {}, ["vm.cpus", "out of range", "1 to 64"]),
    (["render"], "vm:\n  memory_mb: 100000000\n", {}, ["vm.memory_mb", "out of range"]),
    (["render"], "vm:\n  disk_gb: 2\n", {}, ["vm.disk_gb", "out of range"]),
    (["render"], "vm:\n  cpu: 4\n", {}, ["vm.cpu", "unknown setting", "did you mean vm.cpus?"]),
    (["render"], "hubb:\n  flavour: pypi\n", {}, ["hubb", "unknown setting", "did you mean hub?"]),
    (["render"], "vm:\n  ip: [unclosed\n", {}, ["malformed YAML at line 3", "fix the file's syntax"]),
    (["render"], "vm:\n  cpus: 2\nvm:\n  cpus: 3\n", {}, ["appears twice"]),
    (["render"], "- vm\n", {}, ["holds a list"]),
    (["render"], "ssh:\n  user: root\n", {}, ["ssh.user", "root or a system account"]),
    (["render"], "hub:\n  port: 22\n", {}, ["hub.port", "SSH port"]),
    (["ssh", "-c", " "], None, {}, ["--command is empty"]),
    (["all", "--ip", "192.168.56.1"], None, {}, ["vm.ip", "host's own address"]),
    # up's flags are checked before its pre-task (pack) runs
    (["up", "--ip", "192.168.56.300"], None, {}, ["vm.ip", "192.168.56.300", "not an IPv4 address"]),
    (["pack", "up", "-d", "/no/such/folder"], None, {}, ["vm.data", "/no/such/folder", "no such folder"]),
    (["pack"], "image:\n  source: mirror\n", {}, ["image.source", "vm.provider libvirt"]),
    (["publish"], None, {}, ["publish uploads the qcow2", "add qcow2 to export.formats"]),
    (["rendr"], None, {}, ["'rendr' is not a task", "hubvm --list"]),
    (["render", "--colour"], None, {}, ["--colour is not a flag of render", "hubvm --help render"]),
    (["render", "--ip"], None, {}, ["--ip needs a value", "hubvm --help render"]),
    (["--frobnicate"], None, {}, ["--frobnicate is not an option of hubvm"]),
]


def _case_id(case: tuple) -> str:
    args, profile, env, _ = case
    return " ".join(args) + (f" -f {profile.splitlines()[0]}" if profile else "") + "".join(f" {k}" for k in env)


@pytest.mark.parametrize(("args", "profile", "env", "words"), BAD_INPUT, ids=[_case_id(c) for c in BAD_INPUT])
def test_bad_input_is_one_line_and_changes_nothing(project: Path, home: Path, args: list[str], profile: str | None,
                                                   env: dict[str, str], words: list[str]) -> None:
    assert run_in_process(project, home, ["render"]).code == 0  # builds/ holds files that must survive
    before = tree_digest(project / "builds")
    extra = []
    if profile is not None:
        (project / "profile.yaml").write_text(profile)
        extra = ["-f", str(project / "profile.yaml")]
    result = run_in_process(project, home, [*extra, *args], env)
    assert result.code == 1, result.stderr
    assert len(result.lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.lines[0], result.lines[0]
    assert tree_digest(project / "builds") == before


@pytest.mark.parametrize("case", [0, 13, 25], ids=lambda i: _case_id(BAD_INPUT[i]))
def test_bad_input_through_the_real_command(cli, project: Path, case: int) -> None:
    """A few of the cases above as a process: the exit status and stderr the shell sees."""
    args, profile, env, words = BAD_INPUT[case]
    extra = []
    if profile is not None:
        (project / "profile.yaml").write_text(profile)
        extra = ["-f", "profile.yaml"]
    result = cli(*extra, *args, env=env)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(word in line for word in words), line
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]


PERSONAL_FILES = [
    # (what ~/.invoke.yaml is, how to make it, words of the one line)
    ("malformed", lambda p: p.write_text("vm: {cpus: 2\n"), "malformed YAML"),
    ("a list", lambda p: p.write_text("- a\n- b\n"), "holds a list"),
    ("a scalar", lambda p: p.write_text("hello\n"), "holds a single value"),
    ("a folder", lambda p: p.mkdir(), "is a folder"),
    ("duplicate keys", lambda p: p.write_text("vm:\n  cpus: 2\n  cpus: 3\n"), "appears twice"),
    ("a capitalised section", lambda p: p.write_text("VM:\n  ip: dhcp\n"), "did you mean vm?"),
    ("a mapping where a list is wanted", lambda p: p.write_text("packages:\n  python: {numpy: 1}\n"), "not a list"),
    ("a list where text is wanted", lambda p: p.write_text("vm:\n  hostname: [a]\n"), "is not text"),
    ("invoke's own section broken", lambda p: p.write_text("run: 5\n"), "invoke's own section"),
    ("not UTF-8", lambda p: p.write_bytes(b"vm:\n  hostname: caf\xe9\n"), "not UTF-8"),
]


@pytest.mark.parametrize(("what", "make", "words"), PERSONAL_FILES, ids=[c[0] for c in PERSONAL_FILES])
def test_a_broken_personal_file_is_one_line(project: Path, home: Path, what: str, make, words: str) -> None:
    make(home / ".invoke.yaml")
    result = run_in_process(project, home, ["render"])
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.lines
    assert line.startswith("error: ") and words in line, line
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]


def test_a_broken_personal_file_through_the_real_command(cli, project: Path, home: Path) -> None:
    """invoke reads ~/.invoke.yaml before it loads any project code: only the hubvm command can say this in one
    line."""
    (home / ".invoke.yaml").write_text("vm: {cpus: 2\n")
    result = cli("render")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "malformed YAML" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "make", "words"), [
    ("missing.yaml", None, "no such file"),
    ("profile.txt", "vm: {}\n", "must end in .yaml, .yml or .json"),
    ("empty.yaml", "", None),
    ("sections.yaml", "vm:\nhub:\n", None),
])
def test_runtime_files(project: Path, home: Path, name: str, make: str | None, words: str | None) -> None:
    if make is not None:
        (project / name).write_text(make)
    result = run_in_process(project, home, ["-f", str(project / name), "render"])
    if words is None:
        assert result.code == 0, result.stderr  # an empty file or section overrides nothing
    else:
        assert result.code == 1
        assert words in result.stderr and len(result.lines) == 1, result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as nobody")
def test_an_unreadable_personal_file_is_one_line(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="hubvm-nobody-"))
    try:
        base.chmod(0o755)
        project = copy_project(base / "project")
        home = base / "home"
        home.mkdir()
        (home / ".invoke.yaml").write_text("vm: {cpus: 2}\n")
        (home / ".invoke.yaml").chmod(0)
        for path in [project, *project.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        from tests.conftest import HANG_GUARD, HUBVM

        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", HUBVM, "render"],
                                cwd=project, env={"HOME": str(home), "PATH": os.environ["PATH"]},
                                capture_output=True, text=True, timeout=HANG_GUARD)
    finally:
        shutil.rmtree(base)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and "permission denied" in result.stderr, result.stderr


def test_flags_win_over_the_environment_also_before_the_pre_tasks(cli, project: Path) -> None:
    result = cli("--dry", "up", "-i", "192.168.56.20", env={"INVOKE_VM_IP": "300.1.1.1"})
    assert "vm.ip" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]  # --dry writes nothing


def test_dry_runs_write_nothing_even_after_a_render(cli, project: Path) -> None:
    """Vagrant writes builds/vagrant/.vagrant/ whenever it is asked about a machine: a dry run must not ask it.
    (`--dry all` after a render: in test_all_with_nothing_changed_skips_every_step.)"""
    assert cli("render").returncode == 0
    before = tree_digest(project / "builds")
    for args in (["--dry", "verify"], ["--dry", "destroy"]):
        result = cli(*args)
        assert "Traceback" not in result.stderr, result.stderr
    assert not (project / "builds" / "vagrant" / ".vagrant").exists()
    assert tree_digest(project / "builds") == before


@pytest.mark.parametrize(("message", "task", "line"), [
    ("No idea what 'foo' is!", None, "error: 'foo' is not a task; hubvm --list lists the tasks"),
    ("'restore' did not receive required positional arguments: 'file'", None,
     "error: restore needs FILE: hubvm restore FILE (hubvm --help restore)"),
    ("No idea what '--x' is!", "up", "error: --x is not a flag of up; hubvm --help up lists its flags"),
    ("No idea what 'bar' is!", "up", "error: 'bar' is not a task (after up, which takes no such argument); "
                                     "hubvm --list lists the tasks"),
    ("Flag <Argument: ip (i) [str]> needed value and was not given one!", "up",
     "error: --ip needs a value (hubvm --help up)"),
])
def test_parser_messages_become_one_plain_line(message: str, task: str | None, line: str) -> None:
    assert plain_parse_error(message, task) == line


def test_check_json_reports_each_need_with_a_status(cli, project: Path) -> None:
    (project / "profile.yaml").write_text("tools:\n  vboxmanage: /nonexistent/VBoxManage\n  packer: /nonexistent/p\n")
    result = cli("-f", "profile.yaml", "check", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    statuses = {f["name"]: f["status"] for f in report["findings"]}
    assert report["ok"] is False
    assert statuses["VirtualBox"] == "not packaged"  # no package: the download page
    assert statuses["Packer"] == "missing"
    assert {f["status"] for f in report["findings"]} <= {"ok", "missing", "too old", "not running",
                                                         "not usable here", "not packaged"}
    assert result.stderr.strip().startswith("error: not ready: ")


def test_destroy_without_a_vm_destroys_nothing(cli) -> None:
    result = cli("destroy", "--yes")
    assert result.returncode == 0, result.stderr
    assert "no VM to destroy" in result.stdout


def test_clean_removes_rendered_files_but_keeps_boxes(cli, project: Path) -> None:
    assert cli("render").returncode == 0
    box = project / "builds" / "boxes" / "x.box"
    box.parent.mkdir(parents=True)
    box.write_text("box")
    result = cli("clean")
    assert result.returncode == 0, result.stderr
    assert not (project / "builds" / "packer").exists()
    assert not (project / "builds" / "vagrant").exists()
    assert box.is_file()
    assert (project / "builds" / "README.md").is_file()


def test_clean_refuses_while_a_vm_exists(cli, project: Path) -> None:
    machine = project / "builds" / "vagrant" / ".vagrant" / "machines" / "jupyterhub-vm" / "virtualbox"
    machine.mkdir(parents=True)
    (machine / "id").write_text("1234")
    result = cli("clean", "--all")
    assert result.returncode == 1
    assert "destroy it first" in result.stderr
    assert (machine / "id").is_file()


def test_all_with_nothing_changed_skips_every_step(cli, project: Path) -> None:
    """What a second `all` finds after a complete first one: the box and builds/vm/ of the same inputs."""
    from hubvm import digests
    from hubvm.artifacts import artifact_paths
    from hubvm.layout import Layout
    from tests.conftest import settings_with

    s = settings_with(project)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    digests.write(layout.box_stamp, digests.box_digest(s))
    for artifact in artifact_paths(s, layout):
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.mkdir() if artifact.name == "ovf" else artifact.write_bytes(b"x")
    digests.write(layout.export_stamp, digests.export_digest(s, digests.box_digest(s)))
    before = tree_digest(project / "builds")

    result = cli("all")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[-4:]}
    assert rows == {"pack": "skipped", "up": "skipped", "verify": "skipped", "export": "skipped"}
    assert tree_digest(project / "builds") == before

    # a changed package list leaves the box alone but not the appliance: the real run would go on to `up`
    dry = cli("--dry", "all", env={"INVOKE_PACKAGES_PYTHON": "[scipy]"})
    assert dry.returncode == 0, dry.stderr
    assert "pack: builds/boxes/jupyterhub-vm-debian12-virtualbox.box is up to date" in dry.stdout
    assert " up --provider=virtualbox" in dry.stdout
    # and that dry run wrote nothing, though builds/ holds a rendered Vagrantfile (no VM: Vagrant is not asked,
    # it would write builds/vagrant/.vagrant/)
    assert not (project / "builds" / "vagrant" / ".vagrant").exists()
    assert tree_digest(project / "builds") == before


@pytest.mark.parametrize(("task", "tool", "fix"), [
    ("all", "vboxmanage", "VirtualBox not packaged: install it from https://www.virtualbox.org/"),
    ("pack", "vboxmanage", "VirtualBox not packaged: install it from https://www.virtualbox.org/"),
    # up and export run pack first (a pre-task): the Executor checks up's needs before it
    ("up", "vagrant", "Vagrant missing: install it: sudo apt-get install vagrant"),
    ("export", "vagrant", "Vagrant missing: install it: sudo apt-get install vagrant"),
])
def test_a_run_checks_every_need_before_the_first_step(cli, project: Path, task: str, tool: str, fix: str) -> None:
    (project / "profile.yaml").write_text(f"tools:\n  {tool}: /nonexistent/{tool}\n")
    result = cli("-f", "profile.yaml", task)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and fix in line, line
    assert "==> pack" not in result.stdout
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]


def test_invoke_still_calls_what_hubconfig_overrides(project: Path, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """hubvm/program.py rests on invoke's public loading methods: Config's load_system, load_user,
    set_runtime_path, load_runtime and load_shell_env, called by Program in this order. A release of invoke that
    stops calling one of them, or changes its signature, fails here rather than silently dropping a layer."""
    import inspect

    from invoke import Config

    from hubvm.program import HubConfig

    names = ("load_system", "load_user", "set_runtime_path", "load_runtime", "load_shell_env")
    for name in names:
        assert list(inspect.signature(getattr(Config, name)).parameters) == \
            list(inspect.signature(getattr(HubConfig, name)).parameters), name
    calls: list[str] = []
    for name in names:
        original = getattr(HubConfig, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(HubConfig, name, wrapper)
    profile = project / "p.yaml"
    profile.write_text("vm: {cpus: 3}\n")
    assert run_in_process(project, home, ["-f", str(profile), "render"]).code == 0
    loads = [calls.index(name) for name in ("load_system", "load_user", "load_runtime", "load_shell_env")]
    assert loads == sorted(loads), calls
    assert "set_runtime_path" in calls[:calls.index("load_runtime")], calls  # -f's path, before it is read
