"""Render every generated file under builds/ from templates/ and the settings. Runs no tool.

`plan(s)` computes the files (path -> text) without writing; `write(plan)` writes them, each through a temporary
file and a rename, so a reader never sees half a file. Every value reaches its file with that file's quoting:
JSON for Packer's variables, JSON strings (valid YAML) for YAML files, Ruby single-quoted strings for the
Vagrantfile (a double-quoted Ruby string would run `#{...}`), and the schema's checks for the line-based preseed.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hubvm import __version__, baseimage, binder, digests, guest
from hubvm.config.settings import Settings, image_source
from hubvm.layout import Layout
from hubvm.shell import Runner

PACKER_TEMPLATES = Path("templates") / "packer"
# What is copied verbatim from templates/packer/ into builds/packer/ (os/ is read, not copied; the answer files in
# the top-level http/ are rendered into builds/packer/http/, Packer's http_directory)
PACKER_COPIED = ("box.pkr.hcl", "plugins.pkr.hcl", "scripts")


@dataclass(frozen=True)
class File:
    path: Path
    text: str
    mode: int = 0o644
    source: Path | None = None   # a file copied as it is (bytes), rather than text
    tree: Path | None = None     # the copied folder it belongs to: what else is there is removed


def binder_files(s: Settings, layout: Layout) -> list[File]:
    """The packages.binder folder as the binder role copies it to the guest: its files, without .git and caches."""
    if not s.packages.binder:
        return []
    root, copy = s.packages.binder, layout.binder_copy
    return [File(copy / path.relative_to(root), "", 0o755 if os.access(path, os.X_OK) else 0o644, path, copy)
            for path in digests.files_under(root)]


def ruby_string(value: object) -> str:
    """A Ruby single-quoted string literal: only \\ and ' are special in it (no interpolation)."""
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@functools.cache
def _environment(project: Path) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(project)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # none of the outputs is HTML
    )
    env.filters["ruby"] = ruby_string
    return env


def box_name(s: Settings) -> str:
    """The Vagrant box name carries the digest of the box's inputs: vagrant-libvirt keeps a box's disk in its
    storage pool under the box name, so a rebuilt box needs a new name to be used at all."""
    return f"hubvm/{Layout.of(s).box_stem}-{digests.box_digest(s)[:12]}"


def packer_variables(s: Settings) -> dict[str, Any]:
    layout = Layout.of(s)
    source = image_source(s)
    iso = s.os_data["iso"]
    variables: dict[str, Any] = {
        "name": s.vm.name,
        "cpus": s.vm.cpus,
        "memory": s.vm.memory_mb,
        "disk_size": s.vm.disk_gb * 1024,
        "ssh_username": s.ssh.user,
        "ssh_password": s.ssh.password,
        "iso_url": source["url"],
        "iso_checksum": source["checksum"],
        "boot_command": iso["boot_command"] if s.image.source == "iso" else [],
        "boot_wait": iso["boot_wait"],
        "guest_os_type": s.os_data["virtualbox_guest_os_type"],
        "accelerator": s.vm.accelerator,
        "environment": guest_environment(s),
        "output_box": str(Path("..") / layout.partial_dir.relative_to(layout.builds) / layout.box_file.name),
    }
    if s.image.source == "mirror":
        variables.update(baseimage.packer_variables(s, layout))
    return variables


def guest_environment(s: Settings) -> list[str]:
    """Proxy variables for commands in the guest, in both spellings tools look for."""
    pairs = []
    for name, value in (("http_proxy", s.guest.http_proxy), ("https_proxy", s.guest.https_proxy)):
        if value:
            pairs += [f"{name}={value}", f"{name.upper()}={value}"]
    if pairs and s.guest.no_proxy:
        pairs += [f"no_proxy={s.guest.no_proxy}", f"NO_PROXY={s.guest.no_proxy}"]
    return pairs


def mirror_parts(s: Settings) -> dict[str, str]:
    url = urlsplit(s.guest.apt_mirror or s.os_data["mirror"]["url"])
    return {"host": url.netloc, "path": url.path or "/"}


