"""Provisioning proven on a real systemd host: `hubvm provision --host` with the pypi flavour, then what a user
sees, `hubvm verify`, idempotence, and the export cleanup.

What a class sees (issue 15): no admin name can be claimed (each tried with a random password over HTTP and HTTPS),
the admins log in with the password generated on the machine (or set from a configured bcrypt hash) over HTTPS,
30 users imported from a CSV file (a second import changes nothing, a new row adds one user, a reset gives one
user a new password), three of them log in and compute 5*4 in Python and R, closed sign-up refuses a new name,
HTTPS with a self-signed certificate and with certificate files, HTTP redirected to HTTPS, and the first boot
after the cleanup bringing new admin passwords (shown on the console) and a new self-signed certificate.

The host is a Debian 12 systemd-nspawn guest in a network namespace of this test (tests/e2e/hosts.py), reached
as root with a key made here. The host's CA certificates (/usr/local/share/ca-certificates/*.crt: this
machine's TLS-intercepting proxy) reach the guest through the project's own setting guest.ca_certificates.
Everything runs through the real `hubvm` command in a private copy of the project (its settings in a -f file,
the class imported with `hubvm users`), so the working tree's builds/ is never touched. Tests depend on each
other's order (file order).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import json
import re
import secrets
import ssl
import stat
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from hubvm.verify.certificates import colon_fingerprint
from tests.conftest import HUBVM, copy_project
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import Namespace, NspawnHost, cached_rootfs, nspawn_host, remove_stale_namespaces, restart
from tests.e2e.hubclient import HubClient, HubError
from tests.e2e.sites import ADMIN_PASSWORDS, SELF_SIGNED, Run, Site, keygen, passwords_of, wait_for_hub

pytestmark = pytest.mark.e2e

PYTHON_PACKAGES = {"six": "six", "idna": "idna"}  # distribution -> import name
R_PACKAGES = {"r-cran-jsonlite": "jsonlite", "r-cran-r6": "R6"}  # Debian package -> R library
ADMIN_USER = "hubadmin"
# Two hub admins: "admin" gets a password generated on the machine, "grader" the one of a configured bcrypt hash.
HUB_ADMINS = ["admin", "grader"]
GRADER_PASSWORD = "grader-" + secrets.token_urlsafe(12)
CLASS_SIZE = 30
HOST_CA_CERTIFICATES = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
# The settings of who may log in and of HTTPS this test starts with
ACCESS_SETTINGS = {
    "https": "self-signed",
    "signup": "closed",
    "admin_password_hashes": {"grader": bcrypt.hashpw(GRADER_PASSWORD.encode(), bcrypt.gensalt(4)).decode()},
}


@pytest.fixture(scope="module")
def site(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory, stages: StageClock) -> Iterator[Site]:
    remove_stale_namespaces()
    workdir = tmp_path_factory.mktemp("provision")
    key, admin_key = keygen(workdir / "root_key"), keygen(workdir / "admin_key")
    home = workdir / "home"
    home.mkdir()
    project = copy_project(workdir / "project")
    settings = workdir / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "vm": {"hostname": "hubtest", "timezone": "Europe/Berlin", "data": "none"},
                "hub": {"flavour": "pypi", "admin_users": HUB_ADMINS, "memory_limit": "1G", "cpu_limit": 1},
                "packages": {"python": list(PYTHON_PACKAGES), "r": list(R_PACKAGES), "cran": [], "bioconductor": []},
                "guest": {"ca_certificates": [str(path) for path in HOST_CA_CERTIFICATES]},
                "export": {"ssh_user": ADMIN_USER, "ssh_public_key": f"{admin_key}.pub"},
            }
        )
    )
    with stages.time("root filesystem (mmdebstrap, or the cached one)"):
        cached_rootfs()
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(Namespace(label="prov"))
        with stages.time("copy the root filesystem and boot the guest"):
            host = stack.enter_context(nspawn_host(ns, key, workdir, hostname="hubtest"))
        site = Site(host, project, settings, key, admin_key, home, stages, workdir / "class-passwords.csv")
        site.set_hub_settings(ACCESS_SETTINGS)
        yield site


@pytest.fixture(scope="module")
def first_provision(site: Site) -> Run:
    with site.stages.time("first provision (hubvm provision --host, pypi flavour)"):
        run = site.invoke("provision", *site.target)
    if run.returncode != 0 or run.recap().get("failed", 1) != 0:
        pytest.fail(f"the first provision failed ({run.returncode}):\n{run.tail()}")
    return run


def test_first_provision_succeeds(first_provision: Run) -> None:
    recap = first_provision.recap()
    print(f"first provision: {recap} in {first_provision.seconds:.0f} s")
    assert recap["changed"] > 0 and recap["failed"] == 0 and recap["unreachable"] == 0


def test_the_host_ca_reached_the_guest_through_the_setting(site: Site, first_provision: Run) -> None:
    vars_file = yaml.safe_load((site.project / "builds/ansible/vars.yml").read_text())
    assert [cert["name"] for cert in vars_file["base_ca_certificates"]] == [p.name for p in HOST_CA_CERTIFICATES]
    installed = site.host.ssh("ls /usr/local/share/ca-certificates/ && cat /etc/pip.conf").stdout
    for path in HOST_CA_CERTIFICATES:
        assert path.name in installed
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in installed


def _fingerprint(pem: str) -> str:
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    import base64

    return hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest()


def _plain_http(addr: str, method: str, path: str, form: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request over plain HTTP, redirects not followed."""
    connection = http.client.HTTPConnection(addr, 80, timeout=30)
    body = urllib.parse.urlencode(form) if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_hub_answers_over_https_with_its_self_signed_certificate(site: Site, first_provision: Run) -> None:
    pem = site.certificate_pem()
    print(f"self-signed certificate SHA-256 {_fingerprint(pem)}")
    version = site.hub(pem).version()  # the client checks the certificate, and that it names the address
    print(f"JupyterHub {version} over HTTPS")
    assert re.match(r"\d+\.\d+", version)
    redirect = _plain_http(site.host.addr, "GET", "/hub/api")
    assert redirect.status == 301 and redirect.getheader("Location", "").startswith(f"https://{site.host.addr}")


