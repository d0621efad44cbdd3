"""One throwaway boot of an exported disk under QEMU, to check it (the native build's last step before its
artifacts count as done).

The disk is never booted itself: QEMU boots a qcow2 overlay whose backing file it is (QEMU opens a backing file
read-only), so every write of the boot - the first boot's new SSH host keys and secrets among them - lands in
the overlay, which is deleted afterwards, and the exported disk stays as made, its first boot still armed.
The guest boots by its own boot loader (no -kernel). User-mode networking with `restrict=on`: the guest reaches
nothing, and only its SSH and hub ports are forwarded, to 127.0.0.1. KVM where it works, else software
emulation (vm.accelerator). QEMU runs in the background (-daemonize), its PID in a file, stopped by that PID.

Command lines only; the caller's runner runs them (so `hubvm --dry` prints them).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from hubvm.shell import q

SSH_WAIT = 900       # seconds for sshd to answer (a first boot in software emulation makes keys: about a minute)
STOP_WAIT = 30       # seconds for QEMU to exit after SIGTERM before it is killed



@dataclass(frozen=True)
class Machine:
    """What QEMU boots and how (see the module doc)."""

    overlay: Path
    accelerator: str      # kvm | tcg
    cpus: int
    memory_mb: int
    ssh_port: int         # on 127.0.0.1, forwarded to the guest's 22
    hub_port: int         # on 127.0.0.1, forwarded to the guest's guest_hub_port
    guest_hub_port: int
    console_log: Path
    pid_file: Path
    https_port: int | None = None        # on 127.0.0.1, forwarded to the guest's guest_https_port (HTTPS on)
    guest_https_port: int = 443


def overlay_command(qemu_img: str, disk: Path, overlay: Path) -> str:
    """A copy-on-write overlay of `disk` (an absolute backing path, so the overlay works from anywhere)."""
    return f"{q(qemu_img)} create -q -f qcow2 -b {q(disk.resolve())} -F qcow2 {q(overlay)}"


def start_command(qemu_system: str, m: Machine) -> str:
    accel = "kvm" if m.accelerator == "kvm" else "tcg"
    forwards = (f"hostfwd=tcp:127.0.0.1:{m.ssh_port}-:22,"
                f"hostfwd=tcp:127.0.0.1:{m.hub_port}-:{m.guest_hub_port}")
    if m.https_port is not None:
        forwards += f",hostfwd=tcp:127.0.0.1:{m.https_port}-:{m.guest_https_port}"
    argv = [qemu_system, "-name", "hubvm-verify", "-machine", f"pc,accel={accel}", "-cpu", "max",
            "-smp", str(m.cpus), "-m", str(m.memory_mb),
            "-drive", f"file={m.overlay},if=virtio,format=qcow2",
            "-netdev", f"user,id=net0,restrict=on,{forwards}", "-device", "virtio-net-pci,netdev=net0",
            "-display", "none", "-monitor", "none", "-serial", f"file:{m.console_log}",
            "-daemonize", "-pidfile", str(m.pid_file)]
    return shlex.join(argv)


def wait_for_ssh_command(port: int, pid_file: Path, console_log: Path, timeout: int = SSH_WAIT) -> str:
    """Wait until sshd on 127.0.0.1:port gives its host key (QEMU's forward accepts connections before the
    guest's sshd does), giving up when QEMU exits or after `timeout` seconds."""
    gone = f'echo "QEMU exited; see {console_log}" >&2; exit 1'
    script = (f"until ssh-keyscan -T 5 -p {port} 127.0.0.1 2>/dev/null | grep -q .; do "
              f'kill -0 "$(cat {q(pid_file)})" 2>/dev/null || {{ {gone}; }}; sleep 2; done')
    return f"timeout {timeout} sh -c {q(script)}"


def stop_command(pid_file: Path, timeout: int = STOP_WAIT) -> str:
    """Stop QEMU by its PID: the overlay is thrown away, so nothing in the guest needs a clean shutdown."""
    return (f"if [ -s {q(pid_file)} ] && kill -0 \"$(cat {q(pid_file)})\" 2>/dev/null; then "
            f"pid=$(cat {q(pid_file)}); kill -TERM $pid; "
            f"timeout {timeout} tail --pid=$pid -f /dev/null || kill -KILL $pid; fi; rm -f {q(pid_file)}")
