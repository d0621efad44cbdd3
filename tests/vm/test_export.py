"""export: cleanup, vagrant package, the disks and formats laid out in builds/vm/, checksums and manifest; skipped when
current (MockContext, with a stand-in for what vagrant package writes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from invoke import MockContext

from hubvm import pipeline
from hubvm.artifacts import sha256
from hubvm.config.settings import Settings
from hubvm.vm.export import export
from tests.mockshell import act_on, bin_dir, commands, context, make_settings

__all__ = ["bin_dir"]  # a fixture
QEMU_IMG = shutil.which("qemu-img")  # the real one (the tests' PATH holds stand-ins only)



def fake_package(s: Settings, command: str) -> None:
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
    if s.vm.provider == "libvirt" and {"ova", "ovf"} & set(s.export.formats):  # a real qcow2 for the real VMDK
        subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(staging / "box.img"), "32M"], check=True)
    with tarfile.open(output, "w:gz") as box:
        for name in members:
            box.add(staging / name, arcname=name)
    for name in members:
        (staging / name).unlink()
    staging.rmdir()


def run_export(project: Path, bin_dir: Path, **overrides: object) -> tuple[MockContext, Settings]:
    s = make_settings(project, bin_dir, **overrides)

    def answer(command: str) -> None:
        if " package --output " in command:
            fake_package(s, command)
        elif " && tar -xzf " in command:
            folder, tar = command[3:].split(" && ", 1)
            with tarfile.open(Path(folder) / tar.split()[2]) as box:
                # Python < 3.11.4 (Debian 12's 3.11.2) has no extraction filters
                box.extractall(Path(folder) / tar.split()[4],
                               **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        elif " convert -c -O qcow2 " in command:
            folder, convert = command[3:].split(" && ", 1)
            (Path(folder) / convert.split()[-1]).write_bytes(b"qcow2")
        elif " -O vmdk " in command:  # the real conversion, by the real qemu-img
            subprocess.run(command.replace(str(bin_dir / "qemu-img"), str(QEMU_IMG)), shell=True, check=True)

    c = context(bin_dir)
    act_on(c, "", answer)
    export(c, s)
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
    assert sums["jupyterhub-vm.qcow2"] == sha256(vm / "jupyterhub-vm.qcow2")
    manifest = json.loads((vm / "manifest.json").read_text())
    assert manifest["tool_versions"]["Vagrant"] == "2.3.4"
    assert manifest["packages"]["python"] == ["numpy", "pandas", "matplotlib"]
    assert manifest["access"]["vagrant_user_and_insecure_key"] == "removed"
    assert manifest["configuration_sha256"] == (vm / "inputs-sha256").read_text().strip()
    assert not (project / "builds" / "vm.partial").exists()


def test_export_is_skipped_when_box_and_configuration_are_unchanged(project: Path, bin_dir: Path) -> None:
    run_export(project, bin_dir)
    s = make_settings(project, bin_dir)
    assert pipeline.export_is_current(s)
    c = context(bin_dir)
    assert pipeline.export(c, s).status == "skipped"  # the export step of either build mode
    assert commands(c, bin_dir) == []
    assert not pipeline.export_is_current(make_settings(project, bin_dir, **{"packages.python": ["scipy"]}))


def test_libvirt_export_converts_the_box_image(project: Path, bin_dir: Path) -> None:
    c, _ = run_export(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    assert f"cd {project} && qemu-img convert -c -O qcow2 builds/vm.partial/box/box.img " \
           "builds/vm.partial/jupyterhub-vm.qcow2" in commands(c, bin_dir)


def test_a_guestfs_failure_inside_vagrant_package_fails_the_export(project: Path, bin_dir: Path) -> None:
    """vagrant-libvirt runs virt-sysprep and virt-sparsify and ignores their exit status: their error on the
    output stops the export, and nothing reaches builds/vm/."""
    from invoke import Result

    from hubvm.errors import UserError

    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"]})
    failed = Result(stderr="virt-sysprep: error: libguestfs error: /usr/bin/supermin exited with error status 1.\n")
    import re

    c = context(bin_dir, answers={re.compile(r".* package --output .*"): failed})
    try:
        export(c, s)
    except UserError as error:
        message = str(error)
    else:
        raise AssertionError("the export went on")
    assert message.startswith("vagrant package: virt-sysprep failed (libguestfs error: /usr/bin/supermin")
    assert "builds/logs/export.log" in message
    assert not (project / "builds" / "vm").exists()
    assert not any(" destroy -f" in command for command in commands(c, bin_dir))  # the VM is kept for a retry


def test_the_qcow2_is_compressed_as_configured(project: Path, bin_dir: Path) -> None:
    c, _ = run_export(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2"],
                                           "export.compression": "zstd"})
    assert f"cd {project} && qemu-img convert -c -O qcow2 -o compression_type=zstd builds/vm.partial/box/box.img " \
           "builds/vm.partial/jupyterhub-vm.qcow2" in commands(c, bin_dir)


def test_a_libvirt_export_makes_the_ova_and_ovf_from_the_box_image(project: Path, bin_dir: Path,
                                                                   tmp_path: Path) -> None:
    """vm.provider libvirt: box.img (a qcow2) becomes the streamOptimized VMDK of an OVF package for VirtualBox."""
    from tests import ovf_reader

    c, _ = run_export(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["qcow2", "ova", "ovf"]})
    assert f"cd {project} && qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized " \
           "builds/vm.partial/box/box.img builds/vm.partial/ovf/jupyterhub-vm-disk001.vmdk" in commands(c, bin_dir)
    vm = project / "builds" / "vm"
    assert sorted(p.name for p in vm.iterdir()) == ["SHA256SUMS", "inputs-sha256", "jupyterhub-vm.box",
                                                    "jupyterhub-vm.ova", "jupyterhub-vm.qcow2", "manifest.json",
                                                    "ovf"]
    sums = dict(reversed(line.split("  ")) for line in (vm / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"jupyterhub-vm.box", "jupyterhub-vm.ova", "jupyterhub-vm.qcow2", "ovf/jupyterhub-vm.ovf",
                         "ovf/jupyterhub-vm.mf", "ovf/jupyterhub-vm-disk001.vmdk"}
    assert set(json.loads((vm / "manifest.json").read_text())["artifacts"]) == set(sums)
    package = ovf_reader.read_ova(vm / "jupyterhub-vm.ova", tmp_path / "read", qemu_img=str(QEMU_IMG))
    assert package.problems == []
    assert package.disks["vmdisk1"]["capacity"] == str(32 * 1024 * 1024)


def test_a_dry_libvirt_export_prints_the_vmdk_conversion(project: Path, bin_dir: Path) -> None:
    s = make_settings(project, bin_dir, **{"vm.provider": "libvirt", "export.formats": ["ova"]})
    c = context(bin_dir, dry=True)
    assert export(c, s).status == "dry run"
    assert f"cd {project} && qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized " \
           "builds/vm.partial/box/box.img builds/vm.partial/.ova/jupyterhub-vm-disk001.vmdk" in commands(c, bin_dir)
    assert sorted(p.name for p in (project / "builds").iterdir()) == ["README.md"]
