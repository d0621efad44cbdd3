#!/usr/bin/env python3
"""The full build test (README, "Full build test"): the whole pipeline for real, then the exported image on its own.

    sudo .venv/bin/python tests/e2e/full_build.py            # from the project folder of a clean checkout
    sudo .venv/bin/python tests/e2e/full_build.py --mode native    # the same with build.mode native

1. makes an SSH key pair for the appliance's administrator (builds/e2e/id_ed25519);
2. starts libvirtd in a network namespace of its own with a masqueraded way out (tests/e2e/libvirt_host.py),
   so every VM network stays there and guests reach only the package registries through the NAT;
3. runs `hubvm -f builds/e2e/e2e.yaml all` in that namespace (mirror base image, packer, vagrant up with
   Ansible, export to qcow2; with --mode native on the host, as a user runs it, since the native build needs no
   libvirtd and makes its own namespace: the tree provisioned in a container, the disk made from it and
   verified on one boot, see docs/native-build.md), then again, when it must skip every step;
   builds/e2e/e2e.yaml is config/e2e-libvirt.yaml plus this machine's part: the key as export.ssh_public_key,
   the CA certificates this host trusts beyond Debian's (a TLS-intercepting proxy's,
   /usr/local/share/ca-certificates/*.crt) as guest.ca_certificates, and build.mode;
4. boots two copies of the exported qcow2 as fresh VMs (copy-on-write overlays) and, on each, runs
   `hubvm verify --host hubadmin@ADDRESS --identity KEY` (on the second copy as soon as SSH answers: verify
   waits for the hub's first start); when the profile's export.formats include ova, first reads the OVA as
   VirtualBox's importer reads it (tests/ovf_reader.py), compares its VMDK with the qcow2 (`qemu-img compare`),
   and boots a third copy from that VMDK (an overlay with `-F vmdk`) on VirtualBox's hardware as QEMU has it
   (libvirt's sata bus: the disk on an ich9-ahci controller, QEMU's `ahci`, as ide-hd; an e1000 NIC), verified
   the same way, the guest's own view of its disk controller and NIC driver checked (ahci, e1000); then checks
   clone safety: the copies' SSH host keys, machine-id, hub cookie secret, admin passwords and self-signed
   certificate differ; the build login and password logins are gone; neither Vagrant's insecure key nor the
   box's vagrant_private_key (if the box has one) opens a login; and SHA256SUMS of builds/vm/ still holds after
   the boots;
5. writes a table of step durations and artifact sizes to builds/logs/full-build-<mode>-<time>.md and prints it;
6. tears everything down (VMs, daemons by PID, nft table, veth, namespace), after a failure too.

Too slow for CI (about an hour here in QEMU software emulation; native: about 10 minutes); needs root, libvirt's
daemons, QEMU, packer, vagrant with vagrant-libvirt, mmdebstrap, iproute2, nft, systemd-nspawn (what setup.sh
installs). Exit status 0 only when every step passed.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests import ovf_reader
from tests.e2e.hosts import checksum_mismatches, remove_stale_namespaces
from tests.e2e.libvirt_host import PREFIX as LIBVIRT_PREFIX
from tests.e2e.libvirt_host import LibvirtNamespace

PROJECT = Path(__file__).resolve().parents[2]
PROFILE = "config/e2e-libvirt.yaml"
HUBVM = str(Path(sys.executable).parent / "hubvm")
VIRSH = ["virsh", "-c", "qemu:///system"]
NETWORK = "hvb-e2e"  # libvirt network of the fresh VMs, inside the namespace
NETWORK_XML = f"""<network><name>{NETWORK}</name><forward mode='nat'/>
<bridge name='hvbe2e0' stp='on' delay='0'/>
<ip address='192.168.150.1' netmask='255.255.255.0'><dhcp><range start='192.168.150.10' end='192.168.150.99'/>
</dhcp></ip></network>"""
ADMIN = "hubadmin"  # export.ssh_user of the profile
BUILD_USER = "vagrant"
VAGRANT_GEMS = Path("/usr/share/rubygems-integration/all/gems")  # Debian's vagrant package
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
COOKIE_SECRET = "/var/lib/jupyterhub/jupyterhub_cookie_secret"  # hub.flavour pypi
ADMIN_PASSWORDS = "/root/hub-admin-passwords"            # made at each copy's first boot (hubvm-hub-secrets)
SELF_SIGNED = "/etc/hubvm/tls/self-signed.crt"           # hub_https self-signed, likewise
# The hub's API through its HTTP port; with hub.https on, that redirects to HTTPS with the copy's own certificate
# (self-signed, made at its first boot), which the probe does not check: it times the hub's start, verify checks
# the certificate.
HUB_PROBE = ("python3 -c \"import ssl, urllib.request; urllib.request.urlopen('http://127.0.0.1:80/hub/api', "
             "timeout=5, context=ssl._create_unverified_context())\"")
BOOT_WAIT = 900  # seconds for a fresh copy to answer SSH (TCG, first boot makes keys)
OVA_DIR = PROJECT / "builds" / "e2e" / "ova"  # the exported OVA's members, read and extracted (export.formats ova)
# The guest's own view of its hardware: the driver of the PCI device its disk hangs off (ahci, virtio-pci) and of
# the NIC its default route leaves by (e1000, virtio_net), and that NIC's name
HARDWARE_FACTS = (
    "disk=$(ls /sys/block | grep -E '^(sd|vd)' | head -n1); "
    "pci=$(readlink -f /sys/block/$disk | sed -E 's#^(/sys/devices/pci[^/]+/[^/]+)/.*#\\1#'); "
    "echo disk=$disk; echo disk_driver=$(basename \"$(readlink -f $pci/driver)\"); "
    "nic=$(ip -o route show default | awk '{print $5; exit}'); echo nic=$nic; "
    "echo nic_driver=$(basename \"$(readlink -f /sys/class/net/$nic/device/driver)\")")


@dataclass
class Record:
    """What the table reports: each step's status and duration, each artifact's size."""

    steps: list[tuple[str, str, float, str]] = field(default_factory=list)
    sizes: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.steps.append((name, status, seconds, detail))
        print(f"<== {name}: {status} in {minutes(seconds)} {detail}".rstrip(), flush=True)

    def table(self) -> str:
        lines = [f"# Full build test, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
                 f"Machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, "
                 f"{memory_gib()} GiB; QEMU in software emulation (TCG)", "",
                 "| step | status | duration | detail |", "| --- | --- | --- | --- |"]
        lines += [f"| {n} | {s} | {minutes(t)} | {d} |" for n, s, t, d in self.steps]
        total = sum(t for _, _, t, _ in self.steps)
        lines += [f"| total | | {minutes(total)} | |", "", "| artifact | size |", "| --- | --- |"]
        lines += [f"| {name} | {human(n)} |" for name, n in self.sizes]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


def human(n_bytes: int) -> str:
    return f"{n_bytes / 1024**2:.0f} MiB" if n_bytes < 1024**3 else f"{n_bytes / 1024**3:.2f} GiB"


def memory_gib() -> int:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return round(pages / 1024**3)


class StepFailed(Exception):
    pass


def verify_detail(output: str) -> str:
    """The checks line of verify's output, and how long it waited for a starting machine, for the record."""
    found = [line.strip() for line in output.splitlines()
             if " checks passed on " in line or "was still starting" in line or line.startswith("error:")]
    return "; ".join(line.removeprefix("verify: ") for line in found)


