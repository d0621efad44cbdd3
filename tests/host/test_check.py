"""`hubvm check`: a table (or JSON) of every need of the configuration, and one line naming the gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubvm.errors import UserError
from hubvm.host import check as checkhost
from hubvm.host import probes
from tests.mockshell import bin_dir, context, make_settings

__all__ = ["bin_dir"]  # a fixture


def test_everything_found_is_a_table_and_no_error(project: Path, bin_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "vm.accelerator": "tcg",
                                           "export.formats": ["qcow2"]})
    checkhost.run(context(bin_dir), s)
    out = capsys.readouterr().out
    assert out.startswith("provider libvirt, base image iso (Debian 12 (bookworm)), accelerator tcg\n")
    header, _, *rows = out.splitlines()[1:]
    at = header.index("status")
    statuses = {row[:at].strip(): row[at:].split("  ")[0] for row in rows}
    assert set(statuses.values()) == {"ok"}
    assert {"Packer", "Vagrant", "dnsmasq", "vagrant-libvirt", "libvirt daemon"} <= set(statuses)


def test_gaps_are_named_with_their_status_and_json_holds_the_fix(project: Path, bin_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (bin_dir / "packer").unlink()
    s = make_settings(project, bin_dir)
    with pytest.raises(UserError, match=r"^not ready: Packer \(missing\)$"):
        checkhost.run(context(bin_dir), s, as_json=True)
    report = json.loads(capsys.readouterr().out)
    packer = next(f for f in report["findings"] if f["name"] == "Packer")
    assert report["ok"] is False and packer["status"] == probes.MISSING
    assert packer["fix"].startswith("install it: sudo apt-get install packer")
