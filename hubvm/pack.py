"""pack: the base box, built by Packer (and, for image.source mirror, from a disk made by hubvm.baseimage)."""

from __future__ import annotations

from typing import Any

from hubvm import baseimage, render, stamps, tools
from hubvm.artifacts import size
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import StepResult
from hubvm.settings import Settings
from hubvm.shell import rel, require, step


def packer_source(s: Settings) -> str:
    """The -only= name of the template's source for this provider and base image."""
    if s.vm.provider == "virtualbox":
        return {"iso": "virtualbox-iso.iso", "cloud": "virtualbox-ovf.cloud"}[s.image.source]
    return f"qemu.{s.image.source}"


def box_is_current(s: Settings, layout: Layout) -> bool:
    return layout.box_file.is_file() and stamps.read(layout.box_stamp) == stamps.box_digest(s)


def pack(c: Any, s: Settings, force: bool = False) -> StepResult:
    """Build the base box with Packer, unless a box built from the same inputs is already there."""
    if s.build.mode == "native":
        print("pack: build.mode native has no base box (export makes the tree, the disk and the box)")
        return StepResult("pack", "skipped", 0.0, "build.mode native")
    layout = Layout.of(s)
    if not force and box_is_current(s, layout):
        print(f"pack: {rel(layout.box_file, s.project_dir)} is up to date (inputs unchanged; --force rebuilds it)")
        return StepResult("pack", "skipped", 0.0, "up to date")
    digest = stamps.box_digest(s)
    versions = require(c, s, layout, "pack")
    with step(c, "pack", layout) as sh:
        render.render_files(sh, s)
        if s.image.source == "mirror":
            baseimage.build(sh, s, layout)
        packer_version = versions.get("Packer", tools.TOOLS["packer"].minimum)
        partial = layout.partial_dir / layout.box_file.name
        if not sh.dry:
            partial.unlink(missing_ok=True)
        env = {"PACKER_CACHE_DIR": str(layout.packer_cache)}
        for command in tools.packer_commands(tools.command(s, "packer"), packer_version, packer_source(s),
                                             layout.packer_vars.name):
            sh.run(command, cwd=layout.packer_dir, env=env)
        if sh.dry:
            sh.say(f"[dry run] would move {rel(partial, s.project_dir)} to {rel(layout.box_file, s.project_dir)}")
            return StepResult("pack", "dry run", sh.log.elapsed())
        if not partial.is_file():
            raise UserError(f"packer finished but wrote no box at {partial}; see {layout.log('pack')}")
        partial.replace(layout.box_file)
        stamps.write(layout.box_stamp, digest)
        return StepResult("pack", "ran", sh.log.elapsed(),
                          f"{rel(layout.box_file, s.project_dir)} ({size(layout.box_file)})")
