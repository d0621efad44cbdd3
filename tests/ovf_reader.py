"""An OVF package read back the way VirtualBox's importer reads it, and what in it would stop or mislead that
importer. For tests/test_ovf.py and the end-to-end tests (a real export's OVA).

What VirtualBox 7 does on File > Import Appliance (its sources: Main/src-server/ApplianceImplImport.cpp,
Main/xml/ovfreader.cpp, Runtime/common/checksum/manifest2.cpp), and what is checked here for each step:

- the OVA is a tar: every member's header is USTAR's ("ustar\\0" "00"), a regular file; the .ovf comes first, the
  .mf (same base name) right after it or last (i_readFSOVA); DSP0243's order is .ovf, .mf, then the References'
  files in their order;
- the descriptor: root Envelope in the OVF 1.0 namespace, ovf:version 1.0; References/File (href, size) name files
  of the package of that size; DiskSection/Disk has diskId, format and capacity, its fileRef a File's id;
  one VirtualSystem; OperatingSystemSection's CIM id, and vbox:OSType under the prefix `vbox` (VirtualBox finds it
  by prefix); VirtualHardwareSection's items: every ResourceType known (an unknown required one is an error),
  InstanceIDs unique, the disk's Parent a storage controller's InstanceID and its HostResource ovf:/disk/<a Disk>,
  memory in an allocation unit VirtualBox reads, an Ethernet adapter's Connection a network of NetworkSection;
- the manifest: lines `ATTR(name)= value` with or without blanks (IPRT's reader), a known digest of the right
  length, every file named in it present with that digest, the .ovf and every referenced file named;
- each disk: a sparse VMDK (header magic KDMV) whose capacity (sectors x 512) is the Disk's capacity, and which
  `qemu-img info` reads as a streamOptimized VMDK of that virtual size.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hubvm.artifacts import sha256

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VBOX = "http://www.virtualbox.org/ovf/machine"
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# The disk formats VirtualBox's importer takes (ApplianceImplImport.cpp)
DISK_FORMATS = {STREAM_OPTIMIZED, "http://www.vmware.com/specifications/vmdk.html#sparse",
                "http://www.vmware.com/interfaces/specifications/vmdk.html#sparse",
                "http://www.vmware.com/interfaces/specifications/vmdk.html#compressed"}
# ResourceTypes VirtualBox's ovfreader handles (others are an error unless ovf:required="false")
KNOWN_TYPES = {3, 4, 5, 6, 10, 14, 15, 17, 20, 23, 35}
CONTROLLER_TYPES = {5, 6, 20}
MEMORY_UNITS = {"MegaBytes", "MB", "byte * 2^20", "GigaBytes", "GB", "byte * 2^30"}
DIGEST_LENGTHS = {"MD5": 32, "SHA1": 40, "SHA256": 64, "SHA512": 128}
MANIFEST_LINE = re.compile(r"^(\w+)\s*\((.+)\)\s*=\s*(\S+)$")


@dataclass
class Member:
    name: str
    size: int
    ustar: bool = True
    regular: bool = True


@dataclass
class Package:
    """What was read: the files (extracted from the OVA into `folder`, or the folder itself), their sha256, the
    descriptor and the manifest, and the problems found."""

    folder: Path
    members: list[Member]
    digests: dict[str, str]
    ova: bool
    root: ET.Element | None = None
    descriptor_text: str = ""
    manifest: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (attribute, value)
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def file(self, name: str) -> Path:
        return self.folder / name

    def find(self, path: str) -> ET.Element | None:
        assert self.root is not None
        return self.root.find(path, NS)

    @property
    def references(self) -> dict[str, dict[str, str]]:
        """File id -> its attributes (href, size, ...)."""
        assert self.root is not None
        return {_attr(f, "id"): _attrs(f) for f in self.root.findall("ovf:References/ovf:File", NS)}

    @property
    def disks(self) -> dict[str, dict[str, str]]:
        """Disk id -> its attributes (capacity, fileRef, format, ...)."""
        assert self.root is not None
        return {_attr(d, "diskId"): _attrs(d) for d in self.root.findall("ovf:DiskSection/ovf:Disk", NS)}

    @property
    def items(self) -> list[dict[str, str]]:
        """The VirtualHardwareSection's items, each {rasd element's local name: text}."""
        assert self.root is not None
        return [{child.tag.split("}")[1]: (child.text or "") for child in item}
                for item in self.root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", NS)]

    def items_of(self, resource_type: int) -> list[dict[str, str]]:
        return [item for item in self.items if item.get("ResourceType") == str(resource_type)]

    @property
    def vmdks(self) -> list[Path]:
        """The disks' files, in the order of DiskSection."""
        refs = self.references
        return [self.file(refs[d["fileRef"]]["href"]) for d in self.disks.values() if d.get("fileRef") in refs]


