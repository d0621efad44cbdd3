"""The host's side of verify: the hub's API and HTTPS as this host reaches them (urllib and ssl, no SSH): the
API's answer, the certificate served, whether the system's CAs trust it, and plain HTTP's redirect."""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hubvm.config.settings import Settings
from hubvm.verify.certificates import pem_to_der
from hubvm.verify.checks import HostAnswer, HttpsAnswer, hub_version
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.expected import HTTP_TIMEOUT, AccessExpected, access_expected
from hubvm.verify.probe import Section
from hubvm.verify.target import is_ip


def ask_hub(url: str, timeout: float = HTTP_TIMEOUT, context: ssl.SSLContext | None = None) -> HostAnswer:
    """GET the hub API from this host, directly (no proxy: the hub is on loopback or a host-only network)."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as answer:
            return hub_version(answer.status, answer.read(4000).decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except urllib.error.URLError as error:
        reason = error.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return False, f"no answer: {text}"
    except (OSError, ValueError) as error:
        return False, f"no answer: {getattr(error, 'strerror', None) or error}"


def pinned_context(pem: str, check_hostname: bool) -> ssl.SSLContext:
    """A TLS context that trusts exactly this certificate (a self-signed one, or the leaf of a chain)."""
    context = ssl.create_default_context(cadata=pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = check_hostname
    return context


def served_certificate(host: str, port: int, timeout: float = HTTP_TIMEOUT) -> tuple[bytes | None, str]:
    """The certificate a TLS server presents (DER), read without trusting it; or None and why not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sni = None if is_ip(host) else host
            with context.wrap_socket(sock, server_hostname=sni) as tls:
                return tls.getpeercert(binary_form=True), ""
    except (OSError, ssl.SSLError) as error:
        return None, getattr(error, "strerror", None) or str(error)


def trusted_for(host: str, port: int, timeout: float = HTTP_TIMEOUT) -> tuple[bool, str]:
    """Whether the system's CAs trust the server's chain for its name (acme)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                ssl.create_default_context().wrap_socket(sock, server_hostname=host):
            return True, ""
    except ssl.SSLCertVerificationError as error:
        return False, error.verify_message or str(error)
    except (OSError, ssl.SSLError) as error:
        return False, getattr(error, "strerror", None) or str(error)


def http_redirect(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[tuple[int, str] | None, str]:
    """(status, Location) of a GET of a plain-HTTP URL, the redirect not followed."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port or 80, timeout=timeout)
    try:
        connection.request("GET", parsed.path or "/")
        response = connection.getresponse()
        return (response.status, response.getheader("Location") or ""), ""
    except OSError as error:
        return None, f"no answer: {error.strerror or error}"
    finally:
        connection.close()


def check_hub_over_https(s: Settings, endpoint: Endpoint, access_section: Section | None
                         ) -> tuple[HttpsAnswer | None, HostAnswer | None]:
    """The host's side of the HTTPS checks: the certificate served, HTTP's redirect, and the hub API over HTTPS
    with a context pinned to the guest's own certificate (self-signed, files) or the system's CAs (acme).
    With HTTPS on but its port not reachable from here (a forwarded VM whose Vagrantfile does not forward it)
    the host's checks are not run (None): plain HTTP only redirects to a port this host cannot reach."""
    access: AccessExpected = access_expected(s)
    if endpoint.https_address is None:
        return None, (None if access.on else ask_hub(endpoint.hub_url))
    host, port = endpoint.https_address
    served, error = served_certificate(host, port)
    trusted, trust_error = trusted_for(host, port) if access.https == "acme" else (None, "")
    redirect, redirect_error = http_redirect(endpoint.hub_url)
    expected_sha = None
    if access.https == "files" and access.cert_file is not None:
        try:
            expected_sha = hashlib.sha256(pem_to_der(access.cert_file.read_text())).hexdigest()
        except (OSError, IndexError, ValueError):
            expected_sha = None
    answer = HttpsAnswer(host, served, error, trusted, trust_error, redirect, redirect_error, expected_sha)
    items = access_section.json_items() if access_section else []
    guest_pem = items[0].get("cert_pem") if items else None
    if access.https == "acme":
        return answer, ask_hub(endpoint.api_url)
    if not guest_pem:
        return answer, (False, "the guest named no certificate to check the hub's against")
    return answer, ask_hub(endpoint.api_url, context=pinned_context(guest_pem, access.https == "self-signed"))

