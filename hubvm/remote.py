"""verify and ssh: reach the VM (or any --host) over SSH with fabric, run named checks, open a shell.

The target is the Vagrant VM as `vagrant ssh-config` reports it (Vagrant's forwarded port on 127.0.0.1, or the
host-only address with ssh.via ip), or `--host [user@]address[:port]`. Host keys live in the project's
known_hosts (builds/ssh/known_hosts), never in ~/.ssh/known_hosts:
- a key seen for the first time is recorded;
- a changed key is refused with one line naming the entry to remove (`ssh-keygen -R ... -f ...`), except for the
  Vagrant VM when Vagrant's machine id changed since the key was recorded: the tool rebuilt that VM, so its new
  keys are expected; exactly the stale entries are replaced and the user is told in one line.

`verify` runs every guest probe in one SSH round-trip (one shell script whose sections are parsed here), asks the
hub's API from the host with urllib, and turns the outputs into `Check`s with pure functions, so the evaluation is
tested without a machine. Under `invoke --dry` nothing connects: the plan (target, hub URL, checks and their
expectations) is printed. `vagrant ssh-config` is a read-only probe and runs even then, so the plan names the
port Vagrant really assigned; when the VM does not exist yet the plan says so instead of failing.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import paramiko
from packaging.requirements import Requirement

from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.report import duration, table
from hubvm.settings import Settings
from hubvm.target import Target, from_ssh_config, known_hosts_names, remove_host_entries, ssh_options
from hubvm.target import parse as parse_target

# What the Ansible roles make (the contract verify checks)
HUB_SERVICE = "jupyterhub"
SHARED_DATA = "/srv/shared_data"
SKEL_LINK = "/etc/skel/shared_data"
# The hub keeps admin users in its database (JupyterHub copies admin_users there at start and reads only the
# database afterwards). The database is jupyterhub.sqlite in the unit's WorkingDirectory, else one of these.
HUB_DATABASES = ("/opt/tljh/state/jupyterhub.sqlite", "/opt/jupyterhub/state/jupyterhub.sqlite",
                 "/var/lib/jupyterhub/jupyterhub.sqlite")
# The sample files the shared_data role ships when vm.data is none (relative to the project)
SAMPLES_DIR = Path("ansible/roles/shared_data/files/samples")
KERNELS = ("python3", "ir")
MIN_FREE_BYTES = 1 << 30
HTTP_TIMEOUT = 5          # seconds for one hub API request
PROBE_TIMEOUT = 600       # seconds for the probe script (imports are slow in an emulated VM)
RETRY_PAUSE = 2.0         # seconds between connection attempts
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})
_MARK = "@@hubvm-section"
_END = "@@hubvm-status"
_ITEM = "@@hubvm-item "


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Check:
    name: str
    expected: str
    found: str
    passed: bool | None       # None: not run (dry run)

    @property
    def status(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]


@dataclass(frozen=True)
class Endpoint:
    """Where verify/ssh go: the SSH target, the hub's API as seen from this host, and how it was found."""

    target: Target
    hub_url: str
    source: str               # "--host", "vagrant ssh-config", or why the target is a guess (dry run only)
    vagrant: bool             # the tool's own Vagrant VM (its changed host keys may be expected, see module doc)
    reachable: bool = True    # False only in a dry run before the VM exists


def summary(checks: Sequence[Check]) -> str | None:
    """One line naming the failed checks, or None when all passed."""
    failed = [c.name for c in checks if c.passed is False]
    if not failed:
        return None
    return f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}"


def checks_table(checks: Sequence[Check]) -> str:
    return table(["check", "expected", "found", "result"], [(c.name, c.expected, c.found, c.status) for c in checks])


def checks_json(endpoint: Endpoint, checks: Sequence[Check], seconds: float) -> str:
    return json.dumps({
        "target": str(endpoint.target),
        "hub_url": endpoint.hub_url,
        "passed": sum(c.passed is True for c in checks),
        "failed": sum(c.passed is False for c in checks),
        "seconds": round(seconds, 1),
        "checks": [asdict(c) for c in checks],
    }, indent=2)


# ---------------------------------------------------------------------------------------------------------------
# Target resolution


def _run_probe(c: Any, command: str) -> Any:
    """A read-only command on this host, run even under --dry (see module doc)."""
    return c.run(command, hide=True, warn=True, dry=False, in_stream=False)