NS = {"ovf": OVF, "rasd": RASD, "vssd": VSSD, "vbox": VBOX}


def _attr(element: ET.Element, name: str) -> str:
    return element.get(f"{{{OVF}}}{name}", "")


def _attrs(element: ET.Element) -> dict[str, str]:
    return {key.split("}")[1] if "}" in key else key: value for key, value in element.attrib.items()}


def _copy(stream: IO[bytes], target: Path) -> str:
    """Copy a member out as it is read, and its sha256."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()




def read_ova(ova: Path, into: Path, qemu_img: str = "qemu-img") -> Package:
    """Read an OVA member by member (as VirtualBox streams it), its files extracted into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    members: list[Member] = []
    digests: dict[str, str] = {}
    with ova.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
        for info in tar:
            raw.seek(info.offset)
            header = raw.read(512)
            member = Member(info.name, info.size, ustar=header[257:265] == b"ustar\x0000", regular=info.isreg())
            members.append(member)
            if not member.regular or "/" in info.name or info.name in ("", ".", ".."):
                continue
            stream = tar.extractfile(info)
            assert stream is not None
            digests[info.name] = _copy(stream, into / info.name)
    package = Package(into, members, digests, ova=True)
    _check(package, qemu_img)
    return package


def read_folder(folder: Path, qemu_img: str = "qemu-img") -> Package:
    """Read an OVF package laid out as files (export.formats ovf), the .ovf opened by VirtualBox."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    members = [Member(p.name, p.stat().st_size) for p in files]
    digests = {path.name: sha256(path) for path in files}
    package = Package(folder, members, digests, ova=False)
    _check(package, qemu_img)
    return package


def _check(package: Package, qemu_img: str) -> None:
    problems = package.problems
    names = package.names
    descriptors = [n for n in names if n.lower().endswith(".ovf")]
    if package.ova:
        problems += [f"{m.name}: not a USTAR header" for m in package.members if not m.ustar]
        problems += [f"{m.name}: not a regular file" for m in package.members if not m.regular]
        if not names or not names[0].lower().endswith(".ovf"):
            problems.append(f"the first member is {names[:1]}, not the .ovf descriptor")
    if not descriptors:
        problems.append("no .ovf descriptor")
        return
    ovf_name = descriptors[0]
    base = ovf_name[:-4]
    package.descriptor_text = package.file(ovf_name).read_text(encoding="utf-8")
    try:
        package.root = ET.fromstring(package.descriptor_text.encode())
    except ET.ParseError as error:
        problems.append(f"{ovf_name} does not parse: {error}")
        return
    _check_descriptor(package)
    _check_manifest(package, ovf_name, base)
    if package.ova and not problems:
        refs = [f["href"] for f in package.references.values()]
        expected = [ovf_name, f"{base}.mf", *refs]
        if names != expected:
            problems.append(f"members {names}, DSP0243's order is {expected}")
    refs = package.references
    for disk in package.disks.values():
        if disk.get("fileRef") in refs and (disk.get("capacity") or "").isdigit():
            _check_vmdk(package, package.file(refs[disk["fileRef"]]["href"]), int(disk["capacity"]), qemu_img)


def _check_descriptor(package: Package) -> None:
    problems, root = package.problems, package.root
    assert root is not None
    if root.tag != f"{{{OVF}}}Envelope":
        problems.append(f"the root element is {root.tag}, not OVF 1.0's Envelope ({OVF})")
    if _attr(root, "version") != "1.0":
        problems.append(f"ovf:version is {_attr(root, 'version')!r}, not 1.0")
    sizes = {m.name: m.size for m in package.members}
    refs = package.references
    for file_id, ref in refs.items():
        href = ref.get("href", "")
        if href not in sizes:
            problems.append(f"References/File {file_id}: {href!r} is not in the package")
        elif ref.get("size") and int(ref["size"]) != sizes[href]:
            problems.append(f"References/File {file_id}: size {ref['size']}, but {href} has {sizes[href]} bytes")
    disks = package.disks
    if not disks:
        problems.append("no DiskSection/Disk")
    for disk_id, disk in disks.items():
        for needed in ("diskId", "format", "capacity"):
            if not disk.get(needed):
                problems.append(f"Disk {disk_id}: no ovf:{needed}")
        if disk.get("fileRef") not in refs:
            problems.append(f"Disk {disk_id}: fileRef {disk.get('fileRef')!r} is no References/File id")
        if disk.get("format") not in DISK_FORMATS:
            problems.append(f"Disk {disk_id}: format {disk.get('format')!r} is not a VMDK format VirtualBox takes")
        if not (disk.get("capacity") or "").isdigit():
            problems.append(f"Disk {disk_id}: capacity {disk.get('capacity')!r} is not a number of bytes")
    systems = root.findall("ovf:VirtualSystem", NS)
    if len(systems) != 1:
        problems.append(f"{len(systems)} VirtualSystem elements, not one")
        return
    os_section = package.find("ovf:VirtualSystem/ovf:OperatingSystemSection")
    if os_section is None or not _attr(os_section, "id").isdigit():
        problems.append("no OperatingSystemSection with a numeric ovf:id")
    if not re.search(rf'xmlns:vbox="{re.escape(VBOX)}"', package.descriptor_text) \
            or "<vbox:OSType" not in package.descriptor_text:
        problems.append("no vbox:OSType under the prefix vbox bound to VirtualBox's namespace")
    system_type = package.find("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:System/vssd:VirtualSystemType")
    if system_type is None or not system_type.text:
        problems.append("no VirtualHardwareSection/System/vssd:VirtualSystemType")
    _check_items(package)


def _check_items(package: Package) -> None:
    problems, items = package.problems, package.items
    ids = [item.get("InstanceID", "") for item in items]
    problems += [f"InstanceID {i!r} is used twice" for i in sorted(set(ids)) if ids.count(i) > 1]
    by_id = {item.get("InstanceID"): item for item in items}
    networks = {_attr(n, "name") for n in package.root.findall("ovf:NetworkSection/ovf:Network", NS)}  # type: ignore[union-attr]
    for item in items:
        kind = int(item.get("ResourceType") or 0)
        name = item.get("ElementName") or item.get("InstanceID")
        if kind not in KNOWN_TYPES:
            problems.append(f"item {name}: ResourceType {kind} is one VirtualBox does not know")
        if kind == 4 and item.get("AllocationUnits") not in MEMORY_UNITS:
            problems.append(f"item {name}: memory in {item.get('AllocationUnits')!r}, which VirtualBox refuses")
        if kind == 20 and item.get("ResourceSubType", "").lower() not in ("ahci", "vmware.sata.ahci", "virtioscsi",
                                                                          "virtio-scsi", "nvme"):
            problems.append(f"item {name}: storage controller {item.get('ResourceSubType')!r} VirtualBox refuses")
        if kind in CONTROLLER_TYPES and not item.get("InstanceID"):
            problems.append(f"item {name}: a controller without InstanceID")
        if kind == 17:
            parent = by_id.get(item.get("Parent"))
            if parent is None or int(parent.get("ResourceType") or 0) not in CONTROLLER_TYPES:
                problems.append(f"item {name}: Parent {item.get('Parent')!r} is no controller's InstanceID")
            resource = item.get("HostResource", "")
            disk_id = next((resource[len(p):] for p in ("ovf://disk/", "ovf:/disk/", "/disk/")
                            if resource.startswith(p)), "")
            if disk_id not in package.disks:
                problems.append(f"item {name}: HostResource {resource!r} names no Disk")
            if not item.get("AddressOnParent", "").isdigit():
                problems.append(f"item {name}: AddressOnParent {item.get('AddressOnParent')!r} is not a port")
        if kind == 10 and item.get("Connection") not in networks:
            problems.append(f"item {name}: Connection {item.get('Connection')!r} is not in NetworkSection")


def _check_manifest(package: Package, ovf_name: str, base: str) -> None:
    problems = package.problems
    mf_name = f"{base}.mf"
    if mf_name not in package.names:
        problems.append(f"no manifest {mf_name}")
        return
    for number, line in enumerate(package.file(mf_name).read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = MANIFEST_LINE.match(line.strip())
        if not match:
            problems.append(f"{mf_name} line {number} is not ATTR(name)= value: {line!r}")
            continue
        attribute, name, value = match.groups()
        if len(value) != DIGEST_LENGTHS.get(attribute, -1) or not re.fullmatch(r"[0-9a-fA-F]+", value):
            problems.append(f"{mf_name} line {number}: {attribute} {value!r} is not a digest VirtualBox reads")
        package.manifest[name] = (attribute, value)
    for name, (attribute, value) in package.manifest.items():
        if name not in package.digests:
            problems.append(f"{mf_name} names {name}, which the package lacks")
        elif attribute != "SHA256":
            problems.append(f"{mf_name}: {name} has a {attribute} digest (this reader checks SHA256)")
        elif value.lower() != package.digests[name]:
            problems.append(f"{mf_name}: the SHA256 of {name} does not match")
    for name in [ovf_name, *(f["href"] for f in package.references.values())]:
        if name not in package.manifest:
            problems.append(f"{mf_name} does not name {name}")


def vmdk_header(vmdk: Path) -> tuple[bytes, int, int]:
    """(magic, version, capacity in bytes) of a sparse VMDK's extent header."""
    with vmdk.open("rb") as stream:
        header = stream.read(512)
    magic, version, _flags, sectors = struct.unpack_from("<4sIIQ", header)
    return magic, version, sectors * 512


