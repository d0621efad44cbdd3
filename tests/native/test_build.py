"""The native build: the settings it needs, the cleaned tree it checks, and the whole plan as `hubvm --dry` prints
it. The real run is tests/e2e/test_native.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hubvm.config import settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.layout import Layout
from hubvm.native import build as native
from hubvm.native import container, netns
from hubvm.verify.target import Target
from tests.conftest import copy_project, settings_with
from tests.native.test_netns import ADDRESSES, DEFAULT_ROUTE, ROUTES

# What `ip` prints on a made-up host (tests/test_netns.py)


def parse(tmp_path: Path, **overrides: object) -> settings.Settings:
    key = tmp_path / "admin_key"
    if not key.with_suffix(".pub").exists():
        key.write_text("private\n")
        key.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests admin\n")
    values = {"build.mode": "native", "image.source": "mirror", "vm.provider": "libvirt", "vm.accelerator": "tcg",
              "export.formats": ["qcow2"], "export.ssh_public_key": str(key.with_suffix(".pub")),
              "hub.flavour": "pypi", **overrides}
    project = tmp_path / "project"
    if not project.exists():  # a copy of its own: a real build in the checkout's builds/ does not disturb the test
        copy_project(project)
    return settings_with(project, **values)




def test_a_native_build_needs_the_mirror_source_a_qcow2_and_a_login_to_verify(tmp_path: Path) -> None:
    assert native.verify_identity(parse(tmp_path)) == tmp_path / "admin_key"
    with pytest.raises(UserError, match=r"^image.source = 'iso': is not mirror, and build.mode native starts"):
        parse(tmp_path, **{"image.source": "iso"})
    with pytest.raises(UserError, match=r"^export.ssh_public_key = '': is empty, and build.mode native verifies"):
        parse(tmp_path, **{"export.ssh_public_key": ""})
    with pytest.raises(UserError, match=r"^vm.provider = 'virtualbox': build.mode native makes a vagrant-libvirt box"):
        parse(tmp_path, **{"vm.provider": "virtualbox", "export.formats": ["ovf"]})
    with pytest.raises(UserError, match=r"^export.formats = \['ovf'\]: lacks qcow2, the disk build.mode native boots"):
        parse(tmp_path, **{"export.formats": ["ovf"]})
    assert parse(tmp_path, **{"export.formats": ["qcow2", "ova", "ovf"]}).export.formats == ("qcow2", "ova", "ovf")
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
# What the tools print for their versions (the forms hubvm.host.tools parses)
VERSIONS = {"mmdebstrap": "mmdebstrap 1.3.5", "ansible-playbook": "ansible-playbook [core 2.19.4]",
            "qemu-img": "qemu-img version 7.2.22", "qemu-system-x86_64": "QEMU emulator version 7.2.22",
            "systemd-nspawn": "systemd 252 (252.39-1~deb12u2)"}


def test_the_dry_plan_runs_the_same_playbook_then_makes_and_verifies_the_disk(tmp_path: Path) -> None:
    from hubvm.provision import ansible_command, inventory

    s = parse(tmp_path)
    layout = Layout.of(s)
    plan = DryPlan()
    verified: list[tuple[str, Path]] = []
    result = native.build(plan, s, layout, lambda host, key: verified.append((host, key)), VERSIONS_FOUND)
    commands = plan.commands
    work = s.project_dir / "builds" / "native"

    def index(fragment: str) -> int:
        return next(i for i, c in enumerate(commands) if fragment in c)

    assert "mmdebstrap --variant=important" in commands[index("mmdebstrap")]
    assert "--dpkgopt=force-unsafe-io" in commands[index("mmdebstrap")]
    assert f"{work}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap" in commands[index("find ")]
    assert f"{work}/rootfs" in commands[index("mmdebstrap")] and "vmlinuz" not in commands[index("mmdebstrap")]
    net_name = commands[index("ip netns add")].split()[-1]
    guest = next(c for c in commands if "addr add" in c and c.endswith("dev eth0")).split()[-3].split("/")[0]
    hub = inventory(s, Target(guest, "vagrant", 22, work / "build_key"))["all"]["children"]["hub"]["hosts"]
    assert hub == {guest: {"ansible_host": guest, "ansible_port": 22, "ansible_user": "vagrant",
                           "ansible_become": True, "ansible_ssh_private_key_file": str(work / "build_key")}}
    playbook = commands.index(f"cd {s.project_dir} && {ansible_command(s, layout)}")
    cleanup = commands.index(f"cd {s.project_dir} && {ansible_command(s, layout, tags=['cleanup'])}")
    order = [index("ip netns add"), index("systemd-nspawn"), index("is-system-running"), playbook, cleanup,
             index("tail --pid"), index(f"ip netns delete {net_name}"), index("ln -sfn ../run/systemd"),
             index("find "), index("grub-mkimage"), index("mke2fs"), index("-m hubvm.native.bootdisk embed"),
             index(" convert -f raw -c -O qcow2 "), index("tar -cf"), index("qemu-img create"),
             index("qemu-system-x86_64"), index("ssh-keyscan")]
    assert order == sorted(order)
    assert not any("losetup" in c or "mount -o" in c or "kpartx" in c for c in commands)
    assert verified == [(f"hubadmin@127.0.0.1:{s.ssh.port}", tmp_path / "admin_key")]
    assert commands[-1] == f"rm -rf {work}"
    assert [stage.status for stage in result.stages] == ["dry run"] * 7
    assert not (s.project_dir / "builds" / "vm.partial").exists()


def test_the_dry_plan_makes_the_ova_from_the_raw_disk_the_qcow2_came_from(tmp_path: Path) -> None:
    s = parse(tmp_path, **{"export.formats": ["qcow2", "ova"]})
    plan = DryPlan()
    result = native.build(plan, s, Layout.of(s), lambda host, key: None, VERSIONS_FOUND)
    builds = s.project_dir / "builds"
    raw = f"{builds}/native/disk.raw"
    qcow2 = plan.commands.index(next(c for c in plan.commands if " convert -f raw -c -O qcow2 " in c))
    vmdk = plan.commands.index(f"{tools.command(s, 'qemu_img')} convert -f raw -O vmdk -o subformat=streamOptimized "
                               f"{raw} {builds}/vm.partial/.ova/jupyterhub-vm-disk001.vmdk")
    removed = plan.commands.index(f"rm -rf {raw} {builds}/native/rootfs")
    assert qcow2 < vmdk < removed  # made during the disk stage, from the raw disk
    assert [stage.name for stage in result.stages][3] == "disk (GRUB, ext4, compressed qcow2, OVA)"
    assert [p.name for p in result.artifacts] == ["jupyterhub-vm.box", "SHA256SUMS", "manifest.json",
                                                  "jupyterhub-vm.qcow2", "jupyterhub-vm.ova"]


def test_a_failed_verify_stops_qemu_and_removes_the_work(tmp_path: Path) -> None:
    s = parse(tmp_path)
    plan = DryPlan()

    def failing(host: str, key: Path) -> None:
        raise UserError("2 checks failed")

    with pytest.raises(UserError, match="2 checks failed"):
        native.build(plan, s, Layout.of(s), failing, VERSIONS_FOUND)
    tail = plan.commands[plan.commands.index(next(c for c in plan.commands if "ssh-keyscan" in c)) + 1:]
    assert "kill -TERM $pid" in tail[0] and "qemu.pid" in tail[0]
    builds = s.project_dir / "builds"
    assert tail[1:] == [f"rm -f {builds}/native/verify-overlay.qcow2", f"rm -rf {builds}/native",
                        f"rm -rf {builds}/vm.partial"]


def test_the_inputs_digest_changes_with_the_playbooks_settings(tmp_path: Path) -> None:
    assert native.inputs_digest(parse(tmp_path)) == native.inputs_digest(parse(tmp_path))
    assert native.inputs_digest(parse(tmp_path)) != native.inputs_digest(parse(tmp_path, **{"packages.python":
                                                                                          ["six"]}))


def test_the_native_needs_are_probed_by_check_and_the_run(tmp_path: Path) -> None:

    needs = tools.needs("all", parse(tmp_path))
    assert needs[:1] == ["root"] and {"systemd-nspawn", "ip", "nft", "mmdebstrap", "qemu_system"} <= set(needs)
    assert "vagrant" not in needs and "packer" not in needs
    assert tools.needs("pack", parse(tmp_path)) == [] and tools.needs("up", parse(tmp_path)) == []
    assert "KVM" in tools.needs("export", parse(tmp_path, **{"vm.accelerator": "kvm"}))
