"""The native build's pure parts: namespace plans and commands, the container's commands, GRUB's boot code
written into a disk image, the verify boot's QEMU command, the vagrant-libvirt box, and the whole plan as
`hubvm --dry` prints it. The real run is tests/e2e/test_native.py."""

from __future__ import annotations

import ipaddress
import json
import random
import shlex
import struct
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hubvm import bootdisk, container, libvirt_box, native, netns, qemuboot, settings, tools
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.target import Target
from tests.conftest import REPO, settings_with

ADDRESSES = """1: lo    inet 127.0.0.1/8 scope host lo
2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0
3: hvt1h    inet 10.214.0.1/30 scope global hvt1h
"""
ROUTES = """default via 192.0.2.1 dev eth0
10.214.0.0/30 dev hvt1h proto kernel scope link src 10.214.0.1
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.10
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.10
"""
DEFAULT_ROUTE = "default via 192.0.2.1 dev eth0\n"


def parse(tmp_path: Path, **overrides: object) -> settings.Settings:
    key = tmp_path / "admin_key"
    if not key.with_suffix(".pub").exists():
        key.write_text("private\n")
        key.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests admin\n")
    values = {"build.mode": "native", "image.source": "mirror", "vm.provider": "libvirt", "vm.accelerator": "tcg",
              "export.formats": ["qcow2"], "export.ssh_public_key": str(key.with_suffix(".pub")),
              "hub.flavour": "pypi", **overrides}
    return settings_with(REPO, **values)


# ---------------------------------------------------------------------------------------------------------------
# hubvm.netns


def test_used_networks_are_the_hosts_addresses_and_routes() -> None:
    used = {str(n) for n in netns.used_networks(ADDRESSES, ROUTES)}
    assert used == {"127.0.0.0/8", "192.0.2.0/24", "10.214.0.0/30"}


def test_a_free_subnet_overlaps_nothing_in_use() -> None:
    pool = ipaddress.ip_network("10.214.0.0/28")  # four /30s, three of them in use
    used = [ipaddress.ip_network(n) for n in ("10.214.0.0/30", "10.214.0.4/30", "10.214.0.12/30")]
    for seed in range(10):
        assert str(netns.free_subnet(pool, used, random.Random(seed))) == "10.214.0.8/30"
    with pytest.raises(netns.NoWayOut, match="no free /30"):
        netns.free_subnet(pool, [ipaddress.ip_network("10.214.0.0/28")])


def test_no_default_route_means_no_way_out() -> None:
    with pytest.raises(netns.NoWayOut, match="no default IPv4 route"):
        netns.uplink_interface("")


def test_a_plan_names_everything_after_the_pid_within_interface_limits() -> None:
    net = netns.plan("hvn", "build", 4194303, ipaddress.ip_network("10.214.0.0/16"), ADDRESSES, ROUTES,
                     DEFAULT_ROUTE, random.Random(1))
    assert net.name.startswith("hvn4194303-build")
    assert net.nft_table == net.name.replace("-", "_")
    assert len(net.host_veth) <= 15 and len(net.guest_veth) <= 15
    assert net.uplink == "eth0" and net.subnet.prefixlen == 30
    assert not net.subnet.overlaps(ipaddress.ip_network("10.214.0.0/30"))
    assert (net.host_addr, net.guest_addr) == (str(net.subnet[1]), str(net.subnet[2]))


def test_setup_and_teardown_commands() -> None:
    net = netns.NetworkPlan("hvn42-buildbeef", "42beef", "hvn", ipaddress.ip_network("10.214.7.0/30"), "eth0")
    setup = netns.setup_commands(net)
    assert setup[0] == "ip netns add hvn42-buildbeef"
    assert "ip netns exec hvn42-buildbeef ip route add default via 10.214.7.1" in setup
    assert "ip netns exec hvn42-buildbeef ip addr add 10.214.7.2/30 dev eth0" in setup
    ruleset = shlex.split(setup[-1])[2]
    assert 'ip saddr 10.214.7.0/30 oifname "eth0" masquerade' in ruleset
    assert "table ip hvn42_buildbeef" in ruleset and setup[-1].endswith("| nft -f -")
    assert netns.teardown_commands(net) == ["nft delete table ip hvn42_buildbeef", "ip link delete hvn42beefh",
                                            "ip netns delete hvn42-buildbeef"]


