"""The native build: the appliance made without a build VM, for image.source mirror, where KVM does not work.

    mmdebstrap tree (as `pack` makes for the VM path)
    -> booted with systemd-nspawn in a network namespace with NAT (hubvm.netns, hubvm.container)
    -> the same playbook with the same variables over SSH (`hubvm provision --host`'s command), then its
       cleanup role (as `export` runs it: first boot armed, per-copy secrets removed); the container stops
    -> what vagrant-libvirt's `vagrant package` does to the disk (virt-sysprep's default operations), on the tree
    -> a bootable disk from the tree: MBR, ext4 by `mke2fs -d`, GRUB written without loop device or mount
       (hubvm.bootdisk) -> compressed qcow2, and a vagrant-libvirt box (hubvm.libvirt_box); with export.formats
       ova/ovf, the same raw disk as the streamOptimized VMDK of an OVF package for VirtualBox (hubvm.ovf)
    -> one boot of a throwaway overlay of that qcow2 under QEMU (hubvm.qemuboot) and `hubvm verify` on it
    -> only then: SHA256SUMS and manifest.json, and builds/vm/ replaced, as `export` leaves it.

`build(sh, s, layout, verify)` runs it all through `sh` (hubvm.shell.Shell, or anything with its `run`, `probe`
and `dry`): every external command is a command line, so `hubvm --dry` prints the whole plan and writes nothing.
A failure stops the container, QEMU and the namespace (by PID and name), removes the work folder
(builds/native/) and leaves builds/vm/ as it was. Needs root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubvm import baseimage, digests, guest, ovf, render
from hubvm.artifacts import artifact_paths, qcow2_options, size, write_checksums_and_manifest
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.host.probes import require_task
from hubvm.layout import Layout
from hubvm.native import bootdisk, container, libvirt_box, netns, qemuboot
from hubvm.provision import ansible_command, write_inventory
from hubvm.report import StepResult, duration, steps_table
from hubvm.shell import Runner, q, step
from hubvm.verify.hostkeys import remove_host_entries
from hubvm.verify.run import run_verify
from hubvm.verify.target import Target, ssh_options

PREFIX = "hvn"  # names of the build's network namespace, veth pair and nft table: hvn<pid>-build<random>
ADDRESS_POOL = ipaddress.ip_network("10.214.0.0/16")  # where the container's /30 comes from
# Commands the native build runs beyond the configured tools, and the Debian/Ubuntu packages that have them
HOST_COMMANDS = {"systemd-nspawn": "systemd-container", "ip": "iproute2", "nft": "nftables",
                 "mke2fs": "e2fsprogs", "sfdisk": "fdisk", "ssh-keygen": "openssh-client",
                 "ssh-keyscan": "openssh-client", "setsid": "util-linux", "tar": "tar"}
# dpkg without fsync for every file it unpacks, during mmdebstrap and the playbook's apt runs (mmdebstrap leaves
# it in DPKG_BUILD_CONFIG); the tree loses it before it becomes the image. A build that dies is thrown away anyway.
DPKG_BUILD_OPTIONS = ("force-unsafe-io",)
DPKG_BUILD_CONFIG = "etc/dpkg/dpkg.cfg.d/99mmdebstrap"
# What vagrant-libvirt's `vagrant package` removes with virt-sysprep (its default operations, those that apply to
# a Debian or Ubuntu guest); the cleanup role has done machine-id, host keys and the hub's secrets already.
# Paths below the tree; shell globs.
SYSPREP_GLOBS = (
    "tmp/*", "tmp/.[!.]*", "var/tmp/*", "var/tmp/.[!.]*",            # tmp-files
    "root/.bash_history", "home/*/.bash_history",                    # bash-history
    "var/lib/dhcp/*",                                                # dhcp-client-state
    "etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-",      # passwd-backups
    "etc/subuid-", "etc/subgid-",
    "var/cache/apt/archives/*.deb",                                  # package-manager-cache
    "var/spool/cron/crontabs/*",                                     # cron-spool
    # not virt-sysprep's: secrets systemd keeps per machine, made anew when missing
    "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret",
)


# Runs `hubvm verify --host HOST --identity KEY` (hubvm.verify.run.run_verify); raises when a check fails
Verify = Callable[[str, Path], None]


@dataclass(frozen=True)
class NativePaths:
    """The work folder of one native build (builds/native/, removed at the end) and its logs."""

    work: Path
    logs: Path

    @classmethod
    def of(cls, layout: Layout) -> NativePaths:
        return cls(layout.native_dir, layout.logs_dir)

    @property
    def tree(self) -> Path:
        return self.work / "rootfs"

    @property
    def raw(self) -> Path:
        return self.work / "disk.raw"

    @property
    def key(self) -> Path:
        """The build login's private key (Vagrant would insert one of its own; it ends up in the box too)."""
        return self.work / "build_key"

    @property
    def nspawn_pid(self) -> Path:
        return self.work / "nspawn.pid"

    @property
    def nspawn_log(self) -> Path:
        return self.logs / "native-container-console.log"

    @property
    def box_dir(self) -> Path:
        return self.work / "box"

    @property
    def overlay(self) -> Path:
        return self.work / "verify-overlay.qcow2"

    @property
    def qemu_pid(self) -> Path:
        return self.work / "qemu.pid"

    @property
    def console_log(self) -> Path:
        return self.logs / "native-verify-console.log"


