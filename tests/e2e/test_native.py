"""The native build for real (`hubvm export` with build.mode native): mmdebstrap, the playbook in a
systemd-nspawn container in a network namespace, the cleanup role, a disk with GRUB made from the tree, then one
boot of that disk under QEMU (TCG here) on which the real `hubvm verify` must pass. Then, on the result: the
exported qcow2 was not changed by that boot (its first boot is still armed), it boots by its own boot loader, the
box is one Vagrant accepts, the OVA (export.formats ova) reads back as VirtualBox's importer reads it and its VMDK
holds exactly the qcow2 that was booted and verified, and nothing of the build is left running or mounted.

Runs in a private copy of the project (the working tree's builds/ is never touched), with the pypi hub flavour
and the smallest package set verify can check (python: six; R: none beyond R itself and the IRkernel), and this
machine's proxy CA through guest.ca_certificates. Needs root, systemd-nspawn, nft, mmdebstrap, QEMU and
qemu-img. 12-18 minutes here (see tests/e2e/README.md): mmdebstrap 1.5-3, the playbook 3.5-6.5, the disk 2.5-4.5,
the verify boot 2-4, depending on the load of the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hubvm.config import settings
from hubvm.config.layers import Layers, defaults_layer, file_layer, read_file
from hubvm.layout import Layout
from hubvm.native import build as native
from tests import ovf_reader
from tests.conftest import HUBVM, copy_project
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import checksum_mismatches

pytestmark = pytest.mark.e2e

HOST_CA_CERTIFICATES = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
ADMIN_USER = "hubadmin"
PARTITION_OFFSET = 1024 * 1024


@dataclass
class Built:
    project: Path
    settings: settings.Settings
    layout: Layout
    admin_key: Path
    output: str = ""  # what `hubvm export` printed

    @property
    def qcow2(self) -> Path:
        return self.layout.vm_dir / f"{self.settings.vm.name}.qcow2"

    @property
    def box(self) -> Path:
        return self.layout.vm_dir / f"{self.settings.vm.name}.box"

    @property
    def ova(self) -> Path:
        return self.layout.vm_dir / f"{self.settings.vm.name}.ova"


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def _missing() -> list[str]:
    return [tool for tool in ("qemu-system-x86_64", "qemu-img", "debugfs", "mmdebstrap") if not shutil.which(tool)]


@pytest.fixture(scope="module")
def built(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory, stages: StageClock) -> Iterator[Built]:
    if _missing():
        pytest.skip(f"not found: {', '.join(_missing())}")
    workdir = tmp_path_factory.mktemp("native")
    admin_key = _keygen(workdir / "admin_key")
    project = copy_project(workdir / "project")
    home = workdir / "home"
    home.mkdir()
    profile = workdir / "settings.yaml"
    profile.write_text(yaml.safe_dump({
        "vm": {"name": "hubvm-native", "hostname": "hubnative", "provider": "libvirt", "accelerator": "tcg",
               "ip": "dhcp", "data": "none", "cpus": 2, "memory_mb": 2048, "disk_gb": 8,
               "hub_host_port": native.free_port(), "hub_https_host_port": native.free_port()},
        "build": {"mode": "native"},
        "image": {"source": "mirror"},
        "ssh": {"wait": 900},  # a first boot in software emulation on a busy machine
        "hub": {"flavour": "pypi", "admin_users": ["admin"]},
        "packages": {"python": ["six"], "r": [], "cran": [], "bioconductor": []},
        "guest": {"ca_certificates": [str(path) for path in HOST_CA_CERTIFICATES]},
        # zstd: what the test checks is the same, and the disk stage takes a minute less
        "export": {"formats": ["qcow2", "ova"], "compression": "zstd", "ssh_user": ADMIN_USER,
                   "ssh_public_key": f"{admin_key}.pub"},
    }))
    s = settings.parse(Layers((defaults_layer(project), file_layer(read_file(profile), "p", shared=False)), project))
    layout = Layout.of(s)
    result = Built(project, s, layout, admin_key)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    environment.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    with stages.time("hubvm export, build.mode native (mmdebstrap, container, playbook, disk, box, verify boot)"):
        lines = []
        with subprocess.Popen([HUBVM, "-f", str(profile), "export"], cwd=project, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                print(line, end="", flush=True)
        result.output = "".join(lines)
    for line in result.output.splitlines():
        stage = re.match(r"^<== native build: (.+): (\w[\w ]*) in (\S+)$", line)
        if stage:
            stages.stages.append((f"  native build: {stage.group(1)} ({stage.group(2)}, {stage.group(3)})", 0.0))
    if process.returncode:
        pytest.fail(f"hubvm export (native) exited {process.returncode}:\n" + "".join(lines[-60:]))
    yield result
    shutil.rmtree(layout.vm_dir, ignore_errors=True)  # 1.5 GiB or so, twice


def test_verify_passed_on_one_boot_of_the_exported_disk_by_its_own_boot_loader(built: Built) -> None:
    assert re.search(r"(\d+) of \1 checks passed on hubadmin@127\.0\.0\.1:\d+", built.output)
    # the QEMU command the build ran (echoed to the step's log): the disk's own boot loader, no -kernel
    log = built.layout.log("export").read_text(errors="replace")
    [qemu] = [line for line in log.splitlines() if "qemu-system-x86_64 -name hubvm-verify" in line]
    assert "-kernel" not in qemu and "-initrd" not in qemu
    assert f"file={built.layout.native_dir}/verify-overlay.qcow2," in qemu
    console = (built.layout.logs_dir / "native-verify-console.log").read_text(errors="replace")
    assert "GNU GRUB" in console and "Booting `Debian GNU/Linux'" in console  # GRUB from the disk, its menu
    assert "hubnative login:" in console  # the kernel and systemd up to the serial getty


def _debugfs(raw: Path, request: str) -> str:
    out = subprocess.run(["debugfs", "-R", request, f"{raw}?offset={PARTITION_OFFSET}"], capture_output=True,
                         text=True)
    return out.stdout + out.stderr


def test_the_exported_disk_is_untouched_by_that_boot_and_still_armed(built: Built, tmp_path: Path) -> None:
    assert checksum_mismatches(built.layout.vm_dir) == ""
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(built.qcow2), str(raw)], check=True)
    with raw.open("rb") as disk:  # the first sector only (read_bytes would read all 8 GiB of it)
        head = disk.read(512)
    assert head[510:] == b"\x55\xaa" and b"GRUB" in head  # GRUB's boot.img, with the partition table
    assert "firstboot-pending" in _debugfs(raw, "ls -l /etc/hubvm")
    assert re.search(r"Size: 0\b", _debugfs(raw, "stat /etc/machine-id"))
    assert "ssh_host_" not in _debugfs(raw, "ls /etc/ssh")
    assert "File not found" in _debugfs(raw, "stat /var/lib/jupyterhub/jupyterhub_cookie_secret")
    assert "stub-resolv.conf" in _debugfs(raw, "stat /etc/resolv.conf")
    # the grub.cfg written for the installed kernel, the root found by its UUID
    grub_cfg = _debugfs(raw, "cat /boot/grub/grub.cfg")
    fstab = _debugfs(raw, "cat /etc/fstab")
    uuid = re.search(r"UUID=(\S+)\s+/\s", fstab)
    assert uuid and f"search --no-floppy --fs-uuid --set=root {uuid.group(1)}" in grub_cfg
    assert "console=ttyS0,115200n8" in grub_cfg


def test_the_manifest_says_how_it_was_built(built: Built) -> None:
    manifest = json.loads((built.layout.vm_dir / "manifest.json").read_text())
    assert manifest["build"]["mode"] == "native"
    assert set(manifest["artifacts"]) == {built.qcow2.name, built.box.name, built.ova.name}
    assert manifest["access"]["vagrant_user_and_insecure_key"] == "removed"


def test_the_box_is_one_vagrant_adds(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.box) as box:
        assert sorted(box.getnames()) == ["Vagrantfile", "box.img", "metadata.json", "vagrant_private_key"]
        metadata = json.load(box.extractfile("metadata.json"))  # type: ignore[arg-type]
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 8}
    if not shutil.which("vagrant"):
        pytest.skip("vagrant not found")
    env = {"HOME": str(tmp_path), "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "PATH": os.environ["PATH"],
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    added = subprocess.run(["vagrant", "box", "add", "--name", "hubvm-native-test", str(built.box)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = subprocess.run(["vagrant", "box", "list"], env=env, capture_output=True, text=True).stdout
    assert "hubvm-native-test (libvirt" in listed


def test_the_ova_reads_back_as_virtualbox_reads_it_and_holds_the_verified_disk(built: Built, tmp_path: Path) -> None:
    package = ovf_reader.read_ova(built.ova, tmp_path / "ova")
    assert package.problems == []
    assert package.names == ["hubvm-native.ovf", "hubvm-native.mf", "hubvm-native-disk001.vmdk"]
    [cpu], [memory], [nic] = package.items_of(3), package.items_of(4), package.items_of(10)
    assert (cpu["VirtualQuantity"], memory["VirtualQuantity"], nic["ResourceSubType"]) == ("2", "2048", "E1000")
    assert package.disks["vmdisk1"]["capacity"] == str(8 * 1024**3)  # vm.disk_gb
    # the VMDK holds, sector by sector, the qcow2 the verify boot booted (through an overlay) and verify passed on
    [vmdk] = package.vmdks
    compared = ovf_reader.compare(vmdk, built.qcow2, "qcow2")
    assert compared.returncode == 0 and "Images are identical" in compared.stdout, compared.stdout + compared.stderr
    stage = next(line for line in built.output.splitlines() if line.startswith("<== native build: disk ("))
    assert "OVA" in stage


def test_nothing_of_the_build_is_left(built: Built) -> None:
    namespaces = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert [n for n in namespaces if n.startswith(native.PREFIX)] == []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f" {native.PREFIX}" not in tables
    assert not (built.layout.builds / "native").exists()
    assert not (built.layout.builds / "vm.partial").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(built.layout.builds) not in mounts
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(built.layout.builds / "native") not in processes
