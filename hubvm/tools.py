"""What this host must have for each task, and how to find out: tools, daemons, plugins, KVM, libguestfs.

`needs(task, s)` is the one place that says what a task needs for a configuration; `probe(needs)` judges each
need once per run (a `Probes` memo), and remembers the slow answers across runs in ~/.cache/hubvm/probes.json,
keyed by the identity of what was probed (the binary's path, size and modification time; the plugin files; the
kernel), so that a version is read again only when the tool changed. `require(...)` turns the findings into one
UserError line (under --dry: a warning). Each finding has a status a program can test:

  ok | missing (install it: the apt-get line) | too old | not running (a service that does not answer)
  | not usable here (present, but this host cannot use it: KVM that hangs, no VirtualBox kernel driver)
  | not packaged (this distribution has no package: the download page)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubvm.errors import UserError

OK, MISSING, TOO_OLD, NOT_RUNNING, NOT_USABLE, NOT_PACKAGED = (
    "ok", "missing", "too old", "not running", "not usable here", "not packaged")


@dataclass(frozen=True)
class Tool:
    key: str             # attribute of settings.tools
    label: str
    version_args: str
    pattern: str         # regex with one group: the version
    minimum: str
    debian: str          # Debian/Ubuntu packages that provide it ("" if none)
    download: str        # the official download page


TOOLS: dict[str, Tool] = {t.key: t for t in (
    Tool("packer", "Packer", "version", r"Packer v?(\d+\.\d+\.\d+)", "1.6.6", "packer",
         "https://developer.hashicorp.com/packer/install"),
    Tool("vagrant", "Vagrant", "--version", r"Vagrant (\d+\.\d+\.\d+)", "2.3.4", "vagrant",
         "https://developer.hashicorp.com/vagrant/install"),
    Tool("ansible_playbook", "Ansible", "--version", r"ansible-playbook \[core (\d+\.\d+\.\d+)", "2.14.0",
         "ansible-core", "https://docs.ansible.com/ansible/latest/installation_guide/"),
    Tool("vboxmanage", "VirtualBox", "--version", r"^(\d+\.\d+\.\d+)", "6.1.28", "",
         "https://www.virtualbox.org/wiki/Linux_Downloads"),
    Tool("virsh", "libvirt", "--version", r"^(\d+\.\d+\.\d+)", "7.0.0", "libvirt-daemon-system libvirt-clients",
         "https://libvirt.org/downloads.html"),
    Tool("qemu_system", "QEMU", "--version", r"QEMU emulator version (\d+\.\d+\.\d+)", "5.2.0", "qemu-system-x86",
         "https://www.qemu.org/download/"),
    Tool("qemu_img", "qemu-img", "--version", r"qemu-img version (\d+\.\d+\.\d+)", "5.2.0", "qemu-utils",
         "https://www.qemu.org/download/"),
    Tool("mmdebstrap", "mmdebstrap", "--version", r"mmdebstrap (\d+\.\d+\.\d+)", "1.0.0", "mmdebstrap",
         "https://gitlab.mister-muffin.de/josch/mmdebstrap"),
)}

VAGRANT_LIBVIRT_MINIMUM = "0.11.0"
# Packer 1.7 brought `packer init` and required_plugins; from 1.10 on the builders are plugins only.
PACKER_INIT_SINCE = "1.7.0"
PACKER_PLUGINS = {
    "qemu": ("github.com/hashicorp/qemu", ">= 1.1.0"),
    "virtualbox": ("github.com/hashicorp/virtualbox", ">= 1.1.0"),
    "vagrant": ("github.com/hashicorp/vagrant", ">= 1.1.0"),
}
LIBVIRT_URI = "qemu:///system"
# vagrant-libvirt's `vagrant package` runs these by name
GUESTFS_COMMANDS = ("virt-sysprep", "virt-sparsify")
KVM_PROBE_SECONDS = 20


# ---------------------------------------------------------------------------------------------------------------
# Findings


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
        return Finding("KVM", OK, "", "/dev/kvm")
    return Finding("KVM", NOT_USABLE, f"{detail}; set vm.accelerator: tcg (QEMU software emulation, about 6x "
                   "slower), and with image.source mirror build.mode: native (provisioned at native speed in a "
                   "container)", "/dev/kvm" if os.path.exists("/dev/kvm") else None)


# ---------------------------------------------------------------------------------------------------------------
# What each task needs (the one place that says it)


def needs(task: str, s: Any) -> list[str]:
    """The names of the needs of `task` for the settings `s`, in the order a build meets them."""
    libvirt = s.vm.provider == "libvirt"
    provider = (["virsh", "libvirt daemon", "qemu_system", "dnsmasq", "vagrant-libvirt"]
                + (["KVM"] if s.vm.accelerator == "kvm" else []) + (["rsync"] if s.vm.data else [])
                if libvirt else ["vboxmanage", "vboxdrv"])
    mirror = ["mmdebstrap", "mke2fs", "sfdisk", "archive keyring"] if s.image.source == "mirror" else []
    builder = ["qemu_system", "qemu_img"] + (["KVM"] if s.vm.accelerator == "kvm" else []) if libvirt \
        else ["vboxmanage", "vboxdrv"]
    if s.build.mode == "native":
        native = ["root", *mirror, "systemd-nspawn", "ip", "nft", "ssh-keygen", "ansible_playbook", "qemu_system",
                  "qemu_img", *(["KVM"] if s.vm.accelerator == "kvm" else [])]
        table = {"pack": [], "up": [], "provision": ["ansible_playbook"], "provision-vagrant": ["vagrant"],
                 "export": native, "all": native, "check": native, "publish": []}
        return list(dict.fromkeys(table.get(task, [])))
    table = {
        "pack": [*mirror, "packer", *builder],
        "up": ["vagrant", "ansible_playbook", *provider],
        "provision": ["ansible_playbook"],
        "provision-vagrant": ["vagrant", "ansible_playbook"],
        "export": ["vagrant", "ansible_playbook", *provider]
        + ([*GUESTFS_COMMANDS, "libguestfs appliance"] if libvirt else [])
        + (["qemu_img"] if "qcow2" in s.export.formats else []),
    }
    table["publish"] = ["qemu_img"] if s.publish.disk_format == "raw" else []
    table["all"] = table["pack"] + table["up"] + table["export"]
    table["check"] = table["all"]
    return list(dict.fromkeys(table.get(task, [])))


def needs_of_run(task_names: Iterable[str], s: Any) -> list[str]:
    """Everything a run of these tasks needs (pre-tasks included), each once."""
    # check only reports; all checks the whole run itself, once it knows there is something to build
    names = [name for name in task_names if name not in ("check", "all")]
    return list(dict.fromkeys(need for task in names for need in needs(task, s)))


# ---------------------------------------------------------------------------------------------------------------
# Probing


def locate(command: str, search_path: str | None = None) -> str | None:
    """A configured tool: a path, or a name on PATH or beside this Python (a virtualenv's bin/)."""
    if os.sep in command:
        path = Path(command).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    path = search_path if search_path is not None else os.environ.get("PATH", "")
    extra = os.pathsep.join(["/usr/sbin", "/sbin"])  # dnsmasq, mke2fs, sfdisk live here; not on every user's PATH
    return shutil.which(command, path=os.pathsep.join([path, str(Path(sys.executable).parent), extra]))


def command(s: Any, key: str) -> str:
    """The command to type for a configured tool: its path when found, else the configured name."""
    return locate(getattr(s.tools, key)) or getattr(s.tools, key)


def identity(*paths: str | os.PathLike[str] | None) -> str:
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
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


Runner = Callable[[str], Any]  # runs a read-only command, returns an object with .ok, .stdout, .stderr


def probes_cache() -> Path:
    """Where the slow answers are kept across runs: a fact about this machine, so in the user's cache, not in a
    project's builds/ (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hubvm" / "probes.json"


class Probes:
    """The answers of one run (each probe runs at most once), backed by a cache file across runs."""

    def __init__(self, run: Runner, cache_file: Path | None = None, write: bool = True) -> None:
        self.run = run
        self.cache_file = cache_file
        self.write = write
        self.memo: dict[str, Finding] = {}
        self.stored: dict[str, dict[str, Any]] = {}
        if cache_file is not None:
            try:
                self.stored = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                self.stored = {}

    def cached(self, key: str, ident: str, compute: Callable[[], Finding]) -> Finding:
        entry = self.stored.get(key)
        if entry and entry.get("identity") == ident:
            return Finding(**entry["finding"])
        finding = compute()
        if finding.status not in (NOT_RUNNING,):  # a daemon's state is asked anew each run
            self.stored[key] = {"identity": ident, "finding": finding.as_dict()}
            self._save()
        return finding

    def _save(self) -> None:
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

            def version() -> Finding:
                result = self.run(f"{_q(path)} {tool.version_args}")
                return assess(tool, path, (result.stdout or "") + (result.stderr or ""))

            return self.cached(f"tool:{name}", identity(path), version)
        if name == "vagrant-libvirt":
            vagrant = locate(s.tools.vagrant)
            if vagrant is None:
                return Finding(name, MISSING, "install Vagrant first")
            home = Path(os.environ.get("VAGRANT_HOME", "~/.vagrant.d")).expanduser()
            ident = identity(vagrant, home / "plugins.json", "/usr/share/vagrant-plugins/plugins.d",
                             "/usr/share/rubygems-integration/all/specifications")
            return self.cached("vagrant-libvirt", ident,
                               lambda: assess_vagrant_libvirt(self.run(f"{_q(vagrant)} plugin list").stdout or ""))
        if name == "libvirt daemon":
            virsh = locate(s.tools.virsh)
            if virsh is None:
                return Finding(name, MISSING, apt_fix("libvirt-daemon-system libvirt-clients"))
            result = self.run(f"{_q(virsh)} -c {LIBVIRT_URI} uri")
            return assess_libvirtd(bool(getattr(result, "ok", False)), result.stdout or "")
        if name in COMMANDS:
            executable, package, why = COMMANDS[name]
            return assess_command(name, locate(executable), package, why)
        if name == "archive keyring":
            return assess_keyring(s)
        if name == "libguestfs appliance":
            return self.cached("libguestfs appliance", identity(locate("supermin"), *_kernels()),
                               lambda: assess_guestfs_appliance(self.run, s))
        if name == "KVM":
            qemu = locate(s.tools.qemu_system)
            return self.cached("KVM", identity(qemu, "/dev/kvm", "/proc/version", *_kernels()),
                               lambda: probe_kvm(self.run, qemu))
        if name == "root":
            ok = os.geteuid() == 0
            return Finding("root", OK if ok else NOT_USABLE, "" if ok else "build.mode native needs root (network "
                           "namespace, systemd-nspawn, mmdebstrap into a folder): run it with sudo")
        if name == "vboxdrv":
            ok = os.path.exists("/dev/vboxdrv")
            return Finding("VirtualBox kernel driver", OK if ok else NOT_USABLE, "" if ok else
                           "load it: sudo /sbin/vboxconfig (VirtualBox's driver; absent in containers)",
                           "/dev/vboxdrv" if ok else None)
        raise AssertionError(f"no probe for {name}")


def _q(path: str) -> str:
    import shlex

    return shlex.quote(path)


# name -> (executable, Debian package, why it is needed)
COMMANDS = {
    "dnsmasq": ("dnsmasq", "dnsmasq-base", "libvirt's NAT networks, vagrant-libvirt's management network"),
    "rsync": ("rsync", "rsync", "vagrant-libvirt copies vm.data into the VM with rsync"),
    "mke2fs": ("mke2fs", "e2fsprogs", "the mirror image's file system"),
    "sfdisk": ("sfdisk", "fdisk", "the mirror image's partition table"),
    "systemd-nspawn": ("systemd-nspawn", "systemd-container", "the native build's container"),
    "ip": ("ip", "iproute2", "the native build's network namespace"),
    "nft": ("nft", "nftables", "the native build's way out (NAT)"),
    "ssh-keygen": ("ssh-keygen", "openssh-client", "the native build's login key"),
    **{name: (name, "libguestfs-tools", "vagrant-libvirt's package runs it") for name in GUESTFS_COMMANDS},
}

KEYRINGS = {"debian": ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
            "ubuntu": ("/usr/share/keyrings/ubuntu-archive-keyring.gpg", "ubuntu-keyring")}


def assess_keyring(s: Any) -> Finding:
    """mmdebstrap checks the mirror's signatures with the distribution's keyring (or the one the OS data names)."""
    configured = s.os_data.get("mirror", {}).get("keyring") or ""
    path, package = (configured, "") if configured else KEYRINGS[s.os_data["family"]]
    ok = os.path.isfile(path)
    return Finding(f"{s.os_data['family']} archive keyring", OK if ok else MISSING,
                   "" if ok else apt_fix(package, "mmdebstrap verifies the mirror with it") if package
                   else f"give a keyring file at {path}", path if ok else None)


def _kernels() -> list[str]:
    return sorted(str(p) for p in Path("/boot").glob("vmlinuz-*"))


def assess_guestfs_appliance(run: Runner, s: Any) -> Finding:
    """libguestfs builds its appliance from the host's kernel (supermin): it must find one it can read, and the
    appliance must start (libguestfs-test-tool, software emulation where KVM is not used)."""
    name = "libguestfs appliance"
    readable = [k for k in _kernels() if os.access(k, os.R_OK)]
    if not readable:
        return Finding(name, MISSING, "supermin finds no readable kernel in /boot: sudo apt-get install "
                       "linux-image-amd64 (Ubuntu: linux-image-generic)" + (
                           "; or make /boot/vmlinuz-* readable" if _kernels() else ""))
    test_tool = locate("libguestfs-test-tool")
    if test_tool is None:
        return Finding(name, MISSING, apt_fix("libguestfs-tools"))
    env = "LIBGUESTFS_BACKEND_SETTINGS=force_tcg " if s.vm.accelerator == "tcg" else ""
    result = run(f"{env}timeout 600 {_q(test_tool)}")
    if getattr(result, "ok", False):
        return Finding(name, OK, "", readable[-1])
    output = (result.stdout or "") + (result.stderr or "")
    lines = [line for line in output.splitlines() if "error" in line.lower()] or output.splitlines()[-1:] or ["?"]
    return Finding(name, NOT_USABLE, f"libguestfs-test-tool failed ({lines[-1].strip()[:120]}); run it to see "
                   "why", readable[-1])


def kvm_probe_command(qemu: str, kernel: str, seconds: int = KVM_PROBE_SECONDS) -> str:
    """Boot the host's kernel with KVM and no root file system: it panics at once where KVM works (about 1 s),
    and prints nothing where KVM hangs (as on some nested hosts), which the timeout turns into exit status 124."""
    return (f"timeout -k 5 {seconds} {_q(qemu)} -accel kvm -m 256 -display none -nodefaults -no-reboot "
            f"-serial stdio -kernel {_q(kernel)} -append 'console=ttyS0 panic=-1 loglevel=4'")


def probe_kvm(run: Runner, qemu: str | None) -> Finding:
    if not os.path.exists("/dev/kvm"):
        return assess_kvm("absent", "/dev/kvm does not exist (no KVM on this host)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return assess_kvm("denied", "/dev/kvm is not readable and writable for you (add yourself to the kvm "
                          "group)")
    if qemu is None:
        return assess_kvm("unknown", "QEMU is not installed, so KVM could not be tried")
    kernels = [k for k in _kernels() if os.access(k, os.R_OK)]
    if not kernels:
        return Finding("KVM", MISSING, "no readable kernel in /boot to try KVM with: sudo apt-get install "
                       "linux-image-amd64 (libguestfs needs it too)")
    result = run(kvm_probe_command(qemu, kernels[-1]))
    exited = getattr(result, "exited", None)
    if "Kernel panic" in (result.stdout or ""):
        return assess_kvm(OK, "")
    if exited in (124, 137):
        return assess_kvm("hangs", f"a guest started with KVM printed nothing within {KVM_PROBE_SECONDS} s "
                          "(KVM hangs on this host)")
    detail = ((result.stderr or "").strip().splitlines() or [f"exit status {exited}"])[-1][:120]
    return assess_kvm("fails", f"QEMU could not start a guest with KVM ({detail})")


def probe(run: Runner, s: Any, names: Iterable[str], cache_file: Path | None = None,
          write: bool = True) -> list[Finding]:
    probes = Probes(run, cache_file, write)
    return [probes.find(name, s) for name in names]


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


# ---------------------------------------------------------------------------------------------------------------
# How the Packer command line adapts to the Packer version


def packer_uses_init(version: str) -> bool:
    """Packer >= 1.7 reads required_plugins and installs them with `packer init` (needed from 1.10 on)."""
    return not older(version, PACKER_INIT_SINCE)


def packer_commands(packer: str, version: str, only: str, var_file: str) -> list[str]:
    """The commands `pack` runs in builds/packer/, for this Packer version.

    Packer 1.6 reads the single template file (it rejects the required_plugins block of plugins.pkr.hcl);
    newer Packer reads the whole folder, so plugins.pkr.hcl declares the builders it must install first.
    """
    target = "." if packer_uses_init(version) else "box.pkr.hcl"
    commands = [f"{_q(packer)} init ."] if packer_uses_init(version) else []
    commands.append(f"{_q(packer)} build -force -only={only} -var-file={var_file} {target}")
    return commands
