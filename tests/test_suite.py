"""The test suite's own arrangement: its schedule names files that exist, and its folders mirror the package."""

from __future__ import annotations

from tests.conftest import LONGEST_FIRST, REPO, TESTS


def test_longest_first_names_files_that_exist() -> None:
    missing = [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]
    assert not missing, f"LONGEST_FIRST names files that are not there: {missing}"


def test_every_sub_package_has_a_test_folder_and_every_test_folder_a_package() -> None:
    packages = {p.parent.name for p in (REPO / "hubvm").glob("*/__init__.py")}
    folders = {p.parent.name for p in TESTS.glob("*/__init__.py")} - {"e2e"}
    assert packages == folders
