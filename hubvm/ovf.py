"""An OVF package for VirtualBox from any disk image: what export.formats ova and ovf are when the disk comes from
a libvirt build (the box's box.img, a qcow2) or the native build (its raw disk), not from VirtualBox itself.

    disk (raw or qcow2) --qemu-img convert--> NAME-disk001.vmdk   (VMDK, streamOptimized subformat)
                        --> NAME.ovf   (the OVF 1.0 descriptor: the disk, the hardware VirtualBox gives it)
                        --> NAME.mf    (SHA256 of the .ovf and the .vmdk, the manifest VirtualBox checks)
    ova: NAME.ova, a USTAR tar of NAME.ovf, NAME.mf, NAME-disk001.vmdk, in that order
    ovf: the same three files in builds/vm/ovf/

The member order is DMTF DSP0243's for an OVA: the descriptor first, the manifest (and a certificate, which there
is none of) right after it, then the files in the order of its References. VirtualBox's importer reads the .ovf
first and takes the .mf either right after it or at the very end (ApplianceImplImport.cpp, i_readFSOVA); VMware's
tools insist on the descriptor first. A USTAR header holds sizes below 8 GiB, so a bigger VMDK cannot go into an
OVA (export.formats ovf can hold it).

The hardware is VirtualBox's own vocabulary (vssd:VirtualSystemType virtualbox-2.2): vm.cpus CPUs, vm.memory_mb
MiB, the disk on port 0 of a SATA controller (AHCI), one Intel PRO/1000 MT (E1000) adapter on NAT; the guest OS
type from the OS file's virtualbox_guest_os_type (vbox:OSType, Debian12_64 and Ubuntu24_LTS_64 need VirtualBox 7,
as the Packer template does) and its CIM id. The image (image.source mirror, either build mode) copes with that
hardware: its network setup asks systemd-networkd for DHCP on every en*/eth* link
(templates/packer/scripts/mirror-customize.sh; the E1000 shows up as enp0s3), and its initramfs has the AHCI
driver: Debian's initramfs-tools default MODULES=most copies every kernel/drivers/ata module (ahci.ko among them)
and nothing in the mirror tree, the native build or the Debian installer's preseed changes it (on this Debian 12
host: lsinitramfs lists ahci.ko, libahci.ko, e1000.ko). Ubuntu's kernels build AHCI in; no Ubuntu guest runs
here. Not checked: image.source cloud (a distribution's cloud image: its cloud kernel, initramfs and cloud-init's
network setup).

Pure functions and one `make` that runs qemu-img through the caller's runner (so `hubvm --dry` prints it).
"""

from __future__ import annotations

import shutil
import struct
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm.artifacts import sha256
from hubvm.errors import UserError
from hubvm.report import human_bytes
from hubvm.shell import Runner, q, rel

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VBOX = "http://www.virtualbox.org/ovf/machine"
XML = "http://www.w3.org/XML/1998/namespace"
# VirtualBox finds vbox:OSType by its prefix, not its URI (IPRT's findChildElementNS): the prefixes are fixed
for _prefix, _uri in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vbox", VBOX)):
    ET.register_namespace(_prefix, _uri)

VMDK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
VIRTUAL_SYSTEM_TYPE = "virtualbox-2.2"
NETWORK = "NAT"
# CIM_OperatingSystem's OSType, by the OS file's family (VirtualBox's ovfreader.h: 96 Debian 64-Bit, 94 Ubuntu
# 64-Bit). Kept here rather than in templates/packer/os/: those files are the base box's inputs, and a key there
# would make every built box stale.
CIM_OS = {"debian": 96, "ubuntu": 94}
# CIM ResourceType values of the items (DSP0243, CIM_ResourceAllocationSettingData)
PROCESSOR, MEMORY, ETHERNET, DISK, OTHER_STORAGE = 3, 4, 10, 17, 20
USTAR_MAX = 8**11        # bytes: a USTAR header's size field is 11 octal digits
SECTOR = 512
STAGING = ".ova"         # where the files of an OVA wait when export.formats has no ovf folder


@dataclass(frozen=True)
class Appliance:
    """What the descriptor says of the machine."""

    name: str            # the VirtualSystem's id (VirtualBox's name for the imported VM) and the files' names
    os_type: str         # vbox:OSType
    cim_os: int          # OperatingSystemSection ovf:id
    os_name: str
    cpus: int
    memory_mb: int

    @classmethod
    def of(cls, s: Any) -> Appliance:
        """From the settings: vm.name, vm.cpus, vm.memory_mb and the OS file."""
        return cls(s.vm.name, s.os_data["virtualbox_guest_os_type"], CIM_OS[s.os_data["family"]], s.os_data["name"],
                   s.vm.cpus, s.vm.memory_mb)


