"""The native build's container: the mirror-built root filesystem booted with systemd-nspawn in a network
namespace (hubvm.netns), reachable over SSH as the build login, so that the playbook runs at native speed.

What the tree gets before the boot is what the VM path's Packer build gives its guest: templates/packer/scripts/
build-user.sh run in the tree (passwordless sudo, Vagrant's public key, `UseDNS no`), then the key Vagrant would
insert at the first `vagrant up` - here a key pair made for this build - in place of Vagrant's, the boot loader's
debconf answer of scripts/bootloader.sh, and vm.data copied where Vagrant's rsync synced folder puts it.

What a container cannot do during the boot, and how the build boot handles it (none of it changes the image):
- systemd-networkd would replace the address and route the namespace gave eth0 (the image asks for DHCP, which
  nothing serves there): it is masked for this boot on PID 1's command line (`systemd.mask=`), with
  systemd-networkd-wait-online;
- systemd-remount-fs would remount the root named in fstab (a partition that does not exist yet): masked too;
- the resolver: the image's /etc/resolv.conf points at systemd-resolved's stub, which has no upstream server
  without networkd; nspawn puts the host's resolver configuration there for the boot (`--resolv-conf=replace-*`)
  and `restore_resolv_conf_command` puts the image's link back once the container is stopped;
- systemd-timesyncd does not start in a container (ConditionVirtualization=!container): the host's clock is used.

Every command is a pure function of paths and names, run by the caller's runner (so `hubvm --dry` prints it).
The container runs in the background; its PID is in a file, and it is stopped by that PID.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from hubvm.native.netns import NetworkPlan
from hubvm.shell import q

# Units masked for the build boot only (see the module doc); PID 1 of a container reads them from its arguments
BUILD_BOOT_MASKS = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
                    "systemd-remount-fs.service")
# What scripts/mirror-customize.sh makes /etc/resolv.conf: a link to systemd-resolved's stub
STUB_RESOLV_CONF = "../run/systemd/resolve/stub-resolv.conf"
# Where the image's boot loader is installed, for grub-pc's upgrades (as scripts/bootloader.sh records it)
GRUB_INSTALL_DEVICE = "/dev/vda"
# Where Vagrant's synced folder puts vm.data in the guest (hubvm.render.SHARED_DATA_MOUNT)
BOOT_TIMEOUT = 300      # seconds for the container to boot (sshd answers, systemd says running)
STOP_TIMEOUT = 90       # seconds for it to power off before it is killed



def resolv_conf_mode(host_resolv_conf: str, uplink_file_exists: bool) -> str:
    """nspawn's --resolv-conf for the build boot: the host's file, or systemd-resolved's uplink list when the
    host's file names only a resolver on the host's loopback, which the namespace cannot reach."""
    servers = [line.split()[1] for line in host_resolv_conf.splitlines()
               if line.split()[:1] == ["nameserver"] and len(line.split()) > 1]
    local = [s for s in servers if s.startswith("127.") or s == "::1"]
    if servers and len(local) < len(servers):
        return "replace-host"
    if uplink_file_exists:
        return "replace-uplink"
    raise ValueError("the host's /etc/resolv.conf names no name server the build container can reach "
                     f"({', '.join(servers) or 'none'}), and there is no /run/systemd/resolve/resolv.conf")


def prepare_commands(tree: Path, build_user: str, build_user_script: Path, public_key: Path,
                     data: Path | None, shared_data_mount: str) -> list[str]:
    """Make the tree what the VM path's guest is when Vagrant first logs in (see the module doc)."""
    home = f"$(chroot {q(tree)} getent passwd {q(build_user)} | cut -d: -f6)"
    commands = [
        # the same script Packer runs in the VM path, in the tree (it reads BUILD_USER)
        f"chroot {q(tree)} /usr/bin/env BUILD_USER={q(build_user)} /bin/bash -s < {q(build_user_script)}",
        # Vagrant's insert_key: this build's own key replaces Vagrant's well-known one
        f"install -m 0600 {q(public_key)} {q(tree)}\"{home}/.ssh/authorized_keys\" && "
        f"chroot {q(tree)} chown {q(build_user)}: \"{home}/.ssh/authorized_keys\"",
        f"echo 'grub-pc grub-pc/install_devices multiselect {GRUB_INSTALL_DEVICE}' | "
        f"chroot {q(tree)} debconf-set-selections",
    ]
    if data is not None:
        target = f"{tree}{shared_data_mount}"
        commands.append(f"mkdir -p {q(target)} && cp -a --no-preserve=ownership {q(data)}/. {q(target)}/")
    return commands


