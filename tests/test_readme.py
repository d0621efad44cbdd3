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


# A path the documents name as history (a record of a run made with it), not as where the code is
HISTORY = {"tests/e2e/full_build_native.py"}


def test_every_path_the_documents_name_exists() -> None:
    """README.md, docs/ and tests/e2e/README.md name project files by path: after files move, each still exists."""
    documents = [REPO / "README.md", REPO / "tests/e2e/README.md", *sorted((REPO / "docs").glob("*.md"))]
    pattern = re.compile(r"(?<![\w/.-])((?:hubvm|tests|ansible|templates|config|docs)/[\w./-]+\.(?:py|yml|j2|md|R|sh))")
    named = {(doc.name, path) for doc in documents for path in pattern.findall(doc.read_text())}
    assert len(named) > 20
    missing = sorted(f"{doc}: {path}" for doc, path in named if path not in HISTORY and not (REPO / path).exists())
    assert not missing, missing
