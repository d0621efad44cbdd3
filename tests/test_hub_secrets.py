"""The guest's hubvm-hub-secrets, its functions run here on scratch paths: admin passwords in a real dbm store
(bcrypt, as FirstUseAuthenticator checks them), the root-only passwords file, and the self-signed certificate
(openssl) for this machine's names and addresses. The whole tool runs on the test host in tests/e2e."""

from __future__ import annotations

import dbm
import importlib.machinery
import importlib.util
import json
import stat
from pathlib import Path
from types import ModuleType

import pytest

from hubvm import checks
from tests.conftest import REPO

bcrypt = pytest.importorskip("bcrypt")
TOOL = REPO / "ansible/roles/hub/files/hubvm-hub-secrets"


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("hubvm_hub_secrets", str(TOOL))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


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
    facts = checks.certificate_facts(checks.pem_to_der(cert.read_text()))
    assert facts.self_signed and facts.names("127.0.0.1") and facts.names("localhost")
    names = json.loads(Path(str(cert) + ".names").read_text())
    assert names == tool.host_names() and all(n.startswith(("DNS:", "IP:")) for n in names)
    fingerprint = tool.certificate_fingerprint(str(cert))
    assert fingerprint == facts.fingerprint
    assert tool.self_signed_certificate(settings) is False  # same names: kept
    Path(str(cert) + ".names").write_text(json.dumps(["DNS:localhost"]))  # as if an address were new
    assert tool.self_signed_certificate(settings) is True
    assert tool.certificate_fingerprint(str(cert)) != fingerprint