def test_verify_passes(site: Site, first_provision: Run) -> None:
    with site.stages.time("hubvm verify"):
        run = site.invoke("verify", *site.target, timeout=300)
    assert run.returncode == 0, run.tail()
    for check in ("https mode", "https certificate", "http redirect", "admin password admin",
                  "admin password grader", "sign-up"):
        assert re.search(rf"^{re.escape(check)} .* pass$", run.output, re.MULTILINE), check
    assert f"SHA-256 {colon_fingerprint(_fingerprint(site.certificate_pem()))}" in run.output


def test_no_admin_can_be_claimed(site: Site, first_provision: Run) -> None:
    """Each admin name with a random password, over HTTPS and over HTTP: refused, and nothing claimed."""
    for admin in HUB_ADMINS:
        guess = secrets.token_urlsafe(16)
        with pytest.raises(HubError, match=f"login as {admin} failed"):
            site.hub().login(admin, guess)
        over_http = _plain_http(site.host.addr, "POST", "/hub/login", {"username": admin, "password": guess})
        assert over_http.status == 301, "plain HTTP must only redirect"
        assert "jupyterhub-session" not in (over_http.getheader("Set-Cookie") or "")
    site.hub().login("admin", site.admin_passwords()["admin"])  # the generated password is still the one


def test_admins_log_in_with_the_generated_and_the_configured_password(site: Site, first_provision: Run) -> None:
    mode = stat.S_IMODE((site.host.root / ADMIN_PASSWORDS).stat().st_mode)
    assert mode == 0o600 and set(site.admin_passwords()) == {"admin"}  # grader's comes from its configured hash
    hub = site.hub()
    hub.login("admin", site.admin_passwords()["admin"])
    assert hub.api("GET", "/users/admin")["admin"] is True
    grader = site.hub()
    grader.login("grader", GRADER_PASSWORD)
    assert grader.api("GET", "/users/grader")["admin"] is True