@dataclass
class NativeBuild:
    """What `build` made: builds/vm/ and its files, and the durations of its stages."""

    vm_dir: Path
    artifacts: list[Path]
    stages: list[StepResult] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Pure parts



def verify_identity(s: Settings) -> Path:
    """The private key of export.ssh_user, which the verify boot logs in with: ssh.identity, else the file
    beside export.ssh_public_key without its .pub."""
    if s.export.ssh_public_key is None:
        raise UserError("export.ssh_public_key = '': the native build verifies the exported image over SSH as "
                        "export.ssh_user, which needs a key; set export.ssh_public_key (and ssh.identity to its "
                        "private key when that is not beside it)")
    if s.ssh.identity is not None:
        return s.ssh.identity
    beside = s.export.ssh_public_key.with_suffix("") if s.export.ssh_public_key.suffix == ".pub" else None
    if beside is None or not beside.is_file():
        raise UserError(f"ssh.identity = '': the native build logs into the exported image as export.ssh_user "
                        f"with the private key of {s.export.ssh_public_key}, and there is none beside it; set "
                        "ssh.identity to that private key")
    return beside


def sysprep_command(tree: Path) -> str:
    """virt-sysprep's default operations on the tree (SYSPREP_GLOBS), every log file emptied away, and the
    build's dpkg options gone."""
    globs = " ".join(f"{q(tree)}/{pattern}" for pattern in (*SYSPREP_GLOBS, DPKG_BUILD_CONFIG))
    return f"rm -rf {globs} && find {q(tree / 'var' / 'log')} -type f -delete"


def armed_problems(tree: Path) -> list[str]:
    """What is wrong with a cleaned tree as an image every copy of which makes its own secrets at first boot."""
    problems = []
    if not (tree / "etc" / "hubvm" / "firstboot-pending").is_file():
        problems.append("the first-boot unit is not armed (no /etc/hubvm/firstboot-pending)")
    machine_id = tree / "etc" / "machine-id"
    if not machine_id.is_file() or machine_id.stat().st_size:
        problems.append("/etc/machine-id is not empty")
    keys = sorted(p.name for p in (tree / "etc" / "ssh").glob("ssh_host_*"))
    if keys:
        problems.append(f"SSH host keys are still there ({', '.join(keys)})")
    for secret in ("var/lib/jupyterhub/jupyterhub_cookie_secret", "opt/tljh/state/jupyterhub_cookie_secret"):
        if (tree / secret).exists():
            problems.append(f"the hub's cookie secret is still there (/{secret})")
    if (tree / DPKG_BUILD_CONFIG).exists():
        problems.append(f"the build's dpkg options are still there (/{DPKG_BUILD_CONFIG})")
    if not (tree / "etc" / "resolv.conf").is_symlink():
        problems.append("/etc/resolv.conf is not the image's link to systemd-resolved's stub")
    return problems


def kernel_paths(tree: Path) -> tuple[str, str]:
    """The installed kernel and initrd as GRUB sees them from the root file system: where Debian's /vmlinuz and
    /initrd.img links (Ubuntu: /boot/vmlinuz, /boot/initrd.img) point, else the newest /boot/vmlinuz-*."""
    for kernel_link, initrd_link in ((tree / "vmlinuz", tree / "initrd.img"),
                                     (tree / "boot" / "vmlinuz", tree / "boot" / "initrd.img")):
        if kernel_link.is_symlink() and initrd_link.is_symlink():
            kernel = (kernel_link.parent / os.readlink(kernel_link)).resolve().relative_to(tree.resolve())
            initrd = (initrd_link.parent / os.readlink(initrd_link)).resolve().relative_to(tree.resolve())
            return f"/{kernel}", f"/{initrd}"
    kernels = sorted((tree / "boot").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)
    if not kernels:
        raise UserError(f"no kernel in {tree}/boot: is linux-image in templates/packer/os/*.yaml's mirror packages?")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}"


