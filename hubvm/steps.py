"""What each task runs: the command sequences of pack, up, provision, export, destroy and clean.

Every external command goes through `Shell.run`, a thin wrapper over the invoke Context's `run`, so that
`invoke --dry` prints each of them without running it, MockContext tests see them in order, and each step's
output streams to the terminal and to builds/logs/<step>.log. Under --dry nothing is written or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke import Context
from packaging.version import Version

from hubvm import render, stamps, tools
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import StepLog, StepResult, step_log, table
from hubvm.settings import Settings, image_source
from hubvm.target import Target, ssh_options


def is_dry(c: Context) -> bool:
    return bool(c.config.run.dry)


@dataclass
class Shell:
    """Runs commands for one step: echoed, streamed to the step's log, in a folder, with extra environment."""

    c: Context
    log: StepLog | None = None

    @property
    def dry(self) -> bool:
        return is_dry(self.c)

    def run(self, command: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            **kwargs: Any) -> Any:
        options: dict[str, Any] = {"echo": True, "env": dict(env or {}), "pty": False}
        if self.log is not None:
            options.update(out_stream=self.log.out, err_stream=self.log.err)
        options.update(kwargs)
        if cwd is not None:  # spelled out (not c.cd) so that dry runs and MockContext show it
            command = f"cd {q(cwd)} && {command}"
        return self.c.run(command, **options)

    def probe(self, command: str, cwd: Path | None = None) -> Any:
        """A read-only query (a version, a list): it runs even under --dry, quietly, and may fail."""
        return self.run(command, cwd=cwd, dry=False, hide=True, warn=True, echo=False,
                        out_stream=None, err_stream=None)


def q(path: Path | str) -> str:
    return shlex.quote(str(path))


def rel(path: Path, s: Settings) -> str:
    """A path as printed in commands: relative to the project when inside it (shorter, and what people type)."""
    try:
        return str(path.relative_to(s.project_dir))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Tools


_DRY_WARNINGS: set[str] = set()


def require_tools(sh: Shell, s: Settings, keys: Iterable[str]) -> dict[str, str]:
    """Probe the tools a step needs; a missing or old one stops the step (under --dry: a warning line)."""
    findings = tools.probe(lambda cmd: sh.probe(cmd), s, list(keys))
    problems = [f"{f.name}: {f.fix}" for f in findings if not f.ok]
    if problems:
        message = "; ".join(problems) + " (invoke check lists everything)"
        if not sh.dry:
            raise UserError(message)
        if message not in _DRY_WARNINGS:  # said once per run (one invoke run is one process)
            _DRY_WARNINGS.add(message)
            print(f"[dry run] the real run would stop here: {message}")
    return {f.name: str(f.version) for f in findings if f.version is not None}


def tool(s: Settings, key: str) -> str:
    """The command to type for a configured tool: its path when found, else the configured name."""
    return tools.locate(getattr(s.tools, key)) or getattr(s.tools, key)


def vagrant_env(s: Settings) -> dict[str, str]:
    """Vagrant's ansible provisioner calls `ansible-playbook` by name: put the configured one first on PATH."""
    playbook = tools.locate(s.tools.ansible_playbook)
    path = os.environ.get("PATH", "")
    if playbook:
        path = os.pathsep.join([str(Path(playbook).parent), path])
    env = {"PATH": path, "ANSIBLE_CONFIG": str(s.project_dir / "ansible" / "ansible.cfg")}
    if s.vm.accelerator == "tcg":
        # vagrant-libvirt's package runs virt-sysprep/virt-sparsify, whose appliance would otherwise try KVM
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


# ---------------------------------------------------------------------------------------------------------------
# render


def render_files(c: Context, s: Settings) -> list[Path]:
    files = render.plan(s)
    if is_dry(c):
        folders = sorted({rel(f.path, s).split("/")[1] for f in files})
        print(f"[dry run] would render {len(files)} files under builds/ ({', '.join(folders)})")
        return [f.path for f in files]
    return render.write(files)


