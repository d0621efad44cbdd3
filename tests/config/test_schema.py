"""The schema: one declaration per setting, held to invoke.yaml (keys and comments) and to the README's table, and
what each setting goes into (the digests that decide whether a box or an export is stale)."""

from __future__ import annotations

import re
from pathlib import Path

from hubvm.config import schema
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
    assert sorted(comments) == sorted(list(schema.BY_KEY))
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
