"""A network namespace with a masqueraded way out: where the native build's container (and the e2e tests' hosts)
live, so that their network stays off the host's own interfaces and reaches the package registries through NAT.

The shape: a namespace `<prefix><pid>-<label><rand>`, a veth pair on a /30 whose host end holds the first address
and whose other end, moved into the namespace and renamed eth0, holds the second with a default route via the
host end; IPv4 forwarding on; an nft table of the same name (dashes as underscores) that masquerades the /30 out
of the host's uplink. Names carry the creating process's PID, so what a killed run left behind is found and
removed (`stale`).

Everything here is pure: the plan from what the host reports (`ip -4 -o addr show`, `ip -4 route show table all`,
`ip -4 route show default`), and the command lines that make and remove it, which a caller runs through its
runner (so `hubvm --dry` prints them) or through subprocess (tests/e2e/hosts.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hubvm.shell import q

NETNS_DIR = "/run/netns"
# Held while a /30 is picked and its addresses are set, so that two runs never take the same one
LOCK_FILE = "/run/hubvm-netns.lock"
# Probes whose outputs `plan` needs (read-only, run even under --dry)
PROBE_ADDRESSES = "ip -4 -o addr show"
PROBE_ROUTES = "ip -4 route show table all"
PROBE_DEFAULT_ROUTE = "ip -4 route show default"


class NoWayOut(Exception):
    """The host cannot give a namespace a way out (no default route, or no free /30)."""


@dataclass(frozen=True)
class NetworkPlan:
    """One namespace, its veth pair and its /30 (see the module doc)."""

    name: str
    tag: str                       # short unique id for 15-character interface names
    prefix: str
    subnet: ipaddress.IPv4Network  # a /30
    uplink: str                    # the host interface masqueraded traffic leaves by

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"

    @property
    def nft_table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def host_veth(self) -> str:
        return f"{self.prefix}{self.tag}h"

    @property
    def guest_veth(self) -> str:
        return f"{self.prefix}{self.tag}g"

    @property
    def host_addr(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def guest_addr(self) -> str:
        return str(self.subnet.network_address + 2)

    @property
    def exec_prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]


def uplink_interface(default_route_output: str) -> str:
    """The interface of the host's default IPv4 route (`ip -4 route show default`)."""
    match = re.search(r"\bdev (\S+)", default_route_output)
    if not match:
        raise NoWayOut("the host has no default IPv4 route, so a network namespace cannot get a way out")
    return match.group(1)


def used_networks(addresses_output: str, routes_output: str) -> list[ipaddress.IPv4Network]:
    """Networks in use on the host: its addresses' prefixes (`ip -4 -o addr show`) and its routes
    (`ip -4 route show table all`)."""
    used = []
    for line in addresses_output.splitlines():
        match = re.search(r"inet (\S+)", line)
        if match:
            used.append(ipaddress.ip_interface(match.group(1)).network)
    for line in routes_output.splitlines():
        first = line.split()[0] if line.split() else ""
        if first and first not in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(first, strict=False))
    return used


def free_subnet(pool: ipaddress.IPv4Network, used: Iterable[ipaddress.IPv4Network],
                rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A /30 of the pool that overlaps nothing in use (picked at random, so parallel runs rarely even try the
    same one; the lock makes sure they never get it)."""
    used = list(used)
    candidates = list(pool.subnets(new_prefix=30))
    for subnet in (rng or random).sample(candidates, min(200, len(candidates))):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise NoWayOut(f"no free /30 in {pool}: every one tried overlaps an address or route of this host")


def plan(prefix: str, label: str, pid: int, pool: ipaddress.IPv4Network, addresses_output: str,
         routes_output: str, default_route_output: str, rng: random.Random | None = None) -> NetworkPlan:
    """The namespace to make, from what the host reports (the three PROBE_* commands)."""
    rng = rng or random.Random()
    suffix = f"{rng.randrange(16**4):04x}"
    tag = f"{pid % 100000}{suffix}"[-9:]
    return NetworkPlan(name=f"{prefix}{pid}-{label}{suffix}", tag=tag, prefix=prefix,
                       subnet=free_subnet(pool, used_networks(addresses_output, routes_output), rng),
                       uplink=uplink_interface(default_route_output))


def masquerade_ruleset(net: NetworkPlan) -> str:
    """The nft table that masquerades the /30 out of the uplink."""
    return (f"table ip {net.nft_table} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    ip saddr {net.subnet} oifname "{net.uplink}" masquerade\n'
            "  }\n"
            "}\n")


def setup_commands(net: NetworkPlan) -> list[str]:
    """Make the namespace, the veth pair, addresses and routes, forwarding and the nft table, in order.
    After a failure, `teardown_commands` removes whatever was made (each of its commands may fail alone)."""
    inside = " ".join(net.exec_prefix)
    return [
        f"ip netns add {net.name}",
        f"ip link add {net.host_veth} type veth peer name {net.guest_veth}",
        f"ip link set {net.guest_veth} netns {net.name}",
        f"ip addr add {net.host_addr}/30 dev {net.host_veth}",
        f"ip link set {net.host_veth} up",
        f"{inside} ip link set {net.guest_veth} name eth0",
        f"{inside} ip addr add {net.guest_addr}/30 dev eth0",
        f"{inside} ip link set eth0 up",
        f"{inside} ip link set lo up",
        f"{inside} ip route add default via {net.host_addr}",
        # left on afterwards: other namespaces (of other runs) may rely on it at the same time
        "sysctl -q -w net.ipv4.ip_forward=1",
        f"printf %s {q(masquerade_ruleset(net))} | nft -f -",
    ]


def teardown_commands(net: NetworkPlan) -> list[str]:
    """Remove what `setup_commands` made, in reverse; run each even when one fails (some may not exist)."""
    return [
        f"nft delete table ip {net.nft_table}",
        f"ip link delete {net.host_veth}",  # removes its peer too, wherever it is
        f"ip netns delete {net.name}",
    ]


def stale(prefix: str, namespace_names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """Namespaces named by `prefix` whose creating process is gone (what a killed run left behind)."""
    found = []
    for name in namespace_names:
        match = re.fullmatch(rf"{re.escape(prefix)}(\d+)-.*", name)
        if match and not alive(int(match.group(1))):
            found.append(name)
    return found


def stale_teardown_commands(name: str) -> list[str]:
    """Remove a stale namespace: its processes (by PID), its nft table, the namespace (its veth goes with it)."""
    return [
        f"for pid in $(ip netns pids {name}); do kill -KILL $pid; done",
        f"nft delete table ip {name.replace('-', '_')}",
        f"ip netns delete {name}",
    ]


def pid_alive(pid: int) -> bool:
    """Whether a process of that PID exists (the PID in a namespace's name: is the run that made it alive?)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
