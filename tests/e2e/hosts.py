"""Real test hosts for the end-to-end tests: a network namespace with a way out, and a systemd-nspawn guest.

Two pieces, usable on their own:

``Namespace`` (context manager)
    A network namespace joined to the host by a veth pair on a /30: the host end holds ``host_addr``,
    the namespace end (renamed ``eth0``) holds ``guest_addr`` with a default route via the host end, and an
    nft table masquerades the /30 out of the host's uplink, so processes in the namespace reach the package
    registries. ``run(cmd)`` / ``popen(cmd)`` execute a command inside it. Leaving the ``with`` block (or
    interpreter exit, via atexit) deletes the nft table, the veth pair and the namespace. Names start with
    ``hvt`` and carry this process's PID, so parallel runs don't collide and leftovers of dead runs can be
    removed with ``remove_stale_namespaces()``.

    with Namespace() as ns:
        ns.popen(["/usr/sbin/sshd", "-D", "-f", cfg])        # a light sshd-only host
        ssh to f"root@{ns.guest_addr}"

``nspawn_host(ns, ssh_key)`` (context manager, see below)
    A Debian 12 root filesystem (made once with mmdebstrap, cached under /var/cache/hubvm-tests/) copied
    per session and booted with ``systemd-nspawn --boot`` inside a Namespace; sshd inside, root login with
    the given key.

Everything here needs root, ``ip`` (iproute2) and ``nft``; the nspawn host also needs mmdebstrap and
systemd-nspawn. ``missing_requirements()`` says what is missing so tests can skip with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hubvm.native import netns

PREFIX = "hvt"
# /30s are picked at random from this block, skipping any that overlaps an address or route on the host.
ADDRESS_POOL = ipaddress.ip_network("10.199.0.0/16")
LOCK_FILE = netns.LOCK_FILE  # shared with the native build: no two runs take the same /30
NETNS_DIR = Path("/run/netns")


def _sh(cmd: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command (no shell), capturing text; raise with its stderr when it fails and check is set."""
    result = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def missing_requirements(nspawn: bool = False) -> list[str]:
    """Reasons these helpers cannot work here (empty when they can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root (network namespaces, veth and nft need root)")
    for tool in ["ip", "nft"] + (["systemd-nspawn", "mmdebstrap"] if nspawn else []):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found")
    if not reasons:
        probe = f"{PREFIX}probe{os.getpid()}"
        made = _sh(["ip", "netns", "add", probe], check=False)
        if made.returncode != 0:
            reasons.append(f"cannot create a network namespace: {made.stderr.strip()}")
        else:
            _sh(["ip", "netns", "delete", probe], check=False)
    return reasons


def uplink_interface() -> str:
    """The interface of the host's default IPv4 route (where masqueraded traffic leaves)."""
    try:
        return netns.uplink_interface(_sh(netns.PROBE_DEFAULT_ROUTE.split()).stdout)
    except netns.NoWayOut as error:
        raise RuntimeError(str(error)) from None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Networks already in use on the host: its addresses' prefixes and its routes."""
    return netns.used_networks(_sh(netns.PROBE_ADDRESSES.split()).stdout, _sh(netns.PROBE_ROUTES.split()).stdout)


def _free_subnet(pool: ipaddress.IPv4Network = ADDRESS_POOL) -> ipaddress.IPv4Network:
    """A /30 from the pool overlapping nothing on the host (call with the lock held)."""
    try:
        return netns.free_subnet(pool, _used_networks())
    except netns.NoWayOut as error:
        raise RuntimeError(str(error)) from None


pid_alive = netns.pid_alive


