"""Every rendered file through the real tool that reads it, and broken inputs failing with that tool's own message.

Every valid combination of provider x OS x base image x IP x data folder, and every profile in config/, is rendered
in-process (hubvm.config.settings + hubvm.render) into a project of its own. Then, in parallel threads:
  packer validate (Debian's packer 1.6.6, the command `hubvm pack` would run, `build` swapped for `validate`),
  vagrant validate (libvirt's provider settings checked by vagrant-libvirt; VirtualBox is not installed here),
  debconf-set-selections --checkonly (the Debian preseed), ansible-playbook --syntax-check (with the rendered
  variables), yamllint (the rendered YAML, and every YAML file of the repository), ansible-lint (profile production).
The Ubuntu autoinstall and the cloud-init seeds are parsed as YAML and checked for what their installers require.

Identical inputs are validated once; Vagrantfiles that differ only in the box name and the project's folder count as
identical. Nothing reaches the network: the base image is a local file with its real sha256 (packer validate would
download a file:https://.../SHA256SUMS), and the tools' update checks are off.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubvm import render
from hubvm.config import settings
from hubvm.config.layers import Layer, Layers, defaults_layer, file_layer, read_file
from hubvm.errors import ConfigError
from hubvm.host import probes, tools
from hubvm.layout import Layout
from hubvm.provision import write_inventory
from hubvm.verify.target import Target
from hubvm.vm.pack import packer_commands, packer_source, packer_uses_init
from tests.conftest import PROJECT_PARTS, REPO, copy_project, settings_with

pytestmark = pytest.mark.validators

VENV_BIN = Path(sys.executable).parent
# The validators and the Debian packages that bring them (setup.sh --tests installs them)
VENV = "pip install -e '.[test]' in .venv"
VALIDATORS = {"packer": "apt-get install packer", "vagrant": "apt-get install vagrant vagrant-libvirt",
              "debconf-set-selections": "apt-get install debconf-utils", "ansible-playbook": VENV,
              "ansible-lint": VENV, "yamllint": VENV, "ruff": VENV}
# The parts of a project the rendered files refer to; each case's project links them and has a builds/ of its own
SHARED_PARTS = [part for part in PROJECT_PARTS if not part.startswith("builds/")]
# Only a guard against a tool that hangs, not a time limit: ansible-lint took over 120 s on a loaded 2-core machine
# (issue 18); each run's duration is kept and shown with its output.
HANG_GUARD = 1800

PROVIDERS = ("virtualbox", "libvirt")
OSES = ("debian12", "ubuntu2404")
SOURCES = ("iso", "cloud", "mirror")
STATIC_IP = {"virtualbox": "192.168.56.10", "libvirt": "192.168.100.10"}  # libvirt: outside VirtualBox's range too
PROFILES = sorted(p.stem for p in (REPO / "config").glob("*.yaml"))


def rejected(provider: str, os_name: str, source: str) -> str:
    """Why settings must refuse a combination ("" when it is valid)."""
    if source == "mirror" and provider == "virtualbox":
        return "builds a qcow2 disk for QEMU, which VirtualBox cannot boot"
    if source == "cloud" and provider == "virtualbox" and os_name == "debian12":
        return "publishes no cloud image for virtualbox"
    return ""


@dataclass(frozen=True)
class Case:
    name: str
    profile: str = ""                                  # config/<profile>.yaml, merged over invoke.yaml
    vm: tuple[tuple[str, str], ...] = ()               # vm.* overrides
    source: str = ""                                   # image.source override
    guest: bool = False                                # the guest.* and export.ssh_public_key settings set

    def __str__(self) -> str:
        return self.name

    def layers(self, project: Path, image: Path | None = None) -> Layers:
        layers: list[Layer] = [defaults_layer(project)]
        if self.profile:
            path = project / "config" / f"{self.profile}.yaml"
            layers.append(file_layer(read_file(path), path.name, shared=False))
        overrides: dict[str, Any] = {"vm": dict(self.vm)}
        if self.source:
            overrides["image"] = {"source": self.source}
        if dict(self.vm).get("provider") == "libvirt":
            overrides["export"] = {"formats": ["qcow2"]}  # as a libvirt profile exports (ova would render the same)
        if self.guest:
            overrides["guest"] = guest_settings(dict(self.vm)["os"])
            overrides.setdefault("export", {})["ssh_public_key"] = "admin.pub"
        layers.append(file_layer(overrides, "case", shared=False))
        source = Layers(tuple(layers), project).merged()[0]["image"]["source"]
        if image is not None and source in ("iso", "cloud"):  # a local base image instead of the OS's download
            layers.append(file_layer({"image": {"url": str(image), "checksum": f"sha256:{sha256(image)}"}}, "image",
                                     shared=False))
        return Layers(tuple(layers), project)


# Files the guest settings name, written into each case's project
GUEST_FILES = {
    "proxy-ca.pem": "-----BEGIN CERTIFICATE-----\nMIIBnotacertificate\n-----END CERTIFICATE-----\n",
    "admin.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInotarealkey admin@example\n",
}


def guest_settings(os_name: str) -> dict[str, Any]:
    """Every guest setting that reaches a rendered file, pointing at loopback (nothing is contacted)."""
    return {"apt_mirror": f"http://127.0.0.1:3142/{'debian' if os_name == 'debian12' else 'ubuntu'}",
            "pip_index_url": "http://127.0.0.1:3141/root/pypi/+simple/", "http_proxy": "http://127.0.0.1:3128",
            "https_proxy": "http://127.0.0.1:3128", "no_proxy": "localhost,127.0.0.1,.example.org",
            "ca_certificates": ["proxy-ca.pem"]}


def matrix() -> tuple[list[Case], list[tuple[str, str, str]]]:
    """Every valid combination as a Case, and the combinations settings must reject."""
    cases, refused = [], []
    for provider, os_name, source, ip, data in itertools.product(PROVIDERS, OSES, SOURCES, ("static", "dhcp"),
                                                                 ("data", "none")):
        if rejected(provider, os_name, source):
            refused.append((provider, os_name, source))
            continue
        vm = (("provider", provider), ("os", os_name), ("ip", STATIC_IP[provider] if ip == "static" else "dhcp"),
              ("data", data))
        cases.append(Case(f"{provider}-{os_name}-{source}-{ip}-{'data' if data == 'data' else 'nodata'}",
                          vm=vm, source=source))
    # The guest settings (proxies, mirrors, CA certificates, the appliance's SSH key) on one case per OS and provider
    cases += [Case(f"{provider}-{os_name}-iso-dhcp-nodata-guest-settings", vm=(
        ("provider", provider), ("os", os_name), ("ip", "dhcp"), ("data", "none")), source="iso", guest=True)
        for provider, os_name in itertools.product(PROVIDERS, OSES)]
    cases += [Case(f"profile-{name}", profile=name) for name in PROFILES]
    return cases, sorted(set(refused))


CASES, REFUSED = matrix()
NEGATIVE_BASE = "virtualbox-debian12-iso-static-data"  # the rendered files the negative tests break copies of


# ---------------------------------------------------------------------------------------------------------------
# Running the validators: each command once per distinct input, all of them in a thread pool


@dataclass(frozen=True)
class Run:
    command: str
    returncode: int
    output: str  # stdout and stderr, in that order
    seconds: float

    def __str__(self) -> str:
        return f"$ {self.command}\n(exit {self.returncode} after {self.seconds:.1f} s)\n{self.output}"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> Run:
    if not shutil.which(argv[0], path=env["PATH"]):
        return Run(shlex.join(argv), 127, f"{argv[0]} is not installed: {VALIDATORS.get(argv[0], 'see setup.sh')} "
                   "(./setup.sh --tests installs every validator)", 0.0)
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    return Run(shlex.join(argv), result.returncode, result.stdout + result.stderr, time.monotonic() - started)


@dataclass
class Pool:
    env: dict[str, str]
    executor: ThreadPoolExecutor
    futures: dict[str, Future[Run]] = field(default_factory=dict)

    def submit(self, key: str, argv: list[str], cwd: Path, **env: str) -> str:
        """Start argv in cwd unless a command of the same key (the same input) is already under way."""
        if key not in self.futures:
            self.futures[key] = self.executor.submit(run, argv, cwd, {**self.env, **env})
        return key

    def result(self, key: str) -> Run:
        return self.futures[key].result()


def digest(*parts: str | bytes | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part.encode() if isinstance(part, str) else part
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def tool_environment(home: Path) -> dict[str, str]:
    """The caller's environment without its tool settings; an empty HOME; no update checks, no colours."""
    prefixes = ("INVOKE_", "VAGRANT_", "PACKER_", "ANSIBLE_", "CHECKPOINT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "/usr/bin:/bin")]),
        HOME=str(home), LC_ALL="C.UTF-8", NO_COLOR="1", ANSIBLE_NOCOLOR="1", PY_COLORS="0",
        VAGRANT_HOME=str(home / ".vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1",  # Vagrant's version check
        CHECKPOINT_DISABLE="1",  # Packer's
    )
    return env


# ---------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class Rendered:
    case: Case
    settings: settings.Settings
    layout: Layout
    runs: dict[str, str] = field(default_factory=dict)  # validator -> key in the pool

    @property
    def http(self) -> Path:
        return self.layout.http_dir


def render_case(case: Case, shared: Path, root: Path, image: Path) -> Rendered:
    """The case's project: links to the shared copy's parts, its own builds/ (written by render)."""
    root.mkdir(parents=True)
    for part in SHARED_PARTS:
        (root / part).symlink_to(shared / part)
    for name, text in GUEST_FILES.items():
        (root / name).write_text(text)
    s = settings.parse(case.layers(root, image))
    render.write(render.plan(s))
    return Rendered(case, s, Layout.of(s))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def packer_version(env: dict[str, str]) -> str | None:
    """The version `packer version` prints; None where packer is missing."""
    result = run(["packer", "version"], REPO, env)
    return probes.parse_version(tools.TOOLS["packer"].pattern, result.output)


def packer_validate_argv(s: settings.Settings, version: str) -> list[str]:
    """What `hubvm pack` runs for this Packer version, with `validate` in place of `build -force`."""
    build = packer_commands("packer", version, packer_source(s), Layout.of(s).packer_vars.name)[-1]
    assert " build -force " in build, build
    return shlex.split(build.replace(" build -force ", " validate ", 1))


def yamllint_config(overrides: dict[str, Any] | None = None) -> str:
    """The repository's .yamllint as a -d string, without its ignore list (for files outside the repository)."""
    config = yaml.safe_load((REPO / ".yamllint").read_text())
    config.pop("ignore", None)
    config["rules"] = {**config.get("rules", {}), **(overrides or {})}
    return yaml.safe_dump(config)


# cloud-init needs "#cloud-config" as the first line, with no space after the hash
RENDERED_YAMLLINT = yamllint_config({"comments": {"require-starting-space": False, "min-spaces-from-content": 1}})


def submit_case(pool: Pool, r: Rendered, version: str | None) -> None:
    s, layout = r.settings, r.layout
    if version is not None and not packer_uses_init(version):
        argv = packer_validate_argv(s, version)
        template = layout.packer_dir / argv[-1]
        r.runs["packer"] = pool.submit(f"packer {digest(*argv, template, layout.packer_vars)}", argv,
                                       layout.packer_dir)
        # packer validate passes an -only name that matches no build: without a base image it must fail
        control = [*argv[:-1], "-var", "iso_url=", argv[-1]]
        pool.submit(f"packer control {packer_source(s)}", control, layout.packer_dir)
    vagrant = ["vagrant", "validate"] + (["--ignore-provider"] if s.vm.provider == "virtualbox" else [])
    # Vagrantfiles that differ in the box name and the project's folder only are validated once (~1 s of CPU each)
    vagrantfile = re.sub(r"(?m)^  config\.vm\.box = .*$", "  config.vm.box = BOX", layout.vagrantfile.read_text())
    vagrantfile = vagrantfile.replace(str(s.project_dir), "PROJECT")
    # VAGRANT_DEFAULT_PROVIDER=libvirt: vagrant-libvirt checks its settings (libvirtd need not run for that)
    r.runs["vagrant"] = pool.submit(f"vagrant {digest(*vagrant, vagrantfile)}", vagrant, layout.vagrant_dir,
                                    VAGRANT_DEFAULT_PROVIDER=s.vm.provider)
    if s.os_data["answer_file"] == "preseed":
        preseed = r.http / "preseed.cfg"
        r.runs["debconf"] = pool.submit(f"debconf {digest(preseed)}",
                                        ["debconf-set-selections", "--checkonly", str(preseed)], r.http)
    ansible_dir = s.project_dir / "ansible"
    # the inventory `provision --host` writes (the hub, an empty or filled compute group)
    write_inventory(layout, s, Target("localhost", "root"))
    r.runs["syntax"] = pool.submit(
        f"syntax {digest(layout.ansible_vars, layout.ansible_inventory)}",
        ["ansible-playbook", "--syntax-check", "-i", str(layout.ansible_inventory), "-e", f"@{layout.ansible_vars}",
         "playbook.yml"],
        ansible_dir, ANSIBLE_CONFIG=str(ansible_dir / "ansible.cfg"))
    documents = [layout.ansible_vars, *sorted(p for p in r.http.rglob("*") if p.name in ("user-data", "meta-data"))]
    r.runs["yamllint"] = pool.submit(f"yamllint {digest(*documents)}",
                                     ["yamllint", "--strict", "-d", RENDERED_YAMLLINT, *map(str, documents)],
                                     layout.builds)


@dataclass
class Validation:
    rendered: dict[str, Rendered]
    pool: Pool
    packer: str | None
    broken: dict[str, Path]  # what each negative test broke

    def result(self, case: Case, validator: str) -> Run:
        return self.pool.result(self.rendered[case.name].runs[validator])


# ---------------------------------------------------------------------------------------------------------------
# Broken inputs (negative tests): each a copy of a real file with one mistake


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"{old!r} is not in the file any more: update the negative test"
    return text.replace(old, new, 1)


def break_packer(pool: Pool, r: Rendered, tmp: Path) -> Path:
    folder = tmp / "broken-packer"
    shutil.copytree(r.layout.packer_dir, folder)
    template = folder / "box.pkr.hcl"
    template.write_text(replace_once(template.read_text(), "hard_drive_interface", "hard_drive_interfase"))
    pool.submit("broken packer", ["packer", "validate", "-only=virtualbox-iso.iso",
                                  f"-var-file={r.layout.packer_vars.name}", "box.pkr.hcl"], folder)
    pool.submit("packer folder", ["packer", "validate", "-only=virtualbox-iso.iso",
                                  f"-var-file={r.layout.packer_vars.name}", "."], r.layout.packer_dir)
    return template


def break_vagrantfile(pool: Pool, r: Rendered, tmp: Path) -> Path:
    vagrantfile = tmp / "broken-vagrant" / "Vagrantfile"
    vagrantfile.parent.mkdir()
    vagrantfile.write_text(replace_once(r.layout.vagrantfile.read_text(), "do |config|", "do |config"))
    pool.submit("broken vagrant", ["vagrant", "validate", "--ignore-provider"], vagrantfile.parent)
    return vagrantfile


def break_preseed(pool: Pool, r: Rendered, tmp: Path) -> Path:
    preseed = tmp / "broken-preseed.cfg"
    text = (r.http / "preseed.cfg").read_text()
    preseed.write_text(replace_once(text, f"d-i passwd/username string {r.settings.ssh.user}\n",
                                    "d-i passwd/username\n"))
    pool.submit("broken preseed", ["debconf-set-selections", "--checkonly", str(preseed)], tmp)
    return preseed


MISSPELT_ARGUMENT = """
- name: Install curl (an argument misspelt on purpose)
  ansible.builtin.apt:
    nmae: curl
"""
MISSPELT_MODULE = """
- name: Install curl (the module misspelt on purpose)
  ansible.builtin.aptt:
    name: curl
"""


def break_role(pool: Pool, shared: Path, r: Rendered, tmp: Path) -> dict[str, Path]:
    """Two copies of ansible/, one with a misspelt module argument (ansible-lint), one with a misspelt module
    (ansible-playbook --syntax-check); the mistake is a task appended to the first role's tasks."""
    broken = {}
    for name, task in (("argument", MISSPELT_ARGUMENT), ("module", MISSPELT_MODULE)):
        copy = tmp / f"broken-ansible-{name}"
        shutil.copytree(shared / "ansible", copy)
        tasks = copy / "roles" / "base" / "tasks" / "main.yml"
        tasks.write_text(tasks.read_text().rstrip("\n") + "\n" + task)
        broken[name] = tasks
    env = {"ANSIBLE_CONFIG": str(broken["argument"].parents[3] / "ansible.cfg")}
    pool.submit("broken argument", ["ansible-lint", "roles/base/tasks/main.yml"], broken["argument"].parents[3],
                **env)
    copy = broken["module"].parents[3]
    pool.submit("broken module", ["ansible-playbook", "--syntax-check", "-i", str(r.layout.ansible_inventory), "-e",
                                  f"@{r.layout.ansible_vars}", "playbook.yml"], copy,
                ANSIBLE_CONFIG=str(copy / "ansible.cfg"))
    return broken


# ---------------------------------------------------------------------------------------------------------------
# The fixture that does the work


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Validation]:
    tmp = tmp_path_factory.mktemp("validators")
    home = tmp / "home"
    home.mkdir()
    env = tool_environment(home)
    shared = copy_project(tmp / "shared")
    version = packer_version(env)
    workers = max(2, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as executor:
        pool = Pool(env, executor)
        # The longest first (ansible-lint takes ~10 s alone), while the cases render
        ansible = shared / "ansible"
        pool.submit("ansible-lint", ["ansible-lint", "--profile", "production"], ansible,
                    ANSIBLE_CONFIG=str(ansible / "ansible.cfg"))
        pool.submit("yamllint repository", ["yamllint", "--strict", "."], REPO)
        pool.submit("packer fmt", ["packer", "fmt", "-check", "-diff", "."], REPO / "templates" / "packer")
        pool.submit("ruff", ["ruff", "check", "."], REPO)
        misformatted = tmp / "misformatted"
        misformatted.mkdir()
        (misformatted / "box.pkr.hcl").write_text(
            (REPO / "templates" / "packer" / "box.pkr.hcl").read_text().replace("output              =", "output =", 1))
        pool.submit("packer fmt misformatted", ["packer", "fmt", "-check", "."], misformatted)
        image = tmp / "base-image.img"
        image.write_bytes(b"not a disk image: packer validate only checks the checksum's form\n")
        rendered = {case.name: render_case(case, shared, tmp / "cases" / case.name, image) for case in CASES}
        base = rendered[NEGATIVE_BASE]
        broken = break_role(pool, shared, base, tmp)
        broken["template"] = break_packer(pool, base, tmp)
        broken["vagrantfile"] = break_vagrantfile(pool, base, tmp)
        broken["preseed"] = break_preseed(pool, base, tmp)
        for r in rendered.values():
            submit_case(pool, r, version)
        yield Validation(rendered, pool, version, broken)


def cases_where(predicate) -> list[Case]:
    """The cases whose settings (as far as the case names them) match; used to parametrize per-OS tests."""
    return [c for c in CASES if predicate(c)]


def case_os(case: Case) -> str:
    if case.profile:
        return case.layers(REPO).merged()[0]["vm"]["os"]
    return dict(case.vm)["os"]


DEBIAN_CASES = cases_where(lambda c: case_os(c) == "debian12")
UBUNTU_CASES = cases_where(lambda c: case_os(c) == "ubuntu2404")


# ---------------------------------------------------------------------------------------------------------------
# The combinations


def test_every_value_of_every_axis_and_every_packer_source_is_covered(validation: Validation) -> None:
    seen = {(r.settings.vm.provider, r.settings.vm.os, r.settings.image.source, r.settings.vm.dhcp,
             r.settings.vm.data is None) for r in validation.rendered.values()}
    for axis, values in enumerate([PROVIDERS, OSES, SOURCES, (True, False), (True, False)]):
        assert {combination[axis] for combination in seen} == set(values)
    assert {packer_source(r.settings) for r in validation.rendered.values()} == set(packer_builds())


def packer_builds() -> list[str]:
    """The -only names of the template's build block: its `sources` list, and its named source blocks."""
    template = (REPO / "templates" / "packer" / "box.pkr.hcl").read_text()
    build = template[template.index("\nbuild {"):]
    listed = re.findall(r'"source\.([\w-]+\.\w+)"', build[:build.index("]")])
    named = [f"{builder}.{name}" for builder, name in
             re.findall(r'^  source "source\.([\w-]+)\.\w+" \{\n\s+name\s+= "(\w+)"', build, re.M)]
    return sorted(listed + named)


@pytest.mark.parametrize(("provider", "os_name", "source"), REFUSED, ids=["-".join(r) for r in REFUSED])
def test_settings_reject_combinations_that_cannot_be_built(provider: str, os_name: str, source: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_with(REPO, **{"vm.provider": provider, "vm.os": os_name, "image.source": source})
    assert error.value.key == "image.source"
    assert rejected(provider, os_name, source) in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# Packer


def require_packer_with_builders(validation: Validation) -> None:
    """These checks run Debian 12's packer 1.6.6, which bundles the builders; newer Packer needs `packer init`,
    which downloads plugins from the internet."""
    if validation.packer is None:
        pytest.fail(f"packer is not installed: {VALIDATORS['packer']} (./setup.sh --tests installs it)")
    if packer_uses_init(validation.packer):
        pytest.skip(f"packer {validation.packer} has no bundled builders (`packer init` needs the internet); "
                    "these checks need Debian 12's packer 1.6.6")


def expected_packer_warnings(r: Rendered) -> list[str]:
    """Warnings packer validate may print for a case; any other warning fails the test."""
    variables = render.packer_variables(r.settings)
    return ["A checksum of 'none' was specified"] if variables["iso_checksum"] == "none" else []


def packer_warnings(output: str) -> list[str]:
    return [block.strip() for block in re.split(r"(?=^Warning: )", output, flags=re.M) if block.startswith("Warning")]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_packer_validates_the_template_with_its_variables(validation: Validation, case: Case) -> None:
    require_packer_with_builders(validation)
    r = validation.rendered[case.name]
    result = validation.result(case, "packer")
    assert result.returncode == 0, result
    allowed = expected_packer_warnings(r)
    unexpected = [w for w in packer_warnings(result.output) if not any(a in w for a in allowed)]
    assert not unexpected, result


@pytest.mark.parametrize("build", packer_builds())
def test_packer_validate_really_checks_the_selected_build(validation: Validation, build: str) -> None:
    """packer validate -only=NAME succeeds when NAME matches no build: the same command without a base image
    must fail in the builder's own checks, so the passing runs above validated that build."""
    require_packer_with_builders(validation)
    result = validation.pool.result(f"packer control {build}")
    assert result.returncode != 0, result
    expected = "source_path is required" if build.startswith("virtualbox-ovf") else "One of iso_url or iso_urls"
    assert expected in result.output, result


def test_packer_166_rejects_the_plugins_file_so_pack_passes_the_template_alone(validation: Validation) -> None:
    """Packer 1.6 does not know required_plugins: given the folder it fails on plugins.pkr.hcl, so `pack` must
    name box.pkr.hcl; newer Packer gets the folder (and `packer init` first)."""
    require_packer_with_builders(validation)
    folder = validation.pool.result("packer folder")
    assert folder.returncode != 0, folder
    assert 'Blocks of type "required_plugins" are not expected here' in folder.output, folder
    assert "plugins.pkr.hcl" in folder.output, folder
    old = packer_commands("packer", validation.packer, "qemu.iso", "v.json")
    assert old == ["packer build -force -only=qemu.iso -var-file=v.json box.pkr.hcl"]
    new = packer_commands("packer", "1.12.0", "qemu.iso", "v.json")
    assert new == ["packer init .", "packer build -force -only=qemu.iso -var-file=v.json ."]


def test_the_packer_templates_are_formatted_as_packer_fmt_writes_them(validation: Validation) -> None:
    require_packer_with_builders(validation)
    result = validation.pool.result("packer fmt")
    assert result.returncode == 0, result
    misformatted = validation.pool.result("packer fmt misformatted")
    assert misformatted.returncode == 3 and "box.pkr.hcl" in misformatted.output, misformatted


def test_the_python_passes_ruff(validation: Validation) -> None:
    result = validation.pool.result("ruff")
    assert result.returncode == 0, result


def test_a_misspelt_builder_key_fails_packer_validate(validation: Validation) -> None:
    require_packer_with_builders(validation)
    result = validation.pool.result("broken packer")
    assert result.returncode != 0, result
    assert 'An argument named "hard_drive_interfase" is not expected here' in result.output, result


# ---------------------------------------------------------------------------------------------------------------
# Vagrant


@pytest.mark.parametrize("case", CASES, ids=str)
def test_vagrant_validates_the_vagrantfile(validation: Validation, case: Case) -> None:
    result = validation.result(case, "vagrant")
    assert result.returncode == 0, result
    assert "Vagrantfile validated successfully." in result.output, result


def test_a_ruby_syntax_error_fails_vagrant_validate(validation: Validation) -> None:
    result = validation.pool.result("broken vagrant")
    assert result.returncode != 0, result
    assert "There is a syntax error in the following Vagrantfile" in result.output, result
    assert f"{validation.broken['vagrantfile']}:" in result.output, result


# ---------------------------------------------------------------------------------------------------------------
# Installer answer files

DEBCONF_TYPES = {"string", "boolean", "select", "multiselect", "note", "password", "text", "title", "error"}
# What the Debian installer asks and an unattended install must answer (or it stops and waits)
PRESEED_REQUIRED = [
    "debian-installer/locale", "keyboard-configuration/xkb-keymap", "netcfg/get_hostname", "netcfg/get_domain",
    "mirror/country", "mirror/http/hostname", "mirror/http/directory", "mirror/http/proxy", "passwd/username",
    "passwd/user-password", "passwd/user-password-again", "passwd/root-login", "time/zone", "partman-auto/method",
    "partman-partitioning/confirm_write_new_label", "partman/choose_partition", "partman/confirm",
    "partman/confirm_nooverwrite", "tasksel/first", "grub-installer/bootdev", "finish-install/reboot_in_progress",
]


def preseed_problems(text: str, user: str) -> list[str]:
    problems, answers = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 3:
            problems.append(f"line {number}: not 'owner question type value': {line!r}")
            continue
        _owner, question, kind = fields[:3]
        value = fields[3] if len(fields) == 4 else ""
        if kind not in DEBCONF_TYPES:
            problems.append(f"line {number}: unknown type {kind!r}")
        if kind == "boolean" and value not in ("true", "false"):
            problems.append(f"line {number}: boolean {question} is {value!r}")
        answers[question] = value
    problems += [f"{question} is not answered" for question in PRESEED_REQUIRED if question not in answers]
    if answers.get("passwd/username") != user:
        problems.append(f"passwd/username is {answers.get('passwd/username')!r}, not the build user {user!r}")
    if "ssh-server" not in answers.get("tasksel/first", "") and "openssh-server" not in answers.get(
            "pkgsel/include", ""):
        problems.append("no SSH server is installed (tasksel ssh-server or pkgsel/include openssh-server)")
    return problems


@pytest.mark.parametrize("case", DEBIAN_CASES, ids=str)
def test_debconf_accepts_the_preseed(validation: Validation, case: Case) -> None:
    result = validation.result(case, "debconf")
    assert result.returncode == 0, result
    assert result.output == "", result  # an unknown type is only a warning, with exit status 0
    r = validation.rendered[case.name]
    assert preseed_problems((r.http / "preseed.cfg").read_text(), r.settings.ssh.user) == []


def test_a_broken_preseed_line_fails_debconf_checkonly(validation: Validation) -> None:
    result = validation.pool.result("broken preseed")
    assert result.returncode != 0, result
    assert "parse error on line" in result.output and "'d-i passwd/username'" in result.output, result


# Top-level keys of Subiquity's autoinstall schema (it ignores unknown keys: a misspelt one would go unnoticed)
AUTOINSTALL_KEYS = {
    "version", "interactive-sections", "early-commands", "reporting", "error-commands", "user-data", "packages",
    "debconf-selections", "locale", "refresh-installer", "kernel", "keyboard", "source", "network", "ubuntu-pro",
    "ubuntu-advantage", "proxy", "apt", "storage", "identity", "ssh", "snaps", "active-directory", "codecs",
    "drivers", "oem", "timezone", "updates", "late-commands", "shutdown", "kernel-crash-dumps", "zdevs",
}
# cloud-config keys of the modules these seeds use, and of a user entry (cloud-init's users schema)
CLOUD_CONFIG_KEYS = {
    "hostname", "fqdn", "preserve_hostname", "manage_etc_hosts", "ssh_pwauth", "users", "groups", "chpasswd",
    "ssh_authorized_keys", "disable_root", "apt", "packages", "package_update", "package_upgrade", "write_files",
    "runcmd", "bootcmd", "timezone", "locale", "ntp", "growpart", "resize_rootfs", "power_state", "final_message",
    "ca_certs", "keyboard",
}
CLOUD_USER_KEYS = {
    "name", "gecos", "homedir", "primary_group", "groups", "selinux_user", "lock_passwd", "inactive", "passwd",
    "hashed_passwd", "plain_text_passwd", "no_create_home", "no_user_group", "no_log_init", "ssh_import_id",
    "ssh_authorized_keys", "ssh_redirect_user", "system", "snapuser", "sudo", "doas", "uid", "shell",
    "create_groups", "expiredate",
}


def cloud_config_problems(text: str, user: str, password: str) -> list[str]:
    """What cloud-init needs from a user-data seed for Packer to log in: the header, and the build user."""
    if not text.startswith("#cloud-config\n"):
        return ["the first line is not #cloud-config (cloud-init would not read the file as cloud-config)"]
    return cloud_config_mapping_problems(yaml.safe_load(text), user, password)


def cloud_config_mapping_problems(data: Any, user: str, password: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"not a mapping: {data!r}"]
    problems = [f"unknown cloud-config key {key!r}" for key in sorted(set(data) - CLOUD_CONFIG_KEYS)]
    users = [u for u in data.get("users") or [] if isinstance(u, dict) and u.get("name") == user]
    if not users:
        return [*problems, f"no user {user!r} in users"]
    entry = users[0]
    problems += [f"unknown key {key!r} in user {user!r}" for key in sorted(set(entry) - CLOUD_USER_KEYS)]
    if entry.get("plain_text_passwd") != password:
        problems.append(f"user {user!r} has not the build password as plain_text_passwd")
    if entry.get("lock_passwd") is not False:
        problems.append(f"user {user!r}: lock_passwd must be false for a password login")
    if not (entry.get("sudo") or "sudo" in (entry.get("groups") or [])):
        problems.append(f"user {user!r} gets no sudo")
    return problems


def autoinstall_problems(text: str, user: str, password: str) -> list[str]:
    """What Subiquity requires of an autoinstall (version 1, a user via identity or user-data) and what Packer
    needs of the installed system (an SSH server that accepts the build password)."""
    if not text.startswith("#cloud-config\n"):
        return ["the first line is not #cloud-config"]
    data = yaml.safe_load(text)
    auto = data.get("autoinstall") if isinstance(data, dict) else None
    if not isinstance(auto, dict):
        return ["no autoinstall mapping"]
    problems = [f"unknown autoinstall key {key!r}" for key in sorted(set(auto) - AUTOINSTALL_KEYS)]
    if auto.get("version") != 1:
        problems.append(f"autoinstall.version is {auto.get('version')!r}, not 1")
    if "identity" in auto:
        identity = auto["identity"]
        missing = {"username", "hostname", "password"} - set(identity or {})
        problems += [f"identity.{key} is missing" for key in sorted(missing)]
    elif "user-data" in auto:
        problems += [f"user-data: {p}" for p in cloud_config_mapping_problems(auto["user-data"], user, password)]
    else:
        problems.append("neither identity nor user-data: the installer stops at the post-install stage")
    ssh = auto.get("ssh") or {}
    if ssh.get("install-server") is not True:
        problems.append("ssh.install-server is not true: Packer could not log in")
    if ssh.get("allow-pw") is not True:
        problems.append("ssh.allow-pw is not true: Packer logs in with the build password")
    if "layout" not in (auto.get("keyboard") or {"layout": None}):
        problems.append("keyboard without layout")
    for key in ("early-commands", "late-commands", "error-commands", "packages"):
        if not all(isinstance(item, (str, list)) for item in auto.get(key, [])):
            problems.append(f"{key} holds something other than commands")
    return problems


def meta_data_problems(text: str, s: settings.Settings) -> list[str]:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not data.get("instance-id"):
        return ["meta-data has no instance-id"]
    return [] if data.get("local-hostname") == s.vm.hostname else ["meta-data: local-hostname is not vm.hostname"]


@pytest.mark.parametrize("case", UBUNTU_CASES, ids=str)
def test_the_autoinstall_has_what_subiquity_requires(validation: Validation, case: Case) -> None:
    r = validation.rendered[case.name]
    s = r.settings
    assert autoinstall_problems((r.http / "user-data").read_text(), s.ssh.user, s.ssh.password) == []
    assert meta_data_problems((r.http / "meta-data").read_text(), s) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_cloud_init_seed_creates_the_build_user(validation: Validation, case: Case) -> None:
    r = validation.rendered[case.name]
    s = r.settings
    assert cloud_config_problems((r.http / "cloud" / "user-data").read_text(), s.ssh.user, s.ssh.password) == []
    assert meta_data_problems((r.http / "cloud" / "meta-data").read_text(), s) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("autoinstall:\n  version: 1\n", "the first line is not #cloud-config"),
    ("#cloud-config\nautoinstall:\n  version: 2\n", "autoinstall.version is 2, not 1"),
    ("#cloud-config\nautoinstall:\n  version: 1\n", "neither identity nor user-data"),
    ("#cloud-config\nautoinstall:\n  version: 1\n  identity: {username: u}\n", "identity.password is missing"),
    ("#cloud-config\nautoinstall:\n  version: 1\n  ssh: {install-server: false}\n", "ssh.install-server is not"),
    ("#cloud-config\nautoinstall:\n  version: 1\n  late-comands: []\n", "unknown autoinstall key 'late-comands'"),
    ("#cloud-config\nautoinstall:\n  version: 1\n  user-data:\n    users: [{name: vagrant, plain_text_pass: x}]\n",
     "unknown key 'plain_text_pass' in user 'vagrant'"),
])
def test_the_autoinstall_checks_catch_what_the_installer_would_trip_on(text: str, problem: str) -> None:
    problems = autoinstall_problems(text, "vagrant", "vagrant")
    assert any(problem in p for p in problems), problems


