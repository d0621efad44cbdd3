"""libvirt kept off the host: a network namespace with a masqueraded way out, and libvirtd running inside it.

``LibvirtNamespace`` (context manager) makes, in order:
  - a network namespace (``hosts.Namespace``, named ``hvb<pid>-lv...``) joined to the host by a veth pair on a
    free /30 of 10.213.0.0/16, with a default route via the host end, IPv4 forwarding on, and an nft table that
    masquerades the /30 out of the host's uplink: VMs reach the package registries through it, and every
    libvirt network (bridges, dnsmasq, its firewall rules) stays inside the namespace;
  - a private mount namespace in which /run/libvirt, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and
    /var/cache/libvirt are bind mounts of folders under ``state_dir`` (seeded from the host's), so this libvirtd
    shares no socket, definition or disk image with another libvirtd on the host (its pid file,
    /run/libvirtd.pid, is the host's: one such libvirtd at a time, and none on the host beside it);
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
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.hosts import Namespace, _sh, pid_alive

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


@dataclass
class LibvirtNamespace:
    state_dir: Path
    network: Namespace = field(default_factory=lambda: Namespace(label="lv", prefix=PREFIX, pool=POOL))
    libvirtd: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def subnet(self) -> ipaddress.IPv4Network | None:
        return self.network.subnet

    @property
    def pid(self) -> int:
        assert self.libvirtd is not None, "libvirtd is not running"
        return self.libvirtd.pid

    def prefix(self, workdir: Path | None = None) -> list[str]:
        """Run in this libvirtd's network and mount namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-n", *([f"--wd={workdir}"] if workdir else [])]

    def run(self, argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return _sh([*self.prefix(), *argv], check=check, **kwargs)

    def popen(self, argv: Sequence[str], workdir: Path | None = None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix(workdir), *argv], **kwargs)

    def __enter__(self) -> LibvirtNamespace:
        atexit.register(self.close)
        try:
            self.network.open()
            self._libvirtd()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _libvirtd(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        script = START_SCRIPT.replace("{dirs}", "\n".join(f"{k} {v}" for k, v in LIBVIRT_DIRS.items()))
        log = open(self.state_dir / "libvirtd.log", "ab")  # noqa: SIM115 (kept open for the daemon's life)
        self.libvirtd = subprocess.Popen(
            [*self.network.exec_prefix, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", script, "sh", str(self.state_dir)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.libvirtd.poll() is not None:
                raise RuntimeError(f"libvirtd exited ({self.libvirtd.returncode}); see {log.name}")
            probe = _sh([*self.prefix(), "virsh", "-c", "qemu:///system", "version"], check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"libvirtd did not answer within 30 s; see {log.name}")

    def pids(self) -> list[int]:
        """Every process in the network namespace: libvirtd, virtlogd, dnsmasq, QEMU, our own commands."""
        out = _sh(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """Stop what runs in the namespace (each process by its PID), then remove the namespace and its network."""
        if self.libvirtd is not None and self.libvirtd.poll() is None:
            # Ask libvirt to stop its guests first, so that QEMU does not leave them half-written
            for domain in self.run(["virsh", "-c", "qemu:///system", "list", "--name"], check=False).stdout.split():
                self.run(["virsh", "-c", "qemu:///system", "destroy", domain], check=False)
        if os.path.exists(self.network.path):
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
        self.network.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
