"""The README tells the truth about the configuration keys, the tasks and the test command CI runs."""

from __future__ import annotations

import re

from hubvm import settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.+) \|$", README, re.MULTILINE)}
    for section, keys in settings.defaults(REPO).items():
        assert section in rows, f"section {section} missing from the README's configuration table"
        for key in keys:
            assert f"`{key}`" in rows[section], f"{section}.{key} missing from the README"


def test_every_task_is_in_the_task_table() -> None:
    tasks = re.findall(r"^@task(?:\(name=\"(\w+)\")?.*\n(?:@.*\n)*def (\w+)", (REPO / "tasks.py").read_text(),
                       re.MULTILINE)
    names = {explicit or function for explicit, function in tasks}
    assert names >= {"check", "render", "pack", "up", "provision", "verify", "ssh", "export", "destroy", "clean",
                     "all"}
    for name in names:
        assert re.search(rf"^\| `{name}[ `]", README, re.MULTILINE), f"task {name} missing from the README"


def test_ci_runs_the_readme_test_command() -> None:
    command = "./setup.sh --tests && .venv/bin/pytest"
    assert command in README
    assert command in (REPO / ".ci" / "run").read_text()
