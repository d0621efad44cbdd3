"""Beyond one machine (issue 20): the hub runs users' servers as Slurm jobs on compute nodes, on three real systemd
hosts, each in a network namespace of its own (they reach each other through the host's routes), /home one host
folder bound into all three (the site's shared file system: NFS cannot run here), Slurm's cgroup plugins off
(cluster.limits none: the containers cannot run them).

One `hubvm provision --host` makes the hub and both compute nodes; verify passes on the cluster; three students
imported with `hubvm users` log in over HTTPS and each gets a server that Slurm placed on a compute node (squeue
shows the job, and the kernel's own socket.gethostname() is that node), computing 5*4 in Python and R; stopping a
server ends its job; a compute node powered off mid-session makes verify name it, and a new start lands on the
other node; with the node back, a second provision changes nothing.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import (
    Namespace,
    NspawnHost,
    cached_rootfs,
    nspawn_host,
    power_off,
    remove_stale_namespaces,
    restart,
)
from tests.e2e.hubclient import HubClient
from tests.e2e.sites import HOST_CA_CERTIFICATES, Run, Site, keygen, passwords_of, provision

pytestmark = pytest.mark.e2e

STUDENTS = ["ann", "ben", "cay"]
HUB_NAME = "hub"
NODES = [f"{HUB_NAME}-node1", f"{HUB_NAME}-node2"]


@dataclass
class Cluster:
    site: Site
    nodes: list[NspawnHost]
    work: Path

    def squeue(self) -> list[tuple[str, str, str]]:
        """(user, state, node) of every job."""
        out = self.site.host.ssh("squeue --noheader --format='%u %T %N'").stdout
        return [tuple(line.split()) + ("",) * (3 - len(line.split())) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cluster(nspawn_requirements: None, tmp_path_factory: pytest.TempPathFactory,
            stages: StageClock) -> Iterator[Cluster]:
    remove_stale_namespaces()
    work = tmp_path_factory.mktemp("cluster")
    key, admin_key = keygen(work / "root_key"), keygen(work / "admin_key")
    home = work / "user-home"
    home.mkdir()
    shared = work / "shared-home"  # the site's shared /home, bound into every node
    shared.mkdir()
    with stages.time("root filesystem (mmdebstrap, or the cached one)"):
        cached_rootfs()
    with contextlib.ExitStack() as stack:
        namespaces = [stack.enter_context(Namespace(label=label)) for label in ("clh", "cl1", "cl2")]
        hosts = []
        with stages.time("boot the hub and two compute nodes"):
            for index, ns in enumerate(namespaces):
                hosts.append(stack.enter_context(nspawn_host(ns, key, work / f"host{index}", hostname=f"m{index}",
                                                             options=[f"--bind={shared}:/home"])))
        settings = work / "cluster.yaml"
        settings.write_text(yaml.safe_dump({
            "vm": {"hostname": HUB_NAME, "data": "none"},
            "hub": {"flavour": "pypi", "spawner": "slurm", "admin_users": ["admin"], "memory_limit": "512M",
                    "cpu_limit": 1},
            "cluster": {"compute": [f"root@{host.addr}" for host in hosts[1:]], "home": "site", "limits": "none",
                        "time_limit": "2:00:00"},
            "packages": {"python": ["six"], "r": ["r-cran-jsonlite"], "cran": [], "bioconductor": []},
            "guest": {"ca_certificates": [str(p) for p in HOST_CA_CERTIFICATES]},
            "export": {"ssh_user": "hubadmin", "ssh_public_key": f"{admin_key}.pub"},
        }))
        site = Site(hosts[0], copy_project(work / "project"), settings, key, admin_key, home, stages,
                    work / "passwords.csv")
        yield Cluster(site, hosts[1:], work)


@pytest.fixture(scope="module")
def first_provision(cluster: Cluster) -> Run:
    return provision(cluster.site, "one hubvm provision: the hub and two compute nodes (Slurm, users' environment)")


def test_one_provision_makes_the_hub_and_both_compute_nodes(cluster: Cluster, first_provision: Run) -> None:
    for name in [HUB_NAME, *NODES]:
        assert re.search(rf"^{re.escape(name)}\s+: ok=\d+ .*failed=0", first_provision.output, re.MULTILINE), name
    states = cluster.site.host.ssh("sinfo --Node --noheader --format='%N %T'").stdout.split()
    assert states[::2] == NODES and all(state in ("idle", "mixed") for state in states[1::2]), states


def test_verify_passes_on_the_cluster(cluster: Cluster, first_provision: Run) -> None:
    with cluster.site.stages.time("hubvm verify on the cluster"):
        run = cluster.site.invoke("verify", *cluster.site.target, timeout=600)
    assert run.returncode == 0, run.tail()
    for name in ("slurm controller", *(f"compute node {node}" for node in NODES)):
        assert re.search(rf"^{re.escape(name)} .* pass$", run.output, re.MULTILINE), name


@pytest.fixture(scope="module")
def passwords(cluster: Cluster, first_provision: Run) -> dict[str, str]:
    csv_file = cluster.work / "class.csv"
    csv_file.write_text("\n".join(STUDENTS) + "\n")
    cluster.site.import_users(csv_file)
    return {name: password for name, (_, password) in passwords_of(cluster.site.passwords_file).items()}


def _login(cluster: Cluster, student: str, password: str) -> HubClient:
    hub = cluster.site.hub()
    hub.login(student, password)
    return hub


def test_each_students_server_is_a_slurm_job_on_a_compute_node(cluster: Cluster,
                                                                passwords: dict[str, str]) -> None:
    placed = {}
    with cluster.site.stages.time("three students log in over HTTPS; each server a Slurm job; 5*4 in Python and R"):
        for student in STUDENTS:
            hub = _login(cluster, student, passwords[student])
            hub.start_server(timeout=600)
            host = hub.run_code("python3", "import socket; print(socket.gethostname())").text
            assert hub.run_code("python3", "5*4").text == "20"
            assert hub.run_code("ir", "5*4").text == "[1] 20"
            placed[student] = host
    jobs = cluster.squeue()
    print(f"placed: {placed}; squeue: {jobs}")
    for student, host in placed.items():
        assert host in NODES, host
        assert (f"jupyter-{student}", "RUNNING", host) in jobs, jobs  # Slurm put it where the kernel runs


def test_verify_tests_a_full_node_inside_a_running_job(cluster: Cluster, passwords: dict[str, str]) -> None:
    """Three 1-CPU servers on two 2-CPU nodes: one node is full (allocated), where no new job fits; verify still
    tests it, as a step inside one of its jobs, and passes."""
    listing = cluster.site.host.ssh("sinfo --Node --noheader --format='%N %T'").stdout
    states = dict(line.split() for line in listing.splitlines() if line.strip())
    full = [node for node, state in states.items() if state == "allocated"]
    assert full, states
    with cluster.site.stages.time("hubvm verify with a full compute node"):
        run = cluster.site.invoke("verify", *cluster.site.target, timeout=600)
    assert run.returncode == 0, run.tail()
    for node in full:
        row = rf"^compute node {node} .*tested inside job \d+ of jupyter-\w+\).* pass$"
        assert re.search(row, run.output, re.MULTILINE), node


def test_stopping_a_server_ends_its_job(cluster: Cluster, passwords: dict[str, str]) -> None:
    student = STUDENTS[2]
    hub = _login(cluster, student, passwords[student])
    hub.stop_server()
    deadline = time.monotonic() + 120
    while any(user == f"jupyter-{student}" for user, _, _ in cluster.squeue()):
        assert time.monotonic() < deadline, cluster.squeue()
        time.sleep(2)


def test_a_node_that_goes_down_is_named_and_the_next_start_lands_on_the_other(cluster: Cluster,
                                                                                passwords: dict[str, str]) -> None:
    student = STUDENTS[0]
    hub = _login(cluster, student, passwords[student])
    on = next(node for user, _, node in cluster.squeue() if user == f"jupyter-{student}")
    down, other = cluster.nodes[NODES.index(on)], NODES[1 - NODES.index(on)]
    with cluster.site.stages.time(f"power {on} off mid-session; verify names it"):
        power_off(down)
        deadline = time.monotonic() + 300
        while True:
            run = cluster.site.invoke("verify", *cluster.site.target, timeout=600)
            row = next((line for line in run.output.splitlines() if line.startswith(f"compute node {on}")), "")
            if run.returncode == 1 and row.endswith("FAIL") and "state down" in row:
                break
            assert time.monotonic() < deadline, run.tail()
            time.sleep(5)
    print(row)
    assert "state down" in row, row
    with cluster.site.stages.time("the hub notices; a new start lands on the other node"):
        deadline = time.monotonic() + 300
        while hub.api("GET", f"/users/{student}").get("servers", {}).get("", {}).get("ready"):
            assert time.monotonic() < deadline, "the hub still thinks the server runs"
            time.sleep(5)
        hub.start_server(timeout=600)
        assert hub.run_code("python3", "import socket; print(socket.gethostname())").text == other
        assert hub.run_code("python3", "5*4").text == "20"
    with cluster.site.stages.time(f"{on} back"):
        restart(down)
        deadline = time.monotonic() + 300
        while "idle" not in cluster.site.host.ssh(f"sinfo --noheader --nodes={on} --format=%T").stdout:
            assert time.monotonic() < deadline, "the node did not come back"
            time.sleep(3)


def test_a_second_provision_changes_nothing(cluster: Cluster, passwords: dict[str, str]) -> None:
    run = provision(cluster.site, "second provision of the cluster (idempotence)")
    changed = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", run.output, re.MULTILINE)
    assert changed and all(count == "0" for _, count in changed), changed
