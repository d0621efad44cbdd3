"""How long a backup and a restore take, and how big the archive is, for a class of 30 with 20 MiB each (not a test:
it measures and prints). As root, from the project folder, after `./setup.sh --tests`:

    .venv/bin/python tests/e2e/benchmark_backup.py [--users 30] [--mib 20]

Two real hubs as in tests/e2e/test_backup.py (A provisioned, B a fresh copy of a newer export of it); on A a class
imported with `hubvm users`, then each student's home filled with MIB MiB: half random bytes (what compresses not
at all: images, archives) and half notebooks' JSON text (what compresses well). Then `hubvm backup` of A and
`hubvm restore` onto B, each timed; the figures are printed as a table (the README quotes them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubvm.report import duration, human_bytes, table
from tests.e2e.conftest import StageClock
from tests.e2e.hosts import missing_requirements, remove_stale_namespaces
from tests.e2e.sites import Site, hub_pair

# Run in the guest as root: each student's account and home (as the spawner makes them), then MIB MiB in it
FILL = """
import json, os, pwd, subprocess, sys
users, mib = int(sys.argv[1]), int(sys.argv[2])
cell = {"cell_type": "code", "source": "x = 5*4", "metadata": {}, "outputs": [], "execution_count": None}
for n in range(1, users + 1):
    login = f"jupyter-s{n}"
    try:
        pwd.getpwnam(login)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--key",
                        "HOME_MODE=0700", login], check=True)
    account = pwd.getpwnam(login)
    figures, course = os.path.join(account.pw_dir, "figures.bin"), os.path.join(account.pw_dir, "course.ipynb")
    with open(figures, "wb") as out:
        out.write(os.urandom(mib * 1024 * 1024 // 2))
    text = json.dumps({"cells": [cell] * (mib * 1024 * 1024 // 2 // len(json.dumps(cell))), "nbformat": 4})
    with open(course, "w") as out:
        out.write(text)
    for path in (figures, course):
        os.chown(path, account.pw_uid, account.pw_gid)
"""


def fill(site: Site, users: int, mib: int) -> None:
    (site.host.root / "root" / "fill.py").write_text(FILL)
    site.host.ssh(f"python3 /root/fill.py {users} {mib} && rm /root/fill.py", timeout=3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--mib", type=int, default=20)
    args = parser.parse_args()
    reasons = missing_requirements(nspawn=True)
    if reasons:
        print("cannot run here: " + "; ".join(reasons), file=sys.stderr)
        return 1
    remove_stale_namespaces()
    stages = StageClock()
    with tempfile.TemporaryDirectory(prefix="hubvm-backup-benchmark-") as folder:
        work = Path(folder)
        with hub_pair(work, stages, ["six"], ["six"]) as (a, b):
            csv_file = work / "class.csv"
            csv_file.write_text("\n".join(f"s{n}" for n in range(1, args.users + 1)) + "\n")
            a.import_users(csv_file)
            with stages.time(f"fill {args.users} homes with {args.mib} MiB each"):
                fill(a, args.users, args.mib)
            archive = work / "class.tar.gz"
            started = time.monotonic()
            run = a.invoke("backup", *a.target, "--output", str(archive))
            backup_seconds = time.monotonic() - started
            assert run.returncode == 0, run.tail()
            started = time.monotonic()
            run = b.invoke("restore", str(archive), *b.target)
            restore_seconds = time.monotonic() - started
            assert run.returncode == 0, run.tail()
            homes = args.users * args.mib * 1024 * 1024
            size = archive.stat().st_size
            print(table(["what", "figure"], [
                ("class", f"{args.users} users, {args.mib} MiB each ({human_bytes(homes)}; half random, half "
                          "notebook JSON)"),
                ("hubvm backup", f"{duration(backup_seconds)} ({human_bytes(homes / backup_seconds)}/s of homes)"),
                ("archive", f"{human_bytes(size)} ({100 * size / homes:.0f}% of the homes)"),
                ("hubvm restore", f"{duration(restore_seconds)} ({human_bytes(homes / restore_seconds)}/s)"),
            ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