# ---------------------------------------------------------------------------------------------------------------
# pack


def pack(c: Context, s: Settings, force: bool = False) -> StepResult:
    """Build the base box with Packer, unless a box built from the same inputs is already there."""
    layout = Layout.of(s)
    digest = stamps.box_digest(s)
    if not force and layout.box_file.is_file() and stamps.read(layout.box_stamp) == digest:
        print(f"pack: {rel(layout.box_file, s)} is up to date (inputs unchanged; --force rebuilds it)")
        return StepResult("pack", "skipped", 0.0, "up to date")
    sh = Shell(c)
    needed = (["mmdebstrap"] if s.image.source == "mirror" else []) + ["packer"]
    # what Packer's builder runs: VirtualBox, or QEMU (and qemu-img, also for the mirror image)
    needed += ["vboxmanage"] if s.vm.provider == "virtualbox" else ["qemu_system", "qemu_img"]
    versions = require_tools(sh, s, needed)
    with step_log("pack", None if sh.dry else layout.log("pack")) as log:
        sh.log = log
        render_files(c, s)
        if s.image.source == "mirror":
            from hubvm import baseimage

            baseimage.build(sh, s, layout)
        packer_version = Version(versions.get("Packer", tools.TOOLS["packer"].minimum))
        partial = layout.partial_dir / layout.box_file.name
        if not sh.dry:
            partial.unlink(missing_ok=True)
        env = {"PACKER_CACHE_DIR": str(layout.builds / "cache" / "packer")}
        for command in tools.packer_commands(tool(s, "packer"), packer_version, packer_source(s),
                                             layout.packer_vars.name):
            sh.run(command, cwd=layout.packer_dir, env=env)
        if sh.dry:
            log.say(f"[dry run] would move {rel(partial, s)} to {rel(layout.box_file, s)}")
            return StepResult("pack", "dry run", log.elapsed())
        if not partial.is_file():
            raise UserError(f"packer finished but wrote no box at {partial}; see {layout.log('pack')}")
        partial.replace(layout.box_file)
        stamps.write(layout.box_stamp, digest)
        detail = f"{rel(layout.box_file, s)} ({size(layout.box_file)})"
        return StepResult("pack", "ran", log.elapsed(), detail)


def packer_source(s: Settings) -> str:
    """The -only= name of the template's source for this provider and base image."""
    if s.vm.provider == "virtualbox":
        return {"iso": "virtualbox-iso.iso", "cloud": "virtualbox-ovf.cloud"}[s.image.source]
    return f"qemu.{s.image.source}"


def size(path: Path) -> str:
    total = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    for unit in ("B", "KiB", "MiB", "GiB"):
        if total < 1024 or unit == "GiB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------------
# up and provision


def vm_state(sh: Shell, s: Settings) -> str:
    """The Vagrant VM's state (running, shutoff, poweroff, not_created, ...), from a read-only probe."""
    layout = Layout.of(s)
    if not layout.vagrantfile.is_file():
        return "not_created"
    result = sh.probe(f"{tool(s, 'vagrant')} status --machine-readable", cwd=layout.vagrant_dir)
    for line in (result.stdout or "").splitlines():
        fields = line.split(",")
        if len(fields) >= 4 and fields[2] == "state":
            return fields[3]
    return "not_created"


