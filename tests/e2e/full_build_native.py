#!/usr/bin/env python3
"""The full build test of the native build (issue 13): the appliance built without a build VM, then booted twice.

    sudo .venv/bin/python tests/e2e/full_build_native.py      # from the project folder of a clean checkout

1. makes an SSH key pair for the appliance's administrator (builds/e2e/id_ed25519) and the profile
   builds/e2e/e2e-native.yaml: config/e2e-libvirt.yaml (mirror base, pypi hub, a small package set, qcow2) plus
   this machine's part - the key as export.ssh_public_key, the host's extra CA certificates (a TLS-intercepting
   proxy's) as guest.ca_certificates, and a free loopback port as vm.hub_host_port;
2. runs hubvm.native.build with that configuration: mmdebstrap, the playbook in a systemd-nspawn container in a
   network namespace, the cleanup role, the disk with GRUB, the compressed qcow2 and the vagrant-libvirt box,
   then one boot of an overlay of the qcow2 under QEMU on which the real `invoke -f PROFILE verify --host
   hubadmin@127.0.0.1:PORT --identity KEY` must pass before builds/vm/ is written. That boot is copy 1: its SSH
   host key, machine-id and hub cookie secret are read before QEMU stops;
3. boots copy 2 (another overlay of the exported qcow2, QEMU, user networking) and runs `invoke verify` as soon
   as SSH answers (verify waits for the hub's first start itself), reads the same facts;
4. checks clone safety: host keys, machine-ids and cookie secrets differ; no build login, no password logins;
   neither Vagrant's insecure key nor the box's vagrant_private_key (the build key) logs in;
5. checks the export: SHA256SUMS holds (the verify boots wrote only to their overlays), manifest.json says
   native, the box holds box.img, metadata.json, Vagrantfile and vagrant_private_key;
6. writes a table of stage durations and artifact sizes to builds/logs/full-build-native-<time>.md.

Everything it starts is stopped by PID (QEMU), and the build's own namespace and container are removed by the
build, also on failure. Needs root and what hubvm.native needs (systemd-nspawn, nft, iproute2, mmdebstrap, QEMU).
The native mode is not wired into the tasks yet (the lead's part), hence the direct call of hubvm.native.build.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from invoke import Context

from hubvm import native, qemuboot, settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import StepLog, StepResult
from hubvm.steps import Shell
from tests.e2e.full_build import (
    ADMIN,
    BUILD_USER,
    COOKIE_SECRET,
    HOST_CA_DIR,
    PROFILE,
    VAGRANT_GEMS,
    Copy,
    Record,
    StepFailed,
    clone_problems,
    human,
    memory_gib,
    minutes,
    verify_detail,
)

PROJECT = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")
SSH_WAIT = 900


@dataclass
class NativeRecord(Record):
    """full_build.py's record, with the native build's own stages (and what ran inside them) above the steps that
    follow it, the machine's load, and the run's wall-clock time as the total."""

    stages: list[StepResult] = field(default_factory=list)
    inner: list[tuple[str, str, float, str]] = field(default_factory=list)  # within a stage: not added up
    load: str = ""
    started: float = field(default_factory=time.monotonic)

    def table(self) -> str:
        lines = [f"# Full build test (native build), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
                 f"Machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, {memory_gib()} GiB; "
                 "the playbook in a systemd-nspawn container, the boots in QEMU software emulation (TCG); "
                 f"load average at the start {self.load}", "",
                 "| step | status | duration | detail |", "| --- | --- | --- | --- |"]
        lines += [f"| native build: {r.name} | {r.status} | {minutes(r.seconds)} | {r.detail} |" for r in self.stages]
        lines += [f"| ... within it: {n} | {s} | {minutes(t)} | {d} |" for n, s, t, d in self.inner]
        lines += [f"| {n} | {s} | {minutes(t)} | {d} |" for n, s, t, d in self.steps]
        lines += [f"| total (wall clock) | | {minutes(time.monotonic() - self.started)} | |", "",
                  "| artifact | size |", "| --- | --- |"]
        lines += [f"| {name} | {human(n)} |" for name, n in self.sizes]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def ssh_argv(key: Path, user: str, port: int, known_hosts: Path, command: str) -> list[str]:
    return ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={known_hosts}", f"{user}@127.0.0.1", command]


def facts(key: Path, port: int, known_hosts: Path) -> dict[str, str]:
    """What must differ between copies, and what must be gone from each (as full_build.py reads them)."""
    script = ("echo host_key=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2); "
              "echo machine_id=$(cat /etc/machine-id); "
              f"echo cookie_secret=$(sudo sha256sum {COOKIE_SECRET} | cut -d' ' -f1); "
              f"echo build_user=$(getent passwd {BUILD_USER} >/dev/null && echo present || echo absent); "
              "echo password_auth=$(sudo sshd -T | awk '$1==\"passwordauthentication\"{print $2}'); "
              "echo firstboot=$(test -e /etc/hubvm/firstboot-pending && echo pending || echo done)")
    out = subprocess.run(ssh_argv(key, ADMIN, port, known_hosts, script), capture_output=True, text=True)
    if out.returncode != 0:
        raise StepFailed(f"reading the clone facts failed: {out.stderr.strip()}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def login_refused(key: Path, user: str, port: int, known_hosts: Path) -> bool:
    return subprocess.run(ssh_argv(key, user, port, known_hosts, "true"), capture_output=True).returncode != 0


def run_verify(profile: Path, host: str, key: Path, log: Path) -> str:
    """The real `invoke verify` (a new process, the project's CLI), its output to the terminal and the log."""
    argv = [INVOKE, "-f", str(profile), "verify", "--host", host, "--identity", str(key)]
    print(f"$ {shlex.join(argv)}", flush=True)
    result = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    print(output, flush=True)
    with log.open("a") as stream:
        stream.write(output)
    if result.returncode:
        raise StepFailed(f"invoke verify failed on {host}: {verify_detail(output)}")
    return verify_detail(output)


def profile_text(public_key: Path, hub_port: int) -> str:
    import yaml

    data = yaml.safe_load((PROJECT / PROFILE).read_text())
    data.setdefault("export", {})["ssh_public_key"] = str(public_key)
    data.setdefault("guest", {})["ca_certificates"] = [str(p) for p in sorted(HOST_CA_DIR.glob("*.crt"))]
    data.setdefault("vm", {})["hub_host_port"] = hub_port
    header = f"# Generated by tests/e2e/full_build_native.py from {PROFILE}; rewritten at each run.\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def run(record: NativeRecord, stamp: str) -> None:
    work = PROJECT / "builds" / "e2e"
    logs = PROJECT / "builds" / "logs"
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    key = work / "id_ed25519"
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hubvm-e2e", "-f", str(key)], check=True)
    profile = work / "e2e-native.yaml"
    profile.write_text(profile_text(key.with_suffix(".pub"), native.free_port()))
    import yaml

    s = settings.parse(settings.merge(settings.defaults(PROJECT), yaml.safe_load(profile.read_text())), PROJECT)
    layout = Layout.of(s)
    copies = [Copy("copy1 (the build's verify boot)", work / "unused"), Copy("copy2", work / "copy2.qcow2")]
    verify_log = logs / f"e2e-native-{stamp}-verify.log"
    known = work / "known_hosts_native"
    known.unlink(missing_ok=True)

    def verify(host: str, identity: Path) -> None:
        """native.build's verify: the real CLI, then copy 1's facts, read before the build stops QEMU."""
        started = time.monotonic()
        detail = run_verify(profile, host, identity, verify_log)
        port = int(host.rsplit(":", 1)[1])
        copies[0].facts = facts(identity, port, known)
        seconds = time.monotonic() - started
        record.inner.append(("invoke verify on copy 1 (the build's verify boot)", "passed", seconds, detail))
        print(f"<== invoke verify on copy 1: passed in {minutes(seconds)} {detail}", flush=True)

    build_log = logs / f"e2e-native-{stamp}-build.log"
    log = StepLog("native build", build_log).open()
    started = time.monotonic()
    try:
        native.build(Shell(Context(), log), s, layout, verify, stages=record.stages)
    except BaseException:
        log.close("failed")
        raise
    log.close("done")
    record.step("native build, all its stages", "ran", time.monotonic() - started,
                f"log {build_log.relative_to(PROJECT)}")
    record_sizes(record, s, layout)
    qcow2 = layout.vm_dir / f"{s.vm.name}.qcow2"

    # copy 2: a fresh overlay, verified as soon as SSH answers
    copy = copies[1]
    port = native.free_port()
    pid_file, console = work / "copy2.pid", logs / f"e2e-native-{stamp}-copy2-console.log"
    machine = qemuboot.Machine(copy.overlay, s.vm.accelerator, s.vm.cpus, s.vm.memory_mb, port, s.vm.hub_host_port,
                               s.hub.port, console, pid_file)
    copy.overlay.unlink(missing_ok=True)
    subprocess.run(qemuboot.overlay_command("qemu-img", qcow2, copy.overlay), shell=True, check=True)
    try:
        t = time.monotonic()
        subprocess.run(qemuboot.start_command("qemu-system-x86_64", machine), shell=True, check=True)
        subprocess.run(qemuboot.wait_for_ssh_command(port, pid_file, console, SSH_WAIT), shell=True, check=True)
        record.step("boot copy 2 (overlay, QEMU)", "ran", time.monotonic() - t, f"sshd on 127.0.0.1:{port}")
        t = time.monotonic()
        detail = run_verify(profile, f"{ADMIN}@127.0.0.1:{port}", key, verify_log)
        record.step("invoke verify (copy 2, started as soon as SSH answered)", "passed", time.monotonic() - t, detail)
        copy.facts = facts(key, port, known)
        t = time.monotonic()
        problems = clone_problems(copies)
        problems += [f"{c.name}: first boot did not run" for c in copies if c.facts.get("firstboot") != "done"]
        insecure = next(VAGRANT_GEMS.glob("vagrant-*/keys/vagrant"), None)
        keys = [(work / "box_private_key", "the box's vagrant_private_key (the build key)")]
        with tarfile.open(layout.vm_dir / f"{s.vm.name}.box") as box:
            member = box.extractfile("vagrant_private_key")
            assert member is not None
            keys[0][0].write_bytes(member.read())
        if insecure is not None:
            shutil.copyfile(insecure, work / "vagrant_insecure_key")
            keys.append((work / "vagrant_insecure_key", "Vagrant's insecure key"))
        for path, label in keys:
            path.chmod(0o600)
            if not login_refused(path, BUILD_USER, port, known):
                problems.append(f"{label} logs in as {BUILD_USER}")
        record.step("clone safety", "failed" if problems else "passed", time.monotonic() - t,
                    "; ".join(problems) or "host keys, machine-id, cookie secret differ; first boot ran on both; "
                    "no build login, no password login; neither the insecure key nor the box's key logs in")
        if problems:
            raise StepFailed("; ".join(problems))
    finally:
        subprocess.run(qemuboot.stop_command(pid_file), shell=True, check=False)
        copy.overlay.unlink(missing_ok=True)

    t = time.monotonic()
    problems = export_problems(s, layout)
    record.step("the export (sums, manifest, box)", "failed" if problems else "passed", time.monotonic() - t,
                "; ".join(problems) or "SHA256SUMS holds after both boots; manifest says native; box has its 4 members")
    if problems:
        raise StepFailed("; ".join(problems))


def export_problems(s: settings.Settings, layout: Layout) -> list[str]:
    problems = []
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=layout.vm_dir, capture_output=True, text=True)
    if sums.returncode:
        problems.append(f"sha256sum -c: {sums.stdout.strip()} {sums.stderr.strip()}")
    manifest = json.loads((layout.vm_dir / "manifest.json").read_text())
    if manifest.get("build", {}).get("mode") != "native":
        problems.append(f"manifest.json build: {manifest.get('build')}")
    with tarfile.open(layout.vm_dir / f"{s.vm.name}.box") as box:
        names = sorted(box.getnames())
        metadata = json.load(box.extractfile("metadata.json"))  # type: ignore[arg-type]
    if names != sorted(["box.img", "metadata.json", "Vagrantfile", "vagrant_private_key"]):
        problems.append(f"box members: {names}")
    if metadata != {"provider": "libvirt", "format": "qcow2", "virtual_size": s.vm.disk_gb}:
        problems.append(f"box metadata: {metadata}")
    return problems


