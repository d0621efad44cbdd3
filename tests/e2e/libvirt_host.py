"""libvirt kept off the host: a network namespace with a masqueraded way out, and libvirtd running inside it.

``LibvirtNamespace`` (context manager) makes, in order:
  - a network namespace ``hvb<pid>`` joined to the host by a veth pair on a free /30 of 10.213.0.0/16, with a
    default route via the host end, IPv4 forwarding on, and an nft table ``hvb<pid>`` that masquerades the /30
    out of the host's uplink: VMs reach the package registries through it, and every libvirt network (bridges,
    dnsmasq, its firewall rules) stays inside the namespace;
  - a private mount namespace in which /run/libvirt, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and
    /var/cache/libvirt are bind mounts of folders under ``state_dir`` (seeded from the host's), so this libvirtd
    shares no socket, pid file, definition or disk image with any other libvirtd on the host;
  - virtlogd and libvirtd started there (libvirtd in the foreground: its PID is ours, the namespaces' handle).
``run(argv)`` / ``popen(argv)`` execute a command in both namespaces (``nsenter -t PID -m -n``), so vagrant,
virsh and packer see this libvirtd as qemu:///system. ``close()`` (also at exit) kills every process in the
network namespace by its PID (libvirtd, virtlogd, dnsmasq, QEMU), then deletes the nft table, the veth pair and
the namespace. Needs root, iproute2, nft, util-linux (unshare, nsenter) and libvirt's daemons.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "hvb"
POOL = ipaddress.ip_network("10.213.0.0/16")
LIBVIRT_DIRS = {"run": "/run/libvirt", "etc": "/etc/libvirt", "lib": "/var/lib/libvirt",
                "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
# Run by `ip netns exec NS unshare --mount --propagation private -- sh -c SCRIPT sh STATE_DIR`
START_SCRIPT = r"""
set -eu
state=$1
while read -r name target; do
  mkdir -p "$state/$name" "$target"
  if [ "$name" != run ] && [ -z "$(ls -A "$state/$name")" ]; then cp -a "$target/." "$state/$name/"; fi
  mount --bind "$state/$name" "$target"
done <<EOF
{dirs}
EOF
virtlogd -d
exec libvirtd
"""


def sh(argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def uplink() -> str:
    match = re.search(r"\bdev (\S+)", sh(["ip", "-4", "route", "show", "default"]).stdout)
    if not match:
        raise RuntimeError("the host has no default IPv4 route: a namespace cannot get a way out")
    return match.group(1)


def used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for line in sh(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        if match := re.search(r"inet (\S+)", line):
            used.append(ipaddress.ip_interface(match.group(1)).network)
    for line in sh(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        first = (line.split() or [""])[0]
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(first, strict=False))
    return used


def free_subnet() -> ipaddress.IPv4Network:
    used = used_networks()
    for subnet in POOL.subnets(new_prefix=30):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise RuntimeError(f"no free /30 in {POOL}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LibvirtNamespace:
    state_dir: Path
    name: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    host_addr: str = ""
    guest_addr: str = ""
    subnet: ipaddress.IPv4Network | None = None
    libvirtd: subprocess.Popen | None = None
    _undo: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def veth(self) -> str:
        return f"{self.name}h"[:15]

    @property
    def pid(self) -> int:
        assert self.libvirtd is not None, "libvirtd is not running"
        return self.libvirtd.pid

    def prefix(self, workdir: Path | None = None) -> list[str]:
        """Run in this libvirtd's network and mount namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-n", *([f"--wd={workdir}"] if workdir else [])]

    def run(self, argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return sh([*self.prefix(), *argv], check=check, **kwargs)

    def popen(self, argv: Sequence[str], workdir: Path | None = None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix(workdir), *argv], **kwargs)

    def __enter__(self) -> LibvirtNamespace:
        atexit.register(self.close)
        try:
            self._network()
            self._libvirtd()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _network(self) -> None:
        self.subnet = free_subnet()
        hosts = list(self.subnet.hosts())
        self.host_addr, self.guest_addr = str(hosts[0]), str(hosts[1])
        inner = f"{self.name}n"[:15]
        out = uplink()
        sh(["ip", "netns", "add", self.name])
        self._undo.append(["ip", "netns", "delete", self.name])
        sh(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", inner])
        self._undo.append(["ip", "link", "delete", self.veth])
        sh(["ip", "link", "set", inner, "netns", self.name])
        sh(["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.veth])
        sh(["ip", "link", "set", self.veth, "up"])
        netns = ["ip", "-n", self.name]
        sh([*netns, "addr", "add", f"{self.guest_addr}/30", "dev", inner])
        sh([*netns, "link", "set", inner, "up"])
        sh([*netns, "link", "set", "lo", "up"])
        sh([*netns, "route", "add", "default", "via", self.host_addr])
        sh(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])  # left on: other namespaces may rely on it
        rules = (f"table ip {self.name} {{\n chain postrouting {{\n"
                 "  type nat hook postrouting priority srcnat; policy accept;\n"
                 f'  ip saddr {self.subnet} oifname "{out}" masquerade\n }}\n}}\n')
        sh(["nft", "-f", "-"], input=rules)
        self._undo.append(["nft", "delete", "table", "ip", self.name])

    def _libvirtd(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        script = START_SCRIPT.replace("{dirs}", "\n".join(f"{k} {v}" for k, v in LIBVIRT_DIRS.items()))
        log = open(self.state_dir / "libvirtd.log", "ab")  # noqa: SIM115 (kept open for the daemon's life)
        self.libvirtd = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", script, "sh", str(self.state_dir)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.libvirtd.poll() is not None:
                raise RuntimeError(f"libvirtd exited ({self.libvirtd.returncode}); see {log.name}")
            probe = sh([*self.prefix(), "virsh", "-c", "qemu:///system", "version"], check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"libvirtd did not answer within 30 s; see {log.name}")

    def pids(self) -> list[int]:
        """Every process in the network namespace: libvirtd, virtlogd, dnsmasq, QEMU, our own commands."""
        out = sh(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """Stop what runs in the namespace (each process by its PID), then undo the network, last made first."""
        if self.libvirtd is not None and self.libvirtd.poll() is None:
            # Ask libvirt to stop its guests first, so that QEMU does not leave them half-written
            for domain in self.run(["virsh", "-c", "qemu:///system", "list", "--name"], check=False).stdout.split():
                self.run(["virsh", "-c", "qemu:///system", "destroy", domain], check=False)
        if os.path.exists(f"/run/netns/{self.name}"):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = self.pids()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 10
                while pids and time.monotonic() < deadline:
                    if self.libvirtd is not None:
                        self.libvirtd.poll()  # reap it: a zombie still answers kill(pid, 0)
                    pids = [p for p in pids if pid_alive(p)]
                    time.sleep(0.2)
                if not pids:
                    break
        if self.libvirtd is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.libvirtd.wait(timeout=10)
        while self._undo:
            sh(self._undo.pop(), check=False)
