"""One validated settings object from the layered configuration.

`load(layers, flags)` merges the layers (hubvm.layers: each already checked for known keys and kinds), validates
every value with its check from hubvm.schema, then the rules between settings, and returns `Settings`, or raises
ConfigError naming the key, the bad value, where it came from and the fix. The sections' classes are made from the
schema: a setting is declared once, there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any

from hubvm import PROJECT_DIR, binder, guest
from hubvm.config import schema
from hubvm.config.layers import Layer, Layers, flag_layer
from hubvm.config.validators import OS_DIR, Context
from hubvm.errors import ConfigError

SSH_GUEST_PORT = 22


def _section_class(section: str) -> type:
    extra: dict[str, Any] = {}
    if section == "vm":
        extra["dhcp"] = property(lambda self: self.ip == "dhcp")
    fields = [(name, Any) for name in schema.section_keys(section)]
    return make_dataclass(section.capitalize(), fields, frozen=True, namespace=extra)


SECTION_CLASSES: dict[str, type] = {section: _section_class(section) for section in schema.SECTIONS}


class _SettingsMethods:
    """What Settings offers besides one attribute per section (the sections come from the schema)."""

    @property
    def hub_paths(self) -> guest.HubPaths:
        return guest.HUB_PATHS[self.hub.flavour]  # type: ignore[attr-defined]

    @property
    def user_env(self) -> str:
        """The environment the users' kernels run in (TLJH's conda env, or the pypi flavour's venv)."""
        return self.hub_paths.user_env

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (for digests and the manifest): paths as strings, tuples as lists."""
        return {name: _plain(vars(getattr(self, name))) for name in schema.SECTIONS}


# One attribute per section of the schema (s.vm.ip, s.publish.cloud, ...), the OS's data, the project folder
Settings = make_dataclass(
    "Settings",
    [*((section, Any) for section in schema.SECTIONS),
     ("os_data", Mapping[str, Any], field(repr=False, compare=False)), ("project_dir", Path, PROJECT_DIR)],
    bases=(_SettingsMethods,), frozen=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def load(layers: Layers, flags: Mapping[str, Any] | None = None) -> Settings:
    """The settings of a task: the run's layers, then the task's flags ({"vm.ip": ...}; an unset flag is None)."""
    return parse(layers, flag_layer(flags or {}))


def parse(layers: Layers, flags: Layer | None = None) -> Settings:
    raw, sources = layers.merged(flags)
    context = Context(layers.project_dir, raw)
    values: dict[str, dict[str, Any]] = {section: {} for section in schema.SECTIONS}
    for setting in schema.SETTINGS:
        value = raw[setting.section][setting.name]
        try:
            values[setting.section][setting.name] = setting.check(setting.key, value, context)
        except ConfigError as error:
            raise error.came_from(sources.get(setting.key)) from None
    from hubvm.config.layers import read_file

    os_data = read_file(layers.project_dir / OS_DIR / f"{values['vm']['os']}.yaml")
    settings = Settings(**{name: SECTION_CLASSES[name](**body) for name, body in values.items()},
                        os_data=os_data, project_dir=layers.project_dir)
    _cross_checks(settings)  # rules between settings: the message names the settings involved
    return settings


def _cross_checks(s: Settings) -> None:
    """Rules between settings; each names the key a user would change."""
    forwards = {"ssh.port": s.ssh.port, "vm.hub_host_port": s.vm.hub_host_port,
                "vm.hub_https_host_port": s.vm.hub_https_host_port}
    for key, port in list(forwards.items())[1:]:
        clash = next((other for other, used in forwards.items() if other != key and used == port), None)
        if clash and list(forwards).index(clash) < list(forwards).index(key):
            raise ConfigError(key, port, f"is also {clash} (both are forwarded from 127.0.0.1)",
                              "pick another host port")
    if s.hub.https != "off" and s.hub.https_port == s.hub.port:
        raise ConfigError("hub.https_port", s.hub.https_port, "is also hub.port (HTTP redirects to HTTPS there)",
                          "pick another port, such as 443")
    if s.hub.https == "files" and not (s.hub.https_cert_file and s.hub.https_key_file):
        missing = "hub.https_cert_file" if not s.hub.https_cert_file else "hub.https_key_file"
        raise ConfigError(missing, "", "is empty while hub.https is files", "give the path of the PEM file")
    if s.hub.https == "acme" and not (s.hub.https_acme_domain and s.hub.https_acme_email):
        missing = "hub.https_acme_domain" if not s.hub.https_acme_domain else "hub.https_acme_email"
        raise ConfigError(missing, "", "is empty while hub.https is acme", "give the hub's public DNS name and an "
                          "e-mail address for Let's Encrypt")
    strangers = sorted(set(s.hub.admin_password_hashes) - set(s.hub.admin_users))
    if strangers:
        raise ConfigError("hub.admin_password_hashes", strangers[0], "is not one of hub.admin_users",
                          "give hashes for the administrators only")
    if not s.material.nbgitpuller and _installs(s.packages.python, "nbgitpuller"):
        raise ConfigError("material.nbgitpuller", False, "is false while packages.python installs nbgitpuller (the "
                          "hub role would remove what the python role installs)", "set material.nbgitpuller true, or "
                          "take nbgitpuller out of packages.python")
    _cluster_checks(s)
    binder.of(s)  # the folder's repo2docker files, each checked (a BinderError names the file and line)
    if s.build.mode == "native":
        _native_checks(s)
    if s.image.source == "mirror" and s.vm.provider != "libvirt":
        raise ConfigError("image.source", "mirror", "builds a qcow2 disk for QEMU, which VirtualBox cannot boot",
                          "use iso or cloud with vm.provider virtualbox, or set vm.provider libvirt")
    if s.image.source == "cloud" and not s.image.url and s.vm.provider not in s.os_data.get("cloud", {}):
        raise ConfigError("image.source", "cloud", f"{s.os_data['name']} publishes no cloud image for "
                          f"{s.vm.provider}", "use image.source iso, or give image.url and image.checksum")
    if s.image.url and not s.image.checksum:
        raise ConfigError("image.checksum", "", "is empty while image.url is set",
                          'give "sha256:<hex>" or "file:<URL of a SHA256SUMS>"')
    if s.export.ssh_user == s.ssh.user and not s.export.keep_vagrant_access:
        raise ConfigError("export.ssh_user", s.export.ssh_user, "is the build user the export removes",
                          "pick another name such as hubadmin")
    if s.ssh.via == "ip" and s.vm.dhcp and s.vm.provider == "virtualbox":
        raise ConfigError("ssh.via", "ip", "needs a known address, and VirtualBox reports no DHCP lease",
                          "set vm.ip to a static address, or ssh.via forwarded")


def _installs(requirements: tuple[str, ...], name: str) -> bool:
    """Whether pip requirements (already validated) name this distribution."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return any(canonicalize_name(Requirement(spec).name) == canonicalize_name(name) for spec in requirements)