def stream(ns: LibvirtNamespace | None, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Run in the namespace (None: on the host), its output to the terminal and to `log`; the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(argv)}", flush=True)
    options: dict = {"env": {**os.environ, **(env or {})}, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    with log.open("ab") as out:
        process = ns.popen(argv, workdir=PROJECT, **options) if ns else subprocess.Popen(argv, cwd=PROJECT, **options)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            out.write(line)
        return process.wait()


def step_statuses(output: str) -> dict[str, str]:
    """The step table `hubvm all` ends with: {"pack": "skipped", "up": "ran", ...} (the last table printed)."""
    statuses: dict[str, str] = {}
    for line in output.splitlines():
        fields = line.split()
        if fields[:2] == ["step", "status"]:
            statuses = {}
        elif len(fields) >= 2 and fields[0] in ("pack", "up", "verify", "export"):
            statuses[fields[0]] = fields[1]
    return statuses


def ssh_argv(key: Path, user: str, address: str, known_hosts: Path, command: str) -> list[str]:
    return ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
            f"{user}@{address}", command]


@dataclass
class Copy:
    """One fresh VM booted from an exported disk through a copy-on-write overlay: the qcow2 on virtio (as libvirt
    and OpenStack run it), or the OVA's VMDK on VirtualBox's hardware (hardware "virtualbox")."""

    name: str
    overlay: Path
    address: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    backing: Path | None = None
    backing_format: str = "qcow2"
    hardware: str = "virtio"


