"""The hub's Slurm cluster as the controller and each compute node see it, run on the hub as root: does slurmctld
answer, what state is each node in, and does a one-line job on each node decode a munge credential made here, reach
the hub's API (the address the users' servers use), and find the users' kernels. A node whose every core is taken
(state allocated: a class's servers fill it) runs the test as a step inside one of its running jobs (srun --overlap,
as that job's owner: Slurm lets no one else, root included, start a step in a job), since no new job fits there; a
node whose first test fails is not tried twice more. Arguments: the access settings file (the hub's URL for jobs),
the users' environment. @hubvm-item JSON lines: the controller, then one per node."""

import json
import subprocess
import sys

USABLE = ("idle", "mixed", "allocated", "completing")
HUB_API = ("import json, sys, urllib.request\n"
           "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
           "print(json.load(opener.open(sys.argv[1], timeout=10)).get('version', ''))")


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out), flush=True)


def run(argv: list, timeout: float = 120) -> tuple:
    """(exit status, its output: stdout, then stderr without slurmstepd's notes about the working folder)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    notes = [line for line in done.stderr.splitlines() if "couldn't chdir" not in line]
    return done.returncode, "\n".join([done.stdout.strip(), *notes]).strip()


def on_node(node: str, command: list, job: tuple = ()) -> tuple:
    """A one-line job on exactly that node (as root, a little memory and one core, given up on after 60 s), or a
    step inside the running job `job` (id, owner) there, sharing its resources, run as its owner; in /tmp."""
    where = ["--jobid", job[0], "--overlap"] if job else ["--mem=100M", "--immediate=60"]
    owner = ["runuser", "-u", job[1], "--"] if job else []
    return run([*owner, "srun", *where, "--nodelist", node, "--nodes=1", "--ntasks=1", "--chdir=/tmp", "--quiet",
                *command], 60)


def running_job(node: str) -> tuple:
    """One job running on the node (id, owner), for a test step when no new job fits."""
    _, listed = run(["squeue", "--noheader", "--states=RUNNING", f"--nodelist={node}", "--format=%A %u"])
    jobs = [tuple(line.split()) for line in listed.splitlines() if len(line.split()) == 2 and line.split()[0].isdigit()]
    return jobs[0] if jobs else ()


def last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


with open(sys.argv[1]) as file:
    access = json.load(file)
user_env = sys.argv[2]
status, text = run(["scontrol", "ping"])
item({"controller": last(text), "up": status == 0 and " is UP" in text})
status, listing = run(["sinfo", "--Node", "--noheader", "--format=%N %T"])
states = {}
for line in listing.splitlines():
    name, _, state = line.strip().partition(" ")
    if name:
        states[name] = state.rstrip("*~#!%$@^-")
for node, state in sorted(states.items()):
    out = {"node": node, "state": state}
    if state in USABLE:
        job = running_job(node) if state == "allocated" else ()
        if job:
            out["inside_job"] = f"{job[0]} of {job[1]}"
        _, credential = run(["munge", "--no-input"])
        # the credential as an argument (not through srun's stdin forwarding)
        status, decoded = on_node(node, ["sh", "-c", 'printf "%s\\n" "$1" | unmunge', "unmunge", credential], job)
        out["munge"] = "ok" if status == 0 and "STATUS:" in decoded and "Success" in decoded else last(decoded)
        if out["munge"] != "ok":
            item(out)
            continue
        status, version = on_node(node, ["python3", "-c", HUB_API, access.get("cluster_hub_url", "")], job)
        out["hub_api"] = f"JupyterHub {last(version)}" if status == 0 and last(version) else last(version)
        out["hub_api_ok"] = status == 0 and bool(last(version))
        status, listed = on_node(node, [f"{user_env}/bin/jupyter", "kernelspec", "list", "--json"], job)
        try:
            out["kernels"] = sorted(json.loads(listed[listed.index("{"):]).get("kernelspecs", {}))
        except ValueError:
            out["kernels_error"] = last(listed)
    item(out)
if not states:
    item({"error": last(listing) or "sinfo lists no compute node"})