@dataclass(frozen=True)
class Names:
    """The package's file names (VirtualBox's own pattern: NAME.ovf, NAME.mf, NAME-disk001.vmdk)."""

    ovf: str
    mf: str
    vmdk: str
    ova: str

    @classmethod
    def of(cls, name: str) -> Names:
        return cls(f"{name}.ovf", f"{name}.mf", f"{name}-disk001.vmdk", f"{name}.ova")


def vmdk_command(qemu_img: str, disk: Path | str, disk_format: str, vmdk: Path | str) -> str:
    """The disk as a streamOptimized VMDK (compressed grains, the subformat OVF packages carry)."""
    return (f"{q(qemu_img)} convert -f {disk_format} -O vmdk -o subformat=streamOptimized {q(disk)} {q(vmdk)}")


def vmdk_capacity(vmdk: Path) -> int:
    """The virtual size in bytes of a sparse VMDK, from its extent header (magic KDMV, capacity in sectors)."""
    with vmdk.open("rb") as stream:
        header = stream.read(SECTOR)
    if len(header) < 20 or header[:4] != b"KDMV":
        raise UserError(f"{vmdk} is not a sparse VMDK (no KDMV header): qemu-img made something else")
    return struct.unpack_from("<Q", header, 12)[0] * SECTOR


def _sub(parent: ET.Element, namespace: str, tag: str, text: str | int | None = None,
         **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{namespace}}}{tag}",
                            {f"{{{OVF}}}{key}": str(value) for key, value in attributes.items()})
    if text is not None:
        element.text = str(text)
    return element


def _item(hardware: ET.Element, **fields: str | int) -> None:
    """A hardware Item; its rasd elements in the schema's (alphabetical) order."""
    item = _sub(hardware, OVF, "Item")
    for name in sorted(fields):
        _sub(item, RASD, name, fields[name])


def descriptor(appliance: Appliance, vmdk_name: str, vmdk_bytes: int, capacity: int) -> bytes:
    """The OVF 1.0 descriptor of one VirtualBox machine with this disk."""
    envelope = ET.Element(f"{{{OVF}}}Envelope", {f"{{{OVF}}}version": "1.0", f"{{{XML}}}lang": "en-US"})
    references = _sub(envelope, OVF, "References")
    _sub(references, OVF, "File", href=vmdk_name, id="file1", size=str(vmdk_bytes))
    disks = _sub(envelope, OVF, "DiskSection")
    _sub(disks, OVF, "Info", "List of the virtual disks used in the package")
    _sub(disks, OVF, "Disk", capacity=str(capacity), diskId="vmdisk1", fileRef="file1", format=VMDK_FORMAT)
    networks = _sub(envelope, OVF, "NetworkSection")
    _sub(networks, OVF, "Info", "Logical networks used in the package")
    network = _sub(networks, OVF, "Network", name=NETWORK)
    _sub(network, OVF, "Description", "VirtualBox's NAT: the guest reaches out, the host forwards ports in")
    system = _sub(envelope, OVF, "VirtualSystem", id=appliance.name)
    _sub(system, OVF, "Info", "A JupyterHub appliance built by hubvm")
    annotation = _sub(system, OVF, "AnnotationSection")
    _sub(annotation, OVF, "Info", "A human-readable annotation")
    _sub(annotation, OVF, "Annotation", f"JupyterHub on {appliance.os_name}, built by hubvm")
    os_section = _sub(system, OVF, "OperatingSystemSection", id=str(appliance.cim_os))
    _sub(os_section, OVF, "Info", "The kind of installed guest operating system")
    _sub(os_section, OVF, "Description", appliance.os_type)
    _sub(os_section, VBOX, "OSType", appliance.os_type, required="false")
    hardware = _sub(system, OVF, "VirtualHardwareSection")
    _sub(hardware, OVF, "Info", "Virtual hardware requirements for a virtual machine")
    identity = _sub(hardware, OVF, "System")
    for tag, text in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                      ("VirtualSystemIdentifier", appliance.name), ("VirtualSystemType", VIRTUAL_SYSTEM_TYPE)):
        _sub(identity, VSSD, tag, text)
    cpus = f"{appliance.cpus} virtual CPU" + ("s" if appliance.cpus > 1 else "")
    _item(hardware, Caption=cpus, Description="Number of virtual CPUs", ElementName=cpus, InstanceID=1,
          ResourceType=PROCESSOR, VirtualQuantity=appliance.cpus)
    memory = f"{appliance.memory_mb} MB of memory"
    _item(hardware, AllocationUnits="MegaBytes", Caption=memory, Description="Memory Size", ElementName=memory,
          InstanceID=2, ResourceType=MEMORY, VirtualQuantity=appliance.memory_mb)
    _item(hardware, Address=0, Caption="sataController0", Description="SATA Controller",
          ElementName="sataController0", InstanceID=3, ResourceSubType="AHCI", ResourceType=OTHER_STORAGE)
    _item(hardware, AddressOnParent=0, Caption="disk1", Description="Disk Image", ElementName="disk1",
          HostResource="ovf:/disk/vmdisk1", InstanceID=4, Parent=3, ResourceType=DISK)
    adapter = f"Ethernet adapter on '{NETWORK}'"
    _item(hardware, AutomaticAllocation="true", Caption=adapter, Connection=NETWORK, ElementName=adapter,
          InstanceID=5, ResourceSubType="E1000", ResourceType=ETHERNET)
    ET.indent(envelope)
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True) + b"\n"