# ---------------------------------------------------------------------------------------------------------------
# Ansible and YAML


@pytest.mark.parametrize("case", CASES, ids=str)
def test_ansible_syntax_check_with_the_rendered_variables(validation: Validation, case: Case) -> None:
    result = validation.result(case, "syntax")
    assert result.returncode == 0, result
    assert "[WARNING]" not in result.output, result


def test_ansible_lint_production_profile(validation: Validation) -> None:
    result = validation.pool.result("ansible-lint")
    assert result.returncode == 0, result
    assert "Profile 'production' was required, and it passed" in result.output, result


def test_an_invalid_module_argument_fails_ansible_lint(validation: Validation) -> None:
    result = validation.pool.result("broken argument")
    assert result.returncode != 0, result
    assert "args[module]: Unsupported parameters for" in result.output and "nmae" in result.output, result


def test_a_misspelt_module_fails_ansible_syntax_check(validation: Validation) -> None:
    result = validation.pool.result("broken module")
    assert result.returncode != 0, result
    assert "couldn't resolve module/action 'ansible.builtin.aptt'" in result.output, result


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rendered_yaml_passes_yamllint(validation: Validation, case: Case) -> None:
    result = validation.result(case, "yamllint")
    assert result.returncode == 0, result


def test_every_yaml_file_of_the_repository_passes_yamllint(validation: Validation) -> None:
    result = validation.pool.result("yamllint repository")
    assert result.returncode == 0, result
