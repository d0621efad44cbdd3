"""verify's checks of who may log in and of HTTPS: the guest probe run here on a real password store and
certificate, the pure evaluation, and the host's side against real TLS and HTTP servers on loopback."""

from __future__ import annotations

import base64
import dbm
import hashlib
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubvm import checks, remote, settings
from hubvm.checks import AccessExpected, HttpsAnswer, Section
from hubvm.remote import Endpoint
from hubvm.target import Target
from tests.conftest import REPO, settings_with

SELF_SIGNED = AccessExpected("self-signed", 443, "closed")


def parse(**overrides: object) -> settings.Settings:
    return settings_with(REPO, **overrides)


def make_certificate(directory: Path, name: str, san: str, issuer: tuple[Path, Path] | None = None
                     ) -> tuple[Path, Path]:
    """A certificate made with openssl like hubvm-hub-secrets makes it (self-signed), or signed by issuer."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key)]
    if issuer is None:
        subprocess.run(["openssl", "req", "-x509", *ec, "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:FALSE"],
                       check=True, capture_output=True)
    else:
        request, extensions = directory / f"{name}.csr", directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={san}\n")
        subprocess.run(["openssl", "req", *ec, "-out", str(request), "-subj", f"/CN={name}"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(issuer[1]), "-CAkey",
                        str(issuer[0]), "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile",
                        str(extensions)], check=True, capture_output=True)
    return key, cert


def der(cert: Path) -> bytes:
    return checks.pem_to_der(cert.read_text())


def access_section(cert: Path | None, **fields: object) -> Section:
    item: dict[str, object] = {"https": "self-signed", "https_port": 443, "http_port": 80, "signup": "closed",
                               "password_db": "/var/lib/jupyterhub/passwords.dbm",
                               "admins": {"admin": "bcrypt"}}
    if cert is not None:
        item.update(tls_cert=str(cert), cert_sha256=hashlib.sha256(der(cert)).hexdigest(), cert_pem=cert.read_text())
    item.update(fields)
    return Section(0, "@@hubvm-item " + json.dumps(item))


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def test_certificate_facts(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "DNS:hubtest,DNS:localhost,IP:10.0.0.2,IP:::1")
    facts = checks.certificate_facts(der(cert))
    assert facts.self_signed and facts.subject == "CN=hubtest"
    assert facts.names("10.0.0.2") and facts.names("HUBTEST") and facts.names("::1")
    assert not facts.names("10.0.0.3") and not facts.names("other")
    assert facts.fingerprint == checks.colon_fingerprint(hashlib.sha256(der(cert)).hexdigest())
    assert len(facts.fingerprint) == 95 and facts.fingerprint.count(":") == 31


def test_self_signed_served_by_the_guest_passes(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "IP:10.0.0.2")
    answer = HttpsAnswer("10.0.0.2", der(cert), redirect=(301, "https://10.0.0.2:443/hub/api"))
    found = checks.check_https(SELF_SIGNED, access_section(cert), answer)
    assert [(c.name, c.passed) for c in found] == [("https mode", True), ("https certificate", True),
                                                    ("http redirect", True)]
    assert found[0].found == "self-signed on port 443"
    assert found[1].found == f"SHA-256 {checks.certificate_facts(der(cert)).fingerprint}"


def test_self_signed_problems_are_named(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "IP:10.0.0.2")
    _, other = make_certificate(tmp_path, "other", "IP:10.0.0.9")
    answer = HttpsAnswer("10.0.0.2", der(other), redirect=(200, ""))
    certificate, redirect = checks.check_https(SELF_SIGNED, access_section(cert), answer)[1:]
    assert certificate.passed is False
    assert "not the guest's" in certificate.found and "not valid for 10.0.0.2" in certificate.found
    assert redirect.passed is False and redirect.found == "200 "
    ca_key, ca_cert = make_certificate(tmp_path, "ca", "DNS:ca")
    _, issued = make_certificate(tmp_path, "issued", "IP:10.0.0.2", issuer=(ca_key, ca_cert))
    certificate = checks.check_https(SELF_SIGNED, access_section(issued), HttpsAnswer("10.0.0.2", der(issued)))[1]
    assert certificate.passed is False and "issued by CN=ca, not self-signed" in certificate.found


def test_files_must_be_the_certificate_given(tmp_path: Path) -> None:
    _, given = make_certificate(tmp_path, "given", "DNS:hub.example.org")
    expected = AccessExpected("files", 443, "closed")
    sha = hashlib.sha256(der(given)).hexdigest()
    good = HttpsAnswer("10.0.0.2", der(given), redirect=(301, "https://x/"), expected_sha256=sha)
    section = access_section(given, https="files")
    assert all(c.passed for c in checks.check_https(expected, section, good))  # a name, not the address: fine
    _, other = make_certificate(tmp_path, "other", "DNS:hub.example.org")
    bad = HttpsAnswer("10.0.0.2", der(given), redirect=(301, "https://x/"),
                      expected_sha256=hashlib.sha256(der(other)).hexdigest())
    assert "not the certificate given" in checks.check_https(expected, section, bad)[1].found


def test_acme_must_be_trusted(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hub", "DNS:hub.example.org")
    expected = AccessExpected("acme", 443, "closed", acme_domain="hub.example.org")
    section = access_section(None, https="acme")
    untrusted = HttpsAnswer("hub.example.org", der(cert), trusted=False, trust_error="self-signed certificate",
                            redirect=(301, "https://hub.example.org/"))
    certificate = checks.check_https(expected, section, untrusted)[1]
    assert certificate.passed is False and certificate.found.endswith("not trusted: self-signed certificate")
    trusted = HttpsAnswer("hub.example.org", der(cert), trusted=True, redirect=(301, "https://hub.example.org/"))
    assert all(c.passed for c in checks.check_https(expected, section, trusted))


def test_mode_mismatch_off_and_no_route() -> None:
    off = AccessExpected("off", 443, "closed")
    assert checks.check_https(off, access_section(None, https="off"), None)[0].found == "off (HTTP only)"
    assert len(checks.check_https(off, access_section(None, https="off"), None)) == 1
    mismatch = checks.check_https(off, access_section(None), None)[0]
    assert (mismatch.expected, mismatch.found, mismatch.passed) == ("off (HTTP only)", "self-signed on port 443",
                                                                    False)
    not_run = checks.check_https(SELF_SIGNED, access_section(None), None)[1:]
    assert [c.passed for c in not_run] == [None, None]  # no route to the HTTPS port from this host
    refused = checks.check_https(SELF_SIGNED, access_section(None), HttpsAnswer("h", None, "connection refused"))
    assert refused[1].found == "no TLS answer: connection refused" and refused[1].passed is False


def test_admin_passwords_and_signup() -> None:
    s = parse(**{"hub.admin_users": ["admin", "grader", "late"]})
    section = access_section(None, admins={"admin": "bcrypt", "grader": "other", "late": "none"})
    found = {c.name: c for c in checks.check_admin_passwords(s, section)}
    assert found["admin password admin"].passed
    assert found["admin password grader"].found == "an entry that is not a bcrypt hash"
    assert found["admin password late"].passed is False
    assert found["admin password late"].found == "none: the first visitor could choose this admin's password"
    broken = access_section(None, admins_error="cannot read the password store x: db type could not be determined")
    assert checks.check_admin_passwords(s, broken)[0].found.startswith("cannot read the password store")
    assert checks.check_signup(SELF_SIGNED, section).passed
    open_hub = checks.check_signup(SELF_SIGNED, access_section(None, signup="open"))
    assert (open_hub.expected, open_hub.found, open_hub.passed) == ("closed (existing accounts only)", "open", False)
    missing = Section(0, '@@hubvm-item {"error": "cannot read /etc/hubvm/hub-access.json: No such file"}')
    assert checks.check_signup(SELF_SIGNED, missing).found.startswith("cannot read /etc/hubvm/hub-access.json")


# ---------------------------------------------------------------------------------------------------------------
# The guest probe, run here on a real password store and certificate


def test_access_probe_reads_the_store_and_the_certificate(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "IP:127.0.0.1")
    store = tmp_path / "passwords.dbm"
    with dbm.open(str(store), "c", 0o600) as db:
        db[b"admin"] = b"$2b$12$" + b"x" * 53
        db[b"odd"] = b"plain"
    access = tmp_path / "hub-access.json"
    access.write_text(json.dumps({"https": "self-signed", "https_port": 443, "http_port": 80, "signup": "closed",
                                  "tls_cert": str(cert), "password_db": str(store)}))
    result = subprocess.run([sys.executable, "-c", checks.HUB_ACCESS_PROBE, str(access), "admin", "odd", "late"],
                            capture_output=True, text=True, check=True)
    item = Section(0, result.stdout).json_items()[0]
    assert item["admins"] == {"admin": "bcrypt", "odd": "other", "late": "none"}
    assert item["cert_sha256"] == hashlib.sha256(der(cert)).hexdigest()
    assert checks.pem_to_der(item["cert_pem"]) == der(cert) and item["cert_pem"].endswith("-----\n")
    assert "$2b$" not in result.stdout  # hashes are never printed
    missing = subprocess.run([sys.executable, "-c", checks.HUB_ACCESS_PROBE, str(tmp_path / "nope.json"), "admin"],
                             capture_output=True, text=True, check=True)
    assert "cannot read" in Section(0, missing.stdout).json_items()[0]["error"]


def test_probe_script_has_the_access_section() -> None:
    script = checks.probe_script(parse())
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert "echo @@hubvm-section access\n" in script and "/etc/hubvm/hub-access.json admin" in script
    assert "https://127.0.0.1:443/hub/api" in script  # the guest's API check goes through HTTPS by default


# ---------------------------------------------------------------------------------------------------------------
# The host's side: real servers on loopback


class _Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"version": "5.4.3"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Redirect(_Hub):
    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", f"https://127.0.0.1:{self.server.https_port}{self.path}")  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def loopback_hub(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """An HTTPS 'hub' with a self-signed certificate for 127.0.0.1 and an HTTP port redirecting to it."""
    key, cert = make_certificate(tmp_path, "hubtest", "IP:127.0.0.1,DNS:localhost")
    https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    https.socket = context.wrap_socket(https.socket, server_side=True)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    plain.https_port = https.server_address[1]  # type: ignore[attr-defined]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (https, plain)]
    for thread in threads:
        thread.start()
    try:
        yield https.server_address[1], plain.server_address[1], cert
    finally:
        for server in (https, plain):
            server.shutdown()
            server.server_close()


def test_host_side_checks_a_self_signed_hub(loopback_hub: tuple[int, int, Path], tmp_path: Path) -> None:
    https_port, http_port, cert = loopback_hub
    s = parse()
    endpoint = Endpoint(Target("127.0.0.1", "root", 2222), checks.hub_url("127.0.0.1", http_port), "--host", False,
                        https_address=("127.0.0.1", https_port))
    answer, host_answer = remote.check_hub_over_https(s, endpoint, access_section(cert))
    assert host_answer == (True, "JupyterHub 5.4.3")  # pinned to the guest's certificate, hostname checked
    assert answer is not None and answer.served == der(cert)
    assert answer.redirect == (301, f"https://127.0.0.1:{https_port}/hub/api")
    expected = AccessExpected("self-signed", https_port, "closed")
    assert all(c.passed for c in checks.check_https(expected, access_section(cert, https_port=https_port), answer))
    # The guest says its certificate is another one: the pinned request fails, and so does the check.
    _, other = make_certificate(tmp_path, "other", "IP:127.0.0.1")
    answer, host_answer = remote.check_hub_over_https(s, endpoint, access_section(other))
    assert host_answer[0] is False and "CERTIFICATE_VERIFY_FAILED" in host_answer[1]
    certificate = checks.check_https(expected, access_section(other, https_port=https_port), answer)[1]
    assert certificate.passed is False and "not the guest's" in certificate.found


def test_served_certificate_of_nothing_listening() -> None:
    served, error = remote.served_certificate("127.0.0.1", 9, timeout=2)
    assert served is None and error
    assert base64 and remote.http_redirect("http://127.0.0.1:9/hub/api", timeout=2)[0] is None


def test_https_not_forwarded_to_this_host_is_not_run(loopback_hub: tuple[int, int, Path]) -> None:
    """A forwarded VM whose HTTPS port is not forwarded: the host's HTTPS checks and API check say '-'."""
    _, http_port, cert = loopback_hub
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", 2222), checks.hub_url("127.0.0.1", http_port), "vagrant", True)
    answer, host_answer = remote.check_hub_over_https(parse(), endpoint, access_section(cert))
    assert (answer, host_answer) == (None, None)
    assert checks.check_api_host(endpoint.api_url, host_answer).passed is None