def vagrant_machine_id(s: Settings, layout: Layout) -> str | None:
    """Vagrant's id of the VM (a new one at every `vagrant up` after a destroy), or None when there is none."""
    path = layout.vagrant_dir / ".vagrant" / "machines" / s.vm.name / s.vm.provider / "id"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def hub_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/hub/api"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def resolve(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None,
            dry: bool = False) -> Endpoint:
    """The target of verify/ssh: --host, else the Vagrant VM (see module doc); a problem is one UserError line."""
    key = Path(identity).expanduser() if identity else None
    if host:
        target = parse_target(host, default_user=s.ssh.user, identity=key or s.ssh.identity)
        if target.identity is None:
            target = replace(target, password=s.ssh.password)
        # A loopback address off port 22 is a forwarded VM: its hub is forwarded too (vm.hub_host_port).
        forwarded = _is_loopback(target.host) and target.port != 22
        url = hub_url(target.host, s.vm.hub_host_port if forwarded else s.hub.port)
        return Endpoint(target, url, "--host", vagrant=False)
    if key is not None and not key.is_file():
        raise UserError(f"--identity {identity!r}: no such file; give the private key's path")
    vagrant = shlex.quote(s.tools.vagrant)
    if not layout.vagrantfile.is_file():
        if dry:
            return _guess(s, key, f"the Vagrant VM, not created yet ({layout.vagrantfile} is missing)")
        raise UserError(f"no Vagrant VM: {layout.vagrantfile} is missing; run invoke up, or give --host")
    with c.cd(str(layout.vagrant_dir)):
        result = _run_probe(c, f"{vagrant} ssh-config")
    if not result.ok:
        # Vagrant's messages run over several lines and sentences: the first sentence says what is wrong
        message = " ".join((result.stderr or result.stdout or "").split())
        reason = message.split(". ")[0].rstrip(".")[:200] or f"exit status {result.exited}"
        if dry:
            return _guess(s, key, f"the Vagrant VM, not running now: {reason}")
        raise UserError(f"vagrant ssh-config failed ({reason}); is the VM running? (invoke up)")
    reported = from_ssh_config(result.stdout)
    identity_file = key or s.ssh.identity or reported.identity
    if s.ssh.via == "forwarded":
        target = replace(reported, identity=identity_file)
        with c.cd(str(layout.vagrant_dir)):
            port = _run_probe(c, f"{vagrant} port --guest {s.hub.port}")
        text = (port.stdout or "").strip() if port.ok else ""
        host_port = int(text) if text.isdigit() else s.vm.hub_host_port
        url = hub_url("127.0.0.1", host_port)
    else:
        address = reported.host if s.vm.dhcp else s.vm.ip
        target = Target(address, reported.user, 22, identity_file)
        url = hub_url(address, s.hub.port)
    if target.identity is None:
        target = replace(target, password=s.ssh.password)
    return Endpoint(target, url, "vagrant ssh-config", vagrant=True)


def _guess(s: Settings, key: Path | None, why: str) -> Endpoint:
    """The target a dry run would use once the VM runs (from the configuration alone)."""
    if s.ssh.via == "forwarded":
        target = Target("127.0.0.1", s.ssh.user, s.ssh.port, key or s.ssh.identity)
        url = hub_url("127.0.0.1", s.vm.hub_host_port)
    else:
        address = "<dhcp lease>" if s.vm.dhcp else s.vm.ip
        target = Target(address, s.ssh.user, 22, key or s.ssh.identity)
        url = hub_url(address, s.hub.port)
    return Endpoint(target, url, why, vagrant=True, reachable=False)


def describe_auth(target: Target) -> str:
    if target.identity is not None:
        return f"key {target.identity}"
    return "ssh-agent, ~/.ssh keys or the password ssh.password"


# ---------------------------------------------------------------------------------------------------------------
# Host keys (project known_hosts)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def record_host_key(known_hosts: Path, name: str, key: paramiko.PKey) -> None:
    """Append one entry (OpenSSH's format, so ansible-playbook and ssh read it too)."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with known_hosts.open("a") as file:
        file.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class RecordNewHost(paramiko.MissingHostKeyPolicy):
    """First sight of a host: record its key in the project's known_hosts (a changed key is not 'missing')."""

    def __init__(self, known_hosts: Path, on_record: Callable[[], None] = lambda: None) -> None:
        self.known_hosts = known_hosts
        self.on_record = on_record

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.on_record()