def test_stale_namespaces_are_those_of_dead_processes_with_the_prefix() -> None:
    names = ["hvn100-build1234", "hvn200-buildabcd", "hvt100-prov0000", "other"]
    assert netns.stale("hvn", names, alive=lambda pid: pid == 200) == ["hvn100-build1234"]


# ---------------------------------------------------------------------------------------------------------------
# hubvm.container


def test_the_build_container_uses_the_hosts_resolver_unless_it_is_on_the_hosts_loopback() -> None:
    assert container.resolv_conf_mode("nameserver 10.255.255.53\n", False) == "replace-host"
    assert container.resolv_conf_mode("nameserver 127.0.0.53\noptions edns0\n", True) == "replace-uplink"
    with pytest.raises(ValueError, match="no name server the build container can reach"):
        container.resolv_conf_mode("nameserver 127.0.0.1\n", False)


def test_the_container_boots_in_the_background_with_its_pid_in_a_file() -> None:
    net = netns.NetworkPlan("hvn42-buildbeef", "42beef", "hvn", ipaddress.ip_network("10.214.7.0/30"), "eth0")
    command = container.start_command(net, Path("/b/rootfs"), Path("/b/nspawn.pid"), Path("/b/log"),
                                      "replace-host")
    assert command.startswith("setsid sh -c ") and command.endswith("< /dev/null > /b/log 2>&1 &")
    script = shlex.split(command)[3]
    assert script.startswith("echo $$ > /b/nspawn.pid; exec systemd-nspawn ")
    argv = shlex.split(script.split("exec ", 1)[1])
    assert "--network-namespace-path=/run/netns/hvn42-buildbeef" in argv and "--boot" in argv
    assert "--resolv-conf=replace-host" in argv
    masks = argv[argv.index("--") + 1:]
    assert masks == [f"systemd.mask={unit}" for unit in container.BUILD_BOOT_MASKS]


def test_the_tree_gets_the_build_login_the_vm_path_gives_its_guest(tmp_path: Path) -> None:
    commands = container.prepare_commands(Path("/b/rootfs"), "vagrant", Path("/p/build-user.sh"),
                                          Path("/b/key.pub"), tmp_path, "/media/shared_data")
    assert commands[0] == "chroot /b/rootfs /usr/bin/env BUILD_USER=vagrant /bin/bash -s < /p/build-user.sh"
    assert commands[1].startswith("install -m 0600 /b/key.pub /b/rootfs\"$(chroot /b/rootfs getent passwd")
    assert "grub-pc/install_devices multiselect /dev/vda" in commands[2]
    assert commands[3] == (f"mkdir -p /b/rootfs/media/shared_data && cp -a --no-preserve=ownership {tmp_path}/. "
                           "/b/rootfs/media/shared_data/")


def test_stop_waits_for_the_pid_then_kills_it() -> None:
    command = container.stop_command(Path("/b/nspawn.pid"), timeout=7)
    assert 'kill -0 "$(cat /b/nspawn.pid)"' in command and "kill -TERM $pid" in command
    assert "timeout 7 tail --pid=$pid -f /dev/null || kill -KILL $pid" in command


def test_the_stop_command_does_what_it_says(tmp_path: Path) -> None:
    """The real shell and a real process: it goes, and so does its PID file."""
    process = subprocess.Popen(["sleep", "600"])
    threading.Thread(target=process.wait, daemon=True).start()  # reaped as soon as it ends (no zombie to wait on)
    pid_file = tmp_path / "pid"
    pid_file.write_text(f"{process.pid}\n")
    subprocess.run(["sh", "-c", container.stop_command(pid_file, timeout=5)], check=True)
    assert process.wait(timeout=5) is not None and not pid_file.exists()
    subprocess.run(["sh", "-c", container.stop_command(pid_file, timeout=5)], check=True)  # nothing to stop: fine