def inputs_digest(s: Settings) -> str:
    """What a native export is made of: the base tree's inputs, the native build's own code, and everything
    `export` digests (playbook, settings)."""
    import hubvm.native

    files, data = digests.box_inputs(s)
    base = digests.digest([*files, *digests.code_of(hubvm.native)], {**data, "build": "native"}, s.project_dir)
    return digests.export_digest(s, base)


def host_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------------
# The build


class _Stages:
    """Names, announces and times the build's stages."""

    def __init__(self, sh: Runner, results: list[StepResult]) -> None:
        self.sh = sh
        self.results = results

    def say(self, message: str) -> None:
        log = getattr(self.sh, "log", None)
        if log is not None:
            log.say(message)
        else:
            print(message, flush=True)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[list[str]]:
        details: list[str] = []
        started = time.monotonic()
        self.say(f"==> native build: {name}")
        status = "failed"
        try:
            yield details
            status = "dry run" if self.sh.dry else "ran"
        finally:
            seconds = time.monotonic() - started
            self.results.append(StepResult(name, status, seconds, "; ".join(details)))
            self.say(f"<== native build: {name}: {status} in {duration(seconds)}")


def _tool(s: Settings, key: str) -> str:
    return tools.command(s, key)


def build(sh: Runner, s: Settings, layout: Layout, verify: Verify, versions: Mapping[str, str],
          stages: list[StepResult] | None = None) -> NativeBuild:
    """Build, verify and export the appliance natively (see the module doc); returns what builds/vm/ holds.
    The settings were checked for a native build (hubvm.settings) and the host for its needs (hubvm.tools:
    root, nspawn, nft, ...); `versions` go into manifest.json's tool_versions; each stage's result is appended to
    `stages` as it ends (so a caller has them after a failure too)."""
    identity = verify_identity(s)
    if not sh.dry:
        for key, port in (("vm.hub_host_port", s.vm.hub_host_port), ("vm.hub_https_host_port",
                                                                      s.vm.hub_https_host_port)):
            if not host_port_free(port):
                raise UserError(f"{key} = {port}: 127.0.0.1:{port} is in use, and the verify boot forwards the "
                                "hub there; free it or pick another port")
    paths = NativePaths.of(layout)
    partial = layout.vm_partial
    stage = _Stages(sh, stages if stages is not None else [])
    root_uuid = str(uuid.uuid4())
    digest = inputs_digest(s)
    versions = dict(versions)
    qcow2 = partial / f"{s.vm.name}.qcow2"
    box = partial / f"{s.vm.name}.box"
    try:
        with stage("base tree (mmdebstrap)"):
            _base_tree(sh, s, layout, paths, root_uuid)
        with stage("container, playbook and cleanup"):
            _provision(sh, s, layout, paths, stage)
        with stage("image tree (virt-sysprep's operations, first boot armed)") as details:
            _image_tree(sh, paths, details)
        packaged = sorted({"ova", "ovf"} & set(s.export.formats))
        with stage(f"disk (GRUB, ext4, compressed qcow2{''.join(f', {f.upper()}' for f in packaged)})") as details:
            sh.run(f"rm -rf {q(partial)} && mkdir -p {q(partial)}")
            _disk(sh, s, paths, root_uuid, qcow2, details)
        with stage("vagrant-libvirt box"):
            _box(sh, s, paths, qcow2, box)
        with stage("verify boot (QEMU, overlay of the qcow2)") as details:
            _verify_boot(sh, s, layout, paths, qcow2, identity, verify, details)
        with stage("SHA256SUMS, manifest.json, builds/vm/"):
            if sh.dry:
                stage.say(f"[dry run] would write SHA256SUMS and manifest.json, then move them to {layout.vm_dir}")
            else:
                write_checksums_and_manifest(s, partial, versions, digest, digests.box_digest(s))
                _mark_native(partial / "manifest.json", s)
                if layout.vm_dir.exists():
                    shutil.rmtree(layout.vm_dir)
                partial.replace(layout.vm_dir)
                digests.write(layout.export_stamp, digest)
            sh.run(f"rm -rf {q(paths.work)}")
    except BaseException:
        for path in (paths.work, partial):
            sh.run(f"rm -rf {q(path)}", warn=True)
        raise
    return NativeBuild(layout.vm_dir, artifact_paths(s, layout), stage.results)


