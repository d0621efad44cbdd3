"""The native build's network namespace: the /30 it takes, the commands that make and remove it, and what a
killed run left behind."""

from __future__ import annotations

import ipaddress
import random
import shlex

import pytest

from hubvm.native import netns

ADDRESSES = """1: lo    inet 127.0.0.1/8 scope host lo
2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0
3: hvt1h    inet 10.214.0.1/30 scope global hvt1h
"""
ROUTES = """default via 192.0.2.1 dev eth0
10.214.0.0/30 dev hvt1h proto kernel scope link src 10.214.0.1
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.10
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.10
"""
DEFAULT_ROUTE = "default via 192.0.2.1 dev eth0\n"




def test_used_networks_are_the_hosts_addresses_and_routes() -> None:
    used = {str(n) for n in netns.used_networks(ADDRESSES, ROUTES)}
    assert used == {"127.0.0.0/8", "192.0.2.0/24", "10.214.0.0/30"}


def test_a_free_subnet_overlaps_nothing_in_use() -> None:
    pool = ipaddress.ip_network("10.214.0.0/28")  # four /30s, three of them in use
    used = [ipaddress.ip_network(n) for n in ("10.214.0.0/30", "10.214.0.4/30", "10.214.0.12/30")]
    for seed in range(10):
        assert str(netns.free_subnet(pool, used, random.Random(seed))) == "10.214.0.8/30"
    with pytest.raises(netns.NoWayOut, match="no free /30"):
        netns.free_subnet(pool, [ipaddress.ip_network("10.214.0.0/28")])


def test_no_default_route_means_no_way_out() -> None:
    with pytest.raises(netns.NoWayOut, match="no default IPv4 route"):
        netns.uplink_interface("")


def test_a_plan_names_everything_after_the_pid_within_interface_limits() -> None:
    net = netns.plan("hvn", "build", 4194303, ipaddress.ip_network("10.214.0.0/16"), ADDRESSES, ROUTES,
                     DEFAULT_ROUTE, random.Random(1))
    assert net.name.startswith("hvn4194303-build")
    assert net.nft_table == net.name.replace("-", "_")
    assert len(net.host_veth) <= 15 and len(net.guest_veth) <= 15
    assert net.uplink == "eth0" and net.subnet.prefixlen == 30
    assert not net.subnet.overlaps(ipaddress.ip_network("10.214.0.0/30"))
    assert (net.host_addr, net.guest_addr) == (str(net.subnet[1]), str(net.subnet[2]))


def test_setup_and_teardown_commands() -> None:
    net = netns.NetworkPlan("hvn42-buildbeef", "42beef", "hvn", ipaddress.ip_network("10.214.7.0/30"), "eth0")
    setup = netns.setup_commands(net)
    assert setup[0] == "ip netns add hvn42-buildbeef"
    assert "ip netns exec hvn42-buildbeef ip route add default via 10.214.7.1" in setup
    assert "ip netns exec hvn42-buildbeef ip addr add 10.214.7.2/30 dev eth0" in setup
    ruleset = shlex.split(setup[-1])[2]
    assert 'ip saddr 10.214.7.0/30 oifname "eth0" masquerade' in ruleset
    assert "table ip hvn42_buildbeef" in ruleset and setup[-1].endswith("| nft -f -")
    assert netns.teardown_commands(net) == ["nft delete table ip hvn42_buildbeef", "ip link delete hvn42beefh",
                                            "ip netns delete hvn42-buildbeef"]


def test_stale_namespaces_are_those_of_dead_processes_with_the_prefix() -> None:
    names = ["hvn100-build1234", "hvn200-buildabcd", "hvt100-prov0000", "other"]
    assert netns.stale("hvn", names, alive=lambda pid: pid == 200) == ["hvn100-build1234"]


