"""hubvm.publish.run: importing the publish task's modules leaves openstacksdk unloaded."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_importing_publish_does_not_import_openstacksdk() -> None:
    """tasks.py imports the publish task's modules (hubvm.publish.run, and through it request, upload and errors):
    openstacksdk (about a second) loads only when publish connects."""
    code = "import sys, hubvm.publish.run; print('openstack' in sys.modules, 'keystoneauth1' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["False", "False"]