def _base_tree(sh: Runner, s: Settings, layout: Layout, paths: NativePaths, root_uuid: str) -> None:
    """A fresh tree from the mirror, made by the same mmdebstrap command and hook as the VM path's base disk."""
    if sh.dry:
        print(f"[dry run] would render the files under {layout.builds} (the playbook's variables among them)")
    else:
        render.write(render.plan(s))
    sh.run(f"rm -rf {q(paths.work)} && mkdir -p {q(paths.work)} {q(paths.logs)}")
    sh.run(f"ssh-keygen -q -t ed25519 -N '' -C hubvm-native-build -f {q(paths.key)}")
    base = baseimage.Paths(paths.work, layout.packer_dir / baseimage.HOOK_SCRIPT)
    sh.run(baseimage.mmdebstrap_command(baseimage.spec(s), base, root_uuid, _tool(s, "mmdebstrap"),
                                        copy_kernel=False, dpkg_options=DPKG_BUILD_OPTIONS))


def _provision(sh: Runner, s: Settings, layout: Layout, paths: NativePaths, stage: _Stages) -> None:
    """Prepare the tree, boot it in a namespace, run the playbook and its cleanup, stop it; always clean up."""
    tree = paths.tree
    for command in container.prepare_commands(tree, s.ssh.user, layout.packer_dir / "scripts" / "build-user.sh",
                                              paths.key.with_suffix(".pub"), s.vm.data, guest.SHARED_DATA_MOUNT):
        sh.run(command)
    _remove_stale_namespaces(sh)
    try:
        resolv = container.resolv_conf_mode(Path("/etc/resolv.conf").read_text(),
                                            Path("/run/systemd/resolve/resolv.conf").is_file())
    except ValueError as error:
        raise UserError(str(error)) from None
    net = _plan_network(sh)
    target = Target(net.guest_addr, s.ssh.user, 22, paths.key)
    if not sh.dry:
        remove_host_entries(layout.known_hosts, [net.guest_addr])
        layout.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    ssh_opts = ssh_options(layout.known_hosts, s.ssh.connect_timeout)
    try:
        _make_network(sh, net)
        sh.run(container.start_command(net, tree, paths.nspawn_pid, paths.nspawn_log, resolv))
        is_running = container.ssh_argv(ssh_opts, paths.key, s.ssh.user, net.guest_addr,
                                        "systemctl is-system-running --wait")
        sh.run(container.wait_command(is_running, paths.nspawn_pid, paths.nspawn_log))
        failed = container.ssh_argv(ssh_opts, paths.key, s.ssh.user, net.guest_addr,
                                    "systemctl --failed --no-legend --plain")
        sh.run(shlex.join(failed))
        env = {"ANSIBLE_CONFIG": str(s.project_dir / "ansible" / "ansible.cfg")}
        stage.say(f"playbook on the container {target} (as `hubvm provision --host` runs it)")
        if sh.dry:
            stage.say(f"[dry run] would write {layout.ansible_inventory} (the container {target})")
        else:
            write_inventory(layout, s, target)
        sh.run(ansible_command(s, layout), cwd=s.project_dir, env=env)
        stage.say("cleanup role (as `hubvm export` runs it)")
        sh.run(ansible_command(s, layout, tags=["cleanup"]), cwd=s.project_dir, env=env)
    finally:
        sh.run(container.stop_command(paths.nspawn_pid), warn=True)
        sh.run(container.kill_namespace_processes_command(net), warn=True)
        for command in netns.teardown_commands(net):
            sh.run(command, warn=True)
        sh.run(container.unmount_below_command(tree), warn=True)
        if not sh.dry:
            remove_host_entries(layout.known_hosts, [net.guest_addr])


def _remove_stale_namespaces(sh: Runner) -> None:
    """Namespaces (with their processes and nft tables) left by a native build that was killed."""
    listed = sh.probe(f"ls {netns.NETNS_DIR}")
    names = (getattr(listed, "stdout", "") or "").split()
    for name in netns.stale(PREFIX, names, netns.pid_alive):
        for command in netns.stale_teardown_commands(name):
            sh.run(command, warn=True)


