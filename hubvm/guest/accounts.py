"""The Linux account a hub user's server runs as (PREFIX+NAME, a home of mode 0700 made from /etc/skel), made the
one way the hub's spawner, hubvm-backup's restore and the cluster share: on a cluster, the account is also written
into the account files on the shared home (`shared_dir`: passwd and group), which the compute nodes read through
libnss-extrausers, so that every node knows the same users with the same numeric ids.

Used by the hub's configuration (its pre-spawn hook imports this module from the guest package) and by
hubvm-backup; it needs nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator

PREFIX = "jupyter-"


def ensure(name: str, prefix: str = PREFIX, shared_dir: str = "") -> pwd.struct_passwd:
    """The account of hub user `name`, made when missing; on a cluster also in the shared account files."""
    login = prefix + name
    try:
        entry = pwd.getpwnam(login)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--key",
                        "HOME_MODE=0700", "--comment", f"JupyterHub user {name}", login],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(login)
    if shared_dir:
        share(entry, shared_dir)
    return entry


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    os.makedirs(folder, mode=0o755, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _lines(path: str) -> list[str]:
    try:
        with open(path) as file:
            return [line for line in file.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _replace(path: str, lines: list[str]) -> None:
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".accounts-")
    try:
        os.fchmod(handle, 0o644)
        with os.fdopen(handle, "w") as file:
            file.write("".join(f"{line}\n" for line in lines))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def passwd_line(entry: pwd.struct_passwd) -> str:
    return ":".join([entry.pw_name, "x", str(entry.pw_uid), str(entry.pw_gid), entry.pw_gecos, entry.pw_dir,
                     entry.pw_shell])


def group_line(entry: pwd.struct_passwd) -> str:
    return f"{entry.pw_name}:x:{entry.pw_gid}:"


def share(entry: pwd.struct_passwd, shared_dir: str) -> bool:
    """Write the account into shared_dir/passwd and shared_dir/group (its user group), replacing an older line of
    the same name; True if anything changed."""
    changed = False
    with _locked(shared_dir):
        for name, line in (("passwd", passwd_line(entry)), ("group", group_line(entry))):
            path = os.path.join(shared_dir, name)
            lines = _lines(path)
            kept = [old for old in lines if old.split(":", 1)[0] != entry.pw_name]
            if line not in lines or len(kept) != len(lines) - 1:
                _replace(path, [*kept, line])
                changed = True
    return changed
