"""hubvm.checks without a machine: the probe script (valid bash, its sections, its bounded wait), and every check
evaluated from canned outputs; the table, JSON and summary of the results."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from hubvm import checks, remote, settings
from hubvm.checks import Check, Section
from hubvm.remote import Endpoint
from hubvm.target import Target
from tests.conftest import REPO, settings_with


def parse(**overrides: object) -> settings.Settings:
    return settings_with(REPO, **overrides)


# ---------------------------------------------------------------------------------------------------------------
# The probe script and its sections


def test_probe_script_is_valid_bash_and_names_every_section() -> None:
    s = parse()
    script = checks.probe_script(s)
    subprocess.run(["bash", "-n", "-c", script], check=True)
    for name in ("os", "hostname", "timezone", "disk", "service", "api", "admins", "kernels", "shared_data",
                 "python", "r", "starting"):
        assert f"echo @@hubvm-section {name}\n" in script
    assert "/opt/tljh/user/bin/python" in script and "numpy pandas matplotlib" in script
    assert "ggplot2 data.table" in script


def test_probe_script_leaves_out_empty_package_sections() -> None:
    script = checks.probe_script(parse(**{"packages.python": [], "packages.r": []}))
    assert "section python" not in script and "section r\n" not in script


def _fake_systemctl(bin_dir: Path, states: Path) -> None:
    """A `systemctl` that reports the boot finished and the hub in the state named by the first line of STATES,
    consuming one line per `is-active` call (the last line stays)."""
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  is-system-running) echo running ;;
  is-active) head -n1 {states}; [ "$(wc -l < {states})" -gt 1 ] && sed -i 1d {states} ;;
esac
exit 0
""")
    fake.chmod(0o755)


def _run_wait(s: settings.Settings, bin_dir: Path) -> tuple[int, float]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", checks._wait_script(s)], capture_output=True, text=True, env=env,
                            timeout=60)
    return checks.waited_seconds(Section(result.returncode, result.stdout.strip())), time.monotonic() - started


def test_wait_script_waits_while_the_hub_is_starting(tmp_path: Path) -> None:
    """Real bash with a fake systemctl: the hub is activating for one poll (2 s), then inactive (no API call)."""
    states = tmp_path / "states"
    states.write_text("activating\ninactive\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, took = _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")
    assert 1 <= waited <= 4 and took < 10


def test_wait_script_is_bounded_by_ssh_wait(tmp_path: Path) -> None:
    states = tmp_path / "states"
    states.write_text("activating\n")
    _fake_systemctl(tmp_path / "bin", states)
    waited, _ = _run_wait(parse(**{"ssh.wait": 1}), tmp_path / "bin")
    assert 1 <= waited <= 3  # the wait and at most one more poll, though the hub never stops "activating"
    states.write_text("failed\n")
    assert _run_wait(parse(**{"ssh.wait": 30}), tmp_path / "bin")[0] == 0
    assert checks._wait_script(parse(**{"ssh.wait": 0})) == "echo 0"


def test_parse_sections() -> None:
    output = ("noise\n@@hubvm-section os\nID=debian\n@@hubvm-status 0\n"
              "@@hubvm-section service\ninactive\n@@hubvm-status 3\n@@hubvm-section kernels\n{")
    sections = checks.parse_sections(output)
    assert sections["os"] == Section(0, "ID=debian")
    assert sections["service"] == Section(3, "inactive")
    assert sections["kernels"].status == -1


def test_probe_script_runs_here(tmp_path: Path) -> None:
    """The real script on this machine: every section ends, and the python importer maps names to modules."""
    s = parse(**{"packages.python": ["PyYAML", "paramiko>=2", "no-such-package-xyz"], "packages.r": []})
    script = checks.probe_script(s).replace(s.user_env, str(Path(subprocess.sys.executable).parent.parent))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    sections = checks.parse_sections(result.stdout)
    assert {"os", "hostname", "disk", "python"} <= set(sections)
    found = {c.name: c for c in checks.check_python(s, sections["python"])}
    assert found["package PyYAML"].passed and "import yaml ok" in found["package PyYAML"].found
    assert found["package paramiko"].passed
    assert found["package no-such-package-xyz"].found == "not installed"
    assert checks.check_disk(sections["disk"]).found.endswith("GiB")


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


def test_ask_hub_from_the_host() -> None:
    import http.server
    import threading

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
        assert remote.ask_hub(f"http://127.0.0.1:{port}/hub/api") == (True, "JupyterHub 6.1.1")
        assert remote.ask_hub(f"http://127.0.0.1:{port}/other") == (False, "HTTP 404")
    finally:
        server.shutdown()
        server.server_close()
    assert remote.ask_hub(f"http://127.0.0.1:{port}/hub/api", timeout=2)[1].startswith("no answer: ")


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


def test_shared_data_expects_vm_data_or_the_shipped_samples(tmp_path: Path) -> None:
    assert checks.shared_data_entries(parse()) == sorted(
        p.name for p in (REPO / "ansible/roles/shared_data/files/samples").iterdir())
    (tmp_path / "a.csv").write_text("x")
    s = parse(**{"vm.data": str(tmp_path)})
    assert checks.shared_data_entries(s) == ["a.csv"]
    check = checks.planned(s, "http://x/hub/api")[-4]
    assert check.expected == "/srv/shared_data holds the 1 entries of vm.data, /etc/skel/shared_data links it"


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
    assert names == ["os", "hub service", "hub api (guest)", "hub api (host)", "https mode", "https certificate",
                     "http redirect", "admin user admin", "admin password admin", "sign-up", "kernel python3",
                     "kernel ir", "package numpy", "package pandas", "package matplotlib", "R package r-cran-ggplot2",
                     "R package r-cran-data.table", "shared data", "timezone", "hostname", "disk space"]


# ---------------------------------------------------------------------------------------------------------------
# Output


def test_table_json_and_summary() -> None:
    results = [Check("os", "Debian 12 (bookworm)", "Debian GNU/Linux 12 (bookworm)", True),
               Check("hub service", "jupyterhub active", "inactive", False),
               Check("package pandas", "pandas imports in /opt/tljh/user", "not installed", False)]
    text = checks.checks_table(results)
    assert text.splitlines()[0].split() == ["check", "expected", "found", "result"]
    assert text.splitlines()[3].startswith("hub service") and text.splitlines()[3].endswith("FAIL")
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", 2222), "http://127.0.0.1:8080/hub/api", "--host", False)
    data = json.loads(remote.checks_json(endpoint, results, 1.23))
    assert data["target"] == "vagrant@127.0.0.1:2222" and (data["passed"], data["failed"]) == (1, 2)
    assert data["checks"][1] == {"name": "hub service", "expected": "jupyterhub active", "found": "inactive",
                                 "passed": False}
    assert checks.summary(results) == "2 of 3 checks failed: hub service, package pandas"
    assert checks.summary(results[:1]) is None

