"""The README tells the truth about the tasks and the test command CI runs (its settings table is held to the
schema in tests/test_schema.py)."""

from __future__ import annotations

import re

from hubvm.program import namespace
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_task_is_in_the_task_table() -> None:
    names = set(namespace(REPO).task_names)
    assert names >= {"check", "render", "pack", "up", "provision", "verify", "ssh", "export", "destroy", "clean",
                     "all"}
    for name in names:
        assert re.search(rf"^\| `{name}[ `]", README, re.MULTILINE), f"task {name} missing from the README"


def test_ci_runs_the_readme_test_command() -> None:
    command = "./setup.sh --tests && .venv/bin/pytest"
    assert command in README
    assert command in (REPO / ".ci" / "run").read_text()


def test_every_module_is_on_the_readme_map() -> None:
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = REPO / "hubvm"
    modules = sorted(p.relative_to(package) for p in package.rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py") and "programs" not in p.parts)
    assert len(modules) > 40
    rows = {line.split("|")[1]: line for line in layout.splitlines() if line.startswith("| `")}
    missing = []
    for module in modules:
        folder = f"`{module.parts[0]}/`" if len(module.parts) > 1 else None
        row = next((line for cell, line in rows.items() if (folder or f"`{module.name}`") in cell), "")
        if f"`{module.name}`" not in row:
            missing.append(str(module))
    assert not missing, f"README's Layout does not say where these live: {missing}"
