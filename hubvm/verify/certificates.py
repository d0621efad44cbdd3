"""What verify shows and compares of a certificate: its SHA-256 fingerprint, subject and issuer, whether it is
self-signed, and the names and addresses it is valid for (parsed from DER with cryptography)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class CertificateFacts:
    """What verify shows and compares of a certificate (parsed from DER with cryptography)."""

    sha256: str                    # hex, lower case
    subject: str
    issuer: str
    self_signed: bool
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return colon_fingerprint(self.sha256)

    def names(self, address: str) -> bool:
        """Whether the certificate is valid for this host name or address (exact names and *.wildcards)."""
        try:
            return str(ipaddress.ip_address(address)) in self.ip_addresses
        except ValueError:
            host = address.lower().rstrip(".")
            return any(n == host or (n.startswith("*.") and host.split(".", 1)[-1] == n[2:]) for n in self.dns_names)


def colon_fingerprint(sha256_hex: str) -> str:
    """AB:CD:... as browsers and `openssl x509 -fingerprint -sha256` show it."""
    digits = sha256_hex.upper()
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def certificate_facts(der: bytes) -> CertificateFacts:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
        ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    return CertificateFacts(hashlib.sha256(der).hexdigest(), subject, issuer, cert.subject == cert.issuer, dns, ips)


def pem_to_der(pem: str) -> bytes:
    """The first certificate of a PEM text, as DER."""
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return base64.b64decode("".join(body.split()))