def qemu_info(vmdk: Path, qemu_img: str = "qemu-img") -> dict:
    out = subprocess.run([qemu_img, "info", "--output=json", str(vmdk)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _check_vmdk(package: Package, vmdk: Path, capacity: int, qemu_img: str) -> None:
    problems = package.problems
    if not vmdk.is_file():
        return  # named above as missing from the package
    magic, version, header_capacity = vmdk_header(vmdk)
    if magic != b"KDMV" or version not in (1, 2, 3):
        problems.append(f"{vmdk.name}: not a sparse VMDK extent (magic {magic!r}, version {version})")
        return
    if header_capacity != capacity:
        problems.append(f"{vmdk.name}: capacity {header_capacity} in its header, {capacity} in the descriptor")
    if not shutil.which(qemu_img):
        problems.append(f"{qemu_img} not found: the VMDK's format was not read")
        return
    info = qemu_info(vmdk, qemu_img)
    create_type = info.get("format-specific", {}).get("data", {}).get("create-type")
    if (info.get("format"), create_type) != ("vmdk", "streamOptimized"):
        problems.append(f"{vmdk.name}: qemu-img reads {info.get('format')} {create_type}, not a streamOptimized VMDK")
    if info.get("virtual-size") != capacity:
        problems.append(f"{vmdk.name}: virtual size {info.get('virtual-size')}, {capacity} in the descriptor")


def compare(vmdk: Path, disk: Path, disk_format: str, qemu_img: str = "qemu-img") -> subprocess.CompletedProcess[str]:
    """`qemu-img compare` of the VMDK with a disk (exit 0: the same content, sector by sector)."""
    return subprocess.run([qemu_img, "compare", "-f", "vmdk", "-F", disk_format, str(vmdk), str(disk)],
                          capture_output=True, text=True)