@dataclass
class Namespace:
    """A network namespace with a /30 veth link to the host and a masqueraded way out (see module doc).

    Attributes once entered: ``name`` (the netns name, also ``/run/netns/<name>``), ``host_addr`` and
    ``guest_addr`` (str IPv4 addresses), ``subnet`` (the /30), ``uplink`` (host interface used to go out).
    """

    label: str = ""
    name: str = ""
    prefix: str = PREFIX                                  # of every name made (netns, veth, nft table)
    pool: ipaddress.IPv4Network = ADDRESS_POOL            # where the /30 comes from
    host_addr: str = ""
    guest_addr: str = ""
    subnet: ipaddress.IPv4Network | None = None
    uplink: str = ""
    _cleanups: list = field(default_factory=list, repr=False)
    _plan: netns.NetworkPlan | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # hvt<pid>-<label><random>: unique per process; the PID lets remove_stale_namespaces find dead runs.
        suffix = f"{random.randrange(16**4):04x}"
        self.name = self.name or f"{self.prefix}{os.getpid()}-{self.label}{suffix}"
        self._tag = f"{os.getpid() % 100000}{suffix}"[-9:]  # short id for 15-character interface names

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    @property
    def nft_table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def host_veth(self) -> str:
        return f"{self.prefix}{self._tag}h"  # as hubvm.native.netns.NetworkPlan names it

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside the namespace: ``ip netns exec <name>``."""
        return ["ip", "netns", "exec", self.name]

    def run(self, cmd: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside the namespace, capturing text output; raise if it fails and check is set."""
        return _sh(self.exec_prefix + list(cmd), check=check, **kwargs)

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a long-running command inside the namespace; stop it yourself (by its PID) before close()."""
        return subprocess.Popen(self.exec_prefix + list(cmd), **kwargs)

    def open(self) -> Namespace:
        """Create namespace, veth pair, addresses, routes and the masquerade table (hubvm.netns's commands, the
        ones the native build runs)."""
        atexit.register(self.close)
        try:
            self.uplink = uplink_interface()
            Path(LOCK_FILE).parent.mkdir(parents=True, exist_ok=True)
            with open(LOCK_FILE, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same /30
                self.subnet = _free_subnet(self.pool)
                self._plan = netns.NetworkPlan(self.name, self._tag, self.prefix, self.subnet, self.uplink)
                self.host_addr, self.guest_addr = self._plan.host_addr, self._plan.guest_addr
                self._cleanups = [["sh", "-c", command] for command in reversed(netns.teardown_commands(self._plan))]
                for command in netns.setup_commands(self._plan):
                    _sh(["sh", "-c", command])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Undo everything open() made, in reverse order; safe to call twice and after a partial open()."""
        while self._cleanups:
            _sh(self._cleanups.pop(), check=False)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> Namespace:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def remove_stale_namespaces(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces (with their processes and nft tables) named with `prefix` whose making process is gone."""
    names = [entry.name for entry in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    removed = netns.stale(prefix, names, pid_alive)
    for name in removed:
        for command in netns.stale_teardown_commands(name):  # its veth end dies with it, and so the peer
            _sh(["sh", "-c", command], check=False)
    return removed


def wait_for_port(ns: Namespace, port: int, timeout: float = 60.0) -> None:
    """Wait until something accepts TCP connections on ns.guest_addr:port (checked from the host side)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ns.guest_addr, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on {ns.guest_addr}:{port} after {timeout:.0f} s") from None
            time.sleep(0.5)


@contextlib.contextmanager
def namespace(label: str = "") -> Iterator[Namespace]:
    """Functional spelling of ``with Namespace(label) as ns``."""
    with Namespace(label=label) as ns:
        yield ns


# -------------------------------------------------------------------------------------------------------
# The systemd-nspawn Debian 12 host

CACHE_DIR = Path(os.environ.get("HUBVM_TEST_CACHE", "/var/cache/hubvm-tests"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ROOTFS_PACKAGES = ["systemd", "systemd-sysv", "openssh-server", "python3", "sudo", "dbus", "iproute2", "curl"]


@dataclass(frozen=True)
class RootfsRecipe:
    """What mmdebstrap makes: a variant, the packages added to it, and the apt sources (a mirror URL, or one-line
    ``deb URL SUITE COMPONENTS`` entries). ``name`` starts the cache entry's name."""

    variant: str = "important"
    packages: tuple[str, ...] = tuple(ROOTFS_PACKAGES)
    sources: tuple[str, ...] = (DEBIAN_MIRROR,)
    name: str = "rootfs"


TEST_HOST = RootfsRecipe()  # the SSH-reachable test host of nspawn_host


def rootfs_command(target: Path, suite: str = "bookworm", recipe: RootfsRecipe = TEST_HOST) -> list[str]:
    """The mmdebstrap command line that makes a root filesystem (by default the test host's)."""
    return [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        suite,
        str(target),
        *recipe.sources,
    ]


def cached_rootfs(suite: str = "bookworm", log=print, recipe: RootfsRecipe = TEST_HOST) -> Path:
    """A pristine Debian root filesystem, made once with mmdebstrap and reused by later runs.

    The cache entry is named after a digest of the mmdebstrap command, so changing the package list makes a
    new one. Delete CACHE_DIR to force a rebuild (e.g. to pick up Debian point releases).
    """
    import hashlib

    digest = hashlib.sha256(" ".join(rootfs_command(Path("-"), suite, recipe)).encode()).hexdigest()[:12]
    rootfs = CACHE_DIR / f"{recipe.name}-{suite}-{digest}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run waits for the one building it
        if (rootfs / "etc" / "os-release").exists():
            log(f"root filesystem: reusing {rootfs}")
            return rootfs
        partial = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        cmd = rootfs_command(partial, suite, recipe)
        log(f"root filesystem: {' '.join(cmd)}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        partial.rename(rootfs)
        log(f"root filesystem: made in {time.monotonic() - started:.0f} s")
    return rootfs


@dataclass
class NspawnHost:
    """A booted systemd-nspawn guest, reachable over SSH as root at ``addr`` (the guest address)."""

    ns: Namespace
    root: Path
    identity: Path
    process: subprocess.Popen
    log_path: Path
    user: str = "root"
    port: int = 22
    options: tuple[str, ...] = ()  # more systemd-nspawn options (--bind=...), kept for restarts

    @property
    def addr(self) -> str:
        return self.ns.guest_addr

    def ssh_options(self, identity: Path | None = None) -> list[str]:
        # The guest is new every session and lives at a private address: no known_hosts to keep.
        return [
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-i", str(identity or self.identity),
        ]  # fmt: skip

    def ssh(
        self,
        command: str,
        check: bool = True,
        timeout: float = 600,
        user: str = "",
        identity: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a shell command line in the guest over SSH (as ``user``, by default ``self.user``)."""
        destination = f"{user or self.user}@{self.addr}"
        cmd = ["ssh", *self.ssh_options(identity), "-p", str(self.port), destination, command]
        return _sh(cmd, check=check, timeout=timeout)


def _prepare_root(root: Path, public_key: str, hostname: str) -> None:
    """Put what the guest needs before boot: authorised key, resolver, host name."""
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    resolv = root / "etc" / "resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    (root / "etc" / "hostname").write_text(hostname + "\n")


# nspawn processes still running, stopped at interpreter exit if nothing stopped them before.
_RUNNING: set[subprocess.Popen] = set()


@atexit.register
def _stop_all() -> None:
    for process in list(_RUNNING):
        _stop(process)


def _stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Power the guest off (SIGTERM makes nspawn ask its init to halt), killing it if that takes too long."""
    _RUNNING.discard(process)
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _unmount_below(root: Path) -> None:
    """Unmount anything still mounted under root (deepest first); nspawn normally leaves nothing behind."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/") or m == str(root)), reverse=True):
        _sh(["umount", "-l", mount], check=False)


def _start_nspawn(ns: Namespace, root: Path, log_path: Path, options: Sequence[str] = ()) -> subprocess.Popen:
    """Start ``systemd-nspawn --boot`` on root inside ns, in the background, its console going to log_path.
    ``options`` are more systemd-nspawn options (``--bind=...``)."""
    cmd = [
        "systemd-nspawn",
        f"--directory={root}",
        f"--machine={ns.name}"[:74],
        "--boot",
        f"--network-namespace-path={ns.path}",
        "--register=no",
        "--keep-unit",
        "--console=read-only",
        *options,
        # The guest keeps the time zone provisioning gave it (nspawn's default copies the host's at each boot)
        "--timezone=off",
    ]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    _RUNNING.add(process)
    return process


def _wait_booted(host: NspawnHost, timeout: float) -> str:
    """Wait until sshd answers and systemd says the boot is finished; return systemd's state."""
    deadline = time.monotonic() + timeout
    while True:
        if host.process.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited ({host.process.returncode}); see {host.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the guest did not boot within {timeout:.0f} s; see {host.log_path}")
        try:
            wait_for_port(host.ns, host.port, timeout=2)
            state = host.ssh("systemctl is-system-running --wait", check=False, timeout=60).stdout.strip()
            if state in ("running", "degraded"):
                return state
        except (TimeoutError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)


def power_off(host: NspawnHost) -> None:
    """Stop the guest (by its nspawn PID), as a machine that goes away; `restart` boots it again."""
    _stop(host.process)
    _unmount_below(host.root)


def restart(host: NspawnHost, boot_timeout: float = 120, log=print) -> None:
    """Power the guest off and boot it again from the same root filesystem (e.g. to see a first boot).

    Waits as ``host.user`` with ``host.identity``: change them first if the guest's logins changed.
    """
    started = time.monotonic()
    _stop(host.process)
    _unmount_below(host.root)
    host.process = _start_nspawn(host.ns, host.root, host.log_path, host.options)
    state = _wait_booted(host, boot_timeout)
    log(f"guest: rebooted ({state}) in {time.monotonic() - started:.0f} s")


@contextlib.contextmanager
def nspawn_host(
    ns: Namespace,
    identity: Path,
    workdir: Path,
    hostname: str = "hubtest",
    boot_timeout: float = 120,
    keep: bool = False,
    log=print,
    pristine: Path | None = None,
    options: Sequence[str] = (),
) -> Iterator[NspawnHost]:
    """Boot a Debian 12 systemd-nspawn guest in ``ns`` and yield it once sshd answers and boot is finished.

    ``identity`` is a private key whose ``.pub`` is authorised for root. The cached root filesystem (or
    ``pristine``, another root filesystem) is copied to ``workdir/rootfs`` (deleted afterwards unless ``keep``).
    ``options`` are more systemd-nspawn options (``--bind=DIR:/home``). The guest is stopped by its nspawn PID and
    its mounts checked, whatever happens in the block.
    """
    root = workdir / "rootfs"
    log_path = workdir / "nspawn.log"
    host = None
    try:
        pristine = pristine or cached_rootfs(log=log)
        started = time.monotonic()
        copy_rootfs(pristine, root)
        _prepare_root(root, Path(f"{identity}.pub").read_text(), hostname)
        log(f"root filesystem: copied in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        process = _start_nspawn(ns, root, log_path, options)
        host = NspawnHost(ns=ns, root=root, identity=identity, process=process, log_path=log_path,
                          options=tuple(options))
        state = _wait_booted(host, boot_timeout)
        log(f"guest: booted ({state}) in {time.monotonic() - started:.0f} s at {ns.guest_addr}")
        yield host
    finally:
        if host is not None:
            _stop(host.process)
        _unmount_below(root)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# -------------------------------------------------------------------------------------------------------
# A booted machine entered with nsenter: for root filesystems with no sshd (a bare minbase, as a fresh machine)


def copy_rootfs(pristine: Path, root: Path) -> None:
    """A private copy of a cached root filesystem (reflinked where the file system can)."""
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _sh(["cp", "-a", "--reflink=auto", str(pristine), str(root)])


def container_init_pid(nspawn: subprocess.Popen) -> int | None:
    """The host PID of the container's init (systemd), a child of the systemd-nspawn process; None before it runs."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
            if int(fields[1]) == nspawn.pid:
                return int(stat.parent.name)
    return None


@dataclass
class BootedMachine:
    """A systemd-nspawn guest booted in ``ns``; commands enter its namespaces with nsenter (no sshd needed)."""

    ns: Namespace
    root: Path
    process: subprocess.Popen
    log_path: Path

    def command(self, command: str, user: str = "root", timeout: float = 600) -> list[str]:
        """argv running a shell command line in the guest, in a login shell of ``user`` (its own clean
        environment: /etc/profile and the user's profile), stopped after ``timeout`` seconds."""
        pid = container_init_pid(self.process)
        if pid is None:
            raise RuntimeError(f"the guest's init is not running; see {self.log_path}")
        return ["timeout", "--kill-after=10", str(int(timeout)), "nsenter", f"--target={pid}", "--all",
                "runuser", "--login", user, "--command", command]

    def run(self, command: str, user: str = "root", timeout: float = 600, check: bool = True,
            stream: bool = False) -> subprocess.CompletedProcess:
        """Run a shell command line in the guest; output captured (stdout and stderr together when ``stream``,
        each line then also printed as it comes)."""
        argv = self.command(command, user, timeout)
        if not stream:
            return _sh(argv, check=check)
        lines = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.DEVNULL) as process:
            assert process.stdout is not None
            for line in process.stdout:
                print(f"    | {line}", end="", flush=True)
                lines.append(line)
        result = subprocess.CompletedProcess(argv, process.returncode, "".join(lines), "")
        if check and result.returncode != 0:
            raise RuntimeError(f"{command!r} as {user} failed ({result.returncode}); its output ends:\n"
                               + "".join(lines[-30:]))
        return result


def _wait_booted_nsenter(machine: BootedMachine, timeout: float) -> str:
    """Wait until systemd in the guest says the boot is finished; return its state."""
    deadline = time.monotonic() + timeout
    while True:
        if machine.process.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited ({machine.process.returncode}); see {machine.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the guest did not boot within {timeout:.0f} s; see {machine.log_path}")
        if container_init_pid(machine.process) is not None:
            state = machine.run("systemctl is-system-running --wait", check=False, timeout=60).stdout.strip()
            if state in ("running", "degraded"):
                return state
        time.sleep(0.5)


@contextlib.contextmanager
def booted_machine(
    ns: Namespace,
    pristine: Path,
    workdir: Path,
    prepare=lambda root: None,
    options: Sequence[str] = (),
    boot_timeout: float = 120,
    keep: bool = False,
    log=print,
) -> Iterator[BootedMachine]:
    """Copy ``pristine`` to ``workdir/rootfs``, let ``prepare(root)`` change it, boot it with systemd-nspawn in
    ``ns`` (more nspawn ``options``, such as ``--bind=``) and yield it once systemd finished booting. The guest is
    stopped by its nspawn PID, its mounts checked and the copy deleted (unless ``keep``), whatever happens."""
    root = workdir / "rootfs"
    log_path = workdir / "nspawn.log"
    process = None
    try:
        started = time.monotonic()
        copy_rootfs(pristine, root)
        resolv = root / "etc" / "resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)
        prepare(root)
        log(f"root filesystem: copied and prepared in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        process = _start_nspawn(ns, root, log_path, options)
        machine = BootedMachine(ns=ns, root=root, process=process, log_path=log_path)
        state = _wait_booted_nsenter(machine, boot_timeout)
        log(f"guest: booted ({state}) in {time.monotonic() - started:.0f} s")
        yield machine
    finally:
        if process is not None:
            _stop(process)
        _unmount_below(root)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def checksum_mismatches(folder: Path) -> str:
    """What `sha256sum -c SHA256SUMS` in `folder` reports wrong, on one line; "" when every file still matches."""
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    return "" if sums.returncode == 0 else (sums.stdout + sums.stderr).strip().replace("\n", "; ")
