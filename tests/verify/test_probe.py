"""hubvm.verify.probe without a machine: the probe script (valid bash, its sections, its bounded wait), the parsing
of its output, and the guest programs it runs (programs/), run here as files."""

from __future__ import annotations

import dbm
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hubvm.config import settings
from hubvm.verify import checks, probe
from hubvm.verify.certificates import pem_to_der
from hubvm.verify.probe import Section
from tests.conftest import HANG_GUARD
from tests.verify.helpers import der, make_certificate, parse

PROGRAMS = Path(probe.__file__).with_name("programs")

# ---------------------------------------------------------------------------------------------------------------
# The probe script and its sections


def test_probe_script_is_valid_bash_and_names_every_section() -> None:
    s = parse()
    script = probe.probe_script(s)
    subprocess.run(["bash", "-n", "-c", script], check=True)
    for name in ("os", "hostname", "timezone", "disk", "service", "api", "admins", "kernels", "shared_data",
                 "python", "r", "starting"):
        assert f"echo @@hubvm-section {name}\n" in script
    assert "/opt/tljh/user/bin/python" in script and "numpy pandas matplotlib" in script
    assert "ggplot2 data.table" in script


def test_probe_script_leaves_out_empty_package_sections() -> None:
    script = probe.probe_script(parse(**{"packages.python": [], "packages.r": []}))
    assert "section python" not in script and "section r\n" not in script


def test_probe_script_has_the_access_section() -> None:
    script = probe.probe_script(parse())
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert "echo @@hubvm-section access\n" in script and "/etc/hubvm/hub-access.json admin" in script
    assert "https://127.0.0.1:443/hub/api" in script  # the guest's API check goes through HTTPS by default


def _fake_systemctl(bin_dir: Path, states: Path) -> None:
    """A `systemctl` that reports the boot finished and the hub in the state named by the first line of STATES,
    consuming one line per `is-active` call (the last line stays)."""
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  is-system-running) echo running ;;
  is-active) head -n1 {states}; [ "$(wc -l < {states})" -gt 1 ] && sed -i 1d {states} ;;
