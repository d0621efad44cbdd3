"""hubvm.verify.checks without a machine: every check evaluated from canned outputs (the guest's sections, and what
the host saw of the hub's HTTPS, with certificates made by openssl), and the table and summary of the results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hubvm.verify import checks
from hubvm.verify.certificates import certificate_facts
from hubvm.verify.checks import Check, HttpsAnswer
from hubvm.verify.expected import AccessExpected
from hubvm.verify.probe import Section
from tests.conftest import settings_with
from tests.verify.helpers import RESULTS, SELF_SIGNED, access_section, der, make_certificate, parse

# ---------------------------------------------------------------------------------------------------------------
# Checks from canned outputs

OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
              'VERSION_CODENAME=bookworm\nID=debian\n')


def test_check_os() -> None:
    s = parse()
    assert checks.check_os(s, Section(0, OS_RELEASE)) == Check("os", "Debian 12 (bookworm)",
                                                               "Debian GNU/Linux 12 (bookworm)", True)
    jammy = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_CODENAME=jammy\n'
    assert checks.check_os(s, Section(0, jammy)).passed is False
    noble = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_CODENAME=noble\n'
    assert checks.check_os(parse(**{"vm.os": "ubuntu2404"}), Section(0, noble)).passed is True


def test_check_service() -> None:
    assert checks.check_service(Section(0, "active")).passed is True
    proxy = checks.check_service(Section(3, "activating"), "jupyterhub-proxy", "proxy service")
    assert (proxy.name, proxy.expected, proxy.found, proxy.passed) == ("proxy service", "jupyterhub-proxy active",
                                                                      "activating", False)
    failed = checks.check_service(Section(3, "inactive"))
    assert (failed.found, failed.passed) == ("inactive", False)


def test_check_api_guest() -> None:
    s = parse()
    good = Section(0, '@@hubvm-item {"status": 200, "body": "{\\"version\\": \\"5.2.1\\"}"}')
    assert checks.check_api_guest(s, good).found == "JupyterHub 5.2.1"
    refused = Section(0, '@@hubvm-item {"error": "URLError: <urlopen error [Errno 111] Connection refused>"}')
    assert checks.check_api_guest(s, refused).passed is False
    other = Section(0, '@@hubvm-item {"status": 200, "body": "<html>nginx</html>"}')
    assert "no JupyterHub version" in checks.check_api_guest(s, other).found


def test_check_accounts_counts_users_and_homes() -> None:
    sec = Section(0, '@@hubvm-item {"database": "/x.sqlite", "admins": ["admin"], "users": 31, '
                     '"homes": {"files": 120, "bytes": 20971520}}')
    found = checks.check_accounts(sec)
    assert (found.name, found.found, found.passed) == ("hub users", "31 users (1 admins), homes 120 files, 20.0 MiB",
                                                       True)
    assert checks.check_accounts(Section(0, '@@hubvm-item {"error": "no hub database (looked at /x)"}')).passed is False
    assert checks.check_accounts(None).passed is False


def test_check_admins() -> None:
    s = parse(**{"hub.admin_users": ["admin", "ada"]})
    sec = Section(0, '@@hubvm-item {"database": "/opt/tljh/state/jupyterhub.sqlite", "admins": ["admin"]}')
    admin, ada = checks.check_admins(s, sec)
    assert admin == Check("admin user admin", "admin in the hub's database", "admin", True)
    assert (ada.found, ada.passed) == ("not an admin (admins: admin)", False)
    nodb = checks.check_admins(s, Section(0, '@@hubvm-item {"error": "no hub database (looked at /x)"}'))
    assert all(c.passed is False and "no hub database" in c.found for c in nodb)


def test_check_kernels() -> None:
    listing = json.dumps({"kernelspecs": {"python3": {"spec": {"display_name": "Python 3 (ipykernel)"}}}})
    python3, ir = checks.check_kernels(Section(0, listing))
    assert python3.passed and python3.found == "registered (Python 3 (ipykernel))"
    assert (ir.passed, ir.found) == (False, "missing (have: python3)")
    missing = checks.check_kernels(Section(127, "bash: /opt/tljh/user/bin/jupyter: No such file or directory"))
    assert all(not c.passed and "No such file" in c.found for c in missing)


def test_check_python() -> None:
    s = parse(**{"packages.python": ["numpy>=3", "pandas", "scikit-learn", "missingpkg"]})
    items = [
        {"name": "numpy", "version": "2.1.3", "module": "numpy"},
        {"name": "pandas", "version": "2.2.3", "module": "pandas", "error": "import pandas: ImportError: bad"},
        {"name": "scikit-learn", "version": "1.5.2", "module": "sklearn"},
        {"name": "missingpkg", "error": "not installed"},
    ]
    sec = Section(0, "\n".join("@@hubvm-item " + json.dumps(i) for i in items))
    numpy, pandas, sklearn, missing = checks.check_python(s, sec)
    assert (numpy.passed, numpy.found) == (False, "2.1.3 (outside >=3)")
    assert (pandas.passed, pandas.found) == (False, "2.2.3: import pandas: ImportError: bad")
    assert sklearn == Check("package scikit-learn", "scikit-learn imports in /opt/tljh/user",
                            "1.5.2, import sklearn ok", True)
    assert (missing.name, missing.found, missing.passed) == ("package missingpkg", "not installed", False)


def test_check_r_matches_debians_lowercase_names() -> None:
    s = parse(**{"packages.r": ["r-cran-rcolorbrewer", "r-cran-data.table", "r-cran-ggplot2"]})
    sec = Section(0, "@@hubvm-item rcolorbrewer\tRColorBrewer\t1.1-3\tok\n"
                     "@@hubvm-item data.table\tdata.table\t1.14.8\tok\n"
                     "@@hubvm-item ggplot2\t\t\tnot installed\n")
    brewer, table, ggplot = checks.check_r(s, sec)
    assert brewer == Check("R package r-cran-rcolorbrewer", "library(rcolorbrewer) loads", "RColorBrewer 1.1-3 loads",
                           True)
    assert table.passed
    assert (ggplot.passed, ggplot.found) == (False, "not installed")
    no_r = checks.check_r(s, Section(127, "Rscript not found"))
    assert all(c.found == "Rscript not found" for c in no_r)


def test_check_shared_data() -> None:
    s = parse()
    good = checks.check_shared_data(s, Section(0, "link /srv/shared_data\niris.csv\nREADME.md"), None)
    assert (good.passed, good.found) == (True, "2 entries, linked")
    unlinked = checks.check_shared_data(s, Section(0, "link\niris.csv"), ["iris.csv", "cars.csv"])
    assert unlinked.passed is False
    assert unlinked.found == "1 entries; /etc/skel/shared_data -> nothing; missing cars.csv"
    absent = checks.check_shared_data(s, Section(1, "link"), None)
    assert (absent.passed, absent.found) == (False, "/srv/shared_data missing")


def test_check_timezone_hostname_disk() -> None:
    s = parse(**{"vm.timezone": "Europe/Berlin"})
    assert checks.check_timezone(s, Section(0, "Europe/Berlin")).passed
    assert not checks.check_timezone(s, Section(0, "Etc/UTC")).passed
    assert checks.check_timezone(parse(), Section(0, "UTC")).passed  # the same zone under another name
    assert checks.check_timezone(s, Section(0, "/usr/share/zoneinfo/Europe/Berlin")).found == "Europe/Berlin"
    assert checks.check_hostname(s, Section(0, "jupyterhub\n")).passed
    assert not checks.check_hostname(s, Section(0, "debian\n")).passed
    df = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 20511312 5000000 15511312 25% /\n"
    assert checks.check_disk(Section(0, df)) == Check("disk space", ">= 1.0 GiB free on /", "14.8 GiB free of 19.6 GiB",
                                                      True)
    full = df.replace("15511312", "512000")
    assert checks.check_disk(Section(0, full)).passed is False


def test_evaluate_without_output_fails_every_check_and_plans_the_same_names() -> None:
    s = parse()
    refused = checks.HttpsAnswer("127.0.0.1", None, "connection refused", redirect_error="no answer: refused")
    results = checks.evaluate(s, {}, (False, "no answer: refused"), "http://127.0.0.1:8080/hub/api", None, refused)
    assert all(c.passed is False for c in results)
    names = [c.name for c in results]
    assert names == [c.name for c in checks.planned(s, "http://127.0.0.1:8080/hub/api")]
    assert names == ["os", "hub service", "proxy service", "hub api (guest)", "hub api (host)", "https mode",
                     "https certificate", "http redirect", "admin user admin", "hub users", "admin password admin",
                     "sign-up", "kernel python3", "kernel ir", "package numpy", "package pandas", "package matplotlib",
                     "nbgitpuller", "R package r-cran-ggplot2", "R package r-cran-data.table", "shared data",
                     "timezone", "hostname", "disk space"]


# ---------------------------------------------------------------------------------------------------------------
# Who may log in, and HTTPS


def test_self_signed_served_by_the_guest_passes(tmp_path: Path) -> None:
    _, cert = make_certificate(tmp_path, "hubtest", "IP:10.0.0.2")
    answer = HttpsAnswer("10.0.0.2", der(cert), redirect=(301, "https://10.0.0.2:443/hub/api"))
    found = checks.check_https(SELF_SIGNED, access_section(cert), answer)
    assert [(c.name, c.passed) for c in found] == [("https mode", True), ("https certificate", True),
                                                    ("http redirect", True)]
    assert found[0].found == "self-signed on port 443"
    assert found[1].found == f"SHA-256 {certificate_facts(der(cert)).fingerprint}"


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
# Output


def test_table_and_summary() -> None:
    text = checks.checks_table(RESULTS)
    assert text.splitlines()[0].split() == ["check", "expected", "found", "result"]
    assert text.splitlines()[3].startswith("hub service") and text.splitlines()[3].endswith("FAIL")
    assert checks.summary(RESULTS) == "2 of 3 checks failed: hub service, package pandas"
    assert checks.summary(RESULTS[:1]) is None


def test_check_cluster_names_the_failing_node() -> None:
    items = [
        {"controller": "Slurmctld(primary) at hub is UP", "up": True},
        {"node": "hub-node1", "state": "idle", "munge": "ok", "hub_api": "JupyterHub 6.1.1", "hub_api_ok": True,
         "kernels": ["ir", "python3"]},
        {"node": "hub-node2", "state": "down", "munge": None},
        {"node": "hub-node3", "state": "idle", "munge": "ok", "hub_api": "Connection refused", "hub_api_ok": False,
         "kernels": ["python3"]},
        {"node": "hub-node4", "state": "allocated", "inside_job": "12 of jupyter-ann", "munge": "ok",
         "hub_api": "JupyterHub 6.1.1", "hub_api_ok": True, "kernels": ["ir", "python3"]},
        {"node": "hub-node5", "state": "allocated", "munge": "srun: error: timed out"},
    ]
    sec = Section(0, "\n".join("@@hubvm-item " + json.dumps(i) for i in items))
    found = {c.name: c for c in checks.check_cluster(sec)}
    assert found["slurm controller"].passed is True
    assert found["compute node hub-node1"].passed is True
    assert (found["compute node hub-node2"].found, found["compute node hub-node2"].passed) == ("state down", False)
    assert found["compute node hub-node3"].found == "hub's API: Connection refused; no kernel ir"
    assert found["compute node hub-node4"].passed is True
    assert found["compute node hub-node4"].found.startswith("allocated (full: tested inside job 12 of jupyter-ann)")
    assert (found["compute node hub-node5"].found, found["compute node hub-node5"].passed) == (
        "munge: srun: error: timed out (the other tests not tried)", False)
    empty = checks.check_cluster(Section(0, '@@hubvm-item {"controller": "", "up": false}\n'
                                            '@@hubvm-item {"error": "sinfo lists no compute node"}'))
    assert [c.passed for c in empty] == [False, False] and empty[1].found == "sinfo lists no compute node"


def test_a_cluster_hub_plans_the_cluster_checks_and_probes_its_nodes() -> None:
    from hubvm.verify.probe import probe_script

    cluster = settings_with(**{"hub.flavour": "pypi", "hub.spawner": "slurm"})
    names = [c.name for c in checks.planned(cluster, "http://127.0.0.1:8080/hub/api")]
    assert "slurm controller" in names and "compute nodes" in names
    assert '"sinfo", "--Node"' in probe_script(cluster)
    local = settings_with()
    assert "slurm controller" not in [c.name for c in checks.planned(local, "http://x/hub/api")]
    assert "sinfo" not in probe_script(local)


def test_check_nbgitpuller() -> None:
    s = parse()
    item = {"version": "1.3.0", "extension": True, "enabled": True, "git": "git version 2.39.5"}
    found = checks.check_nbgitpuller(s, Section(0, "@@hubvm-item " + json.dumps(item)))
    assert found == Check("nbgitpuller", "imports in /opt/tljh/user, server extension enabled, git found",
                          "1.3.0, server extension enabled, git version 2.39.5", True)
    for changed, words in [({"enabled": False}, "1.3.0, server extension not enabled"),
                           ({"extension": False}, "1.3.0 declares no jupyter_server extension"),
                           ({"enabled_error": "reading jupyter_server's extension config: ImportError: x"},
                            "reading jupyter_server's extension config"),
                           ({"git": None, "git_error": "git not found (nbgitpuller runs it)"}, "git not found")]:
        bad = checks.check_nbgitpuller(s, Section(0, "@@hubvm-item " + json.dumps({**item, **changed})))
        assert bad.passed is False and bad.found.startswith(words), bad.found
    missing = checks.check_nbgitpuller(s, Section(0, '@@hubvm-item {"error": "not installed", "git": "git 2"}'))
    assert (missing.found, missing.passed) == ("not installed", False)
    assert checks.check_nbgitpuller(s, Section(127, "python: No such file")).found == "python: No such file"
    assert checks.check_nbgitpuller(s, None).passed is False


def test_nbgitpuller_is_checked_only_when_it_is_on() -> None:
    from hubvm.verify.probe import probe_script

    on = settings_with(**{"hub.flavour": "pypi"})
    assert "nbgitpuller" in [c.name for c in checks.planned(on, "http://x/hub/api")]
    assert "@@hubvm-section nbgitpuller\n" in probe_script(on) and "/opt/jupyterhub/user/bin/python -c" in \
        probe_script(on)
    off = settings_with(**{"material.nbgitpuller": False})
    assert "nbgitpuller" not in [c.name for c in checks.planned(off, "http://x/hub/api")]
    assert "nbgitpuller" not in probe_script(off)
