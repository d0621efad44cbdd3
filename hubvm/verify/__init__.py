"""`hubvm verify` and `hubvm ssh`: which machine (target.py, endpoint.py), its host keys (hostkeys.py), the SSH
connection (connect.py), what is expected of it (expected.py), the guest probe script and its programs (probe.py,
programs/), what this host sees of the hub over HTTP and TLS (web.py, certificates.py), the evaluation into named
checks (checks.py), and the tasks' entry points (run.py)."""
