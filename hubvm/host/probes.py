"""How each need of hubvm.host.tools is judged on this host: tools and their versions, plugins, daemons, KVM,
libguestfs. Each judgement is a `Finding` with a status a program can test:

  ok | missing (install it: the apt-get line) | too old | not running (a service that does not answer)
  | not usable here (present, but this host cannot use it: KVM that hangs, no VirtualBox kernel driver)
  | not packaged (this distribution has no package: the download page)

A run asks each need once (`Probes`). The slow answers (a version, the plugin list, the KVM and libguestfs boots)
are kept across runs in ~/.cache/hubvm/probes.json under a key made of everything the answer depends on: the
command line that was run, the environment variables that change what it does, and the identity (path, size,
modification time) of the files it reads. Only an answer that found the need ok is kept: a failure is asked again
at the next run, so that following the advice it gave is seen at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubvm.errors import UserError
from hubvm.host.tools import (
    COMMANDS,
    KEYRINGS,
    LIBVIRT_URI,
    TOOLS,
    VAGRANT_LIBVIRT_MINIMUM,
    Tool,
    locate,
    needs,
)
from hubvm.shell import Runner, Shell, is_dry, q

OK, MISSING, TOO_OLD, NOT_RUNNING, NOT_USABLE, NOT_PACKAGED = (
    "ok", "missing", "too old", "not running", "not usable here", "not packaged")

# The host's own files the probes look at (module constants, so that a test points them elsewhere)
KVM_DEVICE = "/dev/kvm"
VBOX_DEVICE = "/dev/vboxdrv"
BOOT_DIR = Path("/boot")
KVM_PROBE_SECONDS = 20
GUESTFS_PROBE_SECONDS = 600
# Environment variables that change what libguestfs's appliance does (its backend, TCG or KVM, where it is kept)
GUESTFS_ENVIRONMENT = ("LIBGUESTFS_BACKEND", "LIBGUESTFS_BACKEND_SETTINGS", "LIBGUESTFS_PATH", "LIBGUESTFS_CACHEDIR",
                       "SUPERMIN_KERNEL", "SUPERMIN_MODULES", "TMPDIR")
KEPT_PER_NEED = 4  # cached answers kept for one need (one per command line and environment that was asked)


@dataclass(frozen=True)
class Finding:
    """One line of `hubvm check`."""

    name: str
    status: str
    fix: str = ""
    path: str | None = None
    version: str | None = None
    minimum: str = "-"

    @property
    def ok(self) -> bool:
        return self.status == OK

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Judging what a probe printed (pure)


def apt_fix(packages: str, why: str = "") -> str:
    return f"install it: sudo apt-get install {packages}" + (f" ({why})" if why else "")


def install_hint(tool: Tool) -> str:
    if tool.debian:
        return f"install it: sudo apt-get install {tool.debian} (or see {tool.download})"
    return f"install it from {tool.download}"


def parse_version(pattern: str, output: str) -> str | None:
    from packaging.version import InvalidVersion, Version

    match = re.search(pattern, output, re.MULTILINE)
    if not match:
        return None
    try:
        return str(Version(match.group(1)))
    except InvalidVersion:
        return None


def older(version: str, minimum: str) -> bool:
    from packaging.version import Version

    return Version(version) < Version(minimum)


def assess(tool: Tool, path: str | None, output: str) -> Finding:
    """Judge one tool from where it was found and what its version command printed."""
    if path is None:
        status = MISSING if tool.debian else NOT_PACKAGED
        return Finding(tool.label, status, install_hint(tool), None, None, tool.minimum)
    version = parse_version(tool.pattern, output)
    if version is None:
        return Finding(tool.label, MISSING, f"`{path} {tool.version_args}` printed no version; check the "
                       "installation", path, None, tool.minimum)
    if older(version, tool.minimum):
        return Finding(tool.label, TOO_OLD, f"upgrade to {tool.minimum} or newer: "
                       f"{install_hint(tool).split(': ', 1)[-1]}", path, version, tool.minimum)
    return Finding(tool.label, OK, "", path, version, tool.minimum)


def parse_vagrant_plugins(output: str) -> dict[str, str]:
    """`vagrant plugin list` -> {"vagrant-libvirt": "0.11.2"}."""
    return dict(re.findall(r"^(\S+) \((\d+(?:\.\d+)+)", output, re.MULTILINE))


def assess_vagrant_libvirt(output: str) -> Finding:
    version = parse_vagrant_plugins(output).get("vagrant-libvirt")
    hint = apt_fix("vagrant-libvirt") + " (or: vagrant plugin install vagrant-libvirt)"
    if version is None:
        return Finding("vagrant-libvirt", MISSING, hint, None, None, VAGRANT_LIBVIRT_MINIMUM)
    if older(version, VAGRANT_LIBVIRT_MINIMUM):
        return Finding("vagrant-libvirt", TOO_OLD, hint, "vagrant plugin", version, VAGRANT_LIBVIRT_MINIMUM)
    return Finding("vagrant-libvirt", OK, "", "vagrant plugin", version, VAGRANT_LIBVIRT_MINIMUM)


def assess_command(name: str, path: str | None, package: str, why: str) -> Finding:
    """A command needed by name (dnsmasq, virt-sysprep, sfdisk, ...): present or not."""
    return Finding(name, OK if path else MISSING, "" if path else apt_fix(package, why), path)


def assess_libvirtd(ok: bool, output: str) -> Finding:
    """vagrant-libvirt talks to the system libvirt daemon: it must answer."""
    if ok and LIBVIRT_URI in output:
        return Finding("libvirt daemon", OK, "", LIBVIRT_URI)
    return Finding("libvirt daemon", NOT_RUNNING, "start it: sudo systemctl start libvirtd (and add yourself to "
                   "the libvirt group)")


def assess_kvm(status: str, detail: str) -> Finding:
    """KVM as the bounded probe found it: works, absent, or present but hanging (see kvm_probe_command)."""
    if status == OK:
        return Finding("KVM", OK, "", KVM_DEVICE)
    return Finding("KVM", NOT_USABLE, f"{detail}; set vm.accelerator: tcg (QEMU software emulation, about 6x "
                   "slower), and with image.source mirror build.mode: native (provisioned at native speed in a "
                   "container)", KVM_DEVICE if os.path.exists(KVM_DEVICE) else None)


def judge_kvm(result: Any) -> Finding:
    """What the KVM probe's boot printed: a kernel panic means KVM ran the guest; silence until the time-out
    means it hangs."""
    exited = getattr(result, "exited", None)
    if "Kernel panic" in (result.stdout or ""):
        return assess_kvm(OK, "")
    if exited in (124, 137):
        return assess_kvm("hangs", f"a guest started with KVM printed nothing within {KVM_PROBE_SECONDS} s "
                          "(KVM hangs on this host)")
    detail = ((result.stderr or "").strip().splitlines() or [f"exit status {exited}"])[-1][:120]
    return assess_kvm("fails", f"QEMU could not start a guest with KVM ({detail})")


def judge_guestfs(result: Any, kernel: str) -> Finding:
    """What libguestfs-test-tool printed: its appliance started, or the error that stopped it."""
    name = "libguestfs appliance"
    if getattr(result, "ok", False):
        return Finding(name, OK, "", kernel)
    output = (result.stdout or "") + (result.stderr or "")
    lines = [line for line in output.splitlines() if "error" in line.lower()] or output.splitlines()[-1:] or ["?"]
    return Finding(name, NOT_USABLE, f"libguestfs-test-tool failed ({lines[-1].strip()[:120]}); run it to see "
                   "why", kernel)


def assess_keyring(s: Any) -> Finding:
    """mmdebstrap checks the mirror's signatures with the distribution's keyring (or the one the OS data names)."""
    configured = s.os_data.get("mirror", {}).get("keyring") or ""
    path, package = (configured, "") if configured else KEYRINGS[s.os_data["family"]]
    ok = os.path.isfile(path)
    return Finding(f"{s.os_data['family']} archive keyring", OK if ok else MISSING,
                   "" if ok else apt_fix(package, "mmdebstrap verifies the mirror with it") if package
                   else f"give a keyring file at {path}", path if ok else None)


def kernels() -> list[str]:
    return sorted(str(p) for p in BOOT_DIR.glob("vmlinuz-*"))


def readable_kernels() -> list[str]:
    return [k for k in kernels() if os.access(k, os.R_OK)]


def kvm_probe_command(qemu: str, kernel: str, seconds: int = KVM_PROBE_SECONDS) -> str:
    """Boot the host's kernel with KVM and no root file system: it panics at once where KVM works (about 1 s),
    and prints nothing where KVM hangs (as on some nested hosts), which the timeout turns into exit status 124."""
    return (f"timeout -k 5 {seconds} {q(qemu)} -accel kvm -m 256 -display none -nodefaults -no-reboot "
            f"-serial stdio -kernel {q(kernel)} -append 'console=ttyS0 panic=-1 loglevel=4'")


def guestfs_probe_command(test_tool: str, accelerator: str) -> str:
    """libguestfs-test-tool starts the appliance vagrant-libvirt's package will start: with TCG forced where the
    build runs without KVM (as hubvm.vm.vagrant's environment forces it for `vagrant package`)."""
    forced = "LIBGUESTFS_BACKEND_SETTINGS=force_tcg " if accelerator == "tcg" else ""
    return f"{forced}timeout {GUESTFS_PROBE_SECONDS} {q(test_tool)}"


# ---------------------------------------------------------------------------------------------------------------
# Asking, once per run, and remembering what was found ok


def identity(*paths: str | os.PathLike[str] | None) -> list[str]:
    """What a cached answer depends on: each path's real location, size and modification time."""
    parts = []
    for path in paths:
        if path is None:
            continue
        try:
            real = os.path.realpath(path)
            info = os.stat(real)
            parts.append(f"{real}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}:absent")
    return parts


def cache_key(name: str, command: str, depends_on: Sequence[str | os.PathLike[str] | None],
              environment: Iterable[str]) -> str:
    """The key of an answer: the need, the exact command line, the files it reads and the environment variables
    that change it (their values now)."""
    env = {variable: os.environ.get(variable) for variable in sorted(environment)}
    text = json.dumps([name, command, identity(*depends_on), env], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def probes_cache() -> Path:
    """Where the slow answers are kept across runs: a fact about this machine, so in the user's cache, not in a
    project's builds/ (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hubvm" / "probes.json"


class Probes:
    """The findings of one run (each need judged at most once), backed by a cache of ok answers across runs."""

    def __init__(self, runner: Runner, cache_file: Path | None = None, write: bool = True) -> None:
        self.runner = runner
        self.cache_file = cache_file
        self.write = write
        self.memo: dict[str, Finding] = {}
        self.stored: dict[str, dict[str, Any]] = {}
        if cache_file is not None:
            try:
                stored = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                stored = {}
            # an entry of another shape (an older hubvm's) is dropped, not trusted
            self.stored = {key: entry for key, entry in stored.items()
                           if isinstance(entry, dict) and {"name", "command", "finding"} <= set(entry)}

    def ask(self, name: str, command: str, judge: Callable[[Any], Finding],
            depends_on: Sequence[str | os.PathLike[str] | None] = (), environment: Iterable[str] = ()) -> Finding:
        """Run a read-only command and judge what it printed, unless an ok answer to exactly this command (same
        files, same environment) is cached; only an ok finding is kept."""
        key = cache_key(name, command, depends_on, environment)
        entry = self.stored.get(key)
        if entry is not None:
            return Finding(**entry["finding"])
        finding = judge(self.runner.probe(command))
        if finding.ok:
            self._keep(key, {"name": name, "command": command, "at": time.time(), "finding": finding.as_dict()})
        return finding

    def _keep(self, key: str, entry: dict[str, Any]) -> None:
        same = sorted((k for k, e in self.stored.items() if e["name"] == entry["name"]),
                      key=lambda k: self.stored[k].get("at", 0))
        for old in same[:max(0, len(same) - KEPT_PER_NEED + 1)]:
            del self.stored[old]
        self.stored[key] = entry
        if self.cache_file is None or not self.write:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(self.cache_file.name + ".tmp")
        tmp.write_text(json.dumps(self.stored, indent=1, sort_keys=True))
        tmp.replace(self.cache_file)

    def find(self, name: str, s: Any) -> Finding:
        if name not in self.memo:
            self.memo[name] = self._judge(name, s)
        return self.memo[name]

    def _judge(self, name: str, s: Any) -> Finding:
        if name in TOOLS:
            tool = TOOLS[name]
            path = locate(getattr(s.tools, name))
            if path is None:
                return assess(tool, None, "")
            return self.ask(f"tool:{name}", f"{q(path)} {tool.version_args}",
                            lambda result: assess(tool, path, (result.stdout or "") + (result.stderr or "")),
                            depends_on=[path])
        if name == "vagrant-libvirt":
            vagrant = locate(s.tools.vagrant)
            if vagrant is None:
                return Finding(name, MISSING, "install Vagrant first")
            home = Path(os.environ.get("VAGRANT_HOME", "~/.vagrant.d")).expanduser()
            return self.ask(name, f"{q(vagrant)} plugin list",
                            lambda result: assess_vagrant_libvirt(result.stdout or ""),
                            depends_on=[vagrant, home / "plugins.json", "/usr/share/vagrant-plugins/plugins.d",
                                        "/usr/share/rubygems-integration/all/specifications"],
                            environment=("VAGRANT_HOME",))
        if name == "libvirt daemon":  # a daemon's state is asked anew each run
            virsh = locate(s.tools.virsh)
            if virsh is None:
                return Finding(name, MISSING, apt_fix("libvirt-daemon-system libvirt-clients"))
            result = self.runner.probe(f"{q(virsh)} -c {LIBVIRT_URI} uri")
            return assess_libvirtd(bool(getattr(result, "ok", False)), result.stdout or "")
        if name in COMMANDS:
            executable, package, why = COMMANDS[name]
            return assess_command(name, locate(executable), package, why)
        if name == "archive keyring":
            return assess_keyring(s)
        if name == "libguestfs appliance":
            return self._guestfs(s)
        if name == "KVM":
            return self._kvm(s)
        if name == "root":
            ok = os.geteuid() == 0
            return Finding("root", OK if ok else NOT_USABLE, "" if ok else "build.mode native needs root (network "
                           "namespace, systemd-nspawn, mmdebstrap into a folder): run it with sudo")
        if name == "vboxdrv":
            ok = os.path.exists(VBOX_DEVICE)
            return Finding("VirtualBox kernel driver", OK if ok else NOT_USABLE, "" if ok else
                           "load it: sudo /sbin/vboxconfig (VirtualBox's driver; absent in containers)",
                           VBOX_DEVICE if ok else None)
        raise AssertionError(f"no probe for {name}")

    def _guestfs(self, s: Any) -> Finding:
        """libguestfs builds its appliance from the host's kernel (supermin): it must find one it can read, and the
        appliance must start."""
        name = "libguestfs appliance"
        readable = readable_kernels()
        if not readable:
            return Finding(name, MISSING, "supermin finds no readable kernel in /boot: sudo apt-get install "
                           "linux-image-amd64 (Ubuntu: linux-image-generic)" + (
                               "; or make /boot/vmlinuz-* readable" if kernels() else ""))
        test_tool = locate("libguestfs-test-tool")
        if test_tool is None:
            return Finding(name, MISSING, apt_fix("libguestfs-tools"))
        return self.ask(name, guestfs_probe_command(test_tool, s.vm.accelerator),
                        lambda result: judge_guestfs(result, readable[-1]),
                        depends_on=[locate("supermin"), test_tool, *kernels()], environment=GUESTFS_ENVIRONMENT)

    def _kvm(self, s: Any) -> Finding:
        qemu = locate(s.tools.qemu_system)
        if not os.path.exists(KVM_DEVICE):
            return assess_kvm("absent", f"{KVM_DEVICE} does not exist (no KVM on this host)")
        if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
            return assess_kvm("denied", f"{KVM_DEVICE} is not readable and writable for you (add yourself to the "
                              "kvm group)")
        if qemu is None:
            return assess_kvm("unknown", "QEMU is not installed, so KVM could not be tried")
        readable = readable_kernels()
        if not readable:
            return Finding("KVM", MISSING, "no readable kernel in /boot to try KVM with: sudo apt-get install "
                           "linux-image-amd64 (libguestfs needs it too)")
        return self.ask("KVM", kvm_probe_command(qemu, readable[-1]), judge_kvm,
                        depends_on=[qemu, KVM_DEVICE, "/proc/version", *kernels()])


def require(probes: Probes, s: Any, names: Iterable[str], dry: bool) -> dict[str, str]:
    """Judge the needs; anything not ok stops the run with one line (under --dry: a warning, once per run).
    Returns {label: version} of the tools found (for the manifest)."""
    findings = [probes.find(name, s) for name in names]
    problems = [f"{f.name} {f.status}: {f.fix}" for f in findings if not f.ok]
    if problems:
        message = "; ".join(problems) + " (hubvm check lists everything)"
        if not dry:
            raise UserError(message)
        if message not in _DRY_WARNINGS:
            _DRY_WARNINGS.add(message)
            print(f"[dry run] the real run would stop here: {message}", flush=True)
    return {f.name: f.version for f in findings if f.version is not None}


_DRY_WARNINGS: set[str] = set()


def probes_of(c: Any) -> Probes:
    """The probes of this run: one memo per run (kept on its config), backed by the user's cache."""
    config = c.config
    try:
        existing = config.hubvm_probes
    except (AttributeError, KeyError):
        existing = None
    if existing is not None:
        return existing
    found = Probes(Shell(c), probes_cache(), write=not is_dry(c))
    with contextlib.suppress(AttributeError, TypeError):
        config.hubvm_probes = found  # a real attribute of HubConfig; a plain Config keeps it as a value
    return found


def require_task(c: Any, s: Any, task: str) -> dict[str, str]:
    """What `task` needs on this host (hubvm.host.tools.needs), judged once per run; a gap stops the step."""
    return require(probes_of(c), s, needs(task, s), is_dry(c))
