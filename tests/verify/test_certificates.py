"""hubvm.verify.certificates: the facts verify shows and compares of a certificate made with openssl (fingerprint,
subject, self-signed, the names and addresses it is valid for)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hubvm.verify import certificates
from tests.verify.helpers import der, make_certificate


def test_certificate_facts(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "DNS:hubtest,DNS:localhost,IP:10.0.0.2,IP:::1")
    facts = certificates.certificate_facts(der(cert))
    assert facts.self_signed and facts.subject == "CN=hubtest"
    assert facts.names("10.0.0.2") and facts.names("HUBTEST") and facts.names("::1")
    assert not facts.names("10.0.0.3") and not facts.names("other")
    assert facts.fingerprint == certificates.colon_fingerprint(hashlib.sha256(der(cert)).hexdigest())
    assert len(facts.fingerprint) == 95 and facts.fingerprint.count(":") == 31
