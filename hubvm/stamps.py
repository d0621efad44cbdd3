"""Digests of a step's inputs, so that a step whose inputs did not change can be skipped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hubvm.settings import Settings


def files_under(*roots: Path) -> list[Path]:
    """Every file below the roots (or the root itself when it is a file), sorted, caches left out."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found += [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(set(found))


def digest(files: Iterable[Path], data: Mapping[str, Any], base: Path) -> str:
    """sha256 over the files' relative names and contents, then the data as canonical JSON."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path.relative_to(base)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return h.hexdigest()


def box_inputs(s: Settings) -> tuple[list[Path], dict[str, Any]]:
    """What the base box is made of: the Packer template and scripts, the answer files, the OS data, the settings
    the box depends on. Package lists, hub settings and the Vagrantfile are not among them: they act at `up`."""
    packer = s.project_dir / "templates" / "packer"
    files = files_under(packer / "box.pkr.hcl", packer / "plugins.pkr.hcl", packer / "scripts",
                        packer / "http" / (s.vm.os if s.image.source == "iso" else s.image.source),
                        packer / "os" / f"{s.vm.os}.yaml", s.project_dir / "hubvm" / "baseimage.py")
    data = {
        "vm": {k: getattr(s.vm, k) for k in ("os", "provider", "disk_gb", "accelerator")},
        "image": vars(s.image),
        "ssh": {"user": s.ssh.user, "password": s.ssh.password},
        "guest": {k: getattr(s.guest, k) for k in ("apt_mirror", "http_proxy", "https_proxy", "no_proxy")},
        "ca_certificates": [p.read_text() for p in s.guest.ca_certificates],
    }
    return files, data


def box_digest(s: Settings) -> str:
    files, data = box_inputs(s)
    return digest(files, data, s.project_dir)


def export_digest(s: Settings, box: str) -> str:
    """What the exported appliance is made of: the box, the Vagrantfile template, the playbook, all settings
    but the tool paths and SSH access to the build VM."""
    project = s.project_dir
    files = files_under(project / "templates" / "vagrant", project / "templates" / "ansible", project / "ansible")
    settings = s.as_dict()
    for volatile in ("tools", "ssh"):
        settings.pop(volatile)
    if s.vm.data is not None:
        settings["data_files"] = sorted(str(p.relative_to(s.vm.data)) for p in files_under(s.vm.data))
    return digest(files, {"box": box, "settings": settings}, project)


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(value + "\n")
    tmp.replace(path)
