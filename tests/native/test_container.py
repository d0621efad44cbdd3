"""The native build's container: the commands that prepare the tree, boot it with systemd-nspawn, wait for it and
stop it."""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from hubvm.native import container, netns


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


