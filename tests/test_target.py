"""Targets given with --host, the SSH options every client shares, and exact removal of known_hosts entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from hubvm.errors import UserError
from hubvm.target import Target, from_ssh_config, parse, remove_host_entries, ssh_options


def _keypair(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.mark.parametrize(("spec", "target"), [
    ("10.0.0.2", Target("10.0.0.2", "vagrant", 22)),
    ("root@10.0.0.2:2200", Target("10.0.0.2", "root", 2200)),
    ("[::1]:2222", Target("::1", "vagrant", 2222)),
    ("hub.example.org", Target("hub.example.org", "vagrant", 22)),
])
def test_host_specs(spec: str, target: Target) -> None:
    assert parse(spec, "vagrant") == target


@pytest.mark.parametrize(("spec", "words"), [
    ("root@", "is not a host name or address"), ("x@10.0.0.2:99999", "not a number from 1 to 65535"),
    ("Root@10.0.0.2", "is not a login name"), ("[::1]x", "unexpected 'x'"), ("a b", "is not a host name"),
])
def test_bad_host_specs_are_one_line(spec: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        parse(spec, "vagrant")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_vagrant_ssh_config_and_the_shared_options(tmp_path: Path) -> None:
    target = from_ssh_config("Host x\n  HostName 127.0.0.1\n  User vagrant\n  Port 2200\n  IdentityFile \"/k\"\n")
    assert target == Target("127.0.0.1", "vagrant", 2200, Path("/k"))
    options = ssh_options(tmp_path / "known_hosts", 10)
    assert options[options.index("-o") + 1] == f"UserKnownHostsFile={tmp_path / 'known_hosts'}"
    assert "StrictHostKeyChecking=accept-new" in options


def test_remove_host_entries_removes_exactly_that_host_plain_and_hashed(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path)))
    known = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2222")
    known.write_text(
        f"[127.0.0.1]:2222 ssh-ed25519 {key.get_base64()}\n"
        f"{hashed} ssh-ed25519 {key.get_base64()}\n"
        f"[127.0.0.1]:2200 ssh-ed25519 {key.get_base64()}\n"
        f"127.0.0.1 ssh-ed25519 {key.get_base64()}\n")
    assert remove_host_entries(known, ["[127.0.0.1]:2222"]) == 2
    assert known.read_text().splitlines() == [f"[127.0.0.1]:2200 ssh-ed25519 {key.get_base64()}",
                                              f"127.0.0.1 ssh-ed25519 {key.get_base64()}"]