def _stamp_path(layout: Layout) -> Path:
    """The Vagrant machine id the recorded Vagrant VM keys belong to."""
    return layout.known_hosts.parent / "vagrant-machine-id"


# ---------------------------------------------------------------------------------------------------------------
# Connecting


def connection_reason(error: BaseException, connect_timeout: int) -> str:
    """A few words for why one connection attempt failed."""
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        errnos = {getattr(e, "errno", None) for e in error.errors.values()}
        import errno as errno_codes

        if errnos <= {errno_codes.ECONNREFUSED}:
            return "connection refused"
        first = next(iter(error.errors.values()))
        return getattr(first, "strerror", None) or str(first)
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {connect_timeout} s"
    if isinstance(error, EOFError):
        return "the connection closed before the SSH greeting"
    if isinstance(error, paramiko.SSHException):
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        return "no SSH greeting (sshd not ready?)" if "banner" in text else text
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def _connection(s: Settings, target: Target) -> Any:
    import fabric

    kwargs: dict[str, Any] = {"banner_timeout": s.ssh.connect_timeout, "auth_timeout": s.ssh.connect_timeout}
    if target.identity is not None:
        kwargs.update(key_filename=[str(target.identity)], look_for_keys=False, allow_agent=False)
    elif target.password:
        kwargs["password"] = target.password
    # lazy: no ~/.ssh/config or fabric.yml changes who we talk to; the target is fully explicit
    return fabric.Connection(target.host, user=target.user, port=target.port, config=fabric.Config(lazy=True),
                             connect_kwargs=kwargs, connect_timeout=s.ssh.connect_timeout)


def connect(s: Settings, layout: Layout, endpoint: Endpoint, say: Callable[[str], None]) -> Any:
    """An open fabric Connection, retrying until ssh.wait while the machine boots; failures are one UserError line."""
    target = endpoint.target
    known_hosts = layout.known_hosts
    hint = ("is the VM running? (invoke up)" if endpoint.vagrant
            else f"is the machine up, with sshd listening on port {target.port}?")
    machine_id = vagrant_machine_id(s, layout) if endpoint.vagrant else None

    def stamp() -> None:
        if machine_id:
            _stamp_path(layout).write_text(machine_id + "\n")

    started = time.monotonic()
    deadline = started + s.ssh.wait
    announced = replaced = False
    while True:
        conn = _connection(s, target)
        if known_hosts.is_file():
            conn.client.get_host_keys().load(str(known_hosts))
        conn.client.set_missing_host_key_policy(RecordNewHost(known_hosts, stamp))
        try:
            conn.open()
            return conn
        except paramiko.BadHostKeyException as error:
            conn.close()
            names = known_hosts_names(target)
            recorded = _read_stamp(layout)
            if endpoint.vagrant and not replaced and machine_id and machine_id != recorded:
                remove_host_entries(known_hosts, names)
                say(f"host key of {names[0]} changed: the VM was rebuilt (Vagrant machine {machine_id[:12]}), "
                    f"replaced its entry in {known_hosts}")
                replaced = True
                continue
            raise UserError(
                f"host key of {names[0]} changed since {known_hosts} recorded it (now {fingerprint(error.key)}, "
                f"was {fingerprint(error.expected_key)}): if the machine was rebuilt, run "
                f"ssh-keygen -R '{names[0]}' -f {known_hosts}; otherwise do not trust this connection") from None
        except paramiko.PasswordRequiredException:
            conn.close()
            raise UserError(f"{target}: the key {target.identity} is protected by a passphrase; add it to ssh-agent "
                            "and leave --identity/ssh.identity empty, or give an unprotected key") from None
        except paramiko.AuthenticationException:
            conn.close()
            raise UserError(f"{target}: authentication failed with {describe_auth(target)}; give the right key "
                            "with --identity (or ssh.identity)") from None
        except socket.gaierror as error:
            conn.close()
            raise UserError(f"{target}: cannot resolve {target.host!r} ({error.strerror}); check the address") \
                from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            conn.close()
            reason = connection_reason(error, s.ssh.connect_timeout)
        if time.monotonic() + RETRY_PAUSE > deadline:
            waited = f" after {s.ssh.wait} s" if s.ssh.wait else ""
            raise UserError(f"cannot reach {target}{waited}: {reason}; {hint}")
        if not announced:
            say(f"waiting for SSH on {target} ({reason}), up to {s.ssh.wait} s ...")
            announced = True
        time.sleep(RETRY_PAUSE)