def _plan_network(sh: Runner) -> netns.NetworkPlan:
    outputs = [getattr(sh.probe(command), "stdout", "") or ""
               for command in (netns.PROBE_ADDRESSES, netns.PROBE_ROUTES, netns.PROBE_DEFAULT_ROUTE)]
    try:
        return netns.plan(PREFIX, "build", os.getpid(), ADDRESS_POOL, *outputs)
    except netns.NoWayOut as error:
        raise UserError(f"the build container needs a way out to the package mirrors: {error}") from None


def _make_network(sh: Runner, net: netns.NetworkPlan) -> None:
    """The namespace's commands, under a lock so that no other run takes the same /30 meanwhile."""
    with contextlib.ExitStack() as stack:
        if not sh.dry:
            lock = stack.enter_context(open(netns.LOCK_FILE, "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = netns.used_networks(*(getattr(sh.probe(c), "stdout", "") or ""
                                         for c in (netns.PROBE_ADDRESSES, netns.PROBE_ROUTES)))
            if any(net.subnet.overlaps(n) for n in used):
                raise UserError(f"{net.subnet} was taken by another run meanwhile; run the build again")
        for command in netns.setup_commands(net):
            sh.run(command)


def _image_tree(sh: Runner, paths: NativePaths, details: list[str]) -> None:
    tree = paths.tree
    sh.run(container.restore_resolv_conf_command(tree))
    sh.run(sysprep_command(tree))
    if sh.dry:
        return
    problems = armed_problems(tree)
    if problems:
        raise UserError(f"the cleaned tree is not ready to be copied: {'; '.join(problems)}")
    details.append("first boot armed: no machine-id, SSH host keys or hub secrets")


def _disk(sh: Runner, s: Settings, paths: NativePaths, root_uuid: str, qcow2: Path, details: list[str]) -> None:
    tree = paths.tree
    grub_dir = tree / bootdisk.GRUB_DIR.lstrip("/")
    if sh.dry:
        kernel, initrd = "/boot/vmlinuz-<installed>", "/boot/initrd.img-<installed>"
        settings = bootdisk.GrubSettings()
        print(f"[dry run] would write {grub_dir}/grub.cfg and {grub_dir}/{bootdisk.PLATFORM}/load.cfg")
    else:
        kernel, initrd = kernel_paths(tree)
        result = sh.probe(bootdisk.grub_settings_command(tree))
        if not getattr(result, "ok", False):
            raise UserError(f"cannot read the tree's GRUB settings (/etc/default/grub): {result.stderr.strip()}")
        settings = bootdisk.parse_grub_settings(result.stdout)
        (grub_dir / bootdisk.PLATFORM).mkdir(parents=True, exist_ok=True)
        (grub_dir / bootdisk.PLATFORM / "load.cfg").write_text(bootdisk.load_cfg(root_uuid))
        (grub_dir / "grub.cfg").write_text(bootdisk.grub_cfg(root_uuid, kernel, initrd, settings))
        details.append(f"kernel {kernel}")
    for command in bootdisk.grub_files_commands(tree):
        sh.run(command)
    started = time.monotonic()
    for command in baseimage.raw_disk_commands(tree, paths.raw, s.vm.disk_gb * 1024**3, root_uuid):
        sh.run(command)
    sh.run(bootdisk.embed_command(sys.executable, paths.raw, tree))
    made = time.monotonic()
    sh.run(f"{q(_tool(s, 'qemu_img'))} convert -f raw {qcow2_options(s.export.compression)} {q(paths.raw)} "
           f"{q(qcow2)}")  # as export does
    converted = time.monotonic()
    packaged = {"ova", "ovf"} & set(s.export.formats)
    if packaged:  # from the raw disk, the qcow2's own source: the verify boot's disk holds the same content
        ovf.make(sh, _tool(s, "qemu_img"), paths.raw, "raw", qcow2.parent, ovf.Appliance.of(s), packaged)
    if not sh.dry:
        used = sh.probe(f"du -sB1 {q(paths.raw)}")  # the blocks written, not the sparse size
        data = (getattr(used, "stdout", "") or "0").split()[0]
        details.append(f"ext4 and GRUB {duration(made - started)} ({int(data) / 1024**3:.2f} GiB of data), "
                       f"compressed qcow2 {duration(converted - made)}")
        if packaged:
            details.append(f"{' and '.join(sorted(f.upper() for f in packaged))} (streamOptimized VMDK, "
                           f"descriptor, manifest) {duration(time.monotonic() - converted)}")
    sh.run(f"rm -rf {q(paths.raw)} {q(tree)}")