def start_command(net: NetworkPlan, tree: Path, pid_file: Path, log: Path, resolv_conf: str,
                  nspawn: str = "systemd-nspawn") -> str:
    """Boot the tree in the background (a session of its own, so that a Ctrl-C reaches only this tool, which
    then stops it); its PID goes to pid_file, its console to log."""
    argv = [nspawn, f"--directory={tree}", f"--machine={net.name}"[:74], "--boot",
            f"--network-namespace-path={net.path}", "--register=no", "--keep-unit", "--console=read-only",
            f"--resolv-conf={resolv_conf}", "--", *(f"systemd.mask={unit}" for unit in BUILD_BOOT_MASKS)]
    script = f"echo $$ > {q(pid_file)}; exec {shlex.join(argv)}"
    return f"setsid sh -c {q(script)} < /dev/null > {q(log)} 2>&1 &"


def ssh_argv(ssh_options: Sequence[str], key: Path, user: str, address: str, command: str) -> list[str]:
    return ["ssh", *ssh_options, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
            f"{user}@{address}", command]


def wait_command(ssh: Sequence[str], pid_file: Path, log: Path, timeout: int = BOOT_TIMEOUT) -> str:
    """Wait until systemd in the container says the boot is over (running, or degraded: then its failed units
    are listed), giving up when nspawn exits or after `timeout` seconds. `ssh` runs `systemctl
    is-system-running --wait` in the container."""
    script = (
        f"until state=$({shlex.join(ssh)} 2>/dev/null); "
        '[ "$state" = running ] || [ "$state" = degraded ]; do '
        f'kill -0 "$(cat {q(pid_file)})" 2>/dev/null || {{ echo "systemd-nspawn exited; see {log}" >&2; exit 1; }}; '
        "sleep 1; done; "
        'echo "container: systemd says $state"')
    return f"timeout {timeout} sh -c {q(script)}"


def stop_command(pid_file: Path, timeout: int = STOP_TIMEOUT) -> str:
    """Power the container off (SIGTERM makes nspawn halt its init) by its PID, killed after `timeout` s."""
    return (f"if [ -s {q(pid_file)} ] && kill -0 \"$(cat {q(pid_file)})\" 2>/dev/null; then "
            f"pid=$(cat {q(pid_file)}); kill -TERM $pid; "
            f"timeout {timeout} tail --pid=$pid -f /dev/null || kill -KILL $pid; fi; rm -f {q(pid_file)}")


def kill_namespace_processes_command(net: NetworkPlan) -> str:
    """Whatever still runs in the namespace (a container whose nspawn was killed), by PID."""
    return f"for pid in $(ip netns pids {net.name}); do kill -KILL $pid; done"


def unmount_below_command(tree: Path) -> str:
    """Anything still mounted below the tree, deepest first (nspawn mounts in a namespace of its own: normally
    nothing)."""
    return (f"awk -v root={q(tree)} '$2 == root || index($2, root \"/\") == 1 {{print $2}}' /proc/self/mounts "
            "| sort -r | xargs -r -n1 umount -l")


def restore_resolv_conf_command(tree: Path) -> str:
    return f"ln -sfn {STUB_RESOLV_CONF} {q(tree / 'etc' / 'resolv.conf')}"