def _read_stamp(layout: Layout) -> str | None:
    try:
        return _stamp_path(layout).read_text().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# The probe script: every guest command of verify, run in one SSH round-trip; sections parsed by parse_sections.

# For each requested distribution: its version, the module it provides (pip names are not import names:
# scikit-learn -> sklearn, PyYAML -> yaml), and whether importing that module works.
PYTHON_IMPORTS = r"""
import importlib, importlib.metadata as md, json, re, sys
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
try:
    tops = md.packages_distributions()
except AttributeError:
    tops = {}
for name in sys.argv[1:]:
    out = {"name": name}
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        out["error"] = "not installed"
        print("@@hubvm-item " + json.dumps(out), flush=True)
        continue
    out["version"] = dist.version
    own = norm(dist.metadata["Name"] or name)
    modules = sorted(m for m, dists in tops.items() if own in {norm(d) for d in dists})
    modules = modules or (dist.read_text("top_level.txt") or "").split()
    public = [m for m in modules if not m.startswith("_")] or modules or [own.replace("-", "_")]
    module = own.replace("-", "_") if own.replace("-", "_") in public else public[0]
    out["module"] = module
    try:
        importlib.import_module(module)
    except BaseException as error:
        text = (str(error).splitlines() or [""])[0][:200]
        out["error"] = f"import {module}: {type(error).__name__}: {text}"
    print("@@hubvm-item " + json.dumps(out), flush=True)
"""

# For each wanted name (lower case): the installed package matching it case-insensitively, its version, and
# whether library() loads it. Debian lowercases names (r-cran-rcolorbrewer is RColorBrewer).
R_LOADS = r"""
wanted <- commandArgs(trailingOnly = TRUE)
installed <- installed.packages()
for (w in wanted) {
  hit <- installed[tolower(installed[, "Package"]) == tolower(w), , drop = FALSE]
  if (nrow(hit) == 0) {
    cat("@@hubvm-item ", w, "\t\t\tnot installed\n", sep = "")
    next
  }
  p <- hit[1, "Package"]
  loaded <- tryCatch({
    suppressPackageStartupMessages(library(p, character.only = TRUE))
    "ok"
  }, error = function(e) gsub("[\t\n]", " ", conditionMessage(e)))
  cat("@@hubvm-item ", w, "\t", p, "\t", hit[1, "Version"], "\t", loaded, "\n", sep = "")
}
"""

HUB_ADMINS = r"""
import json, os, sqlite3, sys
for path in [p for p in sys.argv[1:] if p]:
    if os.path.isfile(path):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            names = [row[0] for row in db.execute("SELECT name FROM users WHERE admin = 1")]
        except sqlite3.Error as error:
            print("@@hubvm-item " + json.dumps({"database": path, "error": str(error)}))
        else:
            print("@@hubvm-item " + json.dumps({"database": path, "admins": names}))
        break
else:
    print("@@hubvm-item " + json.dumps({"error": "no hub database (looked at " + ", ".join(sys.argv[1:]) + ")"}))
"""

HUB_API_GUEST = r"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        body = answer.read(4000).decode("utf-8", "replace")
        print("@@hubvm-item " + json.dumps({"status": answer.status, "body": body}))
except urllib.error.HTTPError as error:
    print("@@hubvm-item " + json.dumps({"status": error.code, "body": ""}))
except Exception as error:
    reason = getattr(error, "reason", error)
    print("@@hubvm-item " + json.dumps({"error": "no answer: " + (getattr(reason, "strerror", None) or str(reason))}))
