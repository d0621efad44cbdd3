"""Fixtures of the verify tests that reach a Vagrant VM: a project copy with a created VM, and its settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hubvm.config.settings import Settings
from hubvm.layout import Layout
from tests.conftest import settings_with


@pytest.fixture
def vm_settings(project: Path) -> Callable[..., Settings]:
    """Settings of the project copy with overrides; vagrant found by name (MockContext answers it)."""

    def make(**overrides: object) -> Settings:
        return settings_with(project, **{"tools.vagrant": "vagrant", **overrides})

    return make


@pytest.fixture
def layout(project: Path) -> Layout:
    """The project copy's layout with a rendered Vagrantfile and a created VM (Vagrant's machine id)."""
    lay = Layout.of(settings_with(project))
    lay.vagrant_dir.mkdir(parents=True)
    lay.vagrantfile.write_text("# rendered\n")
    lay.vagrant_machine_id.parent.mkdir(parents=True)
    lay.vagrant_machine_id.write_text("1b2c3d\n")
    return lay
