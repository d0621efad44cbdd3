"""hubvm.verify.run without a machine: dry runs of verify and ssh that connect nowhere, and verify's JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from invoke import Result

from hubvm.config.settings import Settings
from hubvm.layout import Layout
from hubvm.verify import run, web
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.target import Target
from tests.verify.helpers import RESULTS, SSH_CONFIG, mock

VmSettings = Callable[..., Settings]

# ---------------------------------------------------------------------------------------------------------------
# Dry runs open no connection


def test_dry_verify_opens_no_connection(layout: Layout, vm_settings: VmSettings, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import fabric

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run constructed a fabric Connection")

    monkeypatch.setattr(fabric, "Connection", forbidden)
    monkeypatch.setattr(web, "ask_hub", forbidden)
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")}, dry=True)
    run.run_verify(c, vm_settings(), None, None, False)
    out = capsys.readouterr().out
    assert "verify (dry run, no connection): vagrant@127.0.0.1:2200 (vagrant ssh-config)" in out
    assert "hub service" in out and "package pandas" in out and "R package r-cran-data.table" in out
    assert run.run_ssh(c, vm_settings(), None, None, "uptime") == 0
    assert "would run 'uptime' on vagrant@127.0.0.1:2200" in capsys.readouterr().out
    run.run_verify(c, vm_settings(), None, None, True)
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"] == "vagrant@127.0.0.1:2200" and {c["passed"] for c in plan["checks"]} == {None}


def test_dry_interactive_ssh_prints_the_ssh_command(layout: Layout, vm_settings: VmSettings,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import fabric

    monkeypatch.setattr(fabric, "Connection", None)
    seen = []
    c = mock({"vagrant ssh-config": Result(SSH_CONFIG), "vagrant port --guest 80": Result("8080"),
              "vagrant port --guest 443": Result("8443")}, dry=True)
    real_run = c.run

    def run_(command: str, **kwargs: object) -> Result:
        if command.startswith("ssh "):
            seen.append((command, kwargs))
            return Result(command=command)
        return real_run(command, **kwargs)

    c.run = run_  # type: ignore[method-assign]
    assert run.run_ssh(c, vm_settings(), None, None, None) == 0
    command, kwargs = seen[0]
    assert kwargs["pty"] is True
    assert f"UserKnownHostsFile={layout.known_hosts}" in command
    assert command.endswith("-p 2200 -i /work/main/builds/vagrant/.vagrant/machines/jupyterhub-vm/virtualbox/"
                            "private_key -o IdentitiesOnly=yes vagrant@127.0.0.1")


# ---------------------------------------------------------------------------------------------------------------
# Output


def test_checks_json() -> None:
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", 2222), "http://127.0.0.1:8080/hub/api", "--host", False)
    data = json.loads(run.checks_json(endpoint, RESULTS, 1.23))
    assert data["target"] == "vagrant@127.0.0.1:2222" and (data["passed"], data["failed"]) == (1, 2)
    assert data["checks"][1] == {"name": "hub service", "expected": "jupyterhub active", "found": "inactive",
                                 "passed": False}
