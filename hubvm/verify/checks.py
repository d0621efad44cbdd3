"""The checks of `hubvm verify`: pure functions from the probe script's sections (hubvm.verify.probe) and what
the host saw of the hub (hubvm.verify.web) to named checks, each with what it expects and what it found. Nothing
here connects, so the evaluation is tested from canned outputs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hubvm import binder
from hubvm.config.settings import Settings
from hubvm.report import human_bytes, table
from hubvm.verify.certificates import certificate_facts, colon_fingerprint
from hubvm.verify.expected import (
    HUB_SERVICE,
    KERNELS,
    MIN_FREE_BYTES,
    SHARED_DATA,
    SKEL_LINK,
    UTC_NAMES,
    AccessExpected,
    access_expected,
    guest_hub_url,
    python_names,
    r_names,
    shared_data_entries,
)
from hubvm.verify.probe import Section


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


def check_service(sec: Section | None, unit: str = HUB_SERVICE, name: str = "hub service") -> Check:
    found = sec.output.strip().splitlines()[-1] if sec and sec.output.strip() else NO_ANSWER
    return Check(name, f"{unit} active", found, bool(sec) and sec.status == 0 and found == "active")


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


def check_accounts(sec: Section | None) -> Check:
    """How many users the hub has and what their homes hold: a restore checked at a glance."""
    answers = sec.json_items() if sec else []
    answer = answers[0] if answers else {"error": sec.last_line() if sec else NO_ANSWER}
    expected = "the hub's database read"
    if "error" in answer or "users" not in answer:
        return Check("hub users", expected, str(answer.get("error", "no count"))[:160], False)
    homes = answer.get("homes", {})
    found = (f"{answer['users']} users ({len(answer['admins'])} admins), homes {homes.get('files', 0)} files, "
             f"{human_bytes(homes.get('bytes', 0))}")
    return Check("hub users", expected, found, True)


def check_cluster(sec: Section | None) -> list[Check]:
    """The cluster (hub.spawner slurm): the controller answers, and each compute node is usable and runs a job that
    decodes munge, reaches the hub's API and finds the kernels; a failing node is named."""
    items = sec.json_items() if sec else []
    controller = next((i for i in items if "controller" in i), {"controller": sec.last_line() if sec else NO_ANSWER})
    checks = [Check("slurm controller", "slurmctld answers (scontrol ping)", controller.get("controller") or "-",
                    bool(controller.get("up")))]
    nodes = [i for i in items if "node" in i]
    expected = "idle or allocated; a job there decodes munge, reaches the hub's API, has kernels python3 and ir"
    for node in nodes:
        problems = []
        if node.get("state") not in ("idle", "mixed", "allocated", "completing"):
            problems.append(f"state {node.get('state')}")
        else:
            if node.get("munge") != "ok":
                problems.append(f"munge: {node.get('munge') or 'no answer'} (the other tests not tried)")
            elif not node.get("hub_api_ok"):
                problems.append(f"hub's API: {node.get('hub_api') or 'no answer'}")
            missing = sorted(set(KERNELS) - set(node.get("kernels", [])))
            if missing and node.get("munge") == "ok":
                problems.append(node.get("kernels_error") or f"no kernel {', '.join(missing)}")
        inside = f" (full: tested inside job {node['inside_job']})" if node.get("inside_job") else ""
        working = f"{node['state']}{inside}, {node.get('hub_api')}, munge ok, kernels ok"
        found = "; ".join(problems) if problems else working
        checks.append(Check(f"compute node {node['node']}", expected, found[:160], not problems))
    if not nodes:
        error = next((i["error"] for i in items if "error" in i), "no compute node listed")
        checks.append(Check("compute nodes", "at least one, each usable", error[:160], False))
    return checks


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
class HttpsAnswer:
    """What the host saw of the hub's HTTPS (hubvm.verify.run fetches it): the certificate served on the HTTPS port,
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


def check_nbgitpuller(s: Settings, sec: Section | None) -> Check:
    """material.nbgitpuller: nbgitpuller imports in the users' environment, its server extension is enabled (what
    answers /user/NAME/git-pull), and git, which it runs, is there."""
    expected = f"imports in {s.user_env}, server extension enabled, git found"
    items = sec.json_items() if sec else []
    if not items:
        return Check("nbgitpuller", expected, sec.last_line() if sec else NO_ANSWER, False)
    item = items[0]
    problems = []
    if "error" in item:
        problems.append(item["error"])
    elif not item.get("extension"):
        problems.append(f"{item.get('version')} declares no jupyter_server extension")
    elif "enabled_error" in item:
        problems.append(item["enabled_error"])
    elif not item.get("enabled"):
        problems.append(f"{item.get('version')}, server extension not enabled")
    if "git_error" in item:
        problems.append(item["git_error"])
    found = "; ".join(problems) if problems else f"{item['version']}, server extension enabled, {item.get('git')}"
    return Check("nbgitpuller", expected, found[:160], not problems)


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


def check_binder(s: Settings, apt: Section | None, runtime: Section | None, scripts: Section | None) -> list[Check]:
    """What the Binder folder (packages.binder) asked for: apt.txt's packages installed, runtime.txt's version,
    install.R and postBuild run from the files as they are now, and the R packages install.R asked for loading.
    (requirements.txt's packages are among the Python packages.)"""
    folder = binder.of(s)
    if folder is None:
        return []
    where = folder.config_prefix
    checks = []
    installed = {}
    for item in apt.items if apt else []:
        fields = item.split("\t")
        if len(fields) == 3:
            installed[fields[0]] = fields
    for line, name in folder.apt:
        fields = installed.get(name)
        ok = fields is not None and fields[2] == "installed"
        found = f"{fields[1]} {fields[2]}" if fields else (apt.last_line() if apt else NO_ANSWER) or "not installed"
        checks.append(Check(f"apt package {name}", f"installed ({where}apt.txt line {line})", found[:160], ok))
    if folder.runtime:
        rt = folder.runtime
        label = "Python" if rt.language == "python" else "R"
        versions = dict(line.split(" ", 1) for line in (runtime.output.splitlines() if runtime else [])
                        if line.startswith(("python ", "r ")))
        have = versions.get(rt.language, "").strip()
        ok = bool(have) and (not rt.version or have == rt.version or have.startswith(rt.version + "."))
        expected = f"{label} {rt.version or 'any'}" + (f" (snapshot {rt.date} not applied: packages.cran_repo)"
                                                       if rt.date else "")
        checks.append(Check(f"runtime {rt.text}", expected, f"{label} {have}" if have else NO_ANSWER, ok))
    ran = {}
    for line in scripts.output.splitlines() if scripts else []:
        words = line.split()
        if len(words) >= 2 and words[0] == "ran":
            ran[words[1]] = words[2:]
    for script in ("install.R", "postBuild"):
        if not folder.has(script):
            continue
        digest = folder.digests[script]
        stamp = ran.get(script)
        expected = f"ran to the end from this {script} (sha256 {digest[:12]})"
        if not stamp:
            found, ok = "never ran to the end" if scripts else NO_ANSWER, False
        elif stamp[0] != digest:
            found, ok = f"ran from another {script} (sha256 {stamp[0][:12]}): provision again", False
        elif script == "install.R" and stamp[1:] != [s.packages.cran_repo]:
            found, ok = f"ran against {' '.join(stamp[1:]) or '?'}, not {s.packages.cran_repo}: provision again", False
        else:
            found, ok = f"ran (sha256 {digest[:12]})", True
        checks.append(Check(script, expected, found, ok))
    for item in scripts.items if scripts else []:
        fields = item.split("\t")
        if len(fields) >= 4:
            loads = fields[3] == "ok"
            found = f"{fields[1]} {fields[2]} loads" if loads else (f"{fields[1]} {fields[2]}: " if fields[1] else "") \
                + fields[3]
            checks.append(Check(f"R package {fields[0]}", f"library({fields[0]}) loads ({where}install.R)",
                                found[:160], loads))
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
        check_service(get("proxy"), s.hub_paths.proxy_service, "proxy service"),
        check_api_guest(s, get("api")),
        check_api_host(hub_url_from_host, host_answer),
        *check_https(access, get("access"), https_answer),
        *check_admins(s, get("admins")),
        check_accounts(get("admins")),
        *check_admin_passwords(s, get("access")),
        check_signup(access, get("access")),
        *check_kernels(get("kernels")),
        *check_python(s, get("python")),
        *([check_nbgitpuller(s, get("nbgitpuller"))] if s.material.nbgitpuller else []),
        *check_r(s, get("r")),
        *check_binder(s, get("binder_apt"), get("binder_runtime"), get("binder_scripts")),
        check_shared_data(s, get("shared_data"), host_entries),
        *(check_cluster(get("cluster")) if s.hub.spawner == "slurm" else []),
        check_timezone(s, get("timezone")),
        check_hostname(s, get("hostname")),
        check_disk(get("disk")),
    ]
    return checks


def planned(s: Settings, url: str) -> list[Check]:
    """The checks a dry run would make: names and expectations, nothing found."""
    return [replace(c, found="-", passed=None) for c in evaluate(s, {}, None, url, shared_data_entries(s))]