def up(c: Context, s: Settings, provision: bool = False) -> StepResult:
    """Add the box to Vagrant, boot the VM and provision it with Ansible (Vagrant's ansible provisioner)."""
    layout = Layout.of(s)
    sh = Shell(c)
    require_tools(sh, s, [k for k in tools.needed(s) if k not in ("mmdebstrap", "packer")])
    if not layout.box_file.is_file() and not sh.dry:
        raise UserError(f"no box at {rel(layout.box_file, s)}; build it first: invoke pack")
    vagrant = tool(s, "vagrant")
    with step_log("up", None if sh.dry else layout.log("up")) as log:
        sh.log = log
        render_files(c, s)
        box_name = render.box_name(s)
        boxes = sh.probe(f"{vagrant} box list --machine-readable").stdout or ""
        if f",box-name,{box_name}" not in boxes:
            sh.run(f"{vagrant} box add --force --name {box_name} {q(rel(layout.box_file, s))}", cwd=s.project_dir)
        if provision and vm_state(sh, s) == "running":
            # not `vagrant up --provision`: vagrant-libvirt >= 0.8.1 runs the playbook twice on a running VM
            # (vagrant-libvirt issue 1710)
            command = f"{vagrant} provision --provision-with ansible"
        else:
            command = f"{vagrant} up --provider={s.vm.provider}" + (" --provision" if provision else "")
        sh.run(command, cwd=layout.vagrant_dir, env=vagrant_env(s))
        return StepResult("up", "dry run" if sh.dry else "ran", log.elapsed(), f"box {box_name}")


def provision(c: Context, s: Settings, target: Target | None) -> StepResult:
    """Run the playbook: on the Vagrant VM (`vagrant provision`), or on any machine over SSH."""
    layout = Layout.of(s)
    sh = Shell(c)
    require_tools(sh, s, ["ansible_playbook"] + ([] if target else ["vagrant"]))
    with step_log("provision", None if sh.dry else layout.log("provision")) as log:
        sh.log = log
        render_files(c, s)
        if target is None:
            sh.run(f"{tool(s, 'vagrant')} provision --provision-with ansible", cwd=layout.vagrant_dir,
                   env=vagrant_env(s))
        else:
            if not sh.dry:
                layout.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            sh.run(ansible_command(s, layout, target), cwd=s.project_dir,
                   env={"ANSIBLE_CONFIG": str(s.project_dir / "ansible" / "ansible.cfg")})
        return StepResult("provision", "dry run" if sh.dry else "ran", log.elapsed(), str(target or "vagrant VM"))


def ansible_command(s: Settings, layout: Layout, target: Target, tags: Iterable[str] = ()) -> str:
    """ansible-playbook against one SSH target, with the same variables file Vagrant passes."""
    ssh_args = " ".join(ssh_options(layout.known_hosts, s.ssh.connect_timeout))
    parts = [tool(s, "ansible_playbook"), "-i", q(f"{target.host},"), "-u", q(target.user),
             "-e", q(f"ansible_port={target.port}"), "-e", q(f"@{rel(layout.ansible_vars, s)}"),
             "--ssh-common-args", q(ssh_args)]
    if target.identity is not None:
        parts += ["--private-key", q(target.identity)]
    if target.user != "root":
        parts += ["--become"]
    if tags:
        parts += ["--tags", q(",".join(tags))]
    parts.append("ansible/playbook.yml")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# export


def export(c: Context, s: Settings) -> StepResult:
    """Prepare the VM for cloning, package it, lay out what each target loads, then destroy the build VM."""
    layout = Layout.of(s)
    sh = Shell(c)
    versions = require_tools(sh, s, [k for k in tools.needed(s) if k not in ("mmdebstrap", "packer")])
    box_digest = stamps.box_digest(s)
    digest = stamps.export_digest(s, box_digest)
    if export_is_current(s):
        print(f"export: {rel(layout.vm_dir, s)} is up to date (box and configuration unchanged)")
        return StepResult("export", "skipped", 0.0, "up to date")
    vagrant = tool(s, "vagrant")
    partial = layout.builds / "vm.partial"
    with step_log("export", None if sh.dry else layout.log("export")) as log:
        sh.log = log
        if not sh.dry:
            shutil.rmtree(partial, ignore_errors=True)
            (partial / "box").mkdir(parents=True)
        box = partial / f"{s.vm.name}.box"
        sh.run(f"{vagrant} provision --provision-with cleanup", cwd=layout.vagrant_dir, env=vagrant_env(s))
        sh.run(f"{vagrant} package --output {q(box)}", cwd=layout.vagrant_dir, env=vagrant_env(s))
        sh.run(f"tar -xzf {q(rel(box, s))} -C {q(rel(partial / 'box', s))}", cwd=s.project_dir)
        convert_disks(sh, s, partial)
        if not sh.dry:
            write_checksums_and_manifest(s, layout, partial, versions, digest, box_digest)
            shutil.rmtree(partial / "box")
            if layout.vm_dir.exists():
                shutil.rmtree(layout.vm_dir)
            partial.replace(layout.vm_dir)
            stamps.write(layout.export_stamp, digest)
        else:
            log.say(f"[dry run] would write SHA256SUMS and manifest.json, then move them to {rel(layout.vm_dir, s)}")
        sh.run(f"{vagrant} destroy -f", cwd=layout.vagrant_dir, env=vagrant_env(s))
        sizes = ", ".join(f"{p.name} {size(p)}" for p in artifact_paths(s, layout) if p.exists())
        return StepResult("export", "dry run" if sh.dry else "ran", log.elapsed(), sizes)


