"""pack: the base box, built by Packer (and, for image.source mirror, from a disk made by hubvm.baseimage)."""

from __future__ import annotations

from typing import Any

from hubvm import baseimage, digests, render
from hubvm.artifacts import size
from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.host.probes import older, require_task
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.shell import q, rel, step

# Packer 1.7 brought `packer init` and required_plugins; from 1.10 on the builders are plugins only.
PACKER_INIT_SINCE = "1.7.0"
# What plugins.pkr.hcl requires (a test holds the two together)
PACKER_PLUGINS = {
    "qemu": ("github.com/hashicorp/qemu", ">= 1.1.0"),
    "virtualbox": ("github.com/hashicorp/virtualbox", ">= 1.1.0"),
    "vagrant": ("github.com/hashicorp/vagrant", ">= 1.1.0"),
}


def packer_uses_init(version: str) -> bool:
    """Packer >= 1.7 reads required_plugins and installs them with `packer init` (needed from 1.10 on)."""
    return not older(version, PACKER_INIT_SINCE)


def packer_commands(packer: str, version: str, only: str, var_file: str) -> list[str]:
    """The commands `pack` runs in builds/packer/, for this Packer version.

    Packer 1.6 reads the single template file (it rejects the required_plugins block of plugins.pkr.hcl);
    newer Packer reads the whole folder, so plugins.pkr.hcl declares the builders it must install first.
    """
    target = "." if packer_uses_init(version) else "box.pkr.hcl"
    commands = [f"{q(packer)} init ."] if packer_uses_init(version) else []
    commands.append(f"{q(packer)} build -force -only={only} -var-file={var_file} {target}")
    return commands


def packer_source(s: Settings) -> str:
    """The -only= name of the template's source for this provider and base image."""
    if s.vm.provider == "virtualbox":
        return {"iso": "virtualbox-iso.iso", "cloud": "virtualbox-ovf.cloud"}[s.image.source]
    return f"qemu.{s.image.source}"


def box_is_current(s: Settings, layout: Layout) -> bool:
    return layout.box_file.is_file() and digests.read(layout.box_stamp) == digests.box_digest(s)


def pack(c: Any, s: Settings, force: bool = False) -> StepResult:
    """Build the base box with Packer, unless a box built from the same inputs is already there."""
    if s.build.mode == "native":
        print("pack: build.mode native has no base box (export makes the tree, the disk and the box)")
        return StepResult("pack", "skipped", 0.0, "build.mode native")
    layout = Layout.of(s)
    if not force and box_is_current(s, layout):
        print(f"pack: {rel(layout.box_file, s.project_dir)} is up to date (inputs unchanged; --force rebuilds it)")
        return StepResult("pack", "skipped", 0.0, "up to date")
    digest = digests.box_digest(s)
    versions = require_task(c, s, "pack")
    with step(c, "pack", layout) as sh:
        render.render_files(sh, s)
        if s.image.source == "mirror":
            baseimage.build(sh, s, layout)
        packer_version = versions.get("Packer", tools.TOOLS["packer"].minimum)
        partial = layout.partial_dir / layout.box_file.name
        if not sh.dry:
            partial.unlink(missing_ok=True)
        env = {"PACKER_CACHE_DIR": str(layout.packer_cache)}
        for command in packer_commands(tools.command(s, "packer"), packer_version, packer_source(s),
                                             layout.packer_vars.name):
            sh.run(command, cwd=layout.packer_dir, env=env)
        if sh.dry:
            sh.say(f"[dry run] would move {rel(partial, s.project_dir)} to {rel(layout.box_file, s.project_dir)}")
            return StepResult("pack", "dry run", sh.log.elapsed())
        if not partial.is_file():
            raise UserError(f"packer finished but wrote no box at {partial}; see {layout.log('pack')}")
        partial.replace(layout.box_file)
        digests.write(layout.box_stamp, digest)
        return StepResult("pack", "ran", sh.log.elapsed(),
                          f"{rel(layout.box_file, s.project_dir)} ({size(layout.box_file)})")
