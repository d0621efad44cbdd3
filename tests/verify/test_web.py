"""hubvm.verify.web: the host's side of verify against real HTTP and TLS servers on loopback (the hub's API, the
certificate served, pinned to the guest's, and plain HTTP's redirect)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubvm.verify import checks, web
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.expected import AccessExpected, hub_url
from hubvm.verify.target import Target
from tests.verify.helpers import access_section, der, make_certificate, parse


def test_ask_hub_from_the_host() -> None:
    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"version": "6.1.1"}' if self.path == "/hub/api" else b"no"
            self.send_response(200 if self.path == "/hub/api" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert web.ask_hub(f"http://127.0.0.1:{port}/hub/api") == (True, "JupyterHub 6.1.1")
        assert web.ask_hub(f"http://127.0.0.1:{port}/other") == (False, "HTTP 404")
    finally:
        server.shutdown()
        server.server_close()
    assert web.ask_hub(f"http://127.0.0.1:{port}/hub/api", timeout=2)[1].startswith("no answer: ")


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
    endpoint = Endpoint(Target("127.0.0.1", "root", 2222), hub_url("127.0.0.1", http_port), "--host", False,
                        https_address=("127.0.0.1", https_port))
    answer, host_answer = web.check_hub_over_https(s, endpoint, access_section(cert))
    assert host_answer == (True, "JupyterHub 5.4.3")  # pinned to the guest's certificate, hostname checked
    assert answer is not None and answer.served == der(cert)
    assert answer.redirect == (301, f"https://127.0.0.1:{https_port}/hub/api")
    expected = AccessExpected("self-signed", https_port, "closed")
    assert all(c.passed for c in checks.check_https(expected, access_section(cert, https_port=https_port), answer))
    # The guest says its certificate is another one: the pinned request fails, and so does the check.
    _, other = make_certificate(tmp_path, "other", "IP:127.0.0.1")
    answer, host_answer = web.check_hub_over_https(s, endpoint, access_section(other))
    assert host_answer[0] is False and "CERTIFICATE_VERIFY_FAILED" in host_answer[1]
    certificate = checks.check_https(expected, access_section(other, https_port=https_port), answer)[1]
    assert certificate.passed is False and "not the guest's" in certificate.found


def test_served_certificate_of_nothing_listening() -> None:
    served, error = web.served_certificate("127.0.0.1", 9, timeout=2)
    assert served is None and error
    assert web.http_redirect("http://127.0.0.1:9/hub/api", timeout=2)[0] is None


def test_https_not_forwarded_to_this_host_is_not_run(loopback_hub: tuple[int, int, Path]) -> None:
    """A forwarded VM whose HTTPS port is not forwarded: the host's HTTPS checks and API check say '-'."""
    _, http_port, cert = loopback_hub
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", 2222), hub_url("127.0.0.1", http_port), "vagrant", True)
    answer, host_answer = web.check_hub_over_https(parse(), endpoint, access_section(cert))
    assert (answer, host_answer) == (None, None)
    assert checks.check_api_host(endpoint.api_url, host_answer).passed is None
