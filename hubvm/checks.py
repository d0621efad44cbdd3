"""The checks of `hubvm verify`: one guest probe script, and pure functions from its output to named checks.

Every guest command of verify runs in one SSH round-trip: `probe_script(s)` is a bash script whose sections
(`@@hubvm-section NAME` ... `@@hubvm-status N`) `parse_sections` cuts apart; `evaluate` turns them, and the
answer of the hub's API as seen from the host, into `Check`s. Nothing here connects: hubvm.remote does that,
so the evaluation is tested from canned outputs.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from hubvm import guest
from hubvm.report import table
from hubvm.settings import Settings

# What the Ansible roles make (the contract verify checks), from the one place that declares it
HUB_SERVICE = guest.HUB_SERVICE
SHARED_DATA = guest.SHARED_DATA_DIR
SKEL_LINK = guest.SKEL_LINK
# The sample files the shared_data role ships when vm.data is none (relative to the project)
SAMPLES_DIR = Path("ansible/roles/shared_data/files/samples")
KERNELS = ("python3", "ir")
MIN_FREE_BYTES = 1 << 30
HTTP_TIMEOUT = 5          # seconds for one hub API request (from the guest and from the host)
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})
# Who may log in, and HTTPS (the hub role's /etc/hubvm/hub-access.json: password store, sign-up, HTTPS mode,
# certificate path)
HUB_ACCESS = guest.HUB_ACCESS
DEFAULT_HTTPS, DEFAULT_HTTPS_PORT, DEFAULT_SIGNUP = "self-signed", 443, "closed"
HTTPS_MODES = ("off", "self-signed", "files", "acme")
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


def summary(checks: Sequence[Check]) -> str | None:
    """One line naming the failed checks, or None when all passed."""
    failed = [c.name for c in checks if c.passed is False]
    if not failed:
        return None
    return f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}"


def checks_table(checks: Sequence[Check]) -> str:
    return table(["check", "expected", "found", "result"], [(c.name, c.expected, c.found, c.status) for c in checks])


def hub_url(address: str, port: int, scheme: str = "http") -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}/hub/api"


@dataclass(frozen=True)
class AccessExpected:
    """What verify expects of who may log in and of HTTPS (from the settings)."""

    https: str = DEFAULT_HTTPS                 # off, self-signed, files, acme
    https_port: int = DEFAULT_HTTPS_PORT
    signup: str = DEFAULT_SIGNUP               # open, closed
    acme_domain: str = ""
    cert_file: Path | None = None              # files: the certificate given (its first block is the hub's)

    @property
    def on(self) -> bool:
        return self.https != "off"


def access_expected(s: Settings) -> AccessExpected:
    """What the settings say of sign-up and HTTPS."""
    return AccessExpected(https=s.hub.https, https_port=s.hub.https_port, signup=s.hub.signup,
                          acme_domain=s.hub.https_acme_domain, cert_file=s.hub.https_cert_file)


def guest_hub_url(s: Settings) -> str:
    """The hub's API from inside the guest: through its proxy, over HTTPS when HTTPS is on."""
    access = access_expected(s)
    if access.on:
        return hub_url("127.0.0.1", access.https_port, "https")
    return hub_url("127.0.0.1", s.hub.port)


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

# On loopback inside the guest the certificate is not checked (the host checks it: check_https).
HUB_API_GUEST = r"""
import json, ssl, sys, urllib.error, urllib.request
loopback = ssl.create_default_context()
loopback.check_hostname, loopback.verify_mode = False, ssl.CERT_NONE
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=loopback))
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


# Each admin's entry in FirstUseAuthenticator's store (read-only; the hashes themselves are never printed), the
# guest's access settings, and the fingerprint and PEM of the certificate its proxy serves.
HUB_ACCESS_PROBE = r"""
import base64, dbm, hashlib, json, sys
try:
    with open(sys.argv[1]) as file:
        access = json.load(file)
except (OSError, ValueError) as error:
    print("@@hubvm-item " + json.dumps({"error": f"cannot read {sys.argv[1]}: {error}"}))
    sys.exit(0)
out = {key: access.get(key) for key in ("https", "https_port", "http_port", "signup", "tls_cert", "password_db")}
try:
    with dbm.open(access["password_db"], "r") as db:
        stored = {name: db.get(name.encode()) for name in sys.argv[2:]}
    out["admins"] = {name: ("bcrypt" if value and value.startswith(b"$2") else "other" if value else "none")
                     for name, value in stored.items()}
except Exception as error:
    out["admins_error"] = f"cannot read the password store {access.get('password_db')}: {error}"
if access.get("tls_cert"):
    try:
        text = open(access["tls_cert"]).read()
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        der = base64.b64decode("".join(body.split()))
        out["cert_sha256"] = hashlib.sha256(der).hexdigest()
        out["cert_pem"] = "-----BEGIN CERTIFICATE-----" + body + "-----END CERTIFICATE-----\n"
    except (OSError, IndexError, ValueError) as error:
        out["cert_error"] = f"cannot read {access['tls_cert']}: {error}"