def test_closed_signup_refuses_a_new_name(site: Site, first_provision: Run) -> None:
    with pytest.raises(HubError, match="login as walkin failed"):
        site.hub().login("walkin", secrets.token_urlsafe(16))


@pytest.fixture(scope="module")
def class_csv(site: Site) -> Path:
    path = site.passwords_file.parent / "class.csv"
    rows = ["user name,full name"] + [f"student{n:02d},Student Number {n}" for n in range(1, CLASS_SIZE + 1)]
    rows[5] = "student05"  # a row without a full name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_class_is_imported_with_random_passwords(site: Site, first_provision: Run, class_csv: Path) -> None:
    with site.stages.time(f"import a class of {CLASS_SIZE} (hubvm users)"):
        written = site.import_users(class_csv)
    assert written == site.passwords_file
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    passwords = passwords_of(written)
    assert len(passwords) == CLASS_SIZE
    assert passwords["student01"][0] == "Student Number 1" and passwords["student05"][0] == ""
    assert len({password for _, password in passwords.values()}) == CLASS_SIZE
    hub = site.hub()
    hub.login("admin", site.admin_passwords()["admin"])
    names = {user["name"] for user in hub.api("GET", "/users?limit=200")}
    assert {f"student{n:02d}" for n in range(1, CLASS_SIZE + 1)} <= names


def test_a_second_import_changes_nothing_and_a_new_row_adds_one_user(site: Site, first_provision: Run,
                                                                      class_csv: Path) -> None:
    before = site.passwords_file.read_bytes()
    dbm_before = {p.name: p.stat().st_mtime_ns for p in (site.host.root / "var/lib/jupyterhub").glob("passwords.dbm*")}
    site.import_users(class_csv)
    assert site.passwords_file.read_bytes() == before
    dbm_after = {p.name: p.stat().st_mtime_ns for p in (site.host.root / "var/lib/jupyterhub").glob("passwords.dbm*")}
    assert dbm_after == dbm_before, "the second import wrote the password store"
    # An admin added "assistant" in the hub without a password (its first login would set one): listed in the
    # file, it gets a password like a new user; "latecomer" is new.
    admin = site.hub()
    admin.login("admin", site.admin_passwords()["admin"])
    admin.api("POST", "/users/assistant", expect=(201,))
    class_csv.write_text(class_csv.read_text() + "latecomer,Late Comer\nassistant\n")
    site.import_users(class_csv)
    passwords = passwords_of(site.passwords_file)
    assert len(passwords) == CLASS_SIZE + 2 and passwords["latecomer"][0] == "Late Comer"
    assert {k: v for k, v in passwords.items() if k not in ("latecomer", "assistant")} == _passwords_from(before)
    site.hub().login("assistant", passwords["assistant"][1])
    # The guest tool checks names itself too: a system account's name is refused and nothing changes.
    refused = site.host.ssh("printf 'ada\\nroot\\n' | /usr/local/sbin/hubvm-users import", check=False)
    assert refused.returncode == 2 and "row 2: 'root' is" in refused.stderr, refused.stderr
    admin.api("GET", "/users/ada", expect=(404,))  # not created: the whole input was refused first


def _passwords_from(content: bytes) -> dict[str, tuple[str, str]]:
    return {row[0]: (row[1], row[2]) for row in csv.reader(content.decode().splitlines()) if row[0] != "user"}


def test_three_students_log_in_and_compute_in_python_and_r(site: Site, first_provision: Run) -> None:
    passwords = passwords_of(site.passwords_file)
    for student in ("student01", "student15", "student30"):
        hub = site.hub()
        with site.stages.time(f"{student}: log in over HTTPS, start a server, 5*4 in Python and R"):
            hub.login(student, passwords[student][1])
            hub.start_server()
            python = hub.run_code("python3", "5*4")
            r = hub.run_code("ir", "5*4")
        assert (python.text, python.error) == ("20", "")
        assert (r.text, r.error) == ("[1] 20", "")
        assert {"python3", "ir"} <= set(hub.kernelspecs())


