"""hubvm.verify.hostkeys: host keys recorded in the project's known_hosts as paramiko and OpenSSH read them, and
the exact removal of one host's entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko

from hubvm.verify import hostkeys
from hubvm.verify.hostkeys import remove_host_entries


def _keypair(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_recorded_keys_are_read_by_paramiko(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path)))
    known = tmp_path / "ssh" / "known_hosts"
    hostkeys.record_host_key(known, "[10.0.0.2]:2222", key)
    keys = paramiko.HostKeys(str(known))
    assert keys.lookup("[10.0.0.2]:2222")["ssh-ed25519"] == key
    assert hostkeys.fingerprint(key).startswith("ssh-ed25519 SHA256:")


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