def test_the_wait_gives_up_when_the_container_is_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    pid_file.write_text("999999999\n")
    command = container.wait_command(["false"], pid_file, tmp_path / "log", timeout=20)
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert result.returncode == 1 and "systemd-nspawn exited" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# hubvm.bootdisk


def mbr(start: int = 2048, count: int = 20000) -> bytes:
    sector = bytearray(512)
    sector[0x1B8:0x1BC] = b"\x12\x34\x56\x78"                                       # disk signature
    struct.pack_into("<BBBBBBBBII", sector, 0x1BE, 0x80, 0, 0, 0, 0x83, 0, 0, 0, start, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def boot_img() -> bytes:
    image = bytearray(range(256)) * 2
    image[0x66:0x68] = b"\xeb\x05"  # the jump at the drive check
    image[510:512] = b"\x55\xaa"
    return bytes(image)


def core_img(size: int = 3 * 512 + 100) -> bytes:
    image = bytearray(b"\xaa" * size)
    image[500 - 12:500] = bytes(12)                                   # the terminator diskboot.img ships with
    struct.pack_into("<QHH", image, 500, 1, 1, 0x820)                 # and one blocklist entry, to be replaced
    return bytes(image)


def test_embed_keeps_the_partition_table_and_points_boot_img_at_core_img() -> None:
    sector0, boot, core = mbr(), boot_img(), core_img()
    new_boot, new_core = bootdisk.embed(sector0, boot, core)
    assert len(new_boot) == 512
    assert new_boot[0x1B8:0x1FE] == sector0[0x1B8:0x1FE]              # signature and partition entries kept
    assert new_boot[0x1FE:] == b"\x55\xaa"
    assert new_boot[0x03:0x5A] == sector0[0x03:0x5A]                  # the BPB from the disk (zeros)
    assert struct.unpack_from("<Q", new_boot, 0x5C)[0] == 1           # core.img starts at LBA 1
    assert new_boot[0x64] == 0xFF and new_boot[0x66:0x68] == b"\x90\x90"
    assert new_boot[:0x03] == boot[:0x03] and new_boot[0x68:0x1B8] == boot[0x68:0x1B8]  # GRUB's code untouched
    assert len(new_core) == 4 * 512 and new_core[len(core):] == bytes(4 * 512 - len(core))
    assert struct.unpack_from("<QHH", new_core, 500) == (2, 3, 0x820)  # sectors 2-4 at 0x820:0
    assert struct.unpack_from("<QHH", new_core, 488) == (0, 0, 0)
    assert new_core[:488] == core[:488] and new_core[512:len(core)] == core[512:]


def test_embed_refuses_what_it_cannot_write_safely() -> None:
    with pytest.raises(bootdisk.EmbedError, match="no MBR partition table"):
        bootdisk.embed(bytes(512), boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match="no partition"):
        bootdisk.embed(mbr()[:0x1BE] + bytes(64) + b"\x55\xaa", boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match="needs 4 sectors, the gap before the first partition has 2"):
        bootdisk.embed(mbr(start=3), boot_img(), core_img())
    with pytest.raises(bootdisk.EmbedError, match=r"boot\.img is 100 bytes"):
        bootdisk.embed(mbr(), bytes(100), core_img())
    with pytest.raises(bootdisk.EmbedError, match="no blocklist terminator"):
        bootdisk.embed(mbr(), boot_img(), b"\x01" * 1024)


def test_the_embed_command_writes_into_a_disk_file_made_by_the_real_sfdisk(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "8M", str(disk)], check=True)
    sfdisk = tools.locate("sfdisk")  # in /usr/sbin, which a user's PATH may not have
    assert sfdisk, "sfdisk not found (package fdisk)"
    subprocess.run([sfdisk, "--quiet", "--label", "dos", str(disk)], input="start=2048, type=83, bootable\n",
                   text=True, check=True)
    table = disk.read_bytes()[0x1B8:0x200]
    (tmp_path / "boot.img").write_bytes(boot_img())
    (tmp_path / "core.img").write_bytes(core_img())
    tree = tmp_path / "tree"
    modules = tree / "boot" / "grub" / "i386-pc"
    modules.mkdir(parents=True)
    (modules / "boot.img").write_bytes(boot_img())
    (modules / "core.img").write_bytes(core_img())
    command = bootdisk.embed_command("python3", disk, tree)
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "core.img in sectors 1-4" in result.stdout
    written = disk.read_bytes()
    assert written[0x1B8:0x200] == table
    assert written[512:2 * 512] == bootdisk.embed(written[:512], boot_img(), core_img())[1][:512]
    assert written[5 * 512:2048 * 512] == bytes(2043 * 512)  # nothing past core.img
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(4096))
    failed = subprocess.run(bootdisk.embed_command("python3", blank, tree), shell=True, capture_output=True,
                            text=True)
    assert (failed.returncode, failed.stderr) == (1, "error: the disk has no MBR partition table (no 55 aa "
                                                     "signature)\n")
    assert blank.read_bytes() == bytes(4096)