"""


def r_names(s: Settings) -> list[tuple[str, str]]:
    """(configured name, R package name to look for) for every R package the configuration installs."""
    names = []
    for debian in s.packages.r:
        names.append((debian, debian.split("-", 2)[2]))  # r-cran-data.table -> data.table
    names += [(name, name) for name in (*s.packages.cran, *s.packages.bioconductor)]
    return names


def python_names(s: Settings) -> list[tuple[str, Requirement]]:
    return [(spec, Requirement(spec)) for spec in s.packages.python]


def probe_script(s: Settings) -> str:
    """The bash script that prints every section verify evaluates (each section ends with its exit status)."""
    q = shlex.quote
    env = s.user_env
    python = [req.name for _, req in python_names(s)]
    r = [name for _, name in r_names(s)]

    def section(name: str, body: str) -> str:
        return f"echo {_MARK} {name}\n{{ {body}\n}} 2>&1\necho {_END} $?\n"

    parts = [
        "set +e\nexport LC_ALL=C\n",
        'if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi\n',
        section("os", "cat /etc/os-release"),
        section("hostname", "hostname"),
        section("timezone", "timedatectl show -p Timezone --value 2>/dev/null || cat /etc/timezone 2>/dev/null"
                            " || readlink /etc/localtime"),
        section("disk", "df -Pk /"),
        section("service", f"systemctl is-active {HUB_SERVICE}"),
        section("api", f"python3 -c {q(HUB_API_GUEST)} {q(hub_url('127.0.0.1', s.hub.port))} {HTTP_TIMEOUT}"),
        section("admins", f'workdir=$(systemctl show -p WorkingDirectory --value {HUB_SERVICE} 2>/dev/null)\n'
                          f'$SUDO python3 -c {q(HUB_ADMINS)} "${{workdir:+$workdir/jupyterhub.sqlite}}" '
                          + " ".join(q(p) for p in HUB_DATABASES)),
        section("kernels", f"{q(env + '/bin/jupyter')} kernelspec list --json"),
        section("shared_data", f"echo link $(readlink {SKEL_LINK})\n"
                               f"test -d {SHARED_DATA}/ && ls -A1 {SHARED_DATA}/"),
    ]
    if python:
        parts.append(section("python", f"{q(env + '/bin/python')} -c {q(PYTHON_IMPORTS)} "
                                        + " ".join(q(n) for n in python)))
    if r:
        parts.append(section("r", "command -v Rscript >/dev/null || { echo Rscript not found; exit 127; }\n"
                                  f"Rscript -e {q(R_LOADS)} " + " ".join(q(n) for n in r)))
    return "".join(parts)


@dataclass(frozen=True)
class Section:
    status: int
    output: str

    @property
    def items(self) -> list[str]:
        return [line[len(_ITEM):] for line in self.output.splitlines() if line.startswith(_ITEM)]

    def json_items(self) -> list[dict[str, Any]]:
        parsed = []
        for item in self.items:
            try:
                parsed.append(json.loads(item))
            except json.JSONDecodeError:
                continue
        return parsed

    def last_line(self) -> str:
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1][:160] if lines else f"exit status {self.status}"


def parse_sections(output: str) -> dict[str, Section]:
    """The probe script's output cut into sections; a section without its end line gets status -1."""
    sections: dict[str, Section] = {}
    name, lines = None, []
    for line in output.splitlines():
        if line.startswith(_MARK + " "):
            if name is not None:
                sections[name] = Section(-1, "\n".join(lines))
            name, lines = line[len(_MARK) + 1:].strip(), []
        elif line.startswith(_END + " ") and name is not None:
            status = line[len(_END) + 1:].strip()
            sections[name] = Section(int(status) if status.lstrip("-").isdigit() else -1, "\n".join(lines))
            name, lines = None, []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = Section(-1, "\n".join(lines))
    return sections


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: pure functions from the sections (and the host's own hub request) to checks

NO_ANSWER = "no answer"
HostAnswer = tuple[bool, str]     # (answered with a version, what was found)


def _key_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def check_os(s: Settings, sec: Section | None) -> Check:
    expected = s.os_data["name"]
    if sec is None or sec.status != 0:
        return Check("os", expected, sec.last_line() if sec else NO_ANSWER, False)
    release = _key_values(sec.output)
    found = release.get("PRETTY_NAME") or release.get("NAME") or "unknown"
    ok = release.get("ID") == s.os_data["family"] and release.get("VERSION_CODENAME") == s.os_data["codename"]
    return Check("os", expected, found, ok)


def check_hostname(s: Settings, sec: Section | None) -> Check:
    if sec is None or sec.status != 0:
        return Check("hostname", s.vm.hostname, sec.last_line() if sec else NO_ANSWER, False)
    found = sec.output.strip().split(".")[0]
    return Check("hostname", s.vm.hostname, found, found == s.vm.hostname)


def check_timezone(s: Settings, sec: Section | None) -> Check:
    if sec is None or sec.status != 0 or not sec.output.strip():
        return Check("timezone", s.vm.timezone, sec.last_line() if sec else NO_ANSWER, False)
    found = sec.output.strip().splitlines()[-1].strip()
    found = found.split("zoneinfo/", 1)[1] if "zoneinfo/" in found else found  # a readlink of /etc/localtime
    same = found == s.vm.timezone or {found, s.vm.timezone} <= UTC_NAMES
    return Check("timezone", s.vm.timezone, found, same)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / (1 << 30):.1f} GiB"


