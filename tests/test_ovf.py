"""hubvm.ovf: an OVF package for VirtualBox from a raw or qcow2 disk, made with the real qemu-img through the real
runner, then read back the way VirtualBox's importer reads it (tests/ovf_reader.py): tar members, order and
USTAR headers, the descriptor, the hardware, the manifest, the VMDK's own header and qemu-img's view of it, and
`qemu-img compare` of the VMDK with the disk it came from."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context

from hubvm import ovf
from hubvm.errors import UserError
from hubvm.shell import Shell
from tests import ovf_reader
from tests.conftest import settings_with

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not found (package qemu-utils)")

MIB = 1024 * 1024
DISK_BYTES = 64 * MIB
APPLIANCE = ovf.Appliance("course-hub", "Debian12_64", 96, "Debian 12 (bookworm)", cpus=2, memory_mb=2048)


def raw_disk(path: Path) -> Path:
    """64 MiB, mostly holes, with content that a wrong copy would lose: a boot sector, a text at 1 MiB, 3 MiB of
    random data at 10 MiB and a marker in the last sector."""
    with path.open("wb") as disk:
        disk.truncate(DISK_BYTES)
        disk.write(b"\xeb\x63\x90" + b"\0" * 507 + b"\x55\xaa")
        disk.seek(MIB)
        disk.write(b"hubvm OVF test: the appliance's disk\n" * 1000)
        disk.seek(10 * MIB)
        disk.write(os.urandom(3 * MIB))
        disk.seek(DISK_BYTES - 512)
        disk.write(b"last sector".ljust(512, b"."))
    return path


def make(tmp_path: Path, formats: set[str], disk_format: str = "raw") -> tuple[Path, Path]:
    """The package made from a fresh disk in tmp_path/partial (as builds/vm.partial/); (partial, source disk)."""
    disk = raw_disk(tmp_path / "disk.raw")
    if disk_format == "qcow2":
        qcow2 = tmp_path / "box.img"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(qcow2)], check=True)
        disk = qcow2
    partial = tmp_path / "partial"
    partial.mkdir()
    runner = Shell(Context(Config(overrides={"run": {"in_stream": False}})))  # the real runner; no terminal here
    made = ovf.make(runner, "qemu-img", disk, disk_format, partial, APPLIANCE, formats)
    assert made == [*([partial / "course-hub.ova"] if "ova" in formats else []),
                    *([partial / "ovf"] if "ovf" in formats else [])]
    return partial, disk


def test_an_ova_from_a_raw_disk_reads_back_as_virtualbox_reads_it(tmp_path: Path) -> None:
    partial, disk = make(tmp_path, {"ova"})
    assert sorted(p.name for p in partial.iterdir()) == ["course-hub.ova"]  # the staging folder is gone
    package = ovf_reader.read_ova(partial / "course-hub.ova", tmp_path / "read")
    assert package.problems == []
    # members and their order: the descriptor, the manifest, the disk; every header USTAR
    assert package.names == ["course-hub.ovf", "course-hub.mf", "course-hub-disk001.vmdk"]
    assert all(m.ustar and m.regular for m in package.members)
    with tarfile.open(partial / "course-hub.ova") as tar:
        assert {m.uname for m in tar.getmembers()} == {""} and {m.mode for m in tar.getmembers()} == {0o644}
    # the descriptor: OVF 1.0, one file, one disk of the disk's virtual size
    assert package.root is not None and package.root.tag == f"{{{ovf_reader.OVF}}}Envelope"
    assert package.root.get(f"{{{ovf_reader.OVF}}}version") == "1.0"
    vmdk = package.file("course-hub-disk001.vmdk")
    assert package.references == {"file1": {"href": vmdk.name, "id": "file1", "size": str(vmdk.stat().st_size)}}
    assert package.disks == {"vmdisk1": {"capacity": str(DISK_BYTES), "diskId": "vmdisk1", "fileRef": "file1",
                                         "format": ovf_reader.STREAM_OPTIMIZED}}
    assert ovf_reader.vmdk_header(vmdk) == (b"KDMV", 3, DISK_BYTES)
    info = ovf_reader.qemu_info(vmdk)
    assert info["virtual-size"] == DISK_BYTES
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    # the hardware VirtualBox makes of it
    system = package.find("ovf:VirtualSystem")
    assert system is not None and system.get(f"{{{ovf_reader.OVF}}}id") == "course-hub"
    os_section = package.find("ovf:VirtualSystem/ovf:OperatingSystemSection")
    assert os_section is not None and os_section.get(f"{{{ovf_reader.OVF}}}id") == "96"
    assert package.find("ovf:VirtualSystem/ovf:OperatingSystemSection/vbox:OSType").text == "Debian12_64"
    assert "<vbox:OSType ovf:required=\"false\">Debian12_64</vbox:OSType>" in package.descriptor_text
    system_type = package.find("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:System/vssd:VirtualSystemType")
    assert system_type is not None and system_type.text == "virtualbox-2.2"
    [cpu], [memory] = package.items_of(3), package.items_of(4)
    assert cpu["VirtualQuantity"] == "2"
    assert (memory["VirtualQuantity"], memory["AllocationUnits"]) == ("2048", "MegaBytes")
    [controller], [hard_disk], [nic] = package.items_of(20), package.items_of(17), package.items_of(10)
    assert controller["ResourceSubType"] == "AHCI"
    assert (hard_disk["Parent"], hard_disk["AddressOnParent"]) == (controller["InstanceID"], "0")
    assert hard_disk["HostResource"] == "ovf:/disk/vmdisk1"
    assert (nic["ResourceSubType"], nic["Connection"]) == ("E1000", "NAT")
    network = package.find("ovf:NetworkSection/ovf:Network")
    assert network is not None and network.get(f"{{{ovf_reader.OVF}}}name") == "NAT"
    # the manifest, as VirtualBox checks it
    assert package.file("course-hub.mf").read_text() == (
        f"SHA256(course-hub.ovf)= {package.digests['course-hub.ovf']}\n"
        f"SHA256(course-hub-disk001.vmdk)= {package.digests['course-hub-disk001.vmdk']}\n")
    # and the VMDK holds exactly the disk
    compared = ovf_reader.compare(vmdk, disk, "raw")
    assert compared.returncode == 0 and "Images are identical" in compared.stdout, compared.stdout + compared.stderr


def test_the_ovf_folder_holds_the_files_of_the_ova(tmp_path: Path) -> None:
    partial, disk = make(tmp_path, {"ova", "ovf"})
    assert sorted(p.name for p in partial.iterdir()) == ["course-hub.ova", "ovf"]
    folder = ovf_reader.read_folder(partial / "ovf")
    assert folder.problems == []
    assert folder.names == ["course-hub-disk001.vmdk", "course-hub.mf", "course-hub.ovf"]
    ova = ovf_reader.read_ova(partial / "course-hub.ova", tmp_path / "read")
    assert ova.problems == [] and ova.digests == folder.digests
    compared = ovf_reader.compare(folder.file("course-hub-disk001.vmdk"), disk, "raw")
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_an_ova_from_a_qcow2_holds_what_the_qcow2_holds(tmp_path: Path) -> None:
    """vm.provider libvirt: the box's box.img (a qcow2) becomes the VMDK."""
    partial, qcow2 = make(tmp_path, {"ova"}, disk_format="qcow2")
    package = ovf_reader.read_ova(partial / "course-hub.ova", tmp_path / "read")
    assert package.problems == []
    compared = ovf_reader.compare(package.file("course-hub-disk001.vmdk"), qcow2, "qcow2")
    assert compared.returncode == 0 and "Images are identical" in compared.stdout, compared.stdout + compared.stderr


