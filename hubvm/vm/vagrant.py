"""The build VM under Vagrant: up (add the box, boot, provision), its state, destroy, and clean."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hubvm import render
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.host.probes import require_task
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.shell import Shell, q, rel, step


def ansible_config(s: Settings) -> Path:
    return s.project_dir / "ansible" / "ansible.cfg"


def vagrant_env(s: Settings) -> dict[str, str]:
    """Vagrant's ansible provisioner calls `ansible-playbook` by name: put the configured one first on PATH."""
    playbook = tools.locate(s.tools.ansible_playbook)
    path = os.environ.get("PATH", "")
    if playbook:
        path = os.pathsep.join([str(Path(playbook).parent), path])
    env = {"PATH": path, "ANSIBLE_CONFIG": str(ansible_config(s))}
    if s.vm.accelerator == "tcg":
        # vagrant-libvirt's package runs virt-sysprep/virt-sparsify, whose appliance would otherwise try KVM
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def vm_exists(layout: Layout) -> bool:
    """Vagrant keeps one id file per created machine under .vagrant/machines/<name>/<provider>/id."""
    return any(layout.vagrant_machines.glob("*/*/id"))


def vm_state(sh: Shell, s: Settings, layout: Layout) -> str:
    """The Vagrant VM's state (running, shutoff, poweroff, not_created, ...), from a read-only probe. Without a
    created machine, Vagrant is not asked at all (it would write builds/vagrant/.vagrant/ even under --dry)."""
    if not layout.vagrantfile.is_file() or not vm_exists(layout):
        return "not_created"
    result = sh.probe(f"{q(tools.command(s, 'vagrant'))} status --machine-readable", cwd=layout.vagrant_dir)
    for line in (result.stdout or "").splitlines():
        fields = line.split(",")
        if len(fields) >= 4 and fields[2] == "state":
            return fields[3]
    return "not_created"


def up(c: Any, s: Settings, provision: bool = False) -> StepResult:
    """Add the box to Vagrant, boot the VM and provision it with Ansible (Vagrant's ansible provisioner)."""
    if s.build.mode == "native":
        print("up: build.mode native has no build VM (export provisions a container, then verifies the image)")
        return StepResult("up", "skipped", 0.0, "build.mode native")
    layout = Layout.of(s)
    require_task(c, s, "up")
    if not layout.box_file.is_file() and not Shell(c).dry:
        raise UserError(f"no box at {rel(layout.box_file, s.project_dir)}; build it first: hubvm pack")
    vagrant = q(tools.command(s, "vagrant"))
    with step(c, "up", layout) as sh:
        render.render_files(sh, s)
        box_name = render.box_name(s)
        if box_name not in installed_boxes(sh, s):
            sh.run(f"{vagrant} box add --force --name {box_name} {q(rel(layout.box_file, s.project_dir))}",
                   cwd=s.project_dir)
        if provision and vm_state(sh, s, layout) == "running":
            # not `vagrant up --provision`: vagrant-libvirt >= 0.8.1 runs the playbook twice on a running VM
            # (vagrant-libvirt issue 1710)
            command = f"{vagrant} provision --provision-with ansible"
        else:
            command = f"{vagrant} up --provider={s.vm.provider}" + (" --provision" if provision else "")
        sh.run(command, cwd=layout.vagrant_dir, env=vagrant_env(s))
        return StepResult("up", "dry run" if sh.dry else "ran", sh.log.elapsed(), f"box {box_name}")


def installed_boxes(sh: Shell, s: Settings) -> set[str]:
    """Names of the boxes Vagrant has (`vagrant box list` runs outside builds/vagrant: it writes no state)."""
    listed = sh.probe(f"{q(tools.command(s, 'vagrant'))} box list --machine-readable").stdout or ""
    return {line.split(",")[3] for line in listed.splitlines() if ",box-name," in line and len(line.split(",")) > 3}


def destroy(c: Any, s: Settings) -> StepResult:
    layout = Layout.of(s)
    if not vm_exists(layout):
        print(f"destroy: no VM to destroy ({rel(layout.vagrant_dir, s.project_dir)}/.vagrant holds none)")
        return StepResult("destroy", "skipped", 0.0, "no VM")
    with step(c, "destroy", layout) as sh:
        sh.run(f"{q(tools.command(s, 'vagrant'))} destroy -f", cwd=layout.vagrant_dir, env=vagrant_env(s))
        return StepResult("destroy", "dry run" if sh.dry else "ran", sh.log.elapsed())


def clean(c: Any, s: Settings, everything: bool = False) -> list[Path]:
    """Remove rendered files, logs, Vagrant's state and Packer's leftovers; with everything, also the boxes,
    the exported appliance and the download cache. Refuses while a VM exists (its state would be lost)."""
    layout = Layout.of(s)
    if vm_exists(layout):
        raise UserError(f"a VM still exists ({rel(layout.vagrant_dir, s.project_dir)}/.vagrant): destroy it "
                        "first with hubvm destroy")
    targets = [layout.packer_dir, layout.vagrant_dir, layout.ansible_vars.parent, layout.logs_dir,
               layout.partial_dir, layout.vm_partial, layout.native_dir, layout.ssh_dir]
    if everything:
        targets += [layout.boxes_dir, layout.vm_dir, layout.base_image_dir, layout.cache_dir]
    present = [p for p in targets if p.exists()]
    sh = Shell(c)
    if everything:
        prefix = f"hubvm/{layout.box_stem}-"
        for name in sorted(n for n in installed_boxes(sh, s) if n.startswith(prefix)):
            sh.run(f"{q(tools.command(s, 'vagrant'))} box remove --force --all {q(name)}")
    for path in present:
        if sh.dry:
            print(f"[dry run] would remove {rel(path, s.project_dir)}")
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return present