def check_disk(sec: Section | None) -> Check:
    expected = f">= {_gib(MIN_FREE_BYTES)} free on /"
    lines = sec.output.strip().splitlines() if sec else []
    fields = lines[-1].split() if sec and sec.status == 0 and len(lines) >= 2 else []
    if len(fields) < 4 or not fields[1].isdigit() or not fields[3].isdigit():
        return Check("disk space", expected, sec.last_line() if sec else NO_ANSWER, False)
    total, free = int(fields[1]) * 1024, int(fields[3]) * 1024
    return Check("disk space", expected, f"{_gib(free)} free of {_gib(total)}", free >= MIN_FREE_BYTES)


def check_service(sec: Section | None) -> Check:
    found = sec.output.strip().splitlines()[-1] if sec and sec.output.strip() else NO_ANSWER
    return Check("hub service", f"{HUB_SERVICE} active", found, bool(sec) and sec.status == 0 and found == "active")


def hub_version(status: int, body: str) -> HostAnswer:
    """Whether a hub API answer is JupyterHub's ({"version": ...}), and what to show."""
    if status != 200:
        return False, f"HTTP {status}"
    try:
        version = json.loads(body).get("version")
    except (json.JSONDecodeError, AttributeError):
        version = None
    if not version:
        return False, f"HTTP 200 but no JupyterHub version in {body.strip()[:60]!r}"
    return True, f"JupyterHub {version}"


def check_api_guest(s: Settings, sec: Section | None) -> Check:
    expected = f"JupyterHub version from {hub_url('127.0.0.1', s.hub.port)}"
    answers = sec.json_items() if sec else []
    if not answers:
        return Check("hub api (guest)", expected, sec.last_line() if sec else NO_ANSWER, False)
    answer = answers[0]
    if "error" in answer:
        return Check("hub api (guest)", expected, answer["error"][:160], False)
    ok, found = hub_version(int(answer.get("status", 0)), answer.get("body", ""))
    return Check("hub api (guest)", expected, found, ok)


def check_api_host(endpoint_url: str, answer: HostAnswer | None) -> Check:
    expected = f"JupyterHub version from {endpoint_url}"
    if answer is None:
        return Check("hub api (host)", expected, "-", None)
    return Check("hub api (host)", expected, answer[1], answer[0])


def check_admins(s: Settings, sec: Section | None) -> list[Check]:
    answers = sec.json_items() if sec else []
    answer = answers[0] if answers else {"error": sec.last_line() if sec else NO_ANSWER}
    checks = []
    for user in s.hub.admin_users:
        name = f"admin user {user}"
        expected = "admin in the hub's database"
        if "error" in answer:
            checks.append(Check(name, expected, str(answer["error"])[:160], False))
        elif user in answer["admins"]:
            checks.append(Check(name, expected, "admin", True))
        else:
            others = ", ".join(answer["admins"]) or "none"
            checks.append(Check(name, expected, f"not an admin (admins: {others})", False))
    return checks


def check_kernels(sec: Section | None) -> list[Check]:
    specs: Mapping[str, Any] = {}
    problem = sec.last_line() if sec else NO_ANSWER
    if sec is not None and sec.status == 0:
        start = sec.output.find("{")
        try:
            specs = json.loads(sec.output[start:]).get("kernelspecs", {}) if start >= 0 else {}
        except json.JSONDecodeError:
            problem = "unreadable kernelspec list"
    checks = []
    for kernel in KERNELS:
        if kernel in specs:
            found = specs[kernel].get("spec", {}).get("display_name") or kernel
            checks.append(Check(f"kernel {kernel}", "registered", f"registered ({found})", True))
        else:
            found = f"missing (have: {', '.join(sorted(specs)) or 'none'})" if specs else problem
            checks.append(Check(f"kernel {kernel}", "registered", found, False))
    return checks