def test_grub_cfg_boots_the_installed_kernel_with_the_trees_settings() -> None:
    settings_ = bootdisk.parse_grub_settings("1\nconsole=tty0 console=ttyS0,115200n8\nquiet\nconsole serial\n"
                                             "serial --unit=0 --speed=115200\nDebian\n")
    text = bootdisk.grub_cfg("1111-2222", "/boot/vmlinuz-6.1.0-56-amd64", "/boot/initrd.img-6.1.0-56-amd64",
                             settings_)
    assert "set timeout=1" in text
    assert "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial" in text
    assert "search --no-floppy --fs-uuid --set=root 1111-2222" in text
    assert ("linux /boot/vmlinuz-6.1.0-56-amd64 root=UUID=1111-2222 ro console=tty0 console=ttyS0,115200n8 "
            "quiet\n") in text
    assert "initrd /boot/initrd.img-6.1.0-56-amd64" in text
    assert bootdisk.load_cfg("1111-2222") == ("search.fs_uuid 1111-2222 root hd0,msdos1\n"
                                              "set prefix=($root)'/boot/grub'\n")
    assert bootdisk.parse_grub_settings("") == bootdisk.GrubSettings()


def test_grub_files_come_from_the_trees_own_grub() -> None:
    commands = bootdisk.grub_files_commands(Path("/b/rootfs"))
    assert commands[0] == "mkdir -p /b/rootfs/boot/grub/i386-pc && cp -a /b/rootfs/usr/lib/grub/i386-pc/. " \
        "/b/rootfs/boot/grub/i386-pc/"
    assert commands[1].startswith("chroot /b/rootfs grub-mkimage -O i386-pc ")
    assert commands[1].endswith("biosdisk part_msdos ext2 search_fs_uuid")
    assert "-c /boot/grub/i386-pc/load.cfg" in commands[1]


# ---------------------------------------------------------------------------------------------------------------
# hubvm.qemuboot and hubvm.libvirt_box


def test_the_verify_boot_boots_an_overlay_by_its_own_boot_loader_reaching_nothing() -> None:
    machine = qemuboot.Machine(Path("/b/overlay.qcow2"), "tcg", 2, 2048, 40022, 18080, 80, Path("/l/console"),
                               Path("/b/qemu.pid"))
    argv = shlex.split(qemuboot.start_command("qemu-system-x86_64", machine))
    assert "-kernel" not in argv and "-initrd" not in argv
    assert argv[argv.index("-machine") + 1] == "pc,accel=tcg"
    assert argv[argv.index("-drive") + 1] == "file=/b/overlay.qcow2,if=virtio,format=qcow2"
    assert argv[argv.index("-netdev") + 1] == ("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,"
                                               "hostfwd=tcp:127.0.0.1:18080-:80")
    assert argv[-3:] == ["-daemonize", "-pidfile", "/b/qemu.pid"]
    kvm = qemuboot.Machine(**{**vars(machine), "accelerator": "kvm"})
    assert "pc,accel=kvm" in qemuboot.start_command("qemu-system-x86_64", kvm)
    overlay = qemuboot.overlay_command("qemu-img", Path("/v/app.qcow2"), Path("/b/overlay.qcow2"))
    assert overlay == "qemu-img create -q -f qcow2 -b /v/app.qcow2 -F qcow2 /b/overlay.qcow2"