def test_every_configured_package_imports_in_the_kernels(site: Site, first_provision: Run) -> None:
    hub = site.hub()
    hub.login("student01", passwords_of(site.passwords_file)["student01"][1])
    hub.start_server()
    imports = ", ".join(PYTHON_PACKAGES.values())
    python = hub.run_code("python3", f"import {imports}; print('imported')")
    assert (python.text, python.error) == ("imported", "")
    libraries = "; ".join(f"library({name})" for name in R_PACKAGES.values())
    r = hub.run_code("ir", f"{libraries}; cat('loaded')")
    assert (r.text, r.error) == ("loaded", "")


# Course material (README: Send material to the class): git's own HTTP server on the guest's loopback, where the
# students' servers run, serving a bare repository the teacher pushes to over HTTP (http.receivepack)
COURSE_PORT = 9480
COURSE_REPO = f"http://127.0.0.1:{COURSE_PORT}/cgi-bin/git/course.git"
GIT_UNIT = "hubvm-e2e-git"
GIT_SERVER = f"""set -e
systemctl stop {GIT_UNIT} 2>/dev/null || true
rm -rf /srv/git /srv/gitweb /root/teacher
install -d /srv/gitweb/cgi-bin
ln -s /usr/lib/git-core/git-http-backend /srv/gitweb/cgi-bin/git
git init -q --bare -b main /srv/git/course.git
git -C /srv/git/course.git config http.receivepack true
chown -R nobody:nogroup /srv/git
systemd-run -q --unit {GIT_UNIT} -p User=nobody -p WorkingDirectory=/srv/gitweb --setenv GIT_PROJECT_ROOT=/srv/git \\
  --setenv GIT_HTTP_EXPORT_ALL=1 /usr/bin/python3 -m http.server --cgi --bind 127.0.0.1 {COURSE_PORT}
for i in $(seq 100); do git ls-remote {COURSE_REPO} >/dev/null 2>&1 && break; sleep 0.1; done
git clone -q {COURSE_REPO} /root/teacher 2>/dev/null
cd /root/teacher
git symbolic-ref HEAD refs/heads/main
git config user.name Teacher && git config user.email teacher@example.org
mkdir week1
printf '# Statistics 101\\nWeek 1: open week1/exercise.py\\n' > README.md
printf 'def answer():\\n    return None  # your answer here\\n' > week1/exercise.py
git add -A && git commit -qm 'Week 1' && git push -q origin main
"""
TEACHERS_UPDATE = """set -e
cd /root/teacher
printf '# Statistics 101\\nWeek 1: open week1/exercise.py\\nWeek 2: read week2/notes.md\\n' > README.md
mkdir week2 && printf 'Means and medians.\\n' > week2/notes.md
git add -A && git commit -qm 'Week 2' && git push -q origin main
"""
STUDENTS_ANSWER = "def answer():\n    return 42  # the student's own answer\n"


def _nbgitpuller_visit(hub: HubClient, link: str, student: str) -> tuple[list[dict], str]:
    """Follow a link as a browser does (the session cookie, no API token: the hub sends the student through its
    OAuth to their server), read nbgitpuller's page, then drive the pull as its script does: GET git-pull/api with
    the page's repo, targetpath, branch and _xsrf, an event stream read to its end. Returns the events and the page
    the script would go to."""
    assert link.startswith(hub.base_url + "/"), link
    token, hub.token = hub.token, ""
    try:
        status, page, response = hub.request("GET", link[len(hub.base_url):])
        assert status == 200, (status, page[:300])
        assert urllib.parse.urlsplit(response.geturl()).path == f"/user/{student}/git-pull", response.geturl()
        data = {name: urllib.parse.unquote(value) for name, value in
                re.findall(r'data-([a-z-]+)="([^"]*)"', page.decode())}
        fields = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
        if "branch" in data:
            fields["branch"] = data["branch"]
        status, stream, _ = hub.request("GET", f"{data['base-url']}git-pull/api?{urllib.parse.urlencode(fields)}")
        assert status == 200, (status, stream[:300])
        events = [json.loads(line[len("data: "):]) for line in stream.decode().splitlines()
                  if line.startswith("data: ")]
        return events, data["base-url"] + data["path"]
    finally:
        hub.token = token


