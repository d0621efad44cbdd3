"""hubvm.verify.target: targets given with --host, the one `vagrant ssh-config` reports, and the SSH options every
client shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubvm.errors import UserError
from hubvm.verify.target import Target, from_ssh_config, parse, ssh_options


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
    # issue 18: an unclosed bracket was taken as [::1] and connected to
    ("root@[::1", "'[' is not closed"), ("[fe80::1:2222", "'[' is not closed"),
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
