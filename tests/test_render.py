"""Rendering: which files, with which modes, written atomically; each value written with its target's quoting
(JSON, YAML, Ruby); --dry writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hubvm import render
from hubvm.layout import Layout
from tests.conftest import REPO, settings_with


@pytest.mark.parametrize(("value", "literal"), [
    ("plain", "'plain'"), ("it's", "'it\\'s'"), ("back\\slash", "'back\\\\slash'"),
    ("#{system('x')}", "'#{system(\\'x\\')}'"),
])
def test_ruby_strings_are_single_quoted(value: str, literal: str) -> None:
    assert render.ruby_string(value) == literal


def test_the_plan_names_every_generated_file_with_its_mode(project: Path) -> None:
    s = settings_with(project)
    layout = Layout.of(s)
    files = {f.path.relative_to(layout.builds).as_posix(): f for f in render.plan(s)}
    assert {"packer/variables.pkrvars.json", "packer/box.pkr.hcl", "packer/plugins.pkr.hcl",
            "packer/http/preseed.cfg", "packer/http/cloud/user-data", "vagrant/Vagrantfile",
            "ansible/vars.yml"} <= set(files)
    assert files["packer/scripts/cleanup.sh"].mode == 0o755
    assert not any(name.startswith(("packer/os/", "packer/http/debian12/")) for name in files)  # read, not copied


def test_write_is_atomic_and_keeps_modes(tmp_path: Path) -> None:
    files = [render.File(tmp_path / "a" / "x.sh", "#!/bin/sh\n", 0o755), render.File(tmp_path / "b.txt", "b\n")]
    assert render.write(files) == [f.path for f in files]
    assert (tmp_path / "a" / "x.sh").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "x.sh"]  # no temporary file left


def test_packer_variables(project: Path) -> None:
    s = settings_with(project, **{"vm.provider": "libvirt", "image.source": "mirror", "export.formats": ["qcow2"],
                                  "guest.http_proxy": "http://127.0.0.1:3128"})
    variables = render.packer_variables(s)
    assert variables["output_box"] == "../boxes/.partial/jupyterhub-vm-debian12-libvirt.box"
    assert variables["iso_url"] == "../base/disk.qcow2"
    assert "http_proxy=http://127.0.0.1:3128" in variables["environment"]
    assert "no_proxy=localhost,127.0.0.1" in variables["environment"]


def test_yaml_targets_read_back_the_exact_values(project: Path) -> None:
    """Values that YAML would otherwise read as something else ('yes', '#', ': ') reach YAML files as strings."""
    s = settings_with(project, **{"vm.os": "ubuntu2404", "ssh.password": "p#a:s s!" .replace(" ", ""),
                                  "vm.timezone": "Etc/UTC", "guest.apt_mirror": "http://127.0.0.1:3142/ubuntu"})
    files = {f.path.name + f.path.parent.name: f.text for f in render.plan(s)}
    user_data = yaml.safe_load(files["user-datahttp"])
    assert user_data["autoinstall"]["user-data"]["users"][0]["plain_text_passwd"] == "p#a:ss!"
    assert user_data["autoinstall"]["apt"]["primary"][0]["uri"] == "http://127.0.0.1:3142/ubuntu"
    cloud = yaml.safe_load(files["user-datacloud"])
    assert cloud["users"][0]["plain_text_passwd"] == "p#a:ss!"
    variables = yaml.safe_load(files["vars.ymlansible"])
    assert variables["base_timezone"] == "Etc/UTC"
    packer = json.loads(files["variables.pkrvars.jsonpacker"])
    assert packer["ssh_password"] == "p#a:ss!"


def test_render_files_under_dry_writes_nothing_and_says_what(project: Path) -> None:
    said: list[str] = []

    class Dry:
        dry = True

        def say(self, message: str) -> None:
            said.append(message)

    s = settings_with(project)
    paths = render.render_files(Dry(), s)
    assert paths and not (project / "builds" / "packer").exists()
    assert said == [f"[dry run] would render {len(paths)} files under builds/ (ansible, packer, vagrant)"]


def test_the_box_name_follows_the_box_inputs() -> None:
    s = settings_with(REPO)
    assert render.box_name(s).startswith("hubvm/jupyterhub-vm-debian12-virtualbox-")
    assert render.box_name(settings_with(REPO, **{"vm.disk_gb": 30})) != render.box_name(s)
    assert render.box_name(settings_with(REPO, **{"packages.python": ["scipy"]})) == render.box_name(s)