def _read(hub: HubClient, path: str) -> str:
    return hub.server_api("GET", f"/contents/{urllib.parse.quote(path)}?content=1&type=file&format=text")["content"]


def test_course_material_reaches_a_student_and_an_update_keeps_their_work(site: Site, first_provision: Run,
                                                                          class_csv: Path) -> None:
    """nbgitpuller (material.nbgitpuller, on by default) with a real git server: the class's link printed by
    `hubvm users --link` clones the course into a student's home; the student changes a file, the teacher pushes
    a change to another file and a new file; the student's own link (`--link --csv`) merges the update in and
    keeps the student's change."""
    student = "student07"
    settings_before = site.settings_file.read_text()
    data = yaml.safe_load(settings_before)
    data["material"] = {"repo": COURSE_REPO, "branch": "main", "open": "README.md"}
    site.settings_file.write_text(yaml.safe_dump(data))
    try:
        with site.stages.time("course repository: git http-backend on the guest's loopback, the teacher's push"):
            site.host.ssh(GIT_SERVER, timeout=120)
        with site.stages.time("the class's link (hubvm users --link, from the settings)"):
            printed = site.invoke("users", "--link", *site.target, timeout=120)
        assert printed.returncode == 0, printed.tail()
        class_link = next(line for line in printed.output.splitlines() if line.startswith("https://"))
        assert class_link.startswith(f"https://{site.host.addr}/hub/user-redirect/git-pull?repo=")
        assert "targetpath=course&" in class_link  # .git stripped, as git clone names the folder

        hub = site.hub()
        hub.login(student, passwords_of(site.passwords_file)[student][1])
        with site.stages.time(f"{student}: start a server, first visit of the class's link (clone)"):
            hub.start_server()
            events, landing = _nbgitpuller_visit(hub, class_link, student)
        assert events and events[-1]["phase"] == "finished", events[-3:]
        assert not [event for event in events if event.get("phase") == "error"]
        assert any("git clone --depth 1 --branch main" in event.get("output", "") for event in events), events
        assert landing == f"/user/{student}/lab/tree/course/README.md"
        status, _, _ = hub.request("GET", landing)  # JupyterLab, showing the course's README
        assert status == 200
        listing = {item["name"] for item in hub.server_api("GET", "/contents/course")["content"]}
        assert {"README.md", "week1"} <= listing
        owner = site.host.ssh(f"stat -c %U /home/jupyter-{student}/course/.git /home/jupyter-{student}/course")
        assert owner.stdout.split() == [f"jupyter-{student}"] * 2

        # The student answers in the exercise; the teacher updates the README and adds week 2
        hub.server_api("PUT", "/contents/course/week1/exercise.py", expect=(200, 201),
                       body={"type": "file", "format": "text", "content": STUDENTS_ANSWER})
        site.host.ssh(TEACHERS_UPDATE, timeout=120)
        with site.stages.time("each student's own link (hubvm users --link --csv, flags over the settings)"):
            printed = site.invoke("users", "--link", "--csv", str(class_csv), "--repo", COURSE_REPO, "--open",
                                  "week2/notes.md", *site.target, timeout=120)
        assert printed.returncode == 0, printed.tail()
        rows = {row[0]: row[1] for row in csv.reader(printed.output.splitlines()) if len(row) == 2}
        assert rows.pop("user") == "link" and len(rows) == CLASS_SIZE + 2
        own_link = rows[student]
        assert own_link.startswith(f"https://{site.host.addr}/user/{student}/git-pull?repo=")
        with site.stages.time(f"{student}: second visit, with the student's own link (merge)"):
            events, landing = _nbgitpuller_visit(hub, own_link, student)
        assert events[-1]["phase"] == "finished", events[-3:]
        assert landing == f"/user/{student}/lab/tree/course/week2/notes.md"
        assert "Week 2: read week2/notes.md" in _read(hub, "course/README.md")  # the teacher's update arrived
        assert _read(hub, "course/week2/notes.md") == "Means and medians.\n"  # and the new file
        assert _read(hub, "course/week1/exercise.py") == STUDENTS_ANSWER  # the student's work is kept
        history = site.host.ssh(f"runuser -u jupyter-{student} -- git -C /home/jupyter-{student}/course log "
                                "--first-parent --format=%s -2").stdout.splitlines()
        print(f"{student}'s course history after the second visit: {history}")
        assert history == ["Merge remote-tracking branch 'origin/main'", "Automatic commit by nbgitpuller"]
    finally:
        site.settings_file.write_text(settings_before)
        site.host.ssh(f"systemctl stop {GIT_UNIT}", check=False)


