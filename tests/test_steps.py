"""Command sequences and skip logic of the steps, with invoke's MockContext (nothing is executed).

The tools are stand-in executables in a temporary bin/ (never run: MockContext answers every command), so the
tests are the same on machines with and without packer, vagrant or VirtualBox.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
from invoke import Config, MockContext, Result

from hubvm import settings, stamps, steps
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.target import Target

VERSIONS = {
    "packer": "Packer v{packer}",
    "vagrant": "Vagrant 2.3.4",
    "ansible-playbook": "ansible-playbook [core 2.19.14]",
    "VBoxManage": "7.2.6r170000",
    "virsh": "9.0.0",
    "qemu-system-x86_64": "QEMU emulator version 7.2.19",
    "qemu-img": "qemu-img version 7.2.19",
    "mmdebstrap": "mmdebstrap 1.3.5",
}


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))  # tools found by name (virt-sysprep) come from here only
    for name in [*VERSIONS, "virt-sysprep", "virt-sparsify"]:
        tool = path / name
        tool.write_text("#!/bin/sh\nexit 99\n")  # never run: MockContext answers instead
        tool.chmod(0o755)
    return path


def make_settings(project: Path, bin_dir: Path, **overrides: object) -> settings.Settings:
    tools = {f"tools.{key}": str(bin_dir / name) for key, name in [
        ("packer", "packer"), ("vagrant", "vagrant"), ("ansible_playbook", "ansible-playbook"),
        ("vboxmanage", "VBoxManage"), ("virsh", "virsh"), ("qemu_system", "qemu-system-x86_64"),
        ("qemu_img", "qemu-img"), ("mmdebstrap", "mmdebstrap")]}
    raw = settings.merge(settings.defaults(project), settings.dotted({**tools, **overrides}))
    return settings.parse(raw, project)


def context(bin_dir: Path, packer: str = "1.6.6", dry: bool = False, answers: dict | None = None) -> MockContext:
    """A MockContext that answers version probes and `vagrant ... --machine-readable`, and 'succeeds' at the rest."""
    run: dict = {}
    for name, output in VERSIONS.items():
        run[re.compile(rf"^{re.escape(str(bin_dir / name))} (--version|version)$")] = Result(
            stdout=output.format(packer=packer))
    run[re.compile(r".*plugin list$")] = Result(stdout="vagrant-libvirt (0.11.2, system)\n")
    run[re.compile(r".*virsh -c qemu:///system uri$")] = Result(stdout="qemu:///system\n")
    run.update(answers or {})
    run[re.compile(r".*")] = Result()
    config = Config(overrides={"run": {"dry": dry}})
    return MockContext(config=config, run=run, repeat=True)


def act_on(c: MockContext, word: str, action) -> None:
    """Make commands containing `word` also do `action(command)` (say, write what packer would write);
    every command still gets the answer prepared for it."""

    def run(command: str, **kwargs: object) -> Result:
        if word in command:
            action(command)
        return c._yield_result("__run", command)

    c.run.side_effect = run


def commands(c: MockContext, bin_dir: Path) -> list[str]:
    """The commands a step ran, probes left out, with the tool paths shortened to their names."""
    ran = []
    for call in c.run.call_args_list:
        command, options = call.args[0], call.kwargs
        if options.get("hide") and options.get("dry") is False:
            continue  # a read-only probe
        ran.append(command.replace(f"{bin_dir}/", ""))
    return ran


def test_pack_with_packer_1_6_runs_the_template_file_alone(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir, packer="1.6.6")
    with pytest.raises(UserError, match="wrote no box"):  # MockContext's packer writes nothing
        steps.pack(c, s)
    packer_dir = project / "builds" / "packer"
    assert commands(c, bin_dir) == [
        f"cd {packer_dir} && packer build -force -only=virtualbox-iso.iso -var-file=variables.pkrvars.json "
        "box.pkr.hcl"]


def test_pack_with_packer_1_12_installs_plugins_first(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    c = context(bin_dir, packer="1.12.0")
    with pytest.raises(UserError, match="wrote no box"):
        steps.pack(c, s)
    packer_dir = project / "builds" / "packer"
    assert commands(c, bin_dir) == [
        f"cd {packer_dir} && packer init .",
        f"cd {packer_dir} && packer build -force -only=qemu.iso -var-file=variables.pkrvars.json .",
    ]


def finish_box(s: settings.Settings) -> None:
    """What a successful packer build leaves: the box in boxes/.partial/."""
    layout = Layout.of(s)
    layout.partial_dir.mkdir(parents=True, exist_ok=True)
    (layout.partial_dir / layout.box_file.name).write_bytes(b"box")


def test_pack_moves_the_finished_box_into_place_and_stamps_it(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    c = context(bin_dir)
    act_on(c, " build ", lambda command: finish_box(s))
    result = steps.pack(c, s)
    assert result.status == "ran"
    assert layout.box_file.read_bytes() == b"box"
    assert stamps.read(layout.box_stamp) == stamps.box_digest(s)
    assert not (layout.partial_dir / layout.box_file.name).exists()


def test_pack_is_skipped_when_inputs_are_unchanged_and_redone_when_they_change(project: Path,
                                                                                bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    stamps.write(layout.box_stamp, stamps.box_digest(s))

    c = context(bin_dir)
    assert steps.pack(c, s).status == "skipped"
    assert c.run.call_args_list == []

    # settings that only act at `up` (packages, hub) leave the box alone
    assert steps.pack(c, make_settings(project, bin_dir, **{"packages.python": ["scipy"]})).status == "skipped"

    # a changed input (the disk size, a script of the template) rebuilds it
    for changed in (make_settings(project, bin_dir, **{"vm.disk_gb": 30}),):
        with pytest.raises(UserError, match="wrote no box"):
            steps.pack(context(bin_dir), changed)
    script = project / "templates" / "packer" / "scripts" / "cleanup.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    c = context(bin_dir)
    with pytest.raises(UserError, match="wrote no box"):
        steps.pack(c, s)
    assert any(" build " in command for command in commands(c, bin_dir))


def test_pack_force_rebuilds_an_up_to_date_box(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"old")
    stamps.write(layout.box_stamp, stamps.box_digest(s))
    c = context(bin_dir)
    act_on(c, " build ", lambda command: finish_box(s))
    assert steps.pack(c, s, force=True).status == "ran"
    assert layout.box_file.read_bytes() == b"box"


def test_a_failed_packer_build_leaves_no_box(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    from invoke import UnexpectedExit

    def fail(command: str) -> None:
        finish_box(s)  # half a box in .partial, as an interrupted build might leave
        raise UnexpectedExit(Result(command=command, exited=1))

    c = context(bin_dir)
    act_on(c, " build ", fail)
    with pytest.raises(UnexpectedExit):
        steps.pack(c, s)
    assert not layout.box_file.exists()
    assert stamps.read(layout.box_stamp) is None


def test_dry_pack_writes_nothing(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir, dry=True)
    result = steps.pack(c, s)
    assert result.status == "dry run"
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]
    assert any(" build " in command for command in commands(c, bin_dir))


def test_up_adds_the_box_and_boots_with_provisioning(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    c = context(bin_dir)
    steps.up(c, s)
    from hubvm.render import box_name

    assert commands(c, bin_dir) == [
        f"cd {project} && vagrant box add --force --name {box_name(s)} builds/boxes/{layout.box_file.name}",
        f"cd {layout.vagrant_dir} && vagrant up --provider=virtualbox",
    ]
    assert layout.vagrantfile.is_file()


def test_up_skips_box_add_when_vagrant_has_the_box_and_reprovisions_on_request(project: Path,
                                                                               bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True)
    layout.box_file.write_bytes(b"box")
    from hubvm.render import box_name

    listed = Result(stdout=f"1700000000,,box-name,{box_name(s)}\n1700000000,,box-provider,virtualbox\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed})
    steps.up(c, s, provision=True)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant up --provider=virtualbox --provision"]

    # a running VM is provisioned with `vagrant provision` (vagrant-libvirt runs `up --provision` twice)
    running = Result(stdout="1700000000,jupyterhub-vm,state,running\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed,
                                  re.compile(r".*status --machine-readable$"): running})
    steps.up(c, s, provision=True)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant provision --provision-with ansible"]


def test_up_without_a_box_says_to_pack(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    with pytest.raises(UserError, match="invoke pack"):
        steps.up(context(bin_dir), s)


def test_provision_of_a_host_runs_the_same_playbook_and_variables(project: Path, bin_dir: Path,
                                                                  tmp_path: Path) -> None:
    s = make_settings(project, bin_dir)
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    c = context(bin_dir)
    steps.provision(c, s, Target("10.0.0.2", "root", 2200, key))
    [command] = commands(c, bin_dir)
    known_hosts = project / "builds" / "ssh" / "known_hosts"
    assert command == (
        f"cd {project} && ansible-playbook -i 10.0.0.2, -u root -e ansible_port=2200 -e @builds/ansible/vars.yml "
        f"--ssh-common-args '-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
        f"-o HashKnownHosts=no -o ConnectTimeout=10 -o ServerAliveInterval=30' --private-key {key} "
        "ansible/playbook.yml")
    vagrantfile = (project / "builds" / "vagrant" / "Vagrantfile").read_text()
    assert f'ansible.extra_vars = "{project}/builds/ansible/vars.yml"' in vagrantfile
    assert f'ansible.playbook = "{project}/ansible/playbook.yml"' in vagrantfile


def test_provision_of_the_vagrant_vm(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    c = context(bin_dir)
    steps.provision(c, s, None)
    assert commands(c, bin_dir) == [f"cd {project}/builds/vagrant && vagrant provision --provision-with ansible"]


def fake_package(s: settings.Settings, command: str) -> None:
    """What `vagrant package --output X` leaves: a VirtualBox box (OVF + VMDK) or a libvirt box (box.img)."""
    output = Path(command.split("--output ")[1])
    members = {"metadata.json": b"{}"}
    if s.vm.provider == "virtualbox":
        members.update({"box.ovf": b"<Envelope/>", "box-disk001.vmdk": b"vmdk"})
    else:
        members["box.img"] = b"qcow2"
    staging = output.parent / "staging"
    staging.mkdir()
    for name, data in members.items():
        (staging / name).write_bytes(data)
    with tarfile.open(output, "w:gz") as box:
        for name in members:
            box.add(staging / name, arcname=name)
    for name in members:
        (staging / name).unlink()
    staging.rmdir()


def run_export(project: Path, bin_dir: Path, **overrides: object) -> tuple[MockContext, settings.Settings]:
    s = make_settings(project, bin_dir, **overrides)

    def answer(command: str) -> None:
        if " package --output " in command:
            fake_package(s, command)
        elif " && tar -xzf " in command:
            folder, tar = command[3:].split(" && ", 1)
            with tarfile.open(Path(folder) / tar.split()[2]) as box:
                box.extractall(Path(folder) / tar.split()[4], filter="data")
        elif " convert -c -O qcow2 " in command:
            folder, convert = command[3:].split(" && ", 1)
            (Path(folder) / convert.split()[-1]).write_bytes(b"qcow2")

    c = context(bin_dir)
    act_on(c, "", answer)
    steps.export(c, s)
    return c, s


def test_export_lays_out_ovf_ova_qcow2_checksums_and_manifest(project: Path, bin_dir: Path) -> None:
    c, _ = run_export(project, bin_dir, **{"export.formats": ["ovf", "ova", "qcow2"]})
    vm = project / "builds" / "vm"
    vagrant_dir = project / "builds" / "vagrant"
    assert commands(c, bin_dir) == [
        f"cd {vagrant_dir} && vagrant provision --provision-with cleanup",
        f"cd {vagrant_dir} && vagrant package --output {project}/builds/vm.partial/jupyterhub-vm.box",
        f"cd {project} && tar -xzf builds/vm.partial/jupyterhub-vm.box -C builds/vm.partial/box",
        f"cd {project} && qemu-img convert -c -O qcow2 builds/vm.partial/box/box-disk001.vmdk "
        "builds/vm.partial/jupyterhub-vm.qcow2",
        f"cd {vagrant_dir} && vagrant destroy -f",
    ]
    assert sorted(p.name for p in vm.iterdir()) == ["SHA256SUMS", "inputs-sha256", "jupyterhub-vm.box",
                                                    "jupyterhub-vm.ova", "jupyterhub-vm.qcow2", "manifest.json",
                                                    "ovf"]
    with tarfile.open(vm / "jupyterhub-vm.ova") as ova:
        assert ova.getnames() == ["box.ovf", "box-disk001.vmdk"]  # the OVF descriptor first
    sums = dict(reversed(line.split("  ")) for line in (vm / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"jupyterhub-vm.box", "jupyterhub-vm.ova", "jupyterhub-vm.qcow2", "ovf/box.ovf",
                         "ovf/box-disk001.vmdk"}
    assert sums["jupyterhub-vm.qcow2"] == steps.sha256(vm / "jupyterhub-vm.qcow2")
    import json

    manifest = json.loads((vm / "manifest.json").read_text())
    assert manifest["tool_versions"]["Vagrant"] == "2.3.4"
    assert manifest["packages"]["python"] == ["numpy", "pandas", "matplotlib"]
    assert manifest["access"]["vagrant_user_and_insecure_key"] == "removed"
    assert manifest["configuration_sha256"] == (vm / "inputs-sha256").read_text().strip()
    assert not (project / "builds" / "vm.partial").exists()


def test_export_is_skipped_when_box_and_configuration_are_unchanged(project: Path, bin_dir: Path) -> None:
    run_export(project, bin_dir)
    s = make_settings(project, bin_dir)
    assert steps.export_is_current(s)
    c = context(bin_dir)
    assert steps.export(c, s).status == "skipped"
    assert commands(c, bin_dir) == []
    assert not steps.export_is_current(make_settings(project, bin_dir, **{"packages.python": ["scipy"]}))


def test_libvirt_export_converts_the_box_image(project: Path, bin_dir: Path) -> None:
    c, _ = run_export(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    assert f"cd {project} && qemu-img convert -c -O qcow2 builds/vm.partial/box/box.img " \
           "builds/vm.partial/jupyterhub-vm.qcow2" in commands(c, bin_dir)


def test_destroy_and_clean(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir)
    layout = Layout.of(s)
    machine = layout.vagrant_dir / ".vagrant" / "machines" / "jupyterhub-vm" / "virtualbox"
    machine.mkdir(parents=True)
    (machine / "id").write_text("uuid")
    c = context(bin_dir)
    steps.destroy(c, s)
    assert commands(c, bin_dir) == [f"cd {layout.vagrant_dir} && vagrant destroy -f"]
    with pytest.raises(UserError, match="destroy it first"):
        steps.clean(c, s)
    (machine / "id").unlink()
    listed = Result(stdout=f"1,,box-name,hubvm/{layout.box_stem}-0123456789ab\n1,,box-name,other/box\n")
    c = context(bin_dir, answers={re.compile(r".*box list --machine-readable$"): listed})
    steps.clean(c, s, everything=True)
    assert commands(c, bin_dir) == [f"vagrant box remove --force --all hubvm/{layout.box_stem}-0123456789ab"]
    assert not layout.vagrant_dir.exists()


def test_missing_tool_stops_a_real_run_and_only_warns_in_a_dry_run(project: Path, bin_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "_DRY_WARNINGS", set())
    (bin_dir / "packer").unlink()
    s = make_settings(project, bin_dir)
    with pytest.raises(UserError, match="Packer: install it: sudo apt-get install packer"):
        steps.pack(context(bin_dir), s)
    steps.pack(context(bin_dir, dry=True), s)
    assert "the real run would stop here: Packer" in capsys.readouterr().out
    steps.pack(context(bin_dir, dry=True), s)
    assert "the real run would stop here" not in capsys.readouterr().out  # once per run