def check_python(s: Settings, sec: Section | None) -> list[Check]:
    results = {item.get("name"): item for item in (sec.json_items() if sec else [])}
    checks = []
    for spec, req in python_names(s):
        name = f"package {req.name}"
        expected = f"{spec} imports in {s.user_env}"
        item = results.get(req.name)
        if item is None:
            checks.append(Check(name, expected, sec.last_line() if sec else NO_ANSWER, False))
        elif "error" in item:
            version = f"{item['version']}: " if item.get("version") else ""
            checks.append(Check(name, expected, version + item["error"], False))
        elif req.specifier and not req.specifier.contains(item["version"], prereleases=True):
            checks.append(Check(name, expected, f"{item['version']} (outside {req.specifier})", False))
        else:
            checks.append(Check(name, expected, f"{item['version']}, import {item['module']} ok", True))
    return checks


def check_r(s: Settings, sec: Section | None) -> list[Check]:
    results = {}
    for item in sec.items if sec else []:
        fields = item.split("\t")
        if len(fields) >= 4:
            results[fields[0].lower()] = fields
    checks = []
    for configured, wanted in r_names(s):
        name = f"R package {configured}"
        expected = f"library({wanted}) loads"
        fields = results.get(wanted.lower())
        if fields is None:
            checks.append(Check(name, expected, sec.last_line() if sec else NO_ANSWER, False))
        elif fields[3] != "ok":
            checks.append(Check(name, expected, (f"{fields[1]} {fields[2]}: " if fields[1] else "") + fields[3],
                                False))
        else:
            checks.append(Check(name, expected, f"{fields[1]} {fields[2]} loads", True))
    return checks


def check_shared_data(s: Settings, sec: Section | None, host_entries: Sequence[str] | None) -> Check:
    """SHARED_DATA holds the data folder's entries (or, without one, any sample files) and /etc/skel links it."""
    source = "vm.data" if s.vm.data else "the sample files"
    holds = f"the {len(host_entries)} entries of {source}" if host_entries else "files"
    expected = f"{SHARED_DATA} holds {holds}, {SKEL_LINK} links it"
    lines = sec.output.splitlines() if sec else []
    link = lines[0][len("link"):].strip() if lines and lines[0].startswith("link") else ""
    entries = set(lines[1:])
    if sec is None:
        return Check("shared data", expected, NO_ANSWER, False)
    if sec.status != 0:
        return Check("shared data", expected, f"{SHARED_DATA} missing", False)
    problems = []
    if link.rstrip("/") != SHARED_DATA:
        problems.append(f"{SKEL_LINK} -> {link or 'nothing'}")
    missing = sorted(set(host_entries or ()) - entries)
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if not entries:
        problems.append(f"{SHARED_DATA} is empty")
    found = f"{len(entries)} entries" + (f"; {'; '.join(problems)}" if problems else ", linked")
    return Check("shared data", expected, found, not problems)


def evaluate(s: Settings, sections: Mapping[str, Section], host_answer: HostAnswer | None, hub_url_from_host: str,
             host_entries: Sequence[str] | None = None) -> list[Check]:
    """Every check, in the order of the table. With no sections (a dry run) each says what it expects."""
    get = sections.get
    checks = [
        check_os(s, get("os")),
        check_service(get("service")),
        check_api_guest(s, get("api")),
        check_api_host(hub_url_from_host, host_answer),
        *check_admins(s, get("admins")),
        *check_kernels(get("kernels")),
        *check_python(s, get("python")),
        *check_r(s, get("r")),
        check_shared_data(s, get("shared_data"), host_entries),
        check_timezone(s, get("timezone")),
        check_hostname(s, get("hostname")),
        check_disk(get("disk")),
    ]
    return checks


def planned(s: Settings, url: str) -> list[Check]:
    """The checks a dry run would make: names and expectations, nothing found."""
    return [replace(c, found="-", passed=None) for c in evaluate(s, {}, None, url, shared_data_entries(s))]