def record_sizes(record: Record, s: settings.Settings, layout: Layout) -> None:
    qcow2 = layout.vm_dir / f"{s.vm.name}.qcow2"
    record.sizes = [(name, path.stat().st_size) for name, path in
                    (("exported box", layout.vm_dir / f"{s.vm.name}.box"), ("exported qcow2 (compressed)", qcow2))
                    if path.is_file()]
    if qcow2.is_file():
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(qcow2)], capture_output=True,
                                         text=True, check=True).stdout)
        record.sizes.append(("exported qcow2, virtual size", info["virtual-size"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    if os.geteuid() != 0:
        print("full_build_native.py needs root (network namespace, nft, systemd-nspawn, mmdebstrap)",
              file=sys.stderr)
        return 2
    record = NativeRecord(load=" ".join(f"{x:.1f}" for x in os.getloadavg()))
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    failure = ""
    try:
        run(record, stamp)
    except (StepFailed, RuntimeError, subprocess.CalledProcessError, UserError) as error:
        failure = str(error)
        record.notes.append(f"FAILED: {failure}")
    except KeyboardInterrupt:
        failure = "interrupted"
        record.notes.append("INTERRUPTED")
    record.notes.append(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    logs = PROJECT / "builds" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report = logs / f"full-build-native-{stamp}.md"
    report.write_text(record.table())
    print("\n" + record.table())
    print(f"written to {report.relative_to(PROJECT)}")
    if failure:
        print(f"full build test (native) FAILED: {failure}", file=sys.stderr)
        return 1
    print("full build test (native) passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