def ansible_context(s: Settings) -> dict[str, Any]:
    return {
        "ca_certificates": [{"name": p.name if p.suffix == ".crt" else f"{p.stem}.crt", "content": p.read_text()}
                            for p in s.guest.ca_certificates],
        "shared_data_source": guest.SHARED_DATA_MOUNT if s.vm.data else "",
        "ssh_public_key": s.export.ssh_public_key.read_text().strip() if s.export.ssh_public_key else "",
        "hub_paths": s.hub_paths,
        "guest": guest,
        "hubvm_version": __version__,
        "guest_modules": sorted(str(p) for p in Path(guest.__file__).parent.glob("*.py")),
        "guest_programs": [{"command": command, "module": module} for command, module in guest.PROGRAMS.items()],
        "binder": binder.of(s),
        "binder_copy": Layout.of(s).binder_copy,
    }


def _copied_packer_files(s: Settings, layout: Layout) -> list[File]:
    """The Packer template and its scripts are plain files: copied so that builds/packer is self-contained."""
    root = s.project_dir / PACKER_TEMPLATES
    files = []
    for source in digests.files_under(*(root / name for name in PACKER_COPIED)):
        mode = 0o755 if source.suffix == ".sh" else 0o644
        files.append(File(layout.packer_dir / source.relative_to(root), source.read_text(), mode))
    return files


def plan(s: Settings) -> list[File]:
    """Every generated file with its text, in a stable order."""
    layout = Layout.of(s)
    env = _environment(s.project_dir)

    def render(template: str, **extra: Any) -> str:
        return env.get_template(template).render(s=s, **extra)

    files = [File(layout.packer_vars, json.dumps(packer_variables(s), indent=2) + "\n")]
    files += _copied_packer_files(s, layout)
    if s.os_data["answer_file"] == "preseed":
        files.append(File(layout.http_dir / "preseed.cfg", render(f"http/{s.vm.os}/preseed.cfg.j2",
                                                                   mirror=mirror_parts(s))))
    else:
        files += [File(layout.http_dir / name, render(f"http/{s.vm.os}/{name}.j2"))
                  for name in ("user-data", "meta-data")]
    files += [File(layout.http_dir / "cloud" / name, render(f"http/cloud/{name}.j2"))
              for name in ("user-data", "meta-data")]

    ansible_dir = s.project_dir / "ansible"
    files.append(File(layout.vagrantfile, render(
        "templates/vagrant/Vagrantfile.j2", box_name=box_name(s), shared_data_mount=guest.SHARED_DATA_MOUNT,
        playbook=str(ansible_dir / "playbook.yml"), ansible_cfg=str(ansible_dir / "ansible.cfg"),
        ansible_vars=str(layout.ansible_vars))))
    files.append(File(layout.ansible_vars, render("templates/ansible/vars.yml.j2", **ansible_context(s))))
    return files + binder_files(s, layout)


def write(files: list[File]) -> list[Path]:
    """Write the files, each atomically (a copied tree loses the files it no longer has); return the paths
    written."""
    for file in files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.path.with_name(f".{file.path.name}.tmp")
        if file.source is not None:
            shutil.copyfile(file.source, tmp)
        else:
            tmp.write_text(file.text)
        tmp.chmod(file.mode)
        tmp.replace(file.path)
    written = {f.path for f in files}
    for tree in {f.tree for f in files if f.tree is not None}:
        for stale in sorted(tree.rglob("*"), reverse=True):
            if (stale.is_file() and stale not in written) or (stale.is_dir() and not any(stale.iterdir())):
                stale.unlink() if stale.is_file() else stale.rmdir()
    return [f.path for f in files]


def render_files(sh: Runner, s: Settings) -> list[Path]:
    """Render (under --dry: say what would be rendered, write nothing)."""
    files = plan(s)
    if sh.dry:
        layout = Layout.of(s)
        folders = sorted({f.path.relative_to(layout.builds).parts[0] for f in files})
        sh.say(f"[dry run] would render {len(files)} files under builds/ ({', '.join(folders)})")
        return [f.path for f in files]
    return write(files)
