"""The guest's hubvm-hub-secrets (hubvm/guest/hub_secrets.py), run here on scratch paths: admin passwords in a real
dbm store (bcrypt, as FirstUseAuthenticator checks them), the root-only passwords file, a first boot killed between
its steps, and the self-signed certificate (openssl) for this machine's names and addresses. The whole tool runs on
the test host in tests/e2e."""

from __future__ import annotations

import dbm
import json
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import bcrypt
import pytest

from hubvm.guest import hub_secrets
from hubvm.verify.certificates import certificate_facts, pem_to_der
from tests.conftest import HANG_GUARD


def load() -> ModuleType:
    return hub_secrets


def access(tmp_path: Path, admins: list[str]) -> dict:
    return {"admins": admins, "password_db": str(tmp_path / "state" / "passwords.dbm"), "password_length": 16,
            "admin_passwords_file": str(tmp_path / "hub-admin-passwords"), "https": "self-signed",
            "http_port": 80, "https_port": 443, "tls_cert": str(tmp_path / "tls" / "self-signed.crt"),
            "tls_key": str(tmp_path / "tls" / "self-signed.key"), "self_signed_days": 10}


def stored(settings: dict) -> dict[str, bytes]:
    with dbm.open(settings["password_db"], "r") as db:
        return {key.decode(): db[key] for key in db.keys()}  # noqa: SIM118 (dbm.gnu objects do not iterate)


def test_admins_get_passwords_once_and_configured_hashes_win(tmp_path: Path) -> None:
    tool = load()
    settings = access(tmp_path, ["admin", "grader"])
    configured = bcrypt.hashpw(b"grader-password", bcrypt.gensalt(4)).decode()
    generated, set_from_hash = tool.admin_passwords(settings, {"grader": configured})
    assert list(generated) == ["admin"] and set_from_hash == ["grader"]
    password = generated["admin"]
    assert len(password) == 16 and not set(password) & set("0O1lI")
    hashes = stored(settings)
    assert bcrypt.checkpw(password.encode(), hashes["admin"])  # what FirstUseAuthenticator does at login
    assert hashes["grader"] == configured.encode()
    passwords_file = Path(settings["admin_passwords_file"])
    assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
    assert tool.read_passwords_file(str(passwords_file)) == {"admin": password}
    # A second run changes nothing; a new admin gets a password, the others keep theirs.
    assert tool.admin_passwords(settings, {"grader": configured}) == ({}, [])
    settings["admins"].append("late")
    generated, _ = tool.admin_passwords(settings, {"grader": configured})
    assert list(generated) == ["late"]
    assert tool.read_passwords_file(str(passwords_file)) == {"admin": password, "late": generated["late"]}
    # A boot fills in only what is missing: a password changed in the hub stays until the next provisioning.
    changed = bcrypt.hashpw(b"changed-in-the-hub", bcrypt.gensalt(4))
    with dbm.open(settings["password_db"], "w") as db:
        db[b"grader"] = changed
    assert tool.admin_passwords(settings, {"grader": configured}, enforce=False) == ({}, [])
    assert stored(settings)["grader"] == changed
    assert tool.admin_passwords(settings, {"grader": configured}) == ({}, ["grader"])
    assert stored(settings)["grader"] == configured.encode()
    # An admin whose password becomes a configured hash leaves the file (its old password no longer works).
    tool.admin_passwords(settings, {"grader": configured, "late": configured})
    assert "late" not in tool.read_passwords_file(str(passwords_file))


