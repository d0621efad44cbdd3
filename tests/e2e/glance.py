"""A real OpenStack Image service for the publish tests: Debian 12's glance-api (Zed) on 127.0.0.1.

``glance_api(folder)`` (context manager) writes a configuration into a scratch folder: bind_host 127.0.0.1 on a
free port, ``workers = 0`` (one process, one PID), sqlite, a file store (plus the staging and tasks stores), no
Keystone (Debian's default paste pipeline uses the unauthenticated context: every request acts as an admin-like
user without roles). It runs ``glance-manage db_sync``, starts ``/usr/bin/glance-api`` and waits for
``/healthcheck``. Leaving the block stops it by PID (SIGTERM, then SIGKILL) and removes the folder, also when
the test failed; an atexit hook does the same if the interpreter ends first, and a killed test process takes
glance-api with it (PR_SET_PDEATHSIG).

    with glance_api(tmp / "glance", user_storage_quota="10MB") as glance:
        glance.endpoint                      # http://127.0.0.1:PORT (the root URL: openstacksdk discovers /v2)
        glance.kill()                        # SIGKILL, as a crash would
        glance.restart(user_storage_quota="0")   # same database and store, new options

Options: ``publicize_image`` opens Glance's policy for public images (the policy file is named so that it is not
picked up unless named in ``[oslo_policy] policy_file``), ``user_storage_quota`` (Glance's legacy per-user quota,
e.g. "10MB"), ``image_size_cap`` (bytes; the largest image the service accepts).
Needs root (glance-api writes its lock and log paths as the glance package expects) and the glance-api package:
``missing_requirements()`` says what is missing so tests can skip with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

GLANCE_API = Path("/usr/bin/glance-api")
GLANCE_MANAGE = Path("/usr/bin/glance-manage")
PASTE_CONFIG = Path("/etc/glance/glance-api-paste.ini")
# Not "policy.yaml": oslo.policy would pick that name up beside the configuration even when not asked to
PUBLIC_IMAGES_POLICY = "policy-publicize-image.yaml"


def missing_requirements() -> list[str]:
    """Reasons the fixture cannot run here (empty when it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    for path in (GLANCE_API, GLANCE_MANAGE, PASTE_CONFIG):
        if not path.exists():
            reasons.append(f"{path} not found (apt-get install --no-install-recommends glance-api)")
    return reasons


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (a killed pytest leaves no glance-api)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class GlanceOptions:
    publicize_image: bool = False
    user_storage_quota: str = "0"          # Glance's default: no quota
    image_size_cap: int = 1 << 40          # Glance's default: 1 TiB


@dataclass
class Glance:
    folder: Path
    options: GlanceOptions
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    started_in: float = 0.0                # seconds from Popen to a healthy /healthcheck
    db_sync_seconds: float = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.folder / "glance-api.conf"

    @property
    def log_file(self) -> Path:
        return self.folder / "glance-api.log"

    @property
    def store_dir(self) -> Path:
        return self.folder / "images"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def write_config(self) -> None:
        for sub in ("images", "staging", "tasks", "locks"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        policy = ""
        if self.options.publicize_image:
            (self.folder / PUBLIC_IMAGES_POLICY).write_text('"publicize_image": ""\n')
            policy = f"\n[oslo_policy]\npolicy_file = {self.folder / PUBLIC_IMAGES_POLICY}\n"
        self.config_file.write_text(textwrap.dedent(f"""\
            [DEFAULT]
            bind_host = 127.0.0.1
            bind_port = {self.port}
            workers = 0
            log_file = {self.log_file}
            use_stderr = false
            enabled_backends = fs:file
            user_storage_quota = {self.options.user_storage_quota}
            image_size_cap = {self.options.image_size_cap}
            lock_path = {self.folder / "locks"}

            [database]
            connection = sqlite:///{self.folder / "glance.sqlite"}

            [paste_deploy]
            config_file = {PASTE_CONFIG}

            [glance_store]
            default_backend = fs

            [fs]
            filesystem_store_datadir = {self.store_dir}

            [os_glance_staging_store]
            filesystem_store_datadir = {self.folder / "staging"}

            [os_glance_tasks_store]
            filesystem_store_datadir = {self.folder / "tasks"}

            [oslo_concurrency]
            lock_path = {self.folder / "locks"}
            """) + policy)

    def db_sync(self) -> None:
        started = time.monotonic()
        result = subprocess.run([str(GLANCE_MANAGE), "--config-file", str(self.config_file), "db_sync"],
                                capture_output=True, text=True, cwd=self.folder)
        self.db_sync_seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"glance-manage db_sync failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        self.process = subprocess.Popen([str(GLANCE_API), "--config-file", str(self.config_file)],
                                        cwd=self.folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"glance-api exited with {self.process.returncode}: {self.log_tail()}")
            if self.healthy():
                self.started_in = time.monotonic() - started
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"glance-api did not answer /healthcheck within {timeout:.0f} s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthcheck", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would: no clean shutdown, the database keeps what it had."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def restart(self, **changes: object) -> None:
        """Stop (if running) and start again with the same database and store; ``changes`` alter the options."""
        self.stop()
        for key, value in changes.items():
            setattr(self.options, key, value)
        self.write_config()
        self.start()

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.store_dir.iterdir() if p.is_file())


@contextlib.contextmanager
def glance_api(folder: Path, publicize_image: bool = False, user_storage_quota: str = "0",
               image_size_cap: int = 1 << 40) -> Iterator[Glance]:
    """A running glance-api in ``folder`` (created, and removed afterwards)."""
    folder.mkdir(parents=True)
    glance = Glance(folder, GlanceOptions(publicize_image, user_storage_quota, image_size_cap))

    def tear_down() -> None:
        glance.stop()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(tear_down)
    try:
        glance.write_config()
        glance.db_sync()
        glance.start()
        yield glance
    finally:
        tear_down()
        atexit.unregister(tear_down)
