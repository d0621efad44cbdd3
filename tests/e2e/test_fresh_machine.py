"""A fresh Debian 12 machine builds on the first try: setup.sh, then `hubvm check`, on a bare root filesystem.

A Debian 12 root filesystem as bare as a machine can be and still boot and take a login (mmdebstrap minbase plus
FRESH_PACKAGES, cached under /var/cache/hubvm-tests/), booted with systemd-nspawn in a network namespace of this
test's own. A clean `git archive HEAD` of this checkout goes to a new user's home, and, as that user would (a login
shell, sudo for root):

1. `./setup.sh`, then `.venv/bin/hubvm [-f PROFILE] check --json` for each shipped profile: every tool must be
   found; the only findings not "ok" may be those a container cannot have (a running libvirt daemon, usable KVM,
   VirtualBox that Debian does not package), told apart by their status (and named: nothing else may be not ok,
   such as the libguestfs appliance, which check starts from the kernel setup.sh installed).
2. `./setup.sh --tests`, then the quick test group (`.venv/bin/pytest -m "not e2e"`), which must pass.

The container shares the host's apt archive cache (/var/cache/apt/archives, bind-mounted) so that packages are
downloaded once. Each stage prints its duration. The guest is stopped by its nspawn PID and the namespace, its nft
table, the mounts and the copied root are removed, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.hosts import (
    CACHE_DIR,
    BootedMachine,
    Namespace,
    RootfsRecipe,
    booted_machine,
    cached_rootfs,
    remove_stale_namespaces,
)

pytestmark = pytest.mark.e2e

# minbase (the Essential packages and apt) plus what booting and a new user's first steps need:
FRESH_PACKAGES = (
    "systemd",          # init, and systemctl
    "systemd-sysv",     # /sbin/init -> systemd, so that the machine boots
    "dbus",             # the system bus: logind, hostnamectl, timedatectl, and libvirt's daemon
    "ca-certificates",  # HTTPS (PyPI) checks certificates against the system's trust store
    "sudo",             # how the new user becomes root: setup.sh runs apt through it
)
# The apt sources of a Debian 12 installed from its installer: the release, its updates and security updates
FRESH_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
FRESH = RootfsRecipe(variant="minbase", packages=FRESH_PACKAGES, sources=FRESH_SOURCES, name="fresh")

USER = "newuser"
HOSTNAME = "fresh"
CHECKOUT = f"/home/{USER}/hubvm"
PROFILES = ("", "config/desktop.yaml", "config/cloud.yaml", "config/e2e-libvirt.yaml")  # "" = invoke.yaml alone
# `hubvm check --json` (its contract): each finding has a name and a status. What a container cannot have, by
# name, with the only status it may then have; anything else must be "ok".
CONTAINER_CANNOT_HAVE = {
    "libvirt daemon": "not running",            # a service that does not answer (systemd in the guest may start it)
    "KVM": "not usable here",                   # nspawn gives the guest no /dev/kvm
    "VirtualBox kernel driver": "not usable here",
    "VirtualBox": "not packaged",               # not in Debian's archive: fix names the download page
}
SETUP_MUST_INSTALL = {"missing", "too old"}     # statuses setup.sh must leave none of
STATUSES = {"ok", "not running", "not usable here", "not packaged"} | SETUP_MUST_INSTALL
# The proxy's CA certificates: this site intercepts TLS (see /work/shared/ENVIRONMENT.md)
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
APT_ARCHIVES = "/var/cache/apt/archives"


def prepare(root: Path) -> None:
    """What the fresh machine has before its user logs in: a name, the user (in group sudo), this site's TLS setup,
    and the project in the user's home."""
    (root / "etc" / "hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
    subprocess.run(["useradd", f"--root={root}", "--create-home", "--shell=/bin/bash", "--groups=sudo", USER],
                   check=True)
    # A new user would type a password for sudo; the test cannot, so it may without one.
    sudoers = root / "etc" / "sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    # This site's requirement, not setup.sh's: HTTPS goes through a TLS-intercepting proxy, so its CA joins the
    # system's trust store and pip (which has its own bundle) is told to use that store, as any machine behind
    # such a proxy must be set up.
    for certificate in sorted(HOST_CA_DIR.glob("*.crt")):
        shutil.copy(certificate, root / "usr" / "local" / "share" / "ca-certificates" / certificate.name)
    subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    (root / "etc" / "profile.d" / "site-tls-proxy.sh").write_text(
        f"# this site's TLS-intercepting proxy: Python clients trust the system's store\n"
        f"export PIP_CERT={bundle} REQUESTS_CA_BUNDLE={bundle}\n")
    # The project as a user gets it, clean: what is committed, nothing of this checkout's builds/ or .venv/
    home = root / "home" / USER
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "--prefix=hubvm/", "HEAD"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(home)], input=archive, check=True)
    subprocess.run(["chroot", str(root), "chown", "-R", f"{USER}:{USER}", CHECKOUT], check=True)


def as_user(machine: BootedMachine, command: str, timeout: float, stream: bool = True,
            check: bool = True) -> subprocess.CompletedProcess:
    return machine.run(f"cd {CHECKOUT} && {command}", user=USER, timeout=timeout, stream=stream, check=check)


