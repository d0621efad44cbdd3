"""The hub's admins as its database has them (JupyterHub copies admin_users there at start and reads only the
database afterwards), from the first database path given that exists; read-only. One @@hubvm-item JSON line."""

import json
import os
import sqlite3
import sys


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out))


for path in [p for p in sys.argv[1:] if p]:
    if os.path.isfile(path):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            names = [row[0] for row in db.execute("SELECT name FROM users WHERE admin = 1")]
        except sqlite3.Error as error:
            item({"database": path, "error": str(error)})
        else:
            item({"database": path, "admins": names})
        break
else:
    item({"error": "no hub database (looked at " + ", ".join(sys.argv[1:]) + ")"})
