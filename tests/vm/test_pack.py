"""pack: the Packer command line per Packer version, the box moved into place and stamped, skipped when its inputs are
unchanged, and a failed build leaving no box (MockContext: nothing is executed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Result, UnexpectedExit

from hubvm import digests
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.vm.pack import PACKER_PLUGINS, pack, packer_commands
from tests.conftest import REPO
from tests.mockshell import act_on, bin_dir, commands, context, make_settings

__all__ = ["bin_dir"]  # a fixture



def test_pack_with_packer_1_6_runs_the_template_file_alone(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir, packer="1.6.6")
    with pytest.raises(UserError, match="wrote no box"):  # MockContext's packer writes nothing
        pack(c, s)
    packer_dir = project / "builds" / "packer"
    assert commands(c, bin_dir) == [
        f"cd {packer_dir} && packer build -force -only=virtualbox-iso.iso -var-file=variables.pkrvars.json "
        "box.pkr.hcl"]


def test_pack_with_packer_1_12_installs_plugins_first(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    c = context(bin_dir, packer="1.12.0")
    with pytest.raises(UserError, match="wrote no box"):
        pack(c, s)
    packer_dir = project / "builds" / "packer"
    assert commands(c, bin_dir) == [
        f"cd {packer_dir} && packer init .",
        f"cd {packer_dir} && packer build -force -only=qemu.iso -var-file=variables.pkrvars.json .",
    ]


def finish_box(s: Settings) -> None:
    """What a successful packer build leaves: the box in boxes/.partial/."""
    layout = Layout.of(s)
    layout.partial_dir.mkdir(parents=True, exist_ok=True)
    (layout.partial_dir / layout.box_file.name).write_bytes(b"box")


def test_pack_moves_the_finished_box_into_place_and_stamps_it(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    c = context(bin_dir)
    act_on(c, " build ", lambda command: finish_box(s))
    result = pack(c, s)
    assert result.status == "ran"
    assert layout.box_file.read_bytes() == b"box"
    assert digests.read(layout.box_stamp) == digests.box_digest(s)
    assert not (layout.partial_dir / layout.box_file.name).exists()


def test_pack_is_skipped_when_inputs_are_unchanged_and_redone_when_they_change(project: Path,
                                                                                bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    digests.write(layout.box_stamp, digests.box_digest(s))

    c = context(bin_dir)
    assert pack(c, s).status == "skipped"
    assert c.run.call_args_list == []

    # settings that only act at `up` (packages, hub) leave the box alone
    assert pack(c, make_settings(project, bin_dir, **{"packages.python": ["scipy"]})).status == "skipped"

    # a changed input (the disk size, a script of the template) rebuilds it
    for changed in (make_settings(project, bin_dir, **{"vm.disk_gb": 30}),):
        with pytest.raises(UserError, match="wrote no box"):
            pack(context(bin_dir), changed)
    script = project / "templates" / "packer" / "scripts" / "cleanup.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    c = context(bin_dir)
    with pytest.raises(UserError, match="wrote no box"):
        pack(c, s)
    assert any(" build " in command for command in commands(c, bin_dir))


def test_pack_force_rebuilds_an_up_to_date_box(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"old")
    digests.write(layout.box_stamp, digests.box_digest(s))
    c = context(bin_dir)
    act_on(c, " build ", lambda command: finish_box(s))
    assert pack(c, s, force=True).status == "ran"
    assert layout.box_file.read_bytes() == b"box"


def test_a_failed_packer_build_leaves_no_box(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    def fail(command: str) -> None:
        finish_box(s)  # half a box in .partial, as an interrupted build might leave
        raise UnexpectedExit(Result(command=command, exited=1))

    c = context(bin_dir)
    act_on(c, " build ", fail)
    with pytest.raises(UnexpectedExit):
        pack(c, s)
    assert not layout.box_file.exists()
    assert digests.read(layout.box_stamp) is None


def test_dry_pack_writes_nothing(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir, dry=True)
    result = pack(c, s)
    assert result.status == "dry run"
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]
    assert any(" build " in command for command in commands(c, bin_dir))


def test_missing_tool_stops_a_real_run_and_only_warns_in_a_dry_run(project: Path, bin_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hubvm.host import probes

    monkeypatch.setattr(probes, "_DRY_WARNINGS", set())
    (bin_dir / "packer").unlink()
    s = make_settings(project, bin_dir)
    with pytest.raises(UserError, match="Packer missing: install it: sudo apt-get install packer"):
        pack(context(bin_dir), s)
    pack(context(bin_dir, dry=True), s)
    assert "the real run would stop here: Packer" in capsys.readouterr().out
    pack(context(bin_dir, dry=True), s)
    assert "the real run would stop here" not in capsys.readouterr().out  # once per run


@pytest.mark.parametrize(("version", "expected"), [
    ("1.6.6", ["packer build -force -only=qemu.mirror -var-file=v.json box.pkr.hcl"]),
    ("1.12.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
    ("1.15.0", ["packer init .", "packer build -force -only=qemu.mirror -var-file=v.json ."]),
])
def test_packer_commands_follow_the_packer_version(version: str, expected: list[str]) -> None:
    assert packer_commands("packer", version, "qemu.mirror", "v.json") == expected


def test_a_tool_path_with_a_space_is_quoted() -> None:
    assert packer_commands("/opt/my tools/packer", "1.6.6", "qemu.iso", "v.json")[0].startswith(
        "'/opt/my tools/packer' build")


def test_plugins_file_declares_every_builder_of_the_template() -> None:
    template = (REPO / "templates" / "packer" / "box.pkr.hcl").read_text()
    plugins = (REPO / "templates" / "packer" / "plugins.pkr.hcl").read_text()
    for name, (source, _) in PACKER_PLUGINS.items():
        assert f'source  = "{source}"' in plugins
        assert name in template