def provider(profile: str) -> str:
    """vm.provider of a profile (the profile's own, else invoke.yaml's)."""
    defaults = yaml.safe_load((REPO / "invoke.yaml").read_text())["vm"]["provider"]
    if not profile:
        return defaults
    return (yaml.safe_load((REPO / profile).read_text()).get("vm") or {}).get("provider", defaults)


def findings_table(findings: list[dict]) -> str:
    return "\n".join(f"    {f['status']:<16} {f['name']:<24} {f.get('version') or '-':<10} "
                     f"{f.get('path') or '-':<36} {f.get('fix') or ''}" for f in findings)


def assert_check(profile: str, result: subprocess.CompletedProcess) -> None:
    """`hubvm check --json` found every tool; what is not ok is only what a container cannot have."""
    shown = f"hubvm {'-f ' + profile + ' ' if profile else ''}check --json"
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{shown} printed no JSON object (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    findings = report["findings"]
    print(f"\n{shown}: exit {result.returncode}, ok {report['ok']}\n{findings_table(findings)}")
    assert findings, f"{shown} reported nothing"
    unknown = sorted({f["status"] for f in findings} - STATUSES)
    assert not unknown, f"{shown}: statuses outside the contract: {unknown}"
    left = [f"{f['name']} ({f['status']}: {f['fix']})" for f in findings if f["status"] in SETUP_MUST_INSTALL]
    assert not left, f"after ./setup.sh, {shown} still lacks: {'; '.join(left)}"
    not_ok = [f for f in findings if f["status"] != "ok"]
    unexpected = [f"{f['name']} ({f['status']})" for f in not_ok if CONTAINER_CANNOT_HAVE.get(f["name"]) != f["status"]]
    assert not unexpected, f"{shown}: not ok, though a container can have it: {unexpected}"
    assert all(f["path"] for f in findings if f["status"] == "ok"), f"{shown}: an ok finding names no path"
    assert all(f["fix"] for f in not_ok), f"{shown}: a finding that is not ok says no fix"
    assert all("https://" in f["fix"] for f in not_ok if f["status"] == "not packaged")
    assert report["ok"] is (not not_ok)
    assert result.returncode == (1 if not_ok else 0), f"{shown} exited {result.returncode}"
    if provider(profile) == "virtualbox":  # Debian has no VirtualBox: check must say so, not skip it
        assert any(f["status"] == "not packaged" for f in findings), f"{shown} does not say VirtualBox is missing"


@pytest.fixture(scope="module")
def fresh_rootfs(nspawn_requirements, stages) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout (the test copies `git archive HEAD`)")
    remove_stale_namespaces()
    with stages.time("fresh machine: root filesystem (mmdebstrap minbase, cached)"):
        return cached_rootfs(recipe=FRESH)


def test_fresh_rootfs_is_bare(fresh_rootfs: Path) -> None:
    """What the test starts from has none of what setup.sh installs (else the test would prove nothing)."""
    status = (fresh_rootfs / "var" / "lib" / "dpkg" / "status").read_text()
    installed = {block.split("\n", 1)[0].removeprefix("Package: ") for block in status.split("\n\n")
                 if "Status: install ok installed" in block}
    for package in ("python3", "python3-venv", "vagrant", "libvirt-daemon-system", "qemu-system-x86", "dnsmasq-base",
                    "libguestfs-tools", "mmdebstrap", "packer", "openssh-client", "rsync", "fdisk"):
        assert package not in installed
    assert not list((fresh_rootfs / "boot").glob("vmlinuz-*")), "the bare machine has a kernel in /boot"
    assert CACHE_DIR in fresh_rootfs.parents


def test_a_fresh_machine_sets_up_checks_and_tests(fresh_rootfs: Path, stages, tmp_path: Path) -> None:
    options = [f"--bind={APT_ARCHIVES}"]  # the host's downloaded packages: the container reuses and adds to them
    with contextlib.ExitStack() as stack:  # leaving it stops the guest, deletes its copy, then the namespace
        with stages.time("fresh machine: copy the root filesystem and boot it"):
            ns = stack.enter_context(Namespace(label="fresh"))
            machine = stack.enter_context(booted_machine(ns, fresh_rootfs, tmp_path, prepare, options))
        with stages.time("fresh machine: ./setup.sh"):
            as_user(machine, "./setup.sh", timeout=600)
        for profile in PROFILES:
            shown = f"hubvm {'-f ' + profile + ' ' if profile else ''}check --json"
            with stages.time(f"fresh machine: {shown}"):
                command = shlex.join([".venv/bin/hubvm", *(["-f", profile] if profile else []), "check", "--json"])
                result = as_user(machine, command, timeout=300, stream=False, check=False)
            assert_check(profile, result)
        # What a person sees there (for the record; the JSON above is what is asserted)
        shown = as_user(machine, ".venv/bin/hubvm -f config/cloud.yaml check", timeout=300, stream=False, check=False)
        print(f"\nhubvm -f config/cloud.yaml check (exit {shown.returncode}):\n{shown.stdout}{shown.stderr}")
        with stages.time("fresh machine: ./setup.sh --tests"):
            as_user(machine, "./setup.sh --tests", timeout=600)
        with stages.time("fresh machine: the quick tests (pytest -m 'not e2e')"):
            as_user(machine, ".venv/bin/pytest -m 'not e2e' -q -p no:cacheprovider", timeout=900)
