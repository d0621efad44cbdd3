"""export: the provisioned VM made clone-safe, packaged, laid out in builds/vm/ for each target; then the build
VM is destroyed. builds/vm/ is assembled in builds/vm.partial/ and renamed into place when complete."""

from __future__ import annotations

import re
import shutil
from typing import Any

from hubvm import digests, ovf
from hubvm.artifacts import artifact_paths, box_disk, lay_out_ovf, qcow2_options, size, write_checksums_and_manifest
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.host.probes import require_task
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.shell import Shell, q, rel, step
from hubvm.vm.vagrant import vagrant_env

# vagrant-libvirt's `vagrant package` runs these and only prints their errors: a failure that matters
GUESTFS_FAILURE = re.compile(r"^(virt-sysprep|virt-sparsify): error: (.*)$", re.MULTILINE)


def export(c: Any, s: Settings) -> StepResult:
    """Prepare the VM for cloning, package it, lay out what each target loads, then destroy the build VM."""
    layout = Layout.of(s)
    versions = require_task(c, s, "export")
    box_digest = digests.box_digest(s)
    digest = digests.export_digest(s, box_digest)
    vagrant = q(tools.command(s, "vagrant"))
    partial = layout.vm_partial
    with step(c, "export", layout) as sh:
        if not sh.dry:
            shutil.rmtree(partial, ignore_errors=True)
            (partial / "box").mkdir(parents=True)
        box = partial / f"{s.vm.name}.box"
        sh.run(f"{vagrant} provision --provision-with cleanup", cwd=layout.vagrant_dir, env=vagrant_env(s))
        packaged = sh.run(f"{vagrant} package --output {q(box)}", cwd=layout.vagrant_dir, env=vagrant_env(s))
        check_guestfs(packaged, layout)
        sh.run(f"tar -xzf {q(rel(box, s.project_dir))} -C {q(rel(partial / 'box', s.project_dir))}",
               cwd=s.project_dir)
        convert_disks(sh, s, partial)
        if not sh.dry:
            write_checksums_and_manifest(s, partial, versions, digest, box_digest)
            shutil.rmtree(partial / "box")
            if layout.vm_dir.exists():
                shutil.rmtree(layout.vm_dir)
            partial.replace(layout.vm_dir)
            digests.write(layout.export_stamp, digest)
        else:
            sh.say(f"[dry run] would write SHA256SUMS and manifest.json, then move them to "
                   f"{rel(layout.vm_dir, s.project_dir)}")
        sh.run(f"{vagrant} destroy -f", cwd=layout.vagrant_dir, env=vagrant_env(s))
        sizes = ", ".join(f"{p.name} {size(p)}" for p in artifact_paths(s, layout) if p.exists())
        return StepResult("export", "dry run" if sh.dry else "ran", sh.log.elapsed(), sizes)


def check_guestfs(result: Any, layout: Layout) -> None:
    """`vagrant package` (vagrant-libvirt) ignores the exit status of virt-sysprep and virt-sparsify: their
    errors on its output make the export fail here, rather than ship a box that was never sysprepped."""
    output = f"{getattr(result, 'stdout', '') or ''}\n{getattr(result, 'stderr', '') or ''}"
    failure = GUESTFS_FAILURE.search(output)
    if failure:
        raise UserError(f"vagrant package: {failure.group(1)} failed ({failure.group(2).strip()[:160]}), so the box "
                        f"was not prepared; see {layout.log('export')} and run hubvm check (libguestfs appliance)")


def convert_disks(sh: Shell, s: Settings, partial: Any) -> None:
    unpacked = partial / "box"
    disk = box_disk(s, unpacked)
    if "qcow2" in s.export.formats:
        target = partial / f"{s.vm.name}.qcow2"
        sh.run(f"{q(tools.command(s, 'qemu_img'))} convert {qcow2_options(s.export.compression)} "
               f"{q(rel(disk, s.project_dir))} "
               f"{q(rel(target, s.project_dir))}", cwd=s.project_dir)
    others = set(s.export.formats) - {"qcow2"}
    if not others:
        return
    if s.vm.provider == "libvirt":  # box.img, a qcow2, becomes the VMDK of an OVF package for VirtualBox
        ovf.make(sh, tools.command(s, "qemu_img"), disk, "qcow2", partial, ovf.Appliance.of(s), others,
                 project_dir=s.project_dir)
        return
    if sh.dry:
        for fmt in sorted(others):
            sh.say(f"[dry run] would lay out {fmt} from {rel(unpacked, s.project_dir)}")
        return
    lay_out_ovf(s, unpacked, partial)  # VirtualBox's own OVF and VMDK, as vagrant package made them