def test_users_servers_run_with_limits_as_their_own_account(site: Site, first_provision: Run) -> None:
    user = "student01"
    unit = site.host.ssh(f"systemctl show jupyter-{user} -p MemoryMax -p CPUQuotaPerSecUSec -p User").stdout
    assert "MemoryMax=1073741824" in unit and "CPUQuotaPerSecUSec=1s" in unit
    home = site.host.ssh(f"stat -c '%U %a' /home/jupyter-{user} && readlink /home/jupyter-{user}/shared_data")
    assert home.stdout.split() == [f"jupyter-{user}", "700", "/srv/shared_data"]


def _unit(site: Site, unit: str, *properties: str) -> dict[str, str]:
    shown = site.host.ssh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties)).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def test_a_hub_restart_keeps_a_logged_in_users_server_and_session(site: Site, first_provision: Run) -> None:
    """The proxy runs apart from the hub (issue 18): restarting the hub leaves the proxy and its routes, so a
    logged-in user's server and session carry on."""
    hub = site.hub()
    hub.login("student20", passwords_of(site.passwords_file)["student20"][1])
    hub.start_server()
    assert hub.run_code("python3", "5*4").text == "20"
    proxy_before = _unit(site, "jupyterhub-proxy", "MainPID")["MainPID"]
    server_before = _unit(site, "jupyter-student20", "MainPID")["MainPID"]
    with site.stages.time("restart the hub under a logged-in user"):
        site.host.ssh("systemctl restart jupyterhub")
        wait_for_hub(site.hub())
    assert _unit(site, "jupyterhub-proxy", "MainPID")["MainPID"] == proxy_before  # the proxy was not restarted
    assert _unit(site, "jupyter-student20", "MainPID")["MainPID"] == server_before  # nor the user's server
    assert hub.run_code("python3", "5*4").text == "20"  # the same session goes on: no new login, no new spawn


def test_the_hub_waits_for_a_slow_proxy_instead_of_failing(site: Site, first_provision: Run) -> None:
    """A slow host (issue 18): the hub gave the proxy it started 10 s and crash-looped. Now the proxy is its own
    unit and the hub's start waits until it answers: here the proxy takes 30 s more to start."""
    dropin = "/etc/systemd/system/jupyterhub-proxy.service.d/slow-start.conf"
    site.host.ssh(f"mkdir -p {Path(dropin).parent} && printf '[Service]\\nExecStartPre=/bin/sleep 30\\n' > {dropin}"
                  " && systemctl daemon-reload && systemctl stop jupyterhub jupyterhub-proxy")
    try:
        with site.stages.time("start the hub while its proxy needs 30 s to come up"):
            started = time.monotonic()
            site.host.ssh("systemctl start jupyterhub", timeout=600)
            waited = time.monotonic() - started
        hub_unit = _unit(site, "jupyterhub", "ActiveState", "NRestarts")
        print(f"hub started after {waited:.0f} s, restarts: {hub_unit['NRestarts']}")
        assert waited >= 30 and hub_unit == {"ActiveState": "active", "NRestarts": "0"}
        assert _unit(site, "jupyterhub-proxy", "ActiveState")["ActiveState"] == "active"
        wait_for_hub(site.hub())
        hub = site.hub()
        hub.login("student20", passwords_of(site.passwords_file)["student20"][1])
        hub.start_server()  # the hub put the running server's route back into the new proxy
        assert hub.run_code("python3", "5*4").text == "20"
    finally:
        site.host.ssh(f"rm -f {dropin} && systemctl daemon-reload && systemctl start jupyterhub-proxy jupyterhub")