def test_the_box_is_laid_out_as_vagrant_package_makes_it() -> None:
    assert json.loads(libvirt_box.metadata(10 * 1024**3)) == {"provider": "libvirt", "format": "qcow2",
                                                             "virtual_size": 10}
    assert json.loads(libvirt_box.metadata(10 * 1024**3 + 1))["virtual_size"] == 11
    vagrantfile = libvirt_box.vagrantfile()
    assert 'libvirt.driver = "kvm"' in vagrantfile
    assert 'config.ssh.private_key_path = File.expand_path("../vagrant_private_key", __FILE__)' in vagrantfile
    assert libvirt_box.tar_command(Path("/v/a.box"), Path("/b/box")) == \
        "tar -cf /v/a.box -C /b/box metadata.json Vagrantfile vagrant_private_key box.img"


def test_the_box_vagrantfile_is_ruby_vagrant_reads(tmp_path: Path) -> None:
    """Vagrant itself loads the box's Vagrantfile (as it does a box's) and sees the private key."""
    if subprocess.run(["which", "vagrant"], capture_output=True).returncode:
        pytest.skip("vagrant not found")
    (tmp_path / "Vagrantfile").write_text(libvirt_box.vagrantfile().replace(
        'Vagrant.configure("2") do |config|\n  config.vm.provider',
        'Vagrant.configure("2") do |config|\n  config.vm.box = "x"\n  config.vm.provider', 1))
    (tmp_path / libvirt_box.PRIVATE_KEY).write_text("a key\n")
    result = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, capture_output=True,
                            text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------
# hubvm.native: settings, the tree, and the whole plan


