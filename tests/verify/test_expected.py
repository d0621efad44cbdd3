"""hubvm.verify.expected: what verify expects of the guest's shared data (vm.data's entries, or the shipped
sample files), as the planned check states it."""

from __future__ import annotations

from pathlib import Path

from hubvm.verify import expected
from hubvm.verify.checks import planned
from tests.conftest import REPO
from tests.verify.helpers import parse


def test_shared_data_expects_vm_data_or_the_shipped_samples(tmp_path: Path) -> None:
    assert expected.shared_data_entries(parse()) == sorted(
        p.name for p in (REPO / "ansible/roles/shared_data/files/samples").iterdir())
    (tmp_path / "a.csv").write_text("x")
    s = parse(**{"vm.data": str(tmp_path)})
    assert expected.shared_data_entries(s) == ["a.csv"]
    check = planned(s, "http://x/hub/api")[-4]
    assert check.expected == "/srv/shared_data holds the 1 entries of vm.data, /etc/skel/shared_data links it"