def test_the_appliance_is_the_settings_machine_and_os(project: Path) -> None:
    s = settings_with(project, **{"vm.provider": "libvirt", "vm.cpus": 4, "vm.memory_mb": 3072,
                                  "vm.name": "stats-101", "export.formats": ["ova"]})
    assert ovf.Appliance.of(s) == ovf.Appliance("stats-101", "Debian12_64", 96, "Debian 12 (bookworm)", 4, 3072)
    ubuntu = ovf.Appliance.of(settings_with(project, **{"vm.os": "ubuntu2404", "vm.provider": "libvirt",
                                                        "export.formats": ["ova"]}))
    assert (ubuntu.os_type, ubuntu.cim_os) == ("Ubuntu24_LTS_64", 94)


def test_values_reach_the_descriptor_as_xml_text_not_markup() -> None:
    odd = ovf.Appliance("hub", "Debian12_64", 96, "Debian <12> & \"friends\"", 1, 1024)
    root = ET.fromstring(ovf.descriptor(odd, "hub-disk001.vmdk", 10, 1 << 30))
    annotation = root.find("ovf:VirtualSystem/ovf:AnnotationSection/ovf:Annotation", ovf_reader.NS)
    assert annotation is not None and annotation.text == "JupyterHub on Debian <12> & \"friends\", built by hubvm"
    [cpu] = [i for i in root.iterfind("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", ovf_reader.NS)
             if i.findtext("rasd:ResourceType", namespaces=ovf_reader.NS) == "3"]
    assert cpu.findtext("rasd:ElementName", namespaces=ovf_reader.NS) == "1 virtual CPU"


def rewrite_ova(target: Path, order: list[str], files: Path) -> None:
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in order:
            tar.add(files / name, arcname=name)


