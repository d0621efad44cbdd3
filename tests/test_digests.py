"""Input digests: a step is skipped when the digest of its inputs is unchanged, and redone when any input changes."""

from __future__ import annotations

from pathlib import Path

from hubvm import digests
from tests.conftest import settings_with


def test_a_digest_covers_file_names_contents_and_data(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    base = digests.digest([tmp_path / "a"], {"x": 1}, tmp_path)
    assert digests.digest([tmp_path / "a"], {"x": 1}, tmp_path) == base
    assert digests.digest([tmp_path / "a"], {"x": 2}, tmp_path) != base
    (tmp_path / "a").write_text("2")
    assert digests.digest([tmp_path / "a"], {"x": 1}, tmp_path) != base


def test_files_under_skips_caches_and_git_history(tmp_path: Path) -> None:
    for ignored in ("__pycache__/x.pyc", ".git/index", "week1/.ipynb_checkpoints/a-checkpoint.ipynb"):
        (tmp_path / ignored).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ignored).write_text("")
    (tmp_path / "kept.py").write_text("")
    assert digests.files_under(tmp_path) == [tmp_path / "kept.py"]


def test_the_box_digest_follows_only_what_the_box_is_made_of(project: Path) -> None:
    s = settings_with(project)
    box = digests.box_digest(s)
    assert digests.box_digest(settings_with(project, **{"hub.flavour": "pypi", "packages.r": []})) == box
    assert digests.box_digest(settings_with(project, **{"ssh.password": "other"})) != box
    script = project / "templates" / "packer" / "scripts" / "cleanup.sh"
    script.write_text(script.read_text() + "# changed\n")
    assert digests.box_digest(s) != box


def test_the_export_digest_ignores_tool_paths_but_not_packages(project: Path) -> None:
    s = settings_with(project)
    export = digests.export_digest(s, "box")
    assert digests.export_digest(settings_with(project, **{"tools.packer": "/opt/packer"}), "box") == export
    assert digests.export_digest(settings_with(project, **{"packages.python": ["scipy"]}), "box") != export
    assert digests.export_digest(s, "other box") != export


def test_stamps_are_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "x" / "stamp"
    assert digests.read(path) is None
    digests.write(path, "abc")
    assert digests.read(path) == "abc"
    assert [p.name for p in path.parent.iterdir()] == ["stamp"]


def test_a_binder_repositorys_files_make_the_export_stale_but_not_its_git_history(project: Path) -> None:
    course = project / "course"
    (course / ".git").mkdir(parents=True)
    (course / ".git" / "index").write_text("1")
    (course / "requirements.txt").write_text("six\n")
    export = digests.export_digest(settings_with(project, **{"packages.binder": str(course)}), "box")
    (course / ".git" / "index").write_text("after git status")
    assert digests.export_digest(settings_with(project, **{"packages.binder": str(course)}), "box") == export
    (course / "requirements.txt").write_text("six\nidna\n")
    assert digests.export_digest(settings_with(project, **{"packages.binder": str(course)}), "box") != export