def shared_data_entries(s: Settings) -> list[str] | None:
    """The top-level entries the guest's shared data must hold: those of vm.data, or the shipped sample files."""
    folder = s.vm.data or s.project_dir / SAMPLES_DIR
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return None


def ask_hub(url: str, timeout: float = HTTP_TIMEOUT) -> HostAnswer:
    """GET the hub API from this host, directly (no proxy: the hub is on loopback or a host-only network)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return hub_version(answer.status, answer.read(4000).decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except urllib.error.URLError as error:
        reason = error.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return False, f"no answer: {text}"
    except (OSError, ValueError) as error:
        return False, f"no answer: {getattr(error, 'strerror', None) or error}"


# ---------------------------------------------------------------------------------------------------------------
# The tasks' entry points


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _dry(c: Any) -> bool:
    return bool(c.config.run.dry)


def run_verify(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None, as_json: bool) -> None:
    """`invoke verify`: resolve the target, connect, run the checks, print them; a failed check is a UserError."""
    dry = _dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry:
        checks = planned(s, endpoint.hub_url)
        if as_json:
            print(checks_json(endpoint, checks, 0.0))
            return
        print(f"verify (dry run, no connection): {endpoint.target} ({endpoint.source})\n"
              f"  login with {describe_auth(endpoint.target)}; hub API from this host: {endpoint.hub_url}")
        print(checks_table(checks))
        return
    started = time.monotonic()
    _say(f"verify: connecting to {endpoint.target} ({endpoint.source}, {describe_auth(endpoint.target)})")
    conn = connect(s, layout, endpoint, _say)
    try:
        _say(f"verify: running the checks on {endpoint.target}")
        result = _run_guest(conn, f"bash -c {shlex.quote(probe_script(s))}", endpoint.target)
    finally:
        conn.close()
    sections = parse_sections(result.stdout)
    checks = evaluate(s, sections, ask_hub(endpoint.hub_url), endpoint.hub_url, shared_data_entries(s))
    seconds = time.monotonic() - started
    if as_json:
        print(checks_json(endpoint, checks, seconds))
    else:
        print(checks_table(checks))
        passed = sum(c.passed is True for c in checks)
        print(f"{passed} of {len(checks)} checks passed on {endpoint.target} in {duration(seconds)}")
    problem = summary(checks)
    if problem:
        raise UserError(problem)


def _run_guest(conn: Any, command: str, target: Target) -> Any:
    import invoke

    try:
        return conn.run(command, hide=True, warn=True, echo=False, pty=False, in_stream=False,
                        timeout=PROBE_TIMEOUT)
    except invoke.CommandTimedOut:
        raise UserError(f"{target}: the checks did not finish within {PROBE_TIMEOUT} s") from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise UserError(f"{target}: the connection broke while running the checks ({error})") from None


def ssh_command(s: Settings, layout: Layout, target: Target) -> list[str]:
    """The OpenSSH command line of an interactive shell (same known_hosts and options as the tool's other clients)."""
    command = ["ssh", *ssh_options(layout.known_hosts, s.ssh.connect_timeout), "-p", str(target.port)]
    if target.identity is not None:
        command += ["-i", str(target.identity), "-o", "IdentitiesOnly=yes"]
    host = f"[{target.host}]" if ":" in target.host else target.host
    return [*command, f"{target.user}@{host}"]


def run_ssh(c: Any, s: Settings, layout: Layout, host: str | None, identity: str | None,
            command: str | None) -> int:
    """`invoke ssh`: an interactive shell (the system ssh client), or one command via fabric; returns its status."""
    dry = _dry(c)
    endpoint = resolve(c, s, layout, host, identity, dry=dry)
    if dry and command is not None:
        print(f"ssh (dry run, no connection): would run {command!r} on {endpoint.target} via {endpoint.source}")
        return 0
    if not dry:
        # Host key policy, retries and one-line errors before anything else; the shell then finds the key recorded.
        conn = connect(s, layout, endpoint, _say)
        if command is None:
            conn.close()
        else:
            try:
                result = conn.run(command, warn=True, pty=False, echo=False, in_stream=False)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise UserError(f"{endpoint.target}: the connection broke ({error})") from None
            finally:
                conn.close()
            return result.exited
    result = c.run(shlex.join(ssh_command(s, layout, endpoint.target)), pty=True, warn=True)
    return result.exited if result is not None else 0