print("@@hubvm-item " + json.dumps(out))
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
    env = s.hub_paths.user_env
    python = [req.name for _, req in python_names(s)]
    r = [name for _, name in r_names(s)]

    def section(name: str, body: str) -> str:
        return f"echo {_MARK} {name}\n{{ {body}\n}} 2>&1\necho {_END} $?\n"

    parts = [
        "set +e\nexport LC_ALL=C\n",
        'if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi\n',
        section("starting", _wait_script(s)),
        section("os", "cat /etc/os-release"),
        section("hostname", "hostname"),
        section("timezone", "timedatectl show -p Timezone --value 2>/dev/null || cat /etc/timezone 2>/dev/null"
                            " || readlink /etc/localtime"),
        section("disk", "df -Pk /"),
        section("service", f"systemctl is-active {HUB_SERVICE}"),
        section("api", f"python3 -c {q(HUB_API_GUEST)} {q(guest_hub_url(s))} {HTTP_TIMEOUT}"),
        section("access", f"$SUDO python3 -c {q(HUB_ACCESS_PROBE)} {HUB_ACCESS} "
                          + " ".join(q(name) for name in s.hub.admin_users)),
        # The hub keeps admin users in its database (JupyterHub copies admin_users there at start and reads only
        # the database afterwards): the flavour's state directory holds it, where the unit runs
        section("admins", f'workdir=$(systemctl show -p WorkingDirectory --value {HUB_SERVICE} 2>/dev/null)\n'
                          f'$SUDO python3 -c {q(HUB_ADMINS)} "${{workdir:+$workdir/jupyterhub.sqlite}}" '
                          f"{q(s.hub_paths.database)}"),
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


def _wait_script(s: Settings) -> str:
    """Bash that waits (at most ssh.wait seconds) while the machine boots or the hub starts, then prints the
    seconds it waited: a freshly booted appliance starts its hub a minute or so after sshd (new secrets and
    database at the first boot), and checking it in that minute would report a hub that is merely starting."""
    wait = s.ssh.wait
    if wait <= 0:
        return "echo 0"     # `timeout 0` would wait forever
    api = f"python3 -c {shlex.quote(HUB_API_GUEST)} {shlex.quote(guest_hub_url(s))} {HTTP_TIMEOUT}"
    return (f"start=$SECONDS; end=$((SECONDS + {wait}))\n"
            f"timeout {wait} systemctl is-system-running --wait >/dev/null 2>&1\n"
            f"while [ $SECONDS -lt $end ]; do\n"
            f"  case $(systemctl is-active {HUB_SERVICE}) in\n"
            f"    activating|reloading) ;;\n"
            f"    active) {api} | grep -q '\"status\": 200' && break ;;\n"
            f"    *) break ;;\n"
            f"  esac\n"
            f"  sleep 2\n"
            f"done\n"
            f"echo $((SECONDS - start))")


def waited_seconds(sec: Section | None) -> int:
    """How long the probe script waited for the boot or the hub (0 when it did not, or did not say)."""
    last = sec.last_line() if sec else ""
    return int(last) if last.isdigit() else 0


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
    expected = f"JupyterHub version from {guest_hub_url(s)}"
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
        return Check("hub api (host)", expected, "-", None)   # dry run, or HTTPS not reachable from this host
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


def _access_item(sec: Section | None) -> dict[str, Any]:
    items = sec.json_items() if sec else []
    return items[0] if items else {"error": sec.last_line() if sec else NO_ANSWER}


def check_admin_passwords(s: Settings, sec: Section | None) -> list[Check]:
    """Each admin has a bcrypt hash in the hub's password store (read-only: no login is tried, none claimed)."""
    item = _access_item(sec)
    checks = []
    for user in s.hub.admin_users:
        name, expected = f"admin password {user}", "set before anyone logs in (bcrypt hash in the hub's store)"
        problem = item.get("error") or item.get("admins_error")
        state = (item.get("admins") or {}).get(user)
        if problem:
            checks.append(Check(name, expected, str(problem)[:160], False))
        elif state == "bcrypt":
            checks.append(Check(name, expected, f"set ({item.get('password_db')})", True))
        elif state == "other":
            checks.append(Check(name, expected, "an entry that is not a bcrypt hash", False))
        else:
            checks.append(Check(name, expected, "none: the first visitor could choose this admin's password", False))
    return checks


def check_signup(expected: AccessExpected, sec: Section | None) -> Check:
    item = _access_item(sec)
    want = {"open": "open (a new name creates an account)", "closed": "closed (existing accounts only)"}
    found = item.get("signup") or str(item.get("error", "not set"))[:160]
    return Check("sign-up", want.get(expected.signup, expected.signup), found, found == expected.signup)


@dataclass(frozen=True)
class CertificateFacts:
    """What verify shows and compares of a certificate (parsed from DER with cryptography)."""

    sha256: str                    # hex, lower case
    subject: str
    issuer: str
    self_signed: bool
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return colon_fingerprint(self.sha256)

    def names(self, address: str) -> bool:
        """Whether the certificate is valid for this host name or address (exact names and *.wildcards)."""
        try:
            return str(ipaddress.ip_address(address)) in self.ip_addresses
        except ValueError:
            host = address.lower().rstrip(".")
            return any(n == host or (n.startswith("*.") and host.split(".", 1)[-1] == n[2:]) for n in self.dns_names)


def colon_fingerprint(sha256_hex: str) -> str:
    """AB:CD:... as browsers and `openssl x509 -fingerprint -sha256` show it."""
    digits = sha256_hex.upper()
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def certificate_facts(der: bytes) -> CertificateFacts:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
        ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    return CertificateFacts(hashlib.sha256(der).hexdigest(), subject, issuer, cert.subject == cert.issuer, dns, ips)


def pem_to_der(pem: str) -> bytes:
    """The first certificate of a PEM text, as DER."""
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return base64.b64decode("".join(body.split()))


@dataclass(frozen=True)
class HttpsAnswer:
    """What the host saw of the hub's HTTPS (hubvm.remote fetches it): the certificate served on the HTTPS port,
    whether the system's CAs trust it for the name (acme), and what plain HTTP on the hub's port answered."""

    address: str                               # the host name or address verify connected to
    served: bytes | None = None                # DER of the certificate served
    error: str = ""                            # why nothing was served
    trusted: bool | None = None                # acme: the chain verifies for acme_domain with the system CAs
    trust_error: str = ""
    redirect: tuple[int, str] | None = None    # (HTTP status, Location) of GET http://address:port/hub/api
    redirect_error: str = ""
    expected_sha256: str | None = field(default=None)   # files: of the certificate given on this host


def check_https(expected: AccessExpected, sec: Section | None, answer: HttpsAnswer | None) -> list[Check]:
    """The mode the guest has, the certificate its proxy serves (printed with its SHA-256 fingerprint) against the
    mode's rule, and HTTP redirecting to HTTPS. With answer None (dry run, or no route from this host) the host's
    part is not run."""
    item = _access_item(sec)
    mode = item.get("https") or "unknown"
    port = item.get("https_port")
    found_mode = (f"{mode} on port {port}" if mode != "off" else "off (HTTP only)") if "error" not in item \
        else str(item["error"])[:160]
    want_mode = f"{expected.https} on port {expected.https_port}" if expected.on else "off (HTTP only)"
    checks = [Check("https mode", want_mode, found_mode, mode == expected.https and
                    (not expected.on or int(port or 0) == expected.https_port))]
    if not expected.on:
        return checks
    rules = {"self-signed": "self-signed, valid for the address, the guest's own certificate",
             "files": "the certificate given (hub.https_cert_file)",
             "acme": f"trusted by this host's CAs for {expected.acme_domain}"}
    want = rules.get(expected.https, expected.https)
    if answer is None:
        checks.append(Check("https certificate", want, "-", None))
        checks.append(Check("http redirect", "HTTP redirects to https://", "-", None))
        return checks
    if answer.served is None:
        checks.append(Check("https certificate", want, f"no TLS answer: {answer.error}"[:160], False))
    else:
        facts = certificate_facts(answer.served)
        problems = []
        guest_sha = item.get("cert_sha256")
        if expected.https in ("self-signed", "files") and guest_sha and guest_sha != facts.sha256:
            problems.append(f"not the guest's {item.get('tls_cert')} ({colon_fingerprint(guest_sha)[:23]}...)")
        if expected.https in ("self-signed", "files") and not guest_sha:
            problems.append(item.get("cert_error") or "the guest names no certificate file")
        if expected.https == "self-signed":
            if not facts.self_signed:
                problems.append(f"issued by {facts.issuer}, not self-signed")
            if not facts.names(answer.address):
                problems.append(f"not valid for {answer.address}")
        if expected.https == "files" and answer.expected_sha256 and answer.expected_sha256 != facts.sha256:
            problems.append("not the certificate given")
        if expected.https == "acme" and not answer.trusted:
            problems.append(f"not trusted: {answer.trust_error or 'not checked'}")
        found = f"SHA-256 {facts.fingerprint}" + (f"; {'; '.join(problems)}" if problems else "")
        checks.append(Check("https certificate", want, found, not problems))
    if answer.redirect is None:
        checks.append(Check("http redirect", "HTTP redirects to https://", answer.redirect_error or NO_ANSWER, False))
    else:
        status, location = answer.redirect
        ok = status in (301, 302, 307, 308) and location.startswith("https://")
        checks.append(Check("http redirect", "HTTP redirects to https://", f"{status} {location}"[:160], ok))
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
        expected = f"{spec} imports in {s.hub_paths.user_env}"
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
             host_entries: Sequence[str] | None = None, https_answer: HttpsAnswer | None = None) -> list[Check]:
    """Every check, in the order of the table. With no sections (a dry run) each says what it expects."""
    get = sections.get
    access = access_expected(s)
    checks = [
        check_os(s, get("os")),
        check_service(get("service")),
        check_api_guest(s, get("api")),
        check_api_host(hub_url_from_host, host_answer),
        *check_https(access, get("access"), https_answer),
        *check_admins(s, get("admins")),
        *check_admin_passwords(s, get("access")),
        check_signup(access, get("access")),
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


