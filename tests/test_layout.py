"""Every path under builds/ comes from Layout, each is distinct, and builds/README.md describes them."""

from __future__ import annotations

import re
from pathlib import Path

from hubvm.layout import Layout
from tests.conftest import REPO


def paths(layout: Layout) -> dict[str, Path]:
    found = {}
    for name in dir(Layout):
        if isinstance(getattr(Layout, name), property):
            value = getattr(layout, name)
            if isinstance(value, Path):
                found[name] = value
    return found


def test_every_path_is_under_builds_and_distinct(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "hub", "debian12", "libvirt")
    found = paths(layout)
    assert len(set(found.values())) == len(found)
    for name, path in found.items():
        assert path == layout.builds or layout.builds in path.parents, name
    assert layout.box_file.name == "hub-debian12-libvirt.box"
    assert layout.log("up") == tmp_path / "builds" / "logs" / "up.log"
    assert layout.artifact("hub.qcow2") == layout.vm_dir / "hub.qcow2"
    assert layout.vagrant_machine_id == layout.vagrant_dir / ".vagrant" / "machines" / "hub" / "libvirt" / "id"


def test_the_readme_of_builds_lists_every_top_level_folder(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "hub", "debian12", "libvirt")
    top = {path.relative_to(layout.builds).parts[0] for path in paths(layout).values() if path != layout.builds}
    top = {name for name in top if not name.endswith(".partial")}
    readme = (REPO / "builds" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w.]+)/", readme, re.MULTILINE))
    assert top == listed