def domain_xml(copy: Copy) -> str:
    """libvirt's domain; "virtualbox" hardware is what the OVA asks VirtualBox for: the disk on port 0 of an AHCI
    controller (libvirt's sata bus: QEMU's ich9-ahci with an ide-hd on it) and an E1000 adapter."""
    bus, target, model = ("sata", "sda", "e1000") if copy.hardware == "virtualbox" else ("virtio", "vda", "virtio")
    controller = "<controller type='sata' index='0'/>\n" if bus == "sata" else ""
    return f"""<domain type='qemu'><name>{copy.name}</name><memory unit='MiB'>2048</memory><vcpu>2</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
<cpu mode='host-model'/>
<devices>
{controller}<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{copy.overlay}'/>
<target dev='{target}' bus='{bus}'/></disk>
<interface type='network'><source network='{NETWORK}'/><model type='{model}'/></interface>
<serial type='file'><source path='{copy.overlay.with_suffix(".console.log")}'/><target port='0'/></serial>
</devices></domain>"""


def wait_for_address(ns: LibvirtNamespace, copy: Copy, deadline: float) -> str:
    while time.monotonic() < deadline:
        out = ns.run([*VIRSH, "domifaddr", copy.name, "--source", "lease"], check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[2] == "ipv4":
                return parts[3].split("/")[0]
        time.sleep(3)
    raise StepFailed(f"{copy.name} got no DHCP lease within {BOOT_WAIT} s")


def wait_for_ssh(ns: LibvirtNamespace, argv: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if ns.run(argv, check=False).returncode == 0:
            return
        time.sleep(5)
    raise StepFailed(f"no SSH login ({shlex.join(argv)}) within {BOOT_WAIT} s")


def guest_facts(ns: LibvirtNamespace, ssh: list[str]) -> dict[str, str]:
    """What must differ between copies, and what must be gone from each."""
    script = ("echo host_key=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2); "
              "echo machine_id=$(cat /etc/machine-id); "
              f"echo cookie_secret=$(sudo sha256sum {COOKIE_SECRET} | cut -d' ' -f1); "
              f"echo admin_passwords=$(sudo sha256sum {ADMIN_PASSWORDS} | cut -d' ' -f1); "
              f"echo certificate=$(openssl x509 -in {SELF_SIGNED} -noout -fingerprint -sha256 | cut -d= -f2); "
              f"echo build_user=$(getent passwd {BUILD_USER} >/dev/null && echo present || echo absent); "
              "echo password_auth=$(sudo sshd -T | awk '$1==\"passwordauthentication\"{print $2}'); "
              + HARDWARE_FACTS)
    out = ns.run([*ssh[:-1], script], check=False)
    if out.returncode != 0:
        raise StepFailed(f"reading the clone facts failed: {out.stderr.strip()}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def run(args: argparse.Namespace, record: Record) -> None:
    work = PROJECT / "builds" / "e2e"
    logs = PROJECT / "builds" / "logs"
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    work.mkdir(parents=True, exist_ok=True)
    key = work / "id_ed25519"
    if not (args.reuse_export and key.is_file()):  # the reused export authorises the key it was made with
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hubvm-e2e", "-f", str(key)],
                       check=True)
    profile = work / "e2e.yaml"
    profile.write_text(profile_text(key.with_suffix(".pub"), args.mode))
    state = work / "libvirt"
    shutil.rmtree(state, ignore_errors=True)

    for name in remove_stale_namespaces(LIBVIRT_PREFIX):  # left by a run that was killed (its cleanup never ran)
        print(f"removed {name}, left by a run that was killed")
    started = time.monotonic()
    with LibvirtNamespace(state_dir=state) as ns:
        record.step("namespace + libvirtd", "ran", time.monotonic() - started,
                    f"{ns.name}, {ns.subnet}, libvirtd PID {ns.pid}")
        # libguestfs (virt-sysprep and virt-sparsify in `vagrant package`) would use KVM, which hangs here
        env = {"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
        if args.fresh:
            t = time.monotonic()
            status = stream(ns, [HUBVM, "-f", str(profile), "clean", "--all"], logs / f"e2e-{stamp}-clean.log", env)
            record.step("hubvm clean --all", "ran" if status == 0 else "failed", time.monotonic() - t)
            if status:
                raise StepFailed("hubvm clean --all failed")

        what = "hubvm all (pack, up, export)" if args.mode == "vm" else "hubvm all (native build)"
        # The VM mode's Vagrant needs this libvirtd. The native build needs none and makes its own network
        # namespace: it runs on the host, as a user runs it (`ip netns exec` would also hide the cgroup file
        # system that systemd-nspawn needs, since it mounts a sysfs of the namespace over /sys).
        builder = ns if args.mode == "vm" else None
        if args.reuse_export:
            record.step(what, "skipped", 0.0, "--reuse-export: builds/vm/ as it is")
        else:
            t = time.monotonic()
            status = stream(builder, [HUBVM, "-f", str(profile), "all"], logs / f"e2e-{stamp}-all.log", env)
            record.step(what, "ran" if status == 0 else "failed", time.monotonic() - t,
                        f"log builds/logs/e2e-{stamp}-all.log")
            record.notes += native_stages(logs / f"e2e-{stamp}-all.log") if args.mode == "native" else []
            if status:
                record_sizes(record)
                raise StepFailed(f"hubvm all exited {status}")
            # nothing changed: a second `hubvm all` must skip every step
            t = time.monotonic()
            again = logs / f"e2e-{stamp}-all-again.log"
            status = stream(builder, [HUBVM, "-f", str(profile), "all"], again, env)
            statuses = step_statuses(again.read_text())
            skipped = status == 0 and set(statuses) == {"pack", "up", "verify", "export"} \
                and set(statuses.values()) == {"skipped"}
            record.step("hubvm all, again (nothing changed)", "skipped every step" if skipped else "failed",
                        time.monotonic() - t, ", ".join(f"{k} {v}" for k, v in statuses.items()))
            if not skipped:
                raise StepFailed(f"the second hubvm all did not skip every step: {statuses or status}")
        record_sizes(record)

        exported = PROJECT / "builds" / "vm" / f"{vm_name()}.qcow2"
        if not exported.is_file():
            raise StepFailed(f"hubvm all wrote no {exported}")
        copies = [Copy(f"hvb-e2e-copy{i}", state / "lib" / "images" / f"copy{i}.qcow2", backing=exported)
                  for i in (1, 2)]
        if "ova" in profile_formats():
            vmdk = check_ova(record, OVA_DIR, exported)
            copies.append(Copy("hvb-e2e-copy3-ova", state / "lib" / "images" / "copy3-ova.qcow2", backing=vmdk,
                               backing_format="vmdk", hardware="virtualbox"))
        ns.run([*VIRSH, "net-create", "/dev/stdin"], input=NETWORK_XML)
        for copy in copies:
            t = time.monotonic()
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(copy.backing), "-F",
                            copy.backing_format, str(copy.overlay)], check=True)
            # The file is seen at /var/lib/libvirt/images inside the namespace
            inside = Copy(copy.name, Path("/var/lib/libvirt/images") / copy.overlay.name, hardware=copy.hardware)
            ns.run([*VIRSH, "create", "/dev/stdin"], input=domain_xml(inside))
            deadline = time.monotonic() + BOOT_WAIT
            copy.address = wait_for_address(ns, copy, deadline)
            known = work / f"known_hosts_{copy.name}"
            known.unlink(missing_ok=True)
            ssh = ssh_argv(key, ADMIN, copy.address, known, "true")
            wait_for_ssh(ns, ssh, deadline)
            ssh_seconds = time.monotonic() - t
            # The hub starts after sshd (first boot: new secrets and database). The first copy is verified once
            # its hub answers (which times the hub's start); the others as soon as SSH answers, so verify itself
            # must wait for the starting hub.
            if copy is copies[0]:
                wait_for_ssh(ns, [*ssh[:-1], HUB_PROBE], deadline)
            record.step(f"boot {copy.name}", "ran", time.monotonic() - t,
                        f"{copy.address}; SSH as {ADMIN} after {minutes(ssh_seconds)}"
                        + (", then the hub API" if copy is copies[0] else "")
                        + (f"; from the OVA's VMDK, {copy.hardware} hardware" if copy.hardware != "virtio" else ""))

            t = time.monotonic()
            log = logs / f"e2e-{stamp}-verify-{copy.name}.log"
            status = stream(ns, [HUBVM, "-f", str(profile), "verify", "--host", f"{ADMIN}@{copy.address}",
                                 "--identity", str(key)], log, env)
            record.step(f"hubvm verify ({copy.name})", "passed" if status == 0 else "failed",
                        time.monotonic() - t, verify_detail(log.read_text(errors="replace")))
            if status:
                raise StepFailed(f"hubvm verify failed on {copy.name}")
            copy.facts = guest_facts(ns, ssh)
            problems = hardware_problems(copy)
            record.step(f"hardware the guest sees ({copy.name})", "failed" if problems else "passed", 0.0,
                        "; ".join(problems) or ", ".join(f"{k} {copy.facts.get(k)}" for k in
                                                         ("disk", "disk_driver", "nic", "nic_driver")))
            if problems:
                raise StepFailed("; ".join(problems))

        t = time.monotonic()
        problems = clone_problems(copies)
        problems += insecure_key_problems(ns, copies[0].address, work)
        problems += box_key_problems(ns, copies[0].address, work)
        record.step("clone safety", "failed" if problems else "passed", time.monotonic() - t,
                    "; ".join(problems) or "host keys, machine-id, cookie secret, admin passwords, certificate "
                    "differ; no build login, no password login; neither Vagrant's insecure key nor the box's "
                    "vagrant_private_key logs in")
        if problems:
            raise StepFailed("; ".join(problems))

        t = time.monotonic()
        mismatches = checksum_mismatches(PROJECT / "builds" / "vm")
        record.step("the export after the boots", "failed" if mismatches else "passed", time.monotonic() - t,
                    mismatches or "SHA256SUMS holds (the copies wrote only to their overlays)")
        if mismatches:
            raise StepFailed("SHA256SUMS of builds/vm/ no longer holds after the boots")


def profile_formats() -> list[str]:
    """export.formats of the shipped profile (the test's profile adds only this machine's part)."""
    import yaml

    return list(yaml.safe_load((PROJECT / PROFILE).read_text())["export"]["formats"])


def check_ova(record: Record, into: Path, qcow2: Path) -> Path:
    """The exported OVA read as VirtualBox's importer reads it (members extracted into `into`), and its VMDK
    compared with the qcow2 the copies boot; returns the VMDK."""
    ova = PROJECT / "builds" / "vm" / f"{vm_name()}.ova"
    if not ova.is_file():
        raise StepFailed(f"export.formats has ova, and hubvm all wrote no {ova}")
    shutil.rmtree(into, ignore_errors=True)
    t = time.monotonic()
    package = ovf_reader.read_ova(ova, into)
    record.step("the OVA, read as VirtualBox's importer reads it", "failed" if package.problems else "passed",
                time.monotonic() - t, "; ".join(package.problems) or f"{', '.join(package.names)}; descriptor, "
                "hardware, manifest and VMDK as the importer wants them")
    if package.problems:
        raise StepFailed("; ".join(package.problems))
    [vmdk] = package.vmdks
    t = time.monotonic()
    compared = ovf_reader.compare(vmdk, qcow2, "qcow2")
    same = compared.returncode == 0 and "Images are identical" in compared.stdout
    record.step("the OVA's VMDK against the exported qcow2 (qemu-img compare)", "passed" if same else "failed",
                time.monotonic() - t, (compared.stdout + compared.stderr).strip()[:200])
    if not same:
        raise StepFailed(f"the OVA's VMDK differs from {qcow2.name}: {compared.stdout.strip()}")
    return vmdk


def hardware_problems(copy: Copy) -> list[str]:
    """A copy booted on VirtualBox's hardware must have found it: its disk through AHCI, an e1000 NIC named en*."""
    if copy.hardware != "virtualbox":
        return []
    facts = copy.facts
    problems = []
    if facts.get("disk_driver") != "ahci":
        problems.append(f"{copy.name}: the disk {facts.get('disk')} hangs off {facts.get('disk_driver')}, not ahci")
    if facts.get("nic_driver") != "e1000" or not facts.get("nic", "").startswith("en"):
        problems.append(f"{copy.name}: the NIC is {facts.get('nic')} ({facts.get('nic_driver')}), not an e1000 en*")
    return problems


def profile_text(public_key: Path, mode: str = "vm") -> str:
    """The test's profile: the shipped one plus this machine's key and CA certificates, and the build mode."""
    import yaml

    data = yaml.safe_load((PROJECT / PROFILE).read_text())
    data.setdefault("build", {})["mode"] = mode
    data.setdefault("export", {})["ssh_public_key"] = str(public_key)
    data.setdefault("guest", {})["ca_certificates"] = [str(p) for p in sorted(HOST_CA_DIR.glob("*.crt"))]
    header = f"# Generated by tests/e2e/full_build.py from {PROFILE}; rewritten at each run.\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def native_stages(log: Path) -> list[str]:
    """The native build's own stage table, as `hubvm all` printed it (for the record)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    start = next((i for i, line in enumerate(lines) if line.startswith("step ") and "status" in line), None)
    if start is None:
        return []
    table = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("<=="):
            break
        table.append(f"    {line}")
    return ["native build stages:", *table]


def clone_problems(copies: list[Copy]) -> list[str]:
    problems = []
    for fact in ("host_key", "machine_id", "cookie_secret", "admin_passwords", "certificate"):
        values = [c.facts.get(fact) for c in copies]
        if not all(values):
            problems.append(f"{fact} unreadable ({', '.join(repr(v) for v in values)})")
            continue
        for first, second in itertools.combinations(copies, 2):
            if first.facts[fact] == second.facts[fact]:
                problems.append(f"both copies have the same {fact}" if len(copies) == 2
                                else f"{first.name} and {second.name} have the same {fact}")
    for copy in copies:
        if copy.facts.get("build_user") != "absent":
            problems.append(f"{copy.name}: the build login {BUILD_USER} is still there")
        if copy.facts.get("password_auth") != "no":
            problems.append(f"{copy.name}: sshd allows password logins")
    return problems


def key_logs_in(ns: LibvirtNamespace, key: Path, address: str, work: Path) -> list[str]:
    """The logins (build user, administrator) that this private key opens on the copy at `address`."""
    key.chmod(0o600)
    return [user for user in (BUILD_USER, ADMIN)
            if ns.run(ssh_argv(key, user, address, work / f"known_hosts_{key.name}", "true"),
                      check=False).returncode == 0]


def insecure_key_problems(ns: LibvirtNamespace, address: str, work: Path) -> list[str]:
    key = next(VAGRANT_GEMS.glob("vagrant-*/keys/vagrant"), None)
    if key is None:  # the check would pass without testing anything
        return [f"Vagrant's insecure key not found under {VAGRANT_GEMS}: cannot check that it is refused"]
    copied = work / "vagrant_insecure_key"
    shutil.copyfile(key, copied)
    return [f"Vagrant's insecure key logs in as {user}" for user in key_logs_in(ns, copied, address, work)]


def box_key_problems(ns: LibvirtNamespace, address: str, work: Path) -> list[str]:
    """The exported box's vagrant_private_key (the build's key, which Vagrant would use) must open no login."""
    box = PROJECT / "builds" / "vm" / f"{vm_name()}.box"
    with tarfile.open(box, "r:*") as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "vagrant_private_key"), None)
        if member is None:
            return []  # vagrant-libvirt's `vagrant package` keeps no key: nothing to refuse
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    copied = work / "box_private_key"
    copied.write_bytes(data)
    return [f"the box's vagrant_private_key logs in as {user}" for user in key_logs_in(ns, copied, address, work)]


def vm_name() -> str:
    import yaml

    return yaml.safe_load((PROJECT / PROFILE).read_text())["vm"]["name"]


def record_sizes(record: Record) -> None:
    builds = PROJECT / "builds"
    name = vm_name()
    candidates = [("base disk (mirror, qcow2)", builds / "base" / "disk.qcow2"),
                  *((f"box {p.name}", p) for p in sorted((builds / "boxes").glob(f"{name}-*.box"))),
                  ("exported box", builds / "vm" / f"{name}.box"),
                  ("exported qcow2", builds / "vm" / f"{name}.qcow2"),
                  ("exported OVA", builds / "vm" / f"{name}.ova")]
    record.sizes = [(label, path.stat().st_size) for label, path in candidates if path.is_file()]
    qcow2 = builds / "vm" / f"{name}.qcow2"
    if qcow2.is_file():
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(qcow2)], capture_output=True,
                                         text=True, check=True).stdout)
        record.sizes.append(("exported qcow2, virtual size", info["virtual-size"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="run `hubvm clean --all` first (rebuild everything)")
    parser.add_argument("--mode", choices=("vm", "native"), default="vm",
                        help="build.mode of the build (native: no build VM, provisioned in a container)")
    parser.add_argument("--reuse-export", action="store_true",
                        help="skip `hubvm all`: boot, verify and compare copies of the qcow2 already in builds/vm/")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("full_build.py needs root (network namespace, nft, libvirtd)", file=sys.stderr)
        return 2
    record = Record()
    failure = ""
    try:
        run(args, record)
    except (StepFailed, RuntimeError, subprocess.CalledProcessError) as error:
        failure = str(error)
        record.notes.append(f"FAILED: {failure}")
    except KeyboardInterrupt:
        failure = "interrupted"
        record.notes.append("INTERRUPTED")
    finally:
        shutil.rmtree(OVA_DIR, ignore_errors=True)  # the OVA's files, extracted for the third copy (its size again)
    logs = PROJECT / "builds" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report = logs / f"full-build-{args.mode}-{datetime.datetime.now():%Y%m%d-%H%M%S}.md"
    report.write_text(record.table())
    print("\n" + record.table())
    print(f"written to {report.relative_to(PROJECT)}")
    if failure:
        print(f"full build test FAILED: {failure}", file=sys.stderr)
        return 1
    print("full build test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
