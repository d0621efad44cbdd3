"""The pure parts of the full build test (tests/e2e/full_build.py, libvirt_host.py); the test itself is too slow
for CI and runs by hand."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.e2e import full_build, hosts, libvirt_host


def facts(host_key: str, machine_id: str, cookie: str, **extra: str) -> dict[str, str]:
    return {"host_key": host_key, "machine_id": machine_id, "cookie_secret": cookie, "build_user": "absent",
            "password_auth": "no", "admin_passwords": f"p-{machine_id}", "certificate": f"AB:{machine_id}", **extra}


def copies(first: dict[str, str], second: dict[str, str]) -> list[full_build.Copy]:
    return [full_build.Copy("a", Path("a.qcow2"), facts=first), full_build.Copy("b", Path("b.qcow2"), facts=second)]


def test_distinct_copies_pass() -> None:
    assert full_build.clone_problems(copies(facts("k1", "m1", "c1"), facts("k2", "m2", "c2"))) == []


def test_shared_secrets_and_leftover_logins_are_named() -> None:
    problems = full_build.clone_problems(copies(facts("k", "m1", "c"), facts("k", "m2", "c", build_user="present",
                                                                            password_auth="yes")))
    assert "both copies have the same host_key" in problems
    assert "both copies have the same cookie_secret" in problems
    assert not any("machine_id" in p for p in problems)
    same = full_build.clone_problems(copies(facts("k1", "m1", "c1"), facts("k2", "m2", "c2", certificate="AB:m1",
                                                                          admin_passwords="p-m1")))
    assert same == ["both copies have the same admin_passwords", "both copies have the same certificate"]
    assert "b: the build login vagrant is still there" in problems
    assert "b: sshd allows password logins" in problems


def test_an_unreadable_fact_fails_rather_than_passes() -> None:
    problems = full_build.clone_problems(copies(facts("k1", "m1", ""), facts("k2", "m2", "")))
    assert problems == ["cookie_secret unreadable ('', '')"]


def test_profile_adds_the_key_and_the_host_cas_to_the_shipped_profile(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "proxy.crt").write_text("PEM")
    monkeypatch.setattr(full_build, "HOST_CA_DIR", tmp_path)
    data = yaml.safe_load(full_build.profile_text(Path("/k/id.pub")))
    assert data["export"] == {"formats": ["qcow2", "ova"], "compression": "zstd", "ssh_public_key": "/k/id.pub"}
    assert data["guest"]["ca_certificates"] == [str(tmp_path / "proxy.crt")]
    assert (data["vm"]["provider"], data["image"]["source"], data["hub"]["flavour"]) == ("libvirt", "mirror", "pypi")


def test_domain_xml_is_a_qemu_domain_on_the_test_network() -> None:
    root = ET.fromstring(full_build.domain_xml(full_build.Copy("copy1", Path("/var/lib/libvirt/images/c1.qcow2"))))
    assert root.get("type") == "qemu"
    assert root.find("devices/disk/source").get("file") == "/var/lib/libvirt/images/c1.qcow2"
    assert root.find("devices/interface/source").get("network") == full_build.NETWORK


def test_the_ova_copy_runs_on_virtualbox_hardware_an_ahci_disk_and_an_e1000() -> None:
    copy = full_build.Copy("copy3", Path("/var/lib/libvirt/images/c3.qcow2"), hardware="virtualbox")
    devices = ET.fromstring(full_build.domain_xml(copy)).find("devices")
    assert devices.find("controller").attrib == {"type": "sata", "index": "0"}
    assert devices.find("disk/target").attrib == {"dev": "sda", "bus": "sata"}
    assert devices.find("interface/model").get("type") == "e1000"
    copy.facts = {"disk": "sda", "disk_driver": "ahci", "nic": "enp0s3", "nic_driver": "e1000"}
    assert full_build.hardware_problems(copy) == []
    copy.facts.update(disk_driver="virtio-pci", nic="eth0")
    assert full_build.hardware_problems(copy) == ["copy3: the disk sda hangs off virtio-pci, not ahci",
                                                  "copy3: the NIC is eth0 (e1000), not an e1000 en*"]
    virtio = ET.fromstring(full_build.domain_xml(full_build.Copy("c1", Path("/c1.qcow2")))).find("devices")
    assert virtio.find("controller") is None and virtio.find("disk/target").get("bus") == "virtio"


def test_three_copies_are_compared_pair_by_pair() -> None:
    three = [*copies(facts("k1", "m1", "c1"), facts("k2", "m2", "c2")),
             full_build.Copy("c", Path("c.qcow2"), facts=facts("k1", "m3", "c3"))]
    assert full_build.clone_problems(three) == ["a and c have the same host_key"]


def test_the_libvirt_namespace_takes_a_free_30_of_its_own_pool(monkeypatch) -> None:
    used = [ipaddress.ip_network("10.213.0.0/17")]  # half the pool taken
    monkeypatch.setattr(hosts, "_used_networks", lambda: used)
    network = libvirt_host.LibvirtNamespace(Path("/nonexistent")).network
    assert (network.prefix, network.pool) == ("hvb", ipaddress.ip_network("10.213.0.0/16"))
    for _ in range(20):
        subnet = hosts._free_subnet(network.pool)
        assert subnet.prefixlen == 30 and subnet.subnet_of(network.pool) and not subnet.overlaps(used[0])


def test_step_statuses_reads_the_last_table_invoke_all_printed() -> None:
    output = """==> pack: 2026-11-25 19:05:10
step    status   duration  detail
------  -------  --------  ------
pack    ran      2m07s     builds/boxes/x.box (273 MiB)
up      ran      32m50s    box hubvm/x
pack: builds/boxes/x.box is up to date (inputs unchanged; --force rebuilds it)
up and export: builds/vm/ is up to date (box and configuration unchanged)
step    status   duration  detail
------  -------  --------  -----------
pack    skipped  0.0s      up to date
up      skipped  0.0s      up to date
verify  skipped  0.0s      up to date
export  skipped  0.0s      up to date
"""
    assert full_build.step_statuses(output) == {"pack": "skipped", "up": "skipped", "verify": "skipped",
                                                "export": "skipped"}


def test_verify_detail_keeps_the_result_and_the_wait() -> None:
    output = ("verify: connecting to hubadmin@10.0.0.2:22 (--host, key k)\n"
              "verify: hubadmin@10.0.0.2:22 was still starting (boot or hub); waited 31.0s before checking\n"
              "check  expected  found  result\n"
              "12 of 12 checks passed on hubadmin@10.0.0.2:22 in 9.1s\n")
    assert full_build.verify_detail(output) == (
        "hubadmin@10.0.0.2:22 was still starting (boot or hub); waited 31.0s before checking; "
        "12 of 12 checks passed on hubadmin@10.0.0.2:22 in 9.1s")