def _cluster_checks(s: Settings) -> None:
    """A hub that spawns on Slurm: the pypi flavour (batchspawner in its venvs), and either the hub's own controller
    with the compute nodes hubvm provisions, or a site's controller with its configuration and key."""
    if s.hub.spawner == "slurm" and s.hub.flavour != "pypi":
        raise ConfigError("hub.spawner", "slurm", "runs users' servers as Slurm jobs, which the pypi flavour does "
                          "(TLJH's hub runs them on itself)", "set hub.flavour pypi, or hub.spawner local")
    if s.hub.spawner == "local" and s.cluster.compute:
        raise ConfigError("cluster.compute", list(s.cluster.compute), "is set while hub.spawner is local (users' "
                          "servers run on the hub)", "set hub.spawner slurm, or cluster.compute []")
    if s.cluster.controller:
        for key in ("slurm_conf", "munge_key"):
            if getattr(s.cluster, key) is None:
                raise ConfigError(f"cluster.{key}", "", f"is empty while cluster.controller is the site's "
                                  f"{s.cluster.controller}", "give the file the site's Slurm uses")
        if s.cluster.compute:
            raise ConfigError("cluster.compute", list(s.cluster.compute), "lists nodes while the site's controller "
                              f"{s.cluster.controller} manages its compute nodes", "set cluster.compute [], or "
                              'cluster.controller "" for a cluster hubvm makes')


def _native_checks(s: Settings) -> None:
    """A native build starts from the mirror's tree, makes a qcow2 and a libvirt box (and, for VirtualBox, an OVA or
    OVF from the same disk), and logs into the exported image as export.ssh_user to verify it."""
    if s.image.source != "mirror":
        raise ConfigError("image.source", s.image.source, "is not mirror, and build.mode native starts from the "
                          "tree mmdebstrap makes", "set image.source mirror, or build.mode vm")
    if s.vm.provider != "libvirt":
        raise ConfigError("vm.provider", s.vm.provider, "build.mode native makes a vagrant-libvirt box (and, with "
                          "export.formats ova, an OVA for VirtualBox)", "set vm.provider libvirt")
    if "qcow2" not in s.export.formats:
        raise ConfigError("export.formats", list(s.export.formats), "lacks qcow2, the disk build.mode native boots "
                          "to verify the appliance and puts in its box", "add qcow2, such as [qcow2, ova]")
    if s.export.ssh_public_key is None:
        raise ConfigError("export.ssh_public_key", "", "is empty, and build.mode native verifies the exported image "
                          "over SSH as export.ssh_user", "give a public key (and ssh.identity its private key when "
                          "that is not beside it)")
    beside = s.export.ssh_public_key.with_suffix("") if s.export.ssh_public_key.suffix == ".pub" else None
    if s.ssh.identity is None and (beside is None or not beside.is_file()):
        raise ConfigError("ssh.identity", "", f"is empty and no private key lies beside {s.export.ssh_public_key}",
                          "set ssh.identity to the private key of export.ssh_public_key")


def image_source(s: Settings) -> dict[str, str]:
    """The base image's URL and checksum: the configured ones, else the OS's defaults for the source."""
    if s.image.url:
        return {"url": s.image.url, "checksum": s.image.checksum}
    if s.image.source == "iso":
        return {"url": s.os_data["iso"]["url"], "checksum": s.os_data["iso"]["checksum"]}
    if s.image.source == "cloud":
        return dict(s.os_data["cloud"][s.vm.provider])
    return {"url": s.image.mirror or s.os_data["mirror"]["url"], "checksum": "none"}


def defaults(project_dir: Path = PROJECT_DIR) -> Settings:
    """The settings of invoke.yaml alone (tests, and tools that need no override)."""
    return parse(Layers.defaults_only(project_dir))