def test_a_native_build_needs_the_mirror_source_a_qcow2_and_a_login_to_verify(tmp_path: Path) -> None:
    assert native.verify_identity(parse(tmp_path)) == tmp_path / "admin_key"
    with pytest.raises(UserError, match=r"^image.source = 'iso': is not mirror, and build.mode native starts"):
        parse(tmp_path, **{"image.source": "iso"})
    with pytest.raises(UserError, match=r"^export.ssh_public_key = '': is empty, and build.mode native verifies"):
        parse(tmp_path, **{"export.ssh_public_key": ""})
    with pytest.raises(UserError, match=r"^export.formats = \['ovf'\]: build.mode native makes a qcow2"):
        parse(tmp_path, **{"vm.provider": "virtualbox", "export.formats": ["ovf"]})
    (tmp_path / "admin_key").unlink()
    with pytest.raises(UserError, match=r"^ssh.identity = '': is empty and no private key lies beside"):
        parse(tmp_path)
    (tmp_path / "other_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    assert native.verify_identity(parse(tmp_path, **{"ssh.identity": str(tmp_path / "other_key")})) == \
        tmp_path / "other_key"


def make_tree(root: Path) -> Path:
    for folder in ("etc/hubvm", "etc/ssh", "etc/dpkg/dpkg.cfg.d", "boot", "tmp", "var/tmp", "var/log/journal/abc",
                   "var/lib/dhcp", "var/lib/systemd", "root", "home/vagrant", "var/cache/apt/archives"):
        (root / folder).mkdir(parents=True)
    (root / "etc/hubvm/firstboot-pending").write_text("armed\n")
    (root / "etc/machine-id").write_text("")
    (root / "etc/resolv.conf").symlink_to(container.STUB_RESOLV_CONF)
    (root / "etc/ssh/sshd_config").write_text("kept\n")
    (root / "boot/vmlinuz-6.1.0-56-amd64").write_text("kernel")
    (root / "boot/initrd.img-6.1.0-56-amd64").write_text("initrd")
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-56-amd64")
    (root / "initrd.img").symlink_to("boot/initrd.img-6.1.0-56-amd64")
    return root


def test_the_sysprep_command_removes_what_virt_sysprep_would_and_nothing_else(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    removed = ["tmp/x", "tmp/.hidden", "var/tmp/y", "root/.bash_history", "home/vagrant/.bash_history",
               "var/log/syslog", "var/log/journal/abc/system.journal", "var/lib/dhcp/lease", "etc/passwd-",
               "var/lib/systemd/random-seed", "var/cache/apt/archives/a.deb", "etc/dpkg/dpkg.cfg.d/99mmdebstrap"]
    for name in removed:
        (tree / name).write_text("x")
    subprocess.run(["bash", "-c", native.sysprep_command(tree)], check=True)
    assert [name for name in removed if (tree / name).exists()] == []
    assert (tree / "var/log/journal").is_dir() and (tree / "tmp").is_dir()
    assert (tree / "etc/ssh/sshd_config").read_text() == "kept\n"
    assert (tree / "etc/hubvm/firstboot-pending").exists()


def test_a_tree_is_armed_only_without_per_copy_secrets(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    assert native.armed_problems(tree) == []
    (tree / "etc/machine-id").write_text("0123\n")
    (tree / "etc/ssh/ssh_host_ed25519_key").write_text("key")
    (tree / "etc/hubvm/firstboot-pending").unlink()
    (tree / "etc/dpkg/dpkg.cfg.d/99mmdebstrap").write_text("force-unsafe-io\n")
    (tree / "etc/resolv.conf").unlink()
    (tree / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    assert native.armed_problems(tree) == [
        "the first-boot unit is not armed (no /etc/hubvm/firstboot-pending)", "/etc/machine-id is not empty",
        "SSH host keys are still there (ssh_host_ed25519_key)",
        "the build's dpkg options are still there (/etc/dpkg/dpkg.cfg.d/99mmdebstrap)",
        "/etc/resolv.conf is not the image's link to systemd-resolved's stub"]


def test_the_kernel_is_the_one_the_trees_links_name(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    assert native.kernel_paths(tree) == ("/boot/vmlinuz-6.1.0-56-amd64", "/boot/initrd.img-6.1.0-56-amd64")
    (tree / "vmlinuz").unlink()
    assert native.kernel_paths(tree) == ("/boot/vmlinuz-6.1.0-56-amd64", "/boot/initrd.img-6.1.0-56-amd64")


class DryPlan:
    """A runner like hubvm.shell.Shell under `hubvm --dry`: it records the commands and runs none. Its probes
    answer with a fixed host (addresses, routes, no namespaces), so the plan does not depend on this machine."""

    dry = True

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, cwd: Path | None = None, env: Any = None, **kwargs: Any) -> None:
        self.commands.append(f"cd {cwd} && {command}" if cwd else command)

    def probe(self, command: str, cwd: Path | None = None) -> Any:
        outputs = {netns.PROBE_ADDRESSES: ADDRESSES, netns.PROBE_ROUTES: ROUTES,
                   netns.PROBE_DEFAULT_ROUTE: DEFAULT_ROUTE, **VERSIONS}
        program = Path(command.split()[0]).name
        return SimpleNamespace(stdout=outputs.get(command, outputs.get(program, "")), stderr="", ok=True)


# The versions the run's probes found (for manifest.json)
VERSIONS_FOUND = {"mmdebstrap": "1.3.5", "Ansible": "2.19.4", "qemu-img": "7.2.22", "QEMU": "7.2.22"}
# What the tools print for their versions (the forms hubvm.tools parses)
VERSIONS = {"mmdebstrap": "mmdebstrap 1.3.5", "ansible-playbook": "ansible-playbook [core 2.19.4]",
            "qemu-img": "qemu-img version 7.2.22", "qemu-system-x86_64": "QEMU emulator version 7.2.22",
            "systemd-nspawn": "systemd 252 (252.39-1~deb12u2)"}


def test_the_dry_plan_runs_the_same_playbook_then_makes_and_verifies_the_disk(tmp_path: Path) -> None:
    from hubvm.provision import ansible_command

    s = parse(tmp_path)
    layout = Layout.of(s)
    plan = DryPlan()
    verified: list[tuple[str, Path]] = []
    result = native.build(plan, s, layout, lambda host, key: verified.append((host, key)), VERSIONS_FOUND)
    commands = plan.commands
    work = REPO / "builds" / "native"

    def index(fragment: str) -> int:
        return next(i for i, c in enumerate(commands) if fragment in c)

    assert "mmdebstrap --variant=important" in commands[index("mmdebstrap")]
    assert "--dpkgopt=force-unsafe-io" in commands[index("mmdebstrap")]
    assert f"{work}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap" in commands[index("find ")]
    assert f"{work}/rootfs" in commands[index("mmdebstrap")] and "vmlinuz" not in commands[index("mmdebstrap")]
    net_name = commands[index("ip netns add")].split()[-1]
    guest = next(c for c in commands if "addr add" in c and c.endswith("dev eth0")).split()[-3].split("/")[0]
    target = Target(guest, "vagrant", 22, work / "build_key")
    playbook = commands.index(f"cd {REPO} && {ansible_command(s, layout, target)}")
    cleanup = commands.index(f"cd {REPO} && {ansible_command(s, layout, target, tags=['cleanup'])}")
    order = [index("ip netns add"), index("systemd-nspawn"), index("is-system-running"), playbook, cleanup,
             index("tail --pid"), index(f"ip netns delete {net_name}"), index("ln -sfn ../run/systemd"),
             index("find "), index("grub-mkimage"), index("mke2fs"), index("bootdisk.py embed"),
             index("convert -c"), index("tar -cf"), index("qemu-img create"), index("qemu-system-x86_64"),
             index("ssh-keyscan")]
    assert order == sorted(order)
    assert not any("losetup" in c or "mount -o" in c or "kpartx" in c for c in commands)
    assert verified == [(f"hubadmin@127.0.0.1:{s.ssh.port}", tmp_path / "admin_key")]
    assert commands[-1] == f"rm -rf {work}"
    assert [stage.status for stage in result.stages] == ["dry run"] * 7
    assert not (REPO / "builds" / "vm.partial").exists()


def test_a_failed_verify_stops_qemu_and_removes_the_work(tmp_path: Path) -> None:
    s = parse(tmp_path)
    plan = DryPlan()

    def failing(host: str, key: Path) -> None:
        raise UserError("2 checks failed")

    with pytest.raises(UserError, match="2 checks failed"):
        native.build(plan, s, Layout.of(s), failing, VERSIONS_FOUND)
    tail = plan.commands[plan.commands.index(next(c for c in plan.commands if "ssh-keyscan" in c)) + 1:]
    assert "kill -TERM $pid" in tail[0] and "qemu.pid" in tail[0]
    assert tail[1:] == [f"rm -f {REPO}/builds/native/verify-overlay.qcow2", f"rm -rf {REPO}/builds/native",
                        f"rm -rf {REPO}/builds/vm.partial"]


def test_the_inputs_digest_changes_with_the_playbooks_settings(tmp_path: Path) -> None:
    assert native.inputs_digest(parse(tmp_path)) == native.inputs_digest(parse(tmp_path))
    assert native.inputs_digest(parse(tmp_path)) != native.inputs_digest(parse(tmp_path, **{"packages.python":
                                                                                          ["six"]}))


def test_the_native_needs_are_probed_by_check_and_the_run(tmp_path: Path) -> None:
    from hubvm import tools

    needs = tools.needs("all", parse(tmp_path))
    assert needs[:1] == ["root"] and {"systemd-nspawn", "ip", "nft", "mmdebstrap", "qemu_system"} <= set(needs)
    assert "vagrant" not in needs and "packer" not in needs
    assert tools.needs("pack", parse(tmp_path)) == [] and tools.needs("up", parse(tmp_path)) == []
    assert "KVM" in tools.needs("export", parse(tmp_path, **{"vm.accelerator": "kvm"}))
