"""The hub's users as its database has them (read-only), from the first database path given that exists: how
many, which are admins (JupyterHub copies admin_users there at start and reads only the database afterwards), and
how many files and bytes their homes hold (the Linux accounts named with the prefix given first). Arguments:
PREFIX DATABASE... One @@hubvm-item JSON line."""

import json
import os
import pwd
import sqlite3
import sys


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out))


def homes(prefix: str) -> dict:
    files = size = 0
    for account in pwd.getpwall():
        if not account.pw_name.startswith(prefix) or not os.path.isdir(account.pw_dir):
            continue
        for folder, _, names in os.walk(account.pw_dir):
            for name in names:
                try:
                    info = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                files += 1
                size += info.st_size
    return {"files": files, "bytes": size}


prefix, paths = sys.argv[1], [p for p in sys.argv[2:] if p]
for path in paths:
    if os.path.isfile(path):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            rows = list(db.execute("SELECT name, admin FROM users"))
        except sqlite3.Error as error:
            item({"database": path, "error": str(error)})
        else:
            item({"database": path, "admins": [name for name, admin in rows if admin], "users": len(rows),
                  "homes": homes(prefix)})
        break
else:
    item({"error": "no hub database (looked at " + ", ".join(paths) + ")"})
