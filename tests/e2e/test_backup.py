"""A class's work carried from hub A to hub B (issue 19), on two real systemd hosts in network namespaces.

Hub A is provisioned (pypi flavour), a class of 5 is imported, and each student writes a notebook and a data file
through the hub's own contents API. Hub B is a fresh copy of a newer export: A's root filesystem copied right
after A's provisioning (before any student), made clone-safe by the export's cleanup role, booted (its first boot
makes its own secrets and admin passwords), then provisioned with a different package list, as its administrator
login. Then: `hubvm backup` of A; a backup killed midway leaves nothing that looks complete; a corrupted and a
truncated archive are refused by `hubvm restore` with nothing changed on B; the restore; each student logs in to
B with the old password, finds the same files byte for byte, owned by them, and computes 5*4 in Python and R; the
admin logs in with A's password; a second restore changes nothing; verify counts the users. Last, A is provisioned
again with one more package while a student's server runs: files and password unchanged, the package importable.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import HUBVM
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import remove_stale_namespaces
from tests.e2e.sites import Site, hub_pair, passwords_of, provision, wait_for_hub

pytestmark = pytest.mark.e2e

STUDENTS = [f"student{n}" for n in range(1, 6)]


@dataclass
class Hubs:
    a: Site
    b: Site
    work: Path

    @property
    def archive(self) -> Path:
        return self.work / "class.tar.gz"


@pytest.fixture(scope="module")
def hubs(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory,
         stages: StageClock) -> Iterator[Hubs]:
    remove_stale_namespaces()
    work = tmp_path_factory.mktemp("backup")
    with hub_pair(work, stages, ["six"], ["six", "idna"]) as (a, b):
        yield Hubs(a, b, work)


def _files(site: Site, student: str) -> dict[str, str]:
    """sha256 of every file in a student's home, read through the guest's root filesystem."""
    home = site.host.root / "home" / f"jupyter-{student}"
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.is_symlink()}


def _b_state(hubs: Hubs) -> dict[str, object]:
    """What must not change on B when a restore is refused or has nothing to do."""
    root = hubs.b.host.root
    homes = sorted(p.name for p in (root / "home").iterdir())
    store = root / "var/lib/jupyterhub/passwords.dbm"
    database = sqlite3.connect(f"file:{root}/var/lib/jupyterhub/jupyterhub.sqlite?mode=ro", uri=True)
    users = str(sorted(row[0] for row in database.execute("SELECT name FROM users")))
    database.close()
    files = {name: {str(p.relative_to(root / "home" / name)): (p.stat().st_mtime_ns, p.stat().st_ctime_ns)
                    for p in (root / "home" / name).rglob("*") if not p.is_symlink()}
             for name in homes if name.startswith("jupyter-")}
    return {"homes": homes, "users": users, "files": files,
            "store": store.stat().st_mtime_ns if store.exists() else None}


@pytest.fixture(scope="module")
def class_on_a(hubs: Hubs) -> dict[str, str]:
    a = hubs.a
    csv_file = hubs.work / "class.csv"
    csv_file.write_text("user name\n" + "\n".join(STUDENTS) + "\n")
    with a.stages.time("hub A: import a class of 5"):
        a.import_users(csv_file)
    passwords = {name: password for name, (_, password) in passwords_of(a.passwords_file).items()}
    with a.stages.time("hub A: each student writes a notebook and a data file through the contents API"):
        for student in STUDENTS:
            hub = a.hub()
            hub.login(student, passwords[student])
            hub.start_server()
            notebook = {"cells": [{"cell_type": "code", "source": f"print('{student}')", "metadata": {},
                                   "outputs": [], "execution_count": None}],
                        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
            hub.server_api("PUT", "/contents/work.ipynb", {"type": "notebook", "format": "json",
                                                            "content": notebook}, expect=(200, 201))
            hub.server_api("PUT", "/contents/data.csv", {"type": "file", "format": "text",
                                                          "content": f"x,y\n1,{student}\n" * 100},
                           expect=(200, 201))
            hub.stop_server()
    # one student's large file, so that a backup takes long enough to be interrupted
    first = f"jupyter-{STUDENTS[0]}"
    a.host.ssh(f"runuser -u {first} -- sh -c 'head -c 100M /dev/urandom > /home/{first}/big.bin'")
    return passwords


def test_a_backup_interrupted_midway_leaves_no_file_that_looks_complete(hubs: Hubs,
                                                                       class_on_a: dict[str, str]) -> None:
    a = hubs.a
    output = hubs.work / "interrupted.tar.gz"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    environment.update(HOME=str(a.home))
    process = subprocess.Popen([HUBVM, "-f", str(a.settings_file), "backup", *a.target, "--output", str(output)],
                               cwd=a.project, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = output.with_name(output.name + ".partial")
    deadline = time.monotonic() + 300
    while not (partial.exists() and partial.stat().st_size > 0) and process.poll() is None:
        assert time.monotonic() < deadline, "the backup never started writing"
        time.sleep(0.05)
    process.kill()  # as a power cut of the laptop: no clean-up of ours runs
    process.wait()
    assert not output.exists() and not output.with_name(output.name + ".sha256").exists()
    run = a.invoke("restore", str(partial), *hubs.b.target)
    assert run.returncode == 1 and ("truncated" in run.output or "ends before its manifest" in run.output), run.tail()
    wait_for_hub(a.hub(), timeout=120)  # the guest's program started A's hub again when the host went away
    assert a.host.ssh("systemctl is-active jupyterhub").stdout.strip() == "active"


def test_backup_of_a(hubs: Hubs, class_on_a: dict[str, str]) -> None:
    with hubs.a.stages.time("hubvm backup of hub A"):
        run = hubs.a.invoke("backup", *hubs.a.target, "--output", str(hubs.archive))
    assert run.returncode == 0, run.tail()
    assert "6 users (1 admins)" in run.output, run.output
    assert hubs.archive.is_file() and not hubs.archive.with_name("class.tar.gz.partial").exists()
    sums = subprocess.run(["sha256sum", "-c", "class.tar.gz.sha256"], cwd=hubs.work, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    print(f"archive {hubs.archive.stat().st_size} bytes")
    wait_for_hub(hubs.a.hub())  # A's hub is back


@pytest.mark.parametrize("damage", ["corrupted", "truncated", "foreign"])
def test_a_damaged_archive_is_refused_with_nothing_changed(hubs: Hubs, damage: str) -> None:
    if not hubs.archive.exists():
        pytest.skip("no backup of A (test_backup_of_a failed)")
    bad = hubs.work / f"{damage}.tar.gz"
    data = bytearray(hubs.archive.read_bytes())
    if damage == "corrupted":
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0x5A for b in data[middle:middle + 64])
    elif damage == "truncated":
        data = data[:len(data) * 2 // 3]
    else:
        subprocess.run(["tar", "-czf", str(bad), "-C", str(hubs.work), "a.yaml"], check=True)
        data = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(data))
    before = _b_state(hubs)
    run = hubs.b.invoke("restore", str(bad), *hubs.b.target)
    lines = [line for line in run.output.splitlines() if line.startswith("error: ")]
    assert run.returncode == 1 and len(lines) == 1, run.tail()
    assert ("nothing was changed" in lines[0]) or ("not a hubvm backup" in lines[0]), lines[0]
    assert "Traceback" not in run.output
    assert _b_state(hubs) == before


def test_restore_onto_b_brings_every_student_and_their_work(hubs: Hubs, class_on_a: dict[str, str]) -> None:
    if not hubs.archive.exists():
        pytest.skip("no backup of A")
    with hubs.b.stages.time("hubvm restore onto hub B"):
        run = hubs.b.invoke("restore", str(hubs.archive), *hubs.b.target)
    assert run.returncode == 0, run.tail()
    for student in STUDENTS:
        assert _files(hubs.b, student) == _files(hubs.a, student), student  # byte for byte
        uid = int(hubs.b.host.ssh(f"id -u jupyter-{student}").stdout)
        owners = hubs.b.host.ssh(f"find /home/jupyter-{student} -not -user {uid} | head -3").stdout
        assert owners.strip() == "", owners  # everything in the home belongs to the student's account on B


def test_a_second_restore_changes_nothing(hubs: Hubs, class_on_a: dict[str, str]) -> None:
    before = _b_state(hubs)
    run = hubs.b.invoke("restore", str(hubs.archive), *hubs.b.target)
    assert run.returncode == 0 and "nothing changed" in run.output, run.tail()
    assert _b_state(hubs) == before


def test_each_student_logs_in_to_b_with_the_old_password_and_computes(hubs: Hubs,
                                                                     class_on_a: dict[str, str]) -> None:
    a_admin_password = hubs.a.admin_passwords()["admin"]
    with hubs.b.stages.time("hub B: each student logs in with the old password, 5*4 in Python and R"):
        for student in STUDENTS:
            hub = hubs.b.hub()
            hub.login(student, class_on_a[student])
            hub.start_server()
            assert hub.run_code("python3", "5*4").text == "20"
            assert hub.run_code("ir", "5*4").text == "[1] 20"
            assert "x,y" in hub.server_api("GET", "/contents/data.csv")["content"]
            hub.stop_server()
    admin = hubs.b.hub()
    admin.login("admin", a_admin_password)  # the admin's password from the backup
    assert admin.api("GET", "/users/admin")["admin"] is True


def test_verify_counts_the_restored_users(hubs: Hubs, class_on_a: dict[str, str]) -> None:
    run = hubs.b.invoke("verify", *hubs.b.target, timeout=300)
    assert run.returncode == 0, run.tail()
    row = next(line for line in run.output.splitlines() if line.startswith("hub users"))
    assert "6 users (1 admins)" in row, row


def test_provisioning_a_again_with_a_server_running_keeps_files_and_passwords(hubs: Hubs,
                                                                              class_on_a: dict[str, str]) -> None:
    a = hubs.a
    student = STUDENTS[0]
    hub = a.hub()
    hub.login(student, class_on_a[student])
    hub.start_server()
    files_before = _files(a, student)
    server_before = a.host.ssh(f"systemctl show -p MainPID --value jupyter-{student}").stdout.strip()
    settings = yaml.safe_load(a.settings_file.read_text())
    settings["packages"]["python"] = ["six", "pyfiglet"]  # pyfiglet: in no environment of the hub yet
    a.settings_file.write_text(yaml.safe_dump(settings))
    run = provision(a, "hub A: provision again with one more package while a student's server runs")
    assert run.recap()["changed"] > 0  # the package was installed
    assert _files(a, student) == files_before
    assert a.host.ssh(f"systemctl show -p MainPID --value jupyter-{student}").stdout.strip() == server_before
    result = hub.run_code("python3", "import pyfiglet; print(pyfiglet.__name__)")  # the same server, the new package
    assert (result.text, result.error) == ("pyfiglet", "")
    again = a.hub()
    again.login(student, class_on_a[student])  # the password did not change
