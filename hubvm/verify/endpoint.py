"""Which machine verify, ssh and users talk to, and where this host reaches its hub: `--host [user@]address[:port]`,
or the Vagrant VM as `vagrant ssh-config` reports it (Vagrant's forwarded port on 127.0.0.1, or the host-only
address with ssh.via ip). `vagrant ssh-config` is a read-only probe and runs even under --dry, so a dry run names
the port Vagrant really assigned; when the VM does not exist yet a dry run says so instead of failing."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.layout import Layout
from hubvm.shell import Shell, q
from hubvm.verify.expected import access_expected, hub_url
from hubvm.verify.target import Target, from_ssh_config
from hubvm.verify.target import parse as parse_target
from hubvm.vm.vagrant import vm_exists


@dataclass(frozen=True)
class Endpoint:
    """Where verify/ssh go: the SSH target, the hub's API as seen from this host, and how it was found."""

    target: Target
    hub_url: str
    source: str               # "--host", "vagrant ssh-config", or why the target is a guess (dry run only)
    vagrant: bool             # the tool's own Vagrant VM (its changed host keys may be expected, see module doc)
    reachable: bool = True    # False only in a dry run before the VM exists
    # Where this host reaches the hub's HTTPS port (None: HTTPS off, or a forwarded VM whose HTTPS port is not)
    https_address: tuple[str, int] | None = None

    @property
    def api_url(self) -> str:
        """The hub API as verify asks it from this host: over HTTPS when the hub has it."""
        if self.https_address is None:
            return self.hub_url
        host, port = self.https_address
        return hub_url(host, port, "https")



def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def resolve(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None,
            dry: bool = False) -> Endpoint:
    """The target of verify/ssh: --host, else the Vagrant VM (see module doc); a problem is one UserError line."""
    key = Path(identity).expanduser() if identity else None
    if host:
        target = parse_target(host, default_user=s.ssh.user, identity=key or s.ssh.identity)
        if target.identity is None:
            target = replace(target, password=s.ssh.password)
        # A loopback address off port 22 is a forwarded VM: its hub is forwarded too (vm.hub_host_port).
        forwarded = _is_loopback(target.host) and target.port != 22
        url = hub_url(target.host, s.vm.hub_host_port if forwarded else s.hub.port)
        https_port = s.vm.hub_https_host_port if forwarded else access_expected(s).https_port
        return Endpoint(target, url, "--host", vagrant=False, https_address=_https_address(s, target.host, https_port))
    if key is not None and not key.is_file():
        raise UserError(f"--identity {identity!r}: no such file; give the private key's path")
    vagrant = q(tools.command(s, "vagrant"))
    if not layout.vagrantfile.is_file():
        if dry:
            return _guess(s, key, f"the Vagrant VM, not created yet ({layout.vagrantfile} is missing)")
        raise UserError(f"no Vagrant VM: {layout.vagrantfile} is missing; run hubvm up, or give --host")
    if not vm_exists(layout):  # not asked of Vagrant: it would write builds/vagrant/.vagrant/, even under --dry
        if dry:
            return _guess(s, key, "the Vagrant VM, not created yet")
        raise UserError("no Vagrant VM has been created (builds/vagrant/.vagrant holds none); run hubvm up, or "
                        "give --host")
    result = Shell(c).probe(f"{vagrant} ssh-config", cwd=layout.vagrant_dir)
    if not result.ok:
        # Vagrant's messages run over several lines and sentences: the first sentence says what is wrong
        message = " ".join((result.stderr or result.stdout or "").split())
        reason = message.split(". ")[0].rstrip(".")[:200] or f"exit status {result.exited}"
        if dry:
            return _guess(s, key, f"the Vagrant VM, not running now: {reason}")
        raise UserError(f"vagrant ssh-config failed ({reason}); is the VM running? (hubvm up)")
    reported = from_ssh_config(result.stdout)
    identity_file = key or s.ssh.identity or reported.identity
    if s.ssh.via == "forwarded":
        target = replace(reported, identity=identity_file)
        port = Shell(c).probe(f"{vagrant} port --guest {s.hub.port}", cwd=layout.vagrant_dir)
        text = (port.stdout or "").strip() if port.ok else ""
        host_port = int(text) if text.isdigit() else s.vm.hub_host_port
        url = hub_url("127.0.0.1", host_port)
        https_port = None
        if access_expected(s).on:
            forwarded = Shell(c).probe(f"{vagrant} port --guest {access_expected(s).https_port}",
                                       cwd=layout.vagrant_dir)
            text = (forwarded.stdout or "").strip() if forwarded.ok else ""
            https_port = int(text) if text.isdigit() else None
        https = _https_address(s, "127.0.0.1", https_port)
    else:
        address = reported.host if s.vm.dhcp else s.vm.ip
        target = Target(address, reported.user, 22, identity_file)
        url = hub_url(address, s.hub.port)
        https = _https_address(s, address, access_expected(s).https_port)
    if target.identity is None:
        target = replace(target, password=s.ssh.password)
    return Endpoint(target, url, "vagrant ssh-config", vagrant=True, https_address=https)


def _https_address(s: Settings, host: str, port: int | None) -> tuple[str, int] | None:
    """Where verify checks HTTPS from this host: None when HTTPS is off or its port is not reachable from here
    (a forwarded VM whose Vagrantfile does not forward it); acme is checked at its public name."""
    access = access_expected(s)
    if not access.on or port is None:
        return None
    if access.https == "acme" and access.acme_domain:
        return access.acme_domain, access.https_port
    return host, port


def _guess(s: Settings, key: Path | None, why: str) -> Endpoint:
    """The target a dry run would use once the VM runs (from the configuration alone)."""
    if s.ssh.via == "forwarded":
        target = Target("127.0.0.1", s.ssh.user, s.ssh.port, key or s.ssh.identity)
        url = hub_url("127.0.0.1", s.vm.hub_host_port)
    else:
        address = "<dhcp lease>" if s.vm.dhcp else s.vm.ip
        target = Target(address, s.ssh.user, 22, key or s.ssh.identity)
        url = hub_url(address, s.hub.port)
    return Endpoint(target, url, why, vagrant=True, reachable=False)