def manifest(digests: Mapping[str, str]) -> str:
    """The .mf: `SHA256(name)= hex` per file, DSP0243's form (VirtualBox writes `SHA256 (name) = hex` and reads
    both)."""
    return "".join(f"SHA256({name})= {digest}\n" for name, digest in digests.items())


def write_package(folder: Path, appliance: Appliance) -> tuple[Path, Path, Path]:
    """The descriptor and the manifest beside folder/NAME-disk001.vmdk; returns (.ovf, .mf, .vmdk)."""
    names = Names.of(appliance.name)
    vmdk = folder / names.vmdk
    ovf, mf = folder / names.ovf, folder / names.mf
    ovf.write_bytes(descriptor(appliance, names.vmdk, vmdk.stat().st_size, vmdk_capacity(vmdk)))
    mf.write_text(manifest({names.ovf: sha256(ovf), names.vmdk: sha256(vmdk)}))
    return ovf, mf, vmdk


def write_ova(ova: Path, members: Sequence[Path]) -> None:
    """A USTAR tar of the members, in the order given (descriptor, manifest, disk)."""
    for member in members:
        if member.stat().st_size >= USTAR_MAX:
            raise UserError(f"{member.name} is {human_bytes(member.stat().st_size)}, and an OVA (a USTAR tar) holds "
                            "files below 8 GiB; use export.formats ovf (the same files in a folder) instead of ova")
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in members:
            info = tar.gettarinfo(str(member), arcname=member.name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
            with member.open("rb") as stream:
                tar.addfile(info, stream)


def make(sh: Runner, qemu_img: str, disk: Path, disk_format: str, partial: Path, appliance: Appliance,
         formats: Collection[str], project_dir: Path | None = None) -> list[Path]:
    """export.formats ova and/or ovf in `partial` (builds/vm.partial/) from `disk`; returns what it made. With
    `project_dir`, the command runs there and names the paths relative to it (as the VM path's export does)."""
    names = Names.of(appliance.name)
    folder = partial / ("ovf" if "ovf" in formats else STAGING)
    vmdk = folder / names.vmdk
    shown = (lambda path: rel(path, project_dir)) if project_dir else str
    made = [*([partial / names.ova] if "ova" in formats else []), *([folder] if "ovf" in formats else [])]
    if not sh.dry:
        folder.mkdir(parents=True, exist_ok=True)
    sh.run(vmdk_command(qemu_img, shown(disk), disk_format, shown(vmdk)), cwd=project_dir)
    if sh.dry:
        say = getattr(sh, "say", None) or print
        say(f"[dry run] would write {names.ovf} and {names.mf} beside {shown(vmdk)}"
            + (f", then {shown(partial / names.ova)} ({names.ovf}, {names.mf}, {names.vmdk})"
               if "ova" in formats else ""))
        return made
    members = write_package(folder, appliance)
    if "ova" in formats:
        write_ova(partial / names.ova, members)
    if "ovf" not in formats:
        shutil.rmtree(folder)
    return made