def _box(sh: Runner, s: Settings, paths: NativePaths, qcow2: Path, box: Path) -> None:
    folder = paths.box_dir
    sh.run(f"rm -rf {q(folder)} && mkdir -p {q(folder)}")
    # the qcow2 itself, by a hard link where the file system allows it
    disk = folder / libvirt_box.DISK
    sh.run(f"ln {q(qcow2)} {q(disk)} 2>/dev/null || cp --reflink=auto {q(qcow2)} {q(disk)}")
    sh.run(f"install -m 0600 {q(paths.key)} {q(folder / libvirt_box.PRIVATE_KEY)}")
    if sh.dry:
        print(f"[dry run] would write {folder}/{libvirt_box.METADATA} and {folder}/{libvirt_box.VAGRANTFILE}")
    else:
        (folder / libvirt_box.METADATA).write_text(libvirt_box.metadata(s.vm.disk_gb * 1024**3))
        (folder / libvirt_box.VAGRANTFILE).write_text(libvirt_box.vagrantfile())
    sh.run(libvirt_box.tar_command(box, folder))
    sh.run(f"rm -rf {q(folder)}")


def _verify_boot(sh: Runner, s: Settings, layout: Layout, paths: NativePaths, qcow2: Path, identity: Path,
                 verify: Verify, details: list[str]) -> None:
    ssh_port = s.ssh.port if sh.dry else free_port()
    machine = qemuboot.Machine(overlay=paths.overlay, accelerator=s.vm.accelerator, cpus=s.vm.cpus,
                               memory_mb=s.vm.memory_mb, ssh_port=ssh_port, hub_port=s.vm.hub_host_port,
                               guest_hub_port=s.hub.port, console_log=paths.console_log, pid_file=paths.qemu_pid,
                               https_port=s.vm.hub_https_host_port if s.hub.https != "off" else None,
                               guest_https_port=s.hub.https_port)
    host = f"{s.export.ssh_user}@127.0.0.1:{ssh_port}"
    names = [f"[127.0.0.1]:{ssh_port}"]
    sh.run(qemuboot.overlay_command(_tool(s, "qemu_img"), qcow2, paths.overlay))
    try:
        started = time.monotonic()
        sh.run(qemuboot.start_command(_tool(s, "qemu_system"), machine))
        sh.run(qemuboot.wait_for_ssh_command(ssh_port, paths.qemu_pid, paths.console_log))
        if not sh.dry:
            details.append(f"sshd after {duration(time.monotonic() - started)}")
            remove_host_entries(layout.known_hosts, names)  # an earlier boot on this port had other keys
        verify(host, identity)
        if not sh.dry:
            details.append(f"hubvm verify passed on {host}")
    finally:
        sh.run(qemuboot.stop_command(paths.qemu_pid), warn=True)
        sh.run(f"rm -f {q(paths.overlay)}", warn=True)
        if not sh.dry:
            remove_host_entries(layout.known_hosts, names)


def _mark_native(manifest_path: Path, s: Settings) -> None:
    """Say in manifest.json how the appliance was built and that its qcow2 was booted and verified."""
    manifest = json.loads(manifest_path.read_text())
    manifest["build"] = {"mode": "native", "provisioned_in": "systemd-nspawn container",
                         "verified": f"hubvm verify on one boot of an overlay of {s.vm.name}.qcow2 "
                                     f"(QEMU, {s.vm.accelerator})"}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")



# ---------------------------------------------------------------------------------------------------------------
# The step (`export` and `all` with build.mode native)


def export_native(c: Any, s: Settings) -> StepResult:
    """The native build as the export step (hubvm.pipeline skips it when builds/vm/ is current)."""
    layout = Layout.of(s)
    versions = require_task(c, s, "export")
    # The verify boot's hub starts up to a few minutes after sshd in an emulated guest: verify waits that long
    patient = dataclasses.replace(s, ssh=dataclasses.replace(s.ssh, wait=max(s.ssh.wait, VERIFY_WAIT)))
    with step(c, "export", layout) as sh:
        stages: list[StepResult] = []
        try:
            made = build(sh, patient, layout, lambda host, key: run_verify(c, patient, host, str(key), False),
                         versions, stages)
        finally:
            if stages:
                sh.say(steps_table(stages))
        sizes = ", ".join(f"{p.name} {size(p)}" for p in made.artifacts if p.exists())
        return StepResult("export", "dry run" if sh.dry else "ran", sh.log.elapsed(), f"native build: {sizes}")


VERIFY_WAIT = 900  # seconds
