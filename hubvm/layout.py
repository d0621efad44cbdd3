"""Where every generated file and artifact lives under builds/. One place, so no module spells a path twice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hubvm.settings import Settings


@dataclass(frozen=True)
class Layout:
    project: Path
    name: str        # vm.name
    os: str          # vm.os
    provider: str    # vm.provider

    @classmethod
    def of(cls, s: Settings) -> Layout:
        return cls(s.project_dir, s.vm.name, s.vm.os, s.vm.provider)

    @property
    def builds(self) -> Path:
        return self.project / "builds"

    @property
    def packer_dir(self) -> Path:
        return self.builds / "packer"

    @property
    def packer_vars(self) -> Path:
        return self.packer_dir / "variables.pkrvars.json"

    @property
    def http_dir(self) -> Path:
        return self.builds / "http"

    @property
    def vagrant_dir(self) -> Path:
        return self.builds / "vagrant"

    @property
    def vagrantfile(self) -> Path:
        return self.vagrant_dir / "Vagrantfile"

    @property
    def ansible_vars(self) -> Path:
        return self.builds / "ansible" / "vars.yml"

    @property
    def boxes_dir(self) -> Path:
        return self.builds / "boxes"

    @property
    def box_stem(self) -> str:
        return f"{self.name}-{self.os}-{self.provider}"

    @property
    def box_file(self) -> Path:
        return self.boxes_dir / f"{self.box_stem}.box"

    @property
    def box_stamp(self) -> Path:
        """The digest of the inputs the box was built from, written after the box is complete."""
        return self.boxes_dir / f"{self.box_stem}.inputs-sha256"

    @property
    def partial_dir(self) -> Path:
        """Packer writes here; a finished box is renamed into boxes/, so a failed build leaves no box behind."""
        return self.boxes_dir / ".partial"

    @property
    def base_image_dir(self) -> Path:
        """The disk image built from a package mirror (image.source mirror)."""
        return self.builds / "base"

    @property
    def vm_dir(self) -> Path:
        return self.builds / "vm"

    @property
    def export_stamp(self) -> Path:
        return self.vm_dir / "inputs-sha256"

    @property
    def logs_dir(self) -> Path:
        return self.builds / "logs"

    @property
    def known_hosts(self) -> Path:
        """Host keys seen by verify/ssh, kept apart from ~/.ssh/known_hosts (a rebuilt VM has new keys)."""
        return self.builds / "ssh" / "known_hosts"

    def log(self, step: str) -> Path:
        return self.logs_dir / f"{step}.log"
