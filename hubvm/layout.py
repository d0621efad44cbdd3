"""Where every generated file and artifact lives under builds/. One place, so no module spells a path twice.
builds/README.md lists the same paths for people."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubvm.config.settings import Settings


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
        """The answer files Packer serves (its http_directory)."""
        return self.packer_dir / "http"

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
    def binder_copy(self) -> Path:
        """The packages.binder folder as the binder role copies it to the guest (render makes it, without .git)."""
        return self.builds / "ansible" / "binder"

    @property
    def ansible_inventory(self) -> Path:
        """The hub (and a cluster's compute nodes) as `provision --host` and the native build reach them."""
        return self.builds / "ansible" / "inventory.yml"

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
    def native_dir(self) -> Path:
        """The native build's work folder (its tree, disk, key), removed when the build ends."""
        return self.builds / "native"

    @property
    def vm_partial(self) -> Path:
        """export assembles builds/vm/ here and renames it into place when complete."""
        return self.builds / "vm.partial"

    @property
    def cache_dir(self) -> Path:
        """Downloads (Packer's ISO and image cache) and the answers of slow tool probes."""
        return self.builds / "cache"

    @property
    def packer_cache(self) -> Path:
        return self.cache_dir / "packer"


    @property
    def vagrant_machine_id(self) -> Path:
        """Vagrant's id of the VM (a new one at every `vagrant up` after a destroy)."""
        return self.vagrant_dir / ".vagrant" / "machines" / self.name / self.provider / "id"

    @property
    def vagrant_machines(self) -> Path:
        return self.vagrant_dir / ".vagrant" / "machines"

    @property
    def publish_dir(self) -> Path:
        """Where publish converts the qcow2 to raw (publish.disk_format raw); emptied after the upload."""
        return self.builds / "publish"

    @property
    def backups_dir(self) -> Path:
        """Where `hubvm backup` writes an archive unless --output says otherwise."""
        return self.builds / "backups"

    @property
    def users_dir(self) -> Path:
        """The passwords `hubvm users` gave, one file per machine (mode 0600)."""
        return self.builds / "users"

    @property
    def logs_dir(self) -> Path:
        return self.builds / "logs"

    @property
    def known_hosts(self) -> Path:
        """Host keys seen by verify/ssh, kept apart from ~/.ssh/known_hosts (a rebuilt VM has new keys)."""
        return self.ssh_dir / "known_hosts"

    @property
    def ssh_dir(self) -> Path:
        return self.builds / "ssh"

    @property
    def known_hosts_stamp(self) -> Path:
        """The Vagrant machine id the recorded keys of the Vagrant VM belong to."""
        return self.ssh_dir / "vagrant-machine-id"

    def artifact(self, name: str) -> Path:
        """A file of the exported appliance (builds/vm/NAME)."""
        return self.vm_dir / name

    def log(self, step: str) -> Path:
        return self.logs_dir / f"{step}.log"