def test_the_self_signed_certificate_names_this_machine_and_is_made_again_only_when_needed(tmp_path: Path) -> None:
    tool = load()
    settings = access(tmp_path, ["admin"])
    assert tool.self_signed_certificate(settings) is True
    cert, key = Path(settings["tls_cert"]), Path(settings["tls_key"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(cert.stat().st_mode) == 0o644
    facts = certificate_facts(pem_to_der(cert.read_text()))
    assert facts.self_signed and facts.names("127.0.0.1") and facts.names("localhost")
    names = json.loads(Path(str(cert) + ".names").read_text())
    assert names == tool.host_names() and all(n.startswith(("DNS:", "IP:")) for n in names)
    fingerprint = tool.certificate_fingerprint(str(cert))
    assert fingerprint == facts.fingerprint
    assert tool.self_signed_certificate(settings) is False  # same names: kept
    Path(str(cert) + ".names").write_text(json.dumps(["DNS:localhost"]))  # as if an address were new
    assert tool.self_signed_certificate(settings) is True
    assert tool.certificate_fingerprint(str(cert)) != fingerprint


# A first boot of a copy, run as a process whose hash store write is replaced by an uncatchable death (SIGKILL):
# nothing after it runs, no finally block, no flush, as in a power loss between the two writes.
KILLED_BETWEEN_THE_STEPS = """
import os, signal, sys
from hubvm.guest import hub_secrets
hub_secrets.ACCESS, hub_secrets.HASHES, hub_secrets.ISSUE, hub_secrets.CONSOLE = sys.argv[1:5]
hub_secrets.ACTIVE_CONSOLES = sys.argv[4] + ".active"   # no such file: /dev/console (here a file) alone
if sys.argv[5] == "kill":
    hub_secrets.store_hashes = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(hub_secrets.main(["--boot"]))
"""


def _boot(tmp_path: Path, settings: dict, kill: bool) -> subprocess.CompletedProcess[str]:
    paths = [tmp_path / "hub-access.json", tmp_path / "hashes.json", tmp_path / "issue.d" / "hubvm.issue",
             tmp_path / "console"]
    paths[0].write_text(json.dumps(settings))
    paths[3].touch()  # the console, as a file that is there
    return subprocess.run([sys.executable, "-c", KILLED_BETWEEN_THE_STEPS, *map(str, paths),
                           "kill" if kill else "run"], capture_output=True, text=True, timeout=HANG_GUARD)


def test_a_first_boot_killed_between_its_steps_still_leaves_every_admin_a_readable_password(tmp_path: Path) -> None:
    """Defect 3 of issue 18: the hash was stored before the password was written, so a crash between the two left
    an admin with a password nobody knows (and the next boot, seeing a hash, made none)."""
    settings = {**access(tmp_path, ["admin", "grader"]), "https": "off", "tls_cert": "", "tls_key": ""}
    killed = _boot(tmp_path, settings, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    written = hub_secrets.read_passwords_file(settings["admin_passwords_file"])
    assert sorted(written) == ["admin", "grader"]  # readable although no hash reached the store
    assert not Path(settings["password_db"]).exists() or stored(settings) == {}
    rebooted = _boot(tmp_path, settings, kill=False)
    assert rebooted.returncode == 0, rebooted.stderr
    hashes = stored(settings)
    for name, password in written.items():
        assert bcrypt.checkpw(password.encode(), hashes[name]), name  # the written password is the one that works
    assert hub_secrets.read_passwords_file(settings["admin_passwords_file"]) == written
    shown = (tmp_path / "console").read_text()
    assert all(f"hubvm:     {name}  {password}" in shown for name, password in written.items())
    assert _boot(tmp_path, settings, kill=False).stdout == ""  # and then nothing changes


def test_no_moment_of_the_writes_loses_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the two writes (the passwords file, then the hash store) interrupted in turn: after the interruption
    and a rerun, every admin has a hash in the store that the password in the file opens."""
    for step in ("write_private", "store_hashes"):
        folder = tmp_path / step
        folder.mkdir()
        settings = {**access(folder, ["admin", "ta"]), "https": "off", "tls_cert": "", "tls_key": ""}
        original = getattr(hub_secrets, step)

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(hub_secrets, step, interrupted)
        with pytest.raises(KeyboardInterrupt):
            hub_secrets.admin_passwords(settings, {})
        monkeypatch.setattr(hub_secrets, step, original)
        hub_secrets.admin_passwords(settings, {})
        written = hub_secrets.read_passwords_file(settings["admin_passwords_file"])
        hashes = stored(settings)
        assert sorted(written) == ["admin", "ta"], step
        assert all(bcrypt.checkpw(written[name].encode(), hashes[name]) for name in written), step


@pytest.mark.parametrize(("content", "words"), [
    (None, "is missing: provision this machine first (hubvm provision)"),
    ("[]", "cannot be read"),
    (json.dumps({"admins": ["admin"]}), "lacks admin_passwords_file, https, password_db, password_length"),
])
def test_an_unprovisioned_machine_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              content: str | None, words: str) -> None:
    path = tmp_path / "hub-access.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(hub_secrets, "ACCESS", str(path))
    assert hub_secrets.main(["--boot"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hubvm-hub-secrets: {path} ") and words in err and "\n" not in err


def test_the_passwords_reach_a_screen_named_before_the_serial_console(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """console=tty0 console=ttyS0 (the mirror image's command line): /dev/console is the serial port, so the screen
    (VirtualBox's window) is written to as well; with one console, or none known, /dev/console alone."""
    active = tmp_path / "active"
    monkeypatch.setattr(hub_secrets, "ACTIVE_CONSOLES", str(active))
    for text, devices in [("tty0 ttyS0\n", ["/dev/console", "/dev/tty0"]), ("ttyS0\n", ["/dev/console"]),
                          ("tty0\n", ["/dev/console"]), ("ttyS0 tty1 hvc0\n", ["/dev/console", "/dev/tty1"])]:
        active.write_text(text)
        assert hub_secrets.console_devices() == devices, text
    active.unlink()
    assert hub_secrets.console_devices() == ["/dev/console"]
