"""Digests of what a step's output is made of, so that a step whose inputs did not change is skipped.

What goes into each digest: files (templates, the playbook, and this package's own code that ends up in the
image, hashed by module or by whole folder, so that a moved file cannot silently drop out), and the settings the
schema marks as going into the box (BOX) or the appliance (BOX and APPLIANCE). A setting marked NOWHERE (a tool's
path, an SSH port, where to publish) never makes a box or an export stale. A setting that names a file counts by
the file's content, a folder by its entries, not by the path that names them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import hubvm
from hubvm.config import schema
from hubvm.config.settings import Settings

PACKAGE_ROOT = Path(hubvm.__file__).resolve().parent.parent  # the folder that holds this package


# Never part of what is built: caches, and a folder's git history (a Binder repository's .git changes with every
# `git status`, which must not make the appliance stale)
IGNORED = ("__pycache__", ".git", ".ipynb_checkpoints")


def files_under(*roots: Path) -> list[Path]:
    """Every file below the roots (or the root itself when it is a file), sorted, IGNORED left out. A root that does
    not exist is an error: an input that moved must not silently leave a digest."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found += [p for p in root.rglob("*")
                      if p.is_file() and not set(p.relative_to(root).parts) & set(IGNORED)]
        else:
            raise FileNotFoundError(f"an input of a digest is missing: {root}")
    return sorted(set(found))


def code_of(module: ModuleType) -> list[Path]:
    """A module's file, or a package's whole folder: this tool's code that goes into what a step makes."""
    path = Path(module.__file__ or "").resolve()
    return files_under(path.parent if path.name == "__init__.py" else path)


def _name(path: Path, base: Path) -> str:
    """How a file is named in a digest: relative to the project, or (this package's code) to its own root."""
    resolved = path.resolve()
    for root in (base.resolve(), PACKAGE_ROOT):
        if resolved.is_relative_to(root):
            return str(resolved.relative_to(root))
    return str(resolved)


def digest(files: Iterable[Path], data: Mapping[str, Any], base: Path) -> str:
    """sha256 over the files' names and contents, then the data as canonical JSON."""
    h = hashlib.sha256()
    for path in sorted(files, key=lambda p: _name(p, base)):
        h.update(_name(path, base).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _content(value: Any) -> Any:
    """A setting's value as a digest sees it: a file by its content's sha256, a folder by its entries (names, sizes
    and modification times), anything else as it is."""
    if isinstance(value, Path):
        if value.is_dir():
            return sorted((str(p.relative_to(value)), p.stat().st_size, p.stat().st_mtime_ns)
                          for p in files_under(value))
        return hashlib.sha256(value.read_bytes()).hexdigest() if value.is_file() else str(value)
    if isinstance(value, (list, tuple)):
        return [_content(v) for v in value]
    return value


def settings_in(s: Settings, *parts: str) -> dict[str, Any]:
    """The values of the settings that go into these parts (schema BOX, APPLIANCE), keyed by setting."""
    return {key: _content(getattr(getattr(s, key.split(".")[0]), key.split(".")[1]))
            for key in schema.keys_in(*parts)}


def box_inputs(s: Settings) -> tuple[list[Path], dict[str, Any]]:
    """What the base box is made of: the Packer template and scripts, the answer files of the source, the OS data,
    the code that builds a mirror image, and the settings marked BOX. Package lists, hub settings and the
    Vagrantfile are not among them: they act at `up`."""
    from hubvm import baseimage

    packer = s.project_dir / "templates" / "packer"
    answers = {"iso": s.project_dir / "http" / s.vm.os, "cloud": s.project_dir / "http" / "cloud"}
    files = files_under(packer / "box.pkr.hcl", packer / "plugins.pkr.hcl", packer / "scripts",
                        packer / "os" / f"{s.vm.os}.yaml", *([answers[s.image.source]] if s.image.source in answers
                                                            else []))
    return files + code_of(baseimage), settings_in(s, schema.BOX)


def box_digest(s: Settings) -> str:
    files, data = box_inputs(s)
    return digest(files, data, s.project_dir)


def export_digest(s: Settings, box: str) -> str:
    """What the exported appliance is made of: the box (or, natively, the base tree), the Vagrantfile and variable
    templates, the playbook, the programs the playbook installs on the guest, and the settings marked APPLIANCE."""
    from hubvm import guest

    project = s.project_dir
    files = files_under(project / "templates" / "vagrant", project / "templates" / "ansible", project / "ansible")
    return digest(files + code_of(guest), {"box": box, "settings": settings_in(s, schema.APPLIANCE)}, project)


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