def export_is_current(s: Settings) -> bool:
    """builds/vm/ was exported from the current box and configuration, and all its artifacts are there."""
    layout = Layout.of(s)
    digest = stamps.export_digest(s, stamps.box_digest(s))
    return stamps.read(layout.export_stamp) == digest and all(p.exists() for p in artifact_paths(s, layout))


def artifact_paths(s: Settings, layout: Layout) -> list[Path]:
    """What builds/vm/ holds after an export."""
    paths = [layout.vm_dir / f"{s.vm.name}.box", layout.vm_dir / "SHA256SUMS", layout.vm_dir / "manifest.json"]
    names = {"ovf": "ovf", "ova": f"{s.vm.name}.ova", "qcow2": f"{s.vm.name}.qcow2"}
    return paths + [layout.vm_dir / names[f] for f in s.export.formats]


def box_disk(s: Settings, unpacked: Path) -> Path:
    """The disk inside a packaged box: VirtualBox's VMDK, or vagrant-libvirt's box.img (qcow2)."""
    if s.vm.provider == "libvirt":
        return unpacked / "box.img"
    found = sorted(unpacked.glob("*.vmdk"))
    return found[0] if found else unpacked / "box-disk001.vmdk"


def convert_disks(sh: Shell, s: Settings, partial: Path) -> None:
    unpacked = partial / "box"
    disk = box_disk(s, unpacked)
    if "qcow2" in s.export.formats:
        target = partial / f"{s.vm.name}.qcow2"
        # compressed, as the distributions ship their cloud images: 4.0 GiB -> 1.5 GiB for the full build test's
        # hub (about 2 min more here); a guest decompresses a cluster when it first writes it
        sh.run(f"{tool(s, 'qemu_img')} convert -c -O qcow2 {q(rel(disk, s))} {q(rel(target, s))}",
               cwd=s.project_dir)
    if sh.dry:
        for fmt in set(s.export.formats) - {"qcow2"}:
            sh.log.say(f"[dry run] would lay out {fmt} from {rel(unpacked, s)}")  # type: ignore[union-attr]
        return
    ovf = next(iter(sorted(unpacked.glob("*.ovf"))), None)
    if {"ovf", "ova"} & set(s.export.formats) and ovf is None:
        raise UserError(f"the packaged box holds no OVF ({unpacked}); export.formats ovf/ova need vm.provider "
                        "virtualbox")
    if "ova" in s.export.formats:
        # an OVA is a tar whose first member is the OVF descriptor
        with tarfile.open(partial / f"{s.vm.name}.ova", "w", format=tarfile.USTAR_FORMAT) as ova:
            for member in [ovf, *sorted(unpacked.glob("*.vmdk"))]:
                ova.add(member, arcname=member.name)
    if "ovf" in s.export.formats:
        (partial / "ovf").mkdir()
        for member in [ovf, *sorted(unpacked.glob("*.vmdk"))]:
            shutil.copy2(member, partial / "ovf" / member.name)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums_and_manifest(s: Settings, layout: Layout, partial: Path, versions: Mapping[str, str],
                                 digest: str, box_digest: str) -> None:
    files = sorted(p for p in partial.rglob("*") if p.is_file() and "box" not in p.relative_to(partial).parts[:1])
    sums = {str(p.relative_to(partial)): sha256(p) for p in files}
    (partial / "SHA256SUMS").write_text("".join(f"{h}  {name}\n" for name, h in sums.items()))
    key = s.export.ssh_public_key
    manifest = {
        "name": s.vm.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "os": s.os_data["name"],
        "provider": s.vm.provider,
        "base_image": {"source": s.image.source, **image_source(s)},
        "tool_versions": dict(versions),
        "configuration_sha256": digest,
        "box_inputs_sha256": box_digest,
        "hub": {"flavour": s.hub.flavour, "admin_users": list(s.hub.admin_users), "port": s.hub.port},
        "packages": {"python": list(s.packages.python), "r": list(s.packages.r), "cran": list(s.packages.cran),
                     "bioconductor": list(s.packages.bioconductor)},
        "access": {
            "ssh_user": s.export.ssh_user if key else None,
            "ssh_public_key": key.read_text().split()[0] + " " + key.name if key else None,
            "vagrant_user_and_insecure_key": "kept" if s.export.keep_vagrant_access else "removed",
            "password_ssh_logins": "enabled" if s.export.keep_vagrant_access else "disabled",
        },
        "artifacts": {name: {"sha256": h, "bytes": (partial / name).stat().st_size} for name, h in sums.items()},
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# destroy and clean


def vm_exists(layout: Layout) -> bool:
    """Vagrant keeps one id file per created machine under .vagrant/machines/<name>/<provider>/id."""
    return any((layout.vagrant_dir / ".vagrant" / "machines").glob("*/*/id"))


def destroy(c: Context, s: Settings) -> StepResult:
    layout = Layout.of(s)
    sh = Shell(c)
    if not vm_exists(layout):
        print("destroy: no VM to destroy (builds/vagrant/.vagrant holds none)")
        return StepResult("destroy", "skipped", 0.0, "no VM")
    with step_log("destroy", None if sh.dry else layout.log("destroy")) as log:
        sh.log = log
        sh.run(f"{tool(s, 'vagrant')} destroy -f", cwd=layout.vagrant_dir, env=vagrant_env(s))
        return StepResult("destroy", "dry run" if sh.dry else "ran", log.elapsed())


def clean(c: Context, s: Settings, everything: bool = False) -> list[Path]:
    """Remove rendered files, logs, Vagrant's state and Packer's leftovers; with everything, also the boxes,
    the exported appliance and the download cache. Refuses while a VM exists (its state would be lost)."""
    layout = Layout.of(s)
    if vm_exists(layout):
        raise UserError("a VM still exists (builds/vagrant/.vagrant): destroy it first with invoke destroy")
    targets = [layout.packer_dir, layout.http_dir, layout.vagrant_dir, layout.ansible_vars.parent, layout.logs_dir,
               layout.partial_dir, layout.builds / "vm.partial", layout.known_hosts.parent]
    if everything:
        targets += [layout.boxes_dir, layout.vm_dir, layout.base_image_dir, layout.builds / "cache"]
    present = [p for p in targets if p.exists()]
    sh = Shell(c)
    if everything:
        boxes = sh.probe(f"{tool(s, 'vagrant')} box list --machine-readable").stdout or ""
        prefix = f"hubvm/{layout.box_stem}-"
        for name in sorted({line.split(",")[3] for line in boxes.splitlines()
                            if ",box-name," in line and line.split(",")[3].startswith(prefix)}):
            sh.run(f"{tool(s, 'vagrant')} box remove --force --all {name}")
    for path in present:
        if sh.dry:
            print(f"[dry run] would remove {rel(path, s)}")
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return present


def check_table(findings: list[tools.Finding]) -> str:
    return table(["tool", "found", "version", "minimum", "status"],
                 [(f.name, f.path or "-", f.version or "-", f.minimum, "ok" if f.ok else f"MISSING: {f.fix}"
                   if f.path is None else f"FAIL: {f.fix}") for f in findings])