esac
exit 0
""")
    fake.chmod(0o755)


def _run_wait(s: settings.Settings, bin_dir: Path) -> tuple[int, float]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", probe._wait_script(s)], capture_output=True, text=True, env=env,
                            timeout=HANG_GUARD)
    return probe.waited_seconds(Section(result.returncode, result.stdout.strip())), time.monotonic() - started


def test_wait_script_waits_while_the_hub_is_starting(tmp_path: Path) -> None:
    """Real bash with a fake systemctl: the hub is activating for one poll (2 s), then inactive (no API call)."""
    states = tmp_path / "states"
    states.write_text("activating\ninactive\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, took = _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")
    assert 1 <= waited <= 4 and took < 10


def test_wait_script_is_bounded_by_ssh_wait(tmp_path: Path) -> None:
    states = tmp_path / "states"
    states.write_text("activating\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, _ = _run_wait(parse(**{"ssh.wait": 1}), tmp_path / "bin")
    assert 1 <= waited <= 3  # the wait and at most one more poll, though the hub never stops "activating"
    states.write_text("failed\n")
    assert _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")[0] == 0
    assert probe._wait_script(parse(**{"ssh.wait": 0})) == "echo 0"


def test_parse_sections() -> None:
    output = ("noise\n@@hubvm-section os\nID=debian\n@@hubvm-status 0\n"
              "@@hubvm-section service\ninactive\n@@hubvm-status 3\n@@hubvm-section kernels\n{")
    sections = probe.parse_sections(output)
    assert sections["os"] == Section(0, "ID=debian")
    assert sections["service"] == Section(3, "inactive")
    assert sections["kernels"].status == -1


def test_probe_script_runs_here(tmp_path: Path) -> None:
    """The real script on this machine: every section ends, and the python importer maps names to modules."""
    s = parse(**{"packages.python": ["PyYAML", "paramiko>=2", "no-such-package-xyz"], "packages.r": []})
    script = probe.probe_script(s).replace(s.user_env, str(Path(subprocess.sys.executable).parent.parent))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=HANG_GUARD)
    sections = probe.parse_sections(result.stdout)
    assert {"os", "hostname", "disk", "python"} <= set(sections)
    found = {c.name: c for c in checks.check_python(s, sections["python"])}
    assert found["package PyYAML"].passed and "import yaml ok" in found["package PyYAML"].found
    assert found["package paramiko"].passed
    assert found["package no-such-package-xyz"].found == "not installed"
    assert checks.check_disk(sections["disk"]).found.endswith("GiB")


# ---------------------------------------------------------------------------------------------------------------
# The guest programs


@pytest.mark.parametrize("name", sorted(p.name for p in PROGRAMS.iterdir() if p.suffix in (".py", ".R")))
def test_program_is_the_package_datas_file(name: str) -> None:
    assert probe.program(name) == (PROGRAMS / name).read_text()
    flag = "-e" if name.endswith(".R") else "-c"
    assert probe.run_program(name, "python9").startswith(f"python9 {flag} '")


def test_access_probe_reads_the_store_and_the_certificate(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "IP:127.0.0.1")
    store = tmp_path / "passwords.dbm"
    with dbm.open(str(store), "c", 0o600) as db:
        db[b"admin"] = b"$2b$12$" + b"x" * 53
        db[b"odd"] = b"plain"
    access = tmp_path / "hub-access.json"
    access.write_text(json.dumps({"https": "self-signed", "https_port": 443, "http_port": 80, "signup": "closed",
                                  "tls_cert": str(cert), "password_db": str(store)}))
    hub_access = str(PROGRAMS / "hub_access.py")
    result = subprocess.run([sys.executable, hub_access, str(access), "admin", "odd", "late"],
                            capture_output=True, text=True, check=True)
    item = Section(0, result.stdout).json_items()[0]
    assert item["admins"] == {"admin": "bcrypt", "odd": "other", "late": "none"}
    assert item["cert_sha256"] == hashlib.sha256(der(cert)).hexdigest()
    assert pem_to_der(item["cert_pem"]) == der(cert) and item["cert_pem"].endswith("-----\n")
    assert "$2b$" not in result.stdout  # hashes are never printed
    missing = subprocess.run([sys.executable, hub_access, str(tmp_path / "nope.json"), "admin"],
                             capture_output=True, text=True, check=True)
    assert "cannot read" in Section(0, missing.stdout).json_items()[0]["error"]


# Stand-ins for what the users' environment has (this venv has no Jupyter): nbgitpuller declaring its extension,
# jupyter_core's config path, and jupyter_server's ExtensionConfigManager answering from a JSON file. They test how
# the program asks and what it prints; the real packages answer in the end-to-end test's verify.
STAND_INS = {
    "nbgitpuller/__init__.py": "__version__ = '1.3.0'\n"
                               "def _jupyter_server_extension_points():\n    return [{'module': 'nbgitpuller'}]\n",
    "jupyter_core/__init__.py": "",
    "jupyter_core/paths.py": "def jupyter_config_path():\n    return ['/home/x/.jupyter', '/env/etc/jupyter']\n",
    "jupyter_server/__init__.py": "",
    "jupyter_server/extension/__init__.py": "",
    "jupyter_server/extension/config.py": (
        "import json, os\n"
        "class ExtensionConfigManager:\n"
        "    def __init__(self, read_config_path):\n"
        "        assert read_config_path == ['/home/x/.jupyter', '/env/etc/jupyter'], read_config_path\n"
        "    def get_jpserver_extensions(self):\n"
        "        return json.load(open(os.environ['EXTENSIONS']))\n"),
}


def _nbgitpuller_probe(tmp_path: Path, extensions: dict, skip: tuple[str, ...] = (), path: str | None = None,
                       broken: bool = False) -> dict:
    site = Path(tempfile.mkdtemp(dir=tmp_path))
    for name, text in STAND_INS.items():
        if name.split("/")[0] not in skip:
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text(text)
    if broken:
        (site / "nbgitpuller/__init__.py").write_text("import tornado_that_is_not_there\n")
    (tmp_path / "extensions.json").write_text(json.dumps(extensions))
    if path is None:  # a stand-in git: a bare machine (the fresh-machine test's container) has none
        path = str(tmp_path / "bin")
        (tmp_path / "bin").mkdir(exist_ok=True)
        (tmp_path / "bin/git").write_text("#!/bin/sh\necho 'git version 2.39.5'\n")
        (tmp_path / "bin/git").chmod(0o755)
    env = {"PATH": path, "PYTHONPATH": str(site),
           "EXTENSIONS": str(tmp_path / "extensions.json")}
    result = subprocess.run([sys.executable, "-s", str(PROGRAMS / "nbgitpuller_check.py")],
                            capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=True)
    return Section(0, result.stdout).json_items()[0]


def test_nbgitpuller_probe_reports_the_package_its_extension_and_git(tmp_path: Path) -> None:
    item = _nbgitpuller_probe(tmp_path, {"jupyterlab": True, "nbgitpuller": True})
    assert item["version"] == "1.3.0" and item["extension"] is True and item["enabled"] is True
    assert item["git"] == "git version 2.39.5"
    assert _nbgitpuller_probe(tmp_path, {"nbgitpuller": False})["enabled"] is False
    assert _nbgitpuller_probe(tmp_path, {})["enabled"] is False
    assert _nbgitpuller_probe(tmp_path, {}, skip=("nbgitpuller",))["error"] == "not installed"
    broken = _nbgitpuller_probe(tmp_path, {}, broken=True)
    assert broken["error"] == "import nbgitpuller: ModuleNotFoundError: No module named 'tornado_that_is_not_there'"
    no_server = _nbgitpuller_probe(tmp_path, {}, skip=("jupyter_server",))
    assert no_server["enabled_error"].startswith("reading jupyter_server's extension config: ModuleNotFoundError")
    no_git = _nbgitpuller_probe(tmp_path, {"nbgitpuller": True}, path=str(tmp_path / "empty"))
    assert no_git["git_error"] == "git not found (nbgitpuller runs it)" and "git" not in no_git