def test_a_reset_gives_one_user_a_new_password(site: Site, first_provision: Run) -> None:
    old = passwords_of(site.passwords_file)["student02"][1]
    site.import_users(reset="student02")
    new = passwords_of(site.passwords_file)["student02"][1]
    assert new != old and len(passwords_of(site.passwords_file)) == CLASS_SIZE + 2
    with pytest.raises(HubError, match="login as student02 failed"):
        site.hub().login("student02", old)
    site.hub().login("student02", new)


def _test_ca(workdir: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA of this test and a certificate it signs for the guest's address: (chain, key, CA certificate)."""
    ca_key, ca_cert = workdir / "test-ca.key", workdir / "test-ca.crt"
    key, request, cert = workdir / "hub.key", workdir / "hub.csr", workdir / "hub.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2", "-subj", "/CN=hubvm e2e CA")
    run("req", *ec, "-keyout", str(key), "-out", str(request), "-subj", f"/CN={address}")
    extensions = workdir / "hub.ext"
    extensions.write_text(f"subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(extensions))
    chain = workdir / "hub-chain.crt"
    chain.write_text(cert.read_text() + ca_cert.read_text())
    return chain, key, ca_cert


def test_second_provision_changes_nothing(site: Site, first_provision: Run) -> None:
    with site.stages.time("second provision (idempotence)"):
        run = site.invoke("provision", *site.target)
    assert run.returncode == 0, run.tail()
    recap = run.recap()
    print(f"second provision: {recap} in {run.seconds:.0f} s")
    changed = re.findall(r"^changed: \[.*$|^TASK \[.*$", run.output, re.MULTILINE)
    assert recap["changed"] == 0, "\n".join(changed)


def test_cleanup_makes_a_clone_safe_image(site: Site, first_provision: Run) -> None:
    """The cleanup role (--tags cleanup), then a reboot as the first boot of a copy of the image."""
    host = site.host
    # A stand-in for the build login of a Vagrant box: password, key and passwordless sudo.
    host.ssh(
        "useradd --create-home --shell /bin/bash vagrant && echo vagrant:vagrant | chpasswd && "
        "install -d -m 700 -o vagrant -g vagrant ~vagrant/.ssh && "
        "install -m 600 -o vagrant -g vagrant ~/.ssh/authorized_keys ~vagrant/.ssh/ && "
        "echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant && chmod 440 /etc/sudoers.d/vagrant"
    )
    before = _instance_identity(host)
    old_admin_password = site.admin_passwords()["admin"]
    command = [
        str(Path(HUBVM).parent / "ansible-playbook"),
        "-i", f"{host.addr},", "-u", "vagrant", "--become", "--private-key", str(site.key),
        "--ssh-common-args", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "-e", "@builds/ansible/vars.yml", "--tags", "cleanup", "ansible/playbook.yml",
    ]  # fmt: skip
    with site.stages.time("cleanup for export (--tags cleanup, as the vagrant login)"):
        run = site.run(*command, timeout=600, env={"ANSIBLE_CONFIG": "ansible/ansible.cfg"})
    assert run.returncode == 0, run.tail()
    # No new SSH connection works now (no host keys): look at the guest's files from outside.
    assert (host.root / "etc/machine-id").read_text() == ""
    assert list((host.root / "etc/ssh").glob("ssh_host_*")) == []
    assert not (host.root / "var/lib/jupyterhub/jupyterhub_cookie_secret").exists()
    for per_copy in (ADMIN_PASSWORDS, SELF_SIGNED, "var/lib/jupyterhub/hubvm-users.token"):
        assert not (host.root / per_copy).exists(), per_copy
    assert not list((host.root / "var/lib/jupyterhub").glob("passwords.dbm*"))
    console_before = host.log_path.stat().st_size

    host.user, host.identity = ADMIN_USER, site.admin_key
    with site.stages.time("first boot of the cleaned image"):
        restart(host)
    after = _instance_identity(host)
    for name in ("machine-id", "host key", "cookie secret", "admin passwords", "certificate"):
        assert after[name] and after[name] != before[name], name
    assert host.ssh("getent passwd vagrant || echo gone").stdout.strip() == "gone"
    assert host.ssh("test -e /etc/sudoers.d/vagrant || echo gone").stdout.strip() == "gone"
    denied = host.ssh("true", check=False, user="root", identity=site.key)
    assert denied.returncode != 0
    wait_for_hub(site.hub())
    new_admin_password = site.admin_passwords()["admin"]
    print(f"first boot: new admin password, certificate SHA-256 {_fingerprint(site.certificate_pem())}")
    # Shown on the console to whoever booted the copy (nspawn's console is its log here)
    with host.log_path.open("rb") as console:
        console.seek(console_before)
        shown = console.read().decode("utf-8", "replace")
    assert re.search(rf"hubvm:\s+admin\s+{re.escape(new_admin_password)}", shown), shown[-2000:]
    with pytest.raises(HubError, match="login as admin failed"):
        site.hub().login("admin", old_admin_password)
    site.hub().login("admin", new_admin_password)
    site.hub().login("grader", GRADER_PASSWORD)  # a configured hash is configuration, not a per-copy secret
    # The imported users went with the hub's state: a copy starts with none.
    with pytest.raises(HubError, match="login as student01 failed"):
        site.hub().login("student01", passwords_of(site.passwords_file)["student01"][1])


def _instance_identity(host: NspawnHost, timeout: float = 60) -> dict[str, str]:
    """What must differ between two copies of an image: machine ID, SSH host key, the hub's cookie secret, the
    admin passwords and the self-signed certificate."""
    files = {
        "machine-id": "etc/machine-id",
        "host key": "etc/ssh/ssh_host_ed25519_key.pub",
        "cookie secret": "var/lib/jupyterhub/jupyterhub_cookie_secret",
        "admin passwords": ADMIN_PASSWORDS,
        "certificate": SELF_SIGNED,
    }
    deadline = time.monotonic() + timeout
    while not all((host.root / path).exists() for path in files.values()):  # the hub makes its secret at start
        if time.monotonic() > deadline:
            raise TimeoutError(f"missing in the guest: {[p for p in files.values() if not (host.root / p).exists()]}")
        time.sleep(1)
    return {name: (host.root / path).read_text().strip() for name, path in files.items()}


def test_https_with_certificate_files_and_open_signup_on_a_copy(site: Site, first_provision: Run) -> None:
    """The booted copy provisioned again (as its administrator login) with hub_https files, a certificate signed
    by a CA of this test, and open sign-up."""
    chain, key, ca_cert = _test_ca(site.passwords_file.parent, site.host.addr)
    # The copy has new SSH host keys: forget the old one, as the tool's message says to do after a rebuild.
    known_hosts = site.project / "builds/ssh/known_hosts"
    subprocess.run(["ssh-keygen", "-R", site.host.addr, "-f", str(known_hosts)], check=True, capture_output=True)
    copy = ["--host", f"{ADMIN_USER}@{site.host.addr}", "--identity", str(site.admin_key)]
    with site.stages.time("hubvm verify on the booted copy (its administrator login)"):
        verified = site.invoke("verify", *copy, timeout=300)
    assert verified.returncode == 0, verified.tail()
    assert f"SHA-256 {colon_fingerprint(_fingerprint(site.certificate_pem()))}" in verified.output
    site.set_hub_settings({**ACCESS_SETTINGS, "https": "files", "https_cert_file": str(chain),
                           "https_key_file": str(key), "signup": "open"})
    with site.stages.time("provision the copy with HTTPS files and open sign-up"):
        run = site.invoke("provision", *copy)
    assert run.returncode == 0, run.tail()
    served = ssl.get_server_certificate((site.host.addr, 443))
    assert _fingerprint(served) == _fingerprint(chain.read_text())
    print(f"certificate from files: SHA-256 {_fingerprint(served)}")
    hub = site.hub(ca_file=ca_cert)  # verified through the test's CA, for the address
    hub.login("walkin", secrets.token_urlsafe(16))  # open sign-up: a new name creates an account
    with pytest.raises(HubError, match="login as admin failed"):
        site.hub(ca_file=ca_cert).login("admin", secrets.token_urlsafe(16))  # admins still not claimable
    site.hub(ca_file=ca_cert).login("admin", site.admin_passwords()["admin"])
