"""Render every generated file under builds/ from templates/, http/ and the settings. Runs no tool.

`plan(s)` computes the files (path -> text) without writing; `write(plan)` writes them, each through a temporary
file and a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from hubvm import stamps
from hubvm.layout import Layout
from hubvm.settings import Settings, image_source

# Where the guest sees vm.data when it is a synced folder; the shared_data role links it for every user.
SHARED_DATA_MOUNT = "/media/shared_data"


@dataclass(frozen=True)
class File:
    path: Path
    text: str
    mode: int = 0o644


def _environment(project: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(project)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # none of the outputs is HTML
    )


def box_name(s: Settings) -> str:
    """The Vagrant box name carries the digest of the box's inputs: vagrant-libvirt keeps a box's disk in its
    storage pool under the box name, so a rebuilt box needs a new name to be used at all."""
    return f"hubvm/{Layout.of(s).box_stem}-{stamps.box_digest(s)[:12]}"


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
        "output_box": str(Path("..") / "boxes" / ".partial" / layout.box_file.name),
    }
    if s.image.source == "mirror":
        from hubvm import baseimage  # the mirror source's own module (its image and kernel arguments)

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
        "shared_data_source": SHARED_DATA_MOUNT if s.vm.data else "",
        "ssh_public_key": s.export.ssh_public_key.read_text().strip() if s.export.ssh_public_key else "",
    }


def plan(s: Settings) -> list[File]:
    """Every generated file with its text, in a stable order."""
    layout = Layout.of(s)
    env = _environment(s.project_dir)

    def render(template: str, **extra: Any) -> str:
        return env.get_template(template).render(s=s, **extra)

    files = [File(layout.packer_vars, json.dumps(packer_variables(s), indent=2) + "\n")]
    # The Packer template and its scripts are plain files: copied so that builds/packer is self-contained
    packer_templates = s.project_dir / "templates" / "packer"
    for source in stamps.files_under(packer_templates):
        mode = 0o755 if source.suffix == ".sh" else 0o644
        files.append(File(layout.packer_dir / source.relative_to(packer_templates), source.read_text(), mode))

    if s.os_data["answer_file"] == "preseed":
        files.append(File(layout.http_dir / "preseed.cfg", render(f"http/{s.vm.os}/preseed.cfg.j2",
                                                                   mirror=mirror_parts(s))))
    else:
        files += [File(layout.http_dir / name, render(f"http/{s.vm.os}/{name}.j2")) for name in ("user-data",
                                                                                                 "meta-data")]
    files += [File(layout.http_dir / "cloud" / name, render(f"http/cloud/{name}.j2"))
              for name in ("user-data", "meta-data")]

    ansible_dir = s.project_dir / "ansible"
    files.append(File(layout.vagrantfile, render(
        "templates/vagrant/Vagrantfile.j2", box_name=box_name(s), shared_data_mount=SHARED_DATA_MOUNT,
        playbook=str(ansible_dir / "playbook.yml"), ansible_cfg=str(ansible_dir / "ansible.cfg"),
        ansible_vars=str(layout.ansible_vars))))
    files.append(File(layout.ansible_vars, render("templates/ansible/vars.yml.j2", **ansible_context(s))))
    return files


def write(files: list[File]) -> list[Path]:
    """Write the files, each atomically; return the paths written."""
    for file in files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.path.with_name(f".{file.path.name}.tmp")
        tmp.write_text(file.text)
        tmp.chmod(file.mode)
        tmp.replace(file.path)
    return [f.path for f in files]


def remove_rendered(layout: Layout) -> list[Path]:
    """Delete what `render` writes (for `invoke clean`); returns what was there."""
    removed = []
    for path in (layout.packer_dir, layout.http_dir, layout.vagrantfile, layout.ansible_vars.parent):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed
