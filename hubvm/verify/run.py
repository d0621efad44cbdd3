"""The tasks verify and ssh: reach the VM (or any --host) over SSH, run the checks in one round trip and print
them, or open a shell. Under `hubvm --dry` nothing connects: the plan (target, hub URL, checks and what they
expect) is printed."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import paramiko

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import duration
from hubvm.shell import is_dry, q
from hubvm.verify.checks import Check, checks_table, evaluate, planned, summary
from hubvm.verify.connect import connect
from hubvm.verify.endpoint import Endpoint, resolve
from hubvm.verify.expected import shared_data_entries
from hubvm.verify.probe import parse_sections, probe_script, waited_seconds
from hubvm.verify.target import Target, describe_auth, ssh_options
from hubvm.verify.web import check_hub_over_https

PROBE_TIMEOUT = 600       # seconds for the probe script (imports are slow in an emulated VM)


def checks_json(endpoint: Endpoint, checks: Sequence[Check], seconds: float) -> str:
    return json.dumps({
        "target": str(endpoint.target),
        "hub_url": endpoint.hub_url,
        "passed": sum(c.passed is True for c in checks),
        "failed": sum(c.passed is False for c in checks),
        "seconds": round(seconds, 1),
        "checks": [asdict(c) for c in checks],
    }, indent=2)



def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_verify(c: Any, s: Settings, host: str | None, identity: str | None, as_json: bool) -> None:
    """`verify`: resolve the target, connect, run the checks, print them; a failed check is a UserError."""
    layout = Layout.of(s)
    dry = is_dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry:
        checks = planned(s, endpoint.api_url)
        if as_json:
            print(checks_json(endpoint, checks, 0.0))
            return
        print(f"verify (dry run, no connection): {endpoint.target} ({endpoint.source})\n"
              f"  login with {describe_auth(endpoint.target)}; hub API from this host: {endpoint.api_url}")
        print(checks_table(checks))
        return
    started = time.monotonic()
    _say(f"verify: connecting to {endpoint.target} ({endpoint.source}, {describe_auth(endpoint.target)})")
    conn = connect(s, layout, endpoint, _say)
    try:
        _say(f"verify: running the checks on {endpoint.target}")
        result = _run_guest(conn, f"bash -c {q(probe_script(s))}", endpoint.target)
    finally:
        conn.close()
    sections = parse_sections(result.stdout)
    waited = waited_seconds(sections.get("starting"))
    if waited:
        _say(f"verify: {endpoint.target} was still starting (boot or hub); waited {duration(waited)} before checking")
    https_answer, host_answer = check_hub_over_https(s, endpoint, sections.get("access"))
    checks = evaluate(s, sections, host_answer, endpoint.api_url, shared_data_entries(s), https_answer)
    seconds = time.monotonic() - started
    if as_json:
        print(checks_json(endpoint, checks, seconds))
    else:
        print(checks_table(checks))
        passed = sum(c.passed is True for c in checks)
        print(f"{passed} of {len(checks)} checks passed on {endpoint.target} in {duration(seconds)}")
    problem = summary(checks)
    if problem:
        raise UserError(problem)


def _run_guest(conn: Any, command: str, target: Target) -> Any:
    import invoke

    try:
        return conn.run(command, hide=True, warn=True, echo=False, pty=False, in_stream=False,
                        timeout=PROBE_TIMEOUT)
    except invoke.CommandTimedOut:
        raise UserError(f"{target}: the checks did not finish within {PROBE_TIMEOUT} s") from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise UserError(f"{target}: the connection broke while running the checks ({error})") from None


def ssh_command(s: Settings, layout: Layout, target: Target) -> list[str]:
    """The OpenSSH command line of an interactive shell (same known_hosts and options as the tool's other clients)."""
    command = ["ssh", *ssh_options(layout.known_hosts, s.ssh.connect_timeout), "-p", str(target.port)]
    if target.identity is not None:
        command += ["-i", str(target.identity), "-o", "IdentitiesOnly=yes"]
    host = f"[{target.host}]" if ":" in target.host else target.host
    return [*command, f"{target.user}@{host}"]


def run_ssh(c: Any, s: Settings, host: str | None, identity: str | None, command: str | None) -> int:
    """`ssh`: an interactive shell (the system ssh client), or one command via fabric; returns its status."""
    layout = Layout.of(s)
    dry = is_dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry and command is not None:
        print(f"ssh (dry run, no connection): would run {command!r} on {endpoint.target} via {endpoint.source}")
        return 0
    if not dry:
        # Host key policy, retries and one-line errors before anything else; the shell then finds the key recorded.
        conn = connect(s, layout, endpoint, _say)
        if command is None:
            conn.close()
        else:
            try:
                result = conn.run(command, warn=True, pty=False, echo=False, in_stream=False)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise UserError(f"{endpoint.target}: the connection broke ({error})") from None
            finally:
                conn.close()
            return result.exited
    result = c.run(shlex.join(ssh_command(s, layout, endpoint.target)), pty=True, warn=True)
    return result.exited if result is not None else 0
