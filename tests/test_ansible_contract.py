"""The Ansible variables contract: the rendered builds/ansible/vars.yml is valid YAML that the roles understand,
every role variable has a commented default, and the playbook's syntax holds (ansible-lint and yamllint run once,
in the validators group: tests/test_validators.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubvm import render
from tests.conftest import REPO, settings_with

ROLES = ["base", "hub", "r", "python", "binder", "shared_data", "slurm", "cleanup"]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent

PEM = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2hlY2sgb25seTogbm90IGEgcmVhbCBjZXJ0MAoGCCqG
-----END CERTIFICATE-----
"""


def rendered_vars(tmp_path: Path, **overrides: object) -> dict:
    s = settings_with(REPO, **overrides)
    text = next(f.text for f in render.plan(s) if f.path.name == "vars.yml" and f.path.parent.name == "ansible")
    return yaml.safe_load(text)


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ANSIBLE / "roles" / role / "defaults" / "main.yml").read_text()) or {}


@pytest.mark.parametrize("count", [0, 1, 2])
def test_vars_file_is_yaml_with_any_number_of_ca_certificates(tmp_path: Path, count: int) -> None:
    paths = []
    for index in range(count):
        path = tmp_path / f"proxy-ca-{index}.crt"
        path.write_text(PEM)
        paths.append(str(path))
    variables = rendered_vars(tmp_path, **{"guest.ca_certificates": paths})
    certificates = variables["base_ca_certificates"]
    assert [c["name"] for c in certificates] == [Path(p).name for p in paths]
    for certificate in certificates:
        assert certificate["content"].strip() == PEM.strip()


def test_every_contract_variable_belongs_to_a_role_with_a_default(tmp_path: Path) -> None:
    variables = rendered_vars(tmp_path)
    defaults = {role: role_defaults(role) for role in ROLES}
    for name in variables:
        role = next((r for r in sorted(ROLES, key=len, reverse=True) if name.startswith(f"{r}_")), None)
        assert role, f"{name} names no role"
        assert name in defaults[role], f"{name} has no default in roles/{role}/defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_commented_and_prefixed(role: str) -> None:
    lines = (ANSIBLE / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^([a-z_0-9]+):", line)
        if match:
            assert match.group(1).startswith(f"{role}_"), f"{match.group(1)} lacks the prefix {role}_"
            assert lines[index - 1].startswith("#"), f"{match.group(1)} in roles/{role} has no comment above it"


def test_cleanup_runs_only_when_asked() -> None:
    play = next(p for p in yaml.safe_load((ANSIBLE / "playbook.yml").read_text()) if p["hosts"] == "all:!compute")
    cleanup = next(r for r in play["roles"] if r["role"] == "cleanup")
    assert set(cleanup["tags"]) == {"cleanup", "never"}
    others = [r for r in play["roles"] if r["role"] != "cleanup"]
    assert [r["role"] for r in others] == ROLES[:-1]
    assert all(r["tags"] == [r["role"]] for r in others)


def test_the_compute_nodes_get_the_users_environment_and_slurm_only() -> None:
    plays = yaml.safe_load((ANSIBLE / "playbook.yml").read_text())
    compute = next(p for p in plays if p["hosts"] == "compute" and p.get("roles"))
    assert [r["role"] for r in compute["roles"]] == ["base", "r"]
    included = [t["ansible.builtin.include_role"] for t in compute["tasks"]]
    assert [(i["name"], i.get("tasks_from")) for i in included] == [("hub", "userenv.yml"), ("python", None),
                                                                     ("binder", None), ("slurm", None)]


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed beside {sys.executable}")
    return str(path)


def test_playbook_syntax() -> None:
    result = subprocess.run(
        [_tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", "playbook.yml"],
        cwd=ANSIBLE, capture_output=True, text=True, env={"ANSIBLE_CONFIG": "ansible.cfg", "PATH": str(BIN)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_shell_and_no_masked_failures() -> None:
    for path in (ANSIBLE / "roles").rglob("*.yml"):
        text = path.read_text()
        assert "ansible.builtin.shell" not in text and "\n  shell:" not in text, path
        assert "ignore_errors" not in text and "failed_when: false" not in text, path
        assert "|| true" not in text and "exit 0" not in text, path