@pytest.mark.parametrize(("damage", "problem"), [
    ("order", "the first member is ['course-hub.mf'], not the .ovf descriptor"),
    ("manifest", "course-hub.mf: the SHA256 of course-hub-disk001.vmdk does not match"),
    ("size", "References/File file1: size 1, but course-hub-disk001.vmdk has"),
    ("parent", "item disk1: Parent '9' is no controller's InstanceID"),
    ("capacity", "course-hub-disk001.vmdk: capacity 67108864 in its header, 1048576 in the descriptor"),
    ("gnu", "course-hub.ovf: not a USTAR header"),
])
def test_the_reader_finds_what_would_stop_the_importer(tmp_path: Path, damage: str, problem: str) -> None:
    """The reader is only worth its silence if it speaks up: each damage is named."""
    partial, _ = make(tmp_path, {"ova", "ovf"})
    files = partial / "ovf"
    order = ["course-hub.ovf", "course-hub.mf", "course-hub-disk001.vmdk"]
    descriptor = files / "course-hub.ovf"
    text = descriptor.read_text()
    if damage == "order":
        order = [order[1], order[0], order[2]]
    elif damage == "manifest":
        ovf_line, _ = (files / "course-hub.mf").read_text().splitlines()
        (files / "course-hub.mf").write_text(f"{ovf_line}\nSHA256(course-hub-disk001.vmdk)= {'0' * 64}\n")
    elif damage == "size":
        descriptor.write_text(text.replace('ovf:size="', 'ovf:size="1" ovf:old="'))
    elif damage == "parent":
        descriptor.write_text(text.replace("<rasd:Parent>3</rasd:Parent>", "<rasd:Parent>9</rasd:Parent>"))
    elif damage == "capacity":
        descriptor.write_text(text.replace(f'ovf:capacity="{DISK_BYTES}"', f'ovf:capacity="{MIB}"'))
    damaged = tmp_path / "damaged.ova"
    if damage == "gnu":
        with tarfile.open(damaged, "w", format=tarfile.GNU_FORMAT) as tar:
            for name in order:
                tar.add(files / name, arcname=name)
    else:
        rewrite_ova(damaged, order, files)
    problems = ovf_reader.read_ova(damaged, tmp_path / "read").problems
    assert any(p.startswith(problem) for p in problems), problems


def test_a_file_of_8_gib_or_more_cannot_go_into_an_ova(tmp_path: Path) -> None:
    vmdk = tmp_path / "big.vmdk"
    with vmdk.open("wb") as stream:
        stream.truncate(ovf.USTAR_MAX)  # sparse: nothing is written
    with pytest.raises(UserError, match=r"^big.vmdk is 8.0 GiB, and an OVA \(a USTAR tar\) holds files below 8 GiB; "
                                        r"use export.formats ovf"):
        ovf.write_ova(tmp_path / "x.ova", [vmdk])
    assert not (tmp_path / "x.ova").exists()


def test_a_file_that_is_no_sparse_vmdk_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.vmdk").write_bytes(b"QFI\xfb" + b"\0" * 600)
    with pytest.raises(UserError, match="is not a sparse VMDK"):
        ovf.vmdk_capacity(tmp_path / "x.vmdk")


class DryRun:
    """A runner under `hubvm --dry`: it records the commands and what it says, runs and writes nothing."""

    dry = True

    def __init__(self) -> None:
        self.lines: list[str] = []

    def run(self, command: str, cwd: Path | None = None, **kwargs: Any) -> None:
        self.lines.append(f"cd {cwd} && {command}" if cwd else command)

    def probe(self, command: str, cwd: Path | None = None) -> None:
        raise AssertionError(f"no probe expected: {command}")

    def say(self, message: str) -> None:
        self.lines.append(message)


def test_a_dry_run_prints_the_conversion_and_writes_nothing(tmp_path: Path) -> None:
    partial = tmp_path / "builds" / "vm.partial"
    sh = DryRun()
    ovf.make(sh, "/usr/bin/qemu-img", tmp_path / "builds/vm.partial/box/box.img", "qcow2", partial, APPLIANCE,
             {"ova"}, project_dir=tmp_path)
    assert sh.lines == [
        f"cd {tmp_path} && /usr/bin/qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized "
        "builds/vm.partial/box/box.img builds/vm.partial/.ova/course-hub-disk001.vmdk",
        "[dry run] would write course-hub.ovf and course-hub.mf beside builds/vm.partial/.ova/course-hub-disk001.vmdk"
        ", then builds/vm.partial/course-hub.ova (course-hub.ovf, course-hub.mf, course-hub-disk001.vmdk)"]
    assert not (tmp_path / "builds").exists()
