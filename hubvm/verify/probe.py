"""verify's guest side: one bash script that runs every guest command of verify in one SSH round-trip, and the
parsing of what it prints. Its sections (`@@hubvm-section NAME` ... `@@hubvm-status N`) hold the output of the
programs in programs/ (package data: Python and R files that ruff and the tests read as files), which print
`@@hubvm-item` lines that hubvm.verify.checks evaluates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from hubvm import binder, guest
from hubvm.config.settings import Settings
from hubvm.shell import q
from hubvm.verify.expected import (
    HTTP_TIMEOUT,
    HUB_ACCESS,
    HUB_SERVICE,
    SHARED_DATA,
    SKEL_LINK,
    SYSTEM_USER_PREFIX,
    guest_hub_url,
    python_names,
    r_names,
)

_MARK = "@@hubvm-section"
_END = "@@hubvm-status"
_ITEM = "@@hubvm-item "


@cache
def program(name: str) -> str:
    """The text of one of the guest programs (programs/NAME)."""
    return (resources.files("hubvm.verify") / "programs" / name).read_text()


def run_program(name: str, interpreter: str = "python3") -> str:
    """The command line that runs programs/NAME with `interpreter` (`python3 -c TEXT`, `Rscript -e TEXT`)."""
    flag = "-e" if name.endswith(".R") else "-c"
    return f"{interpreter} {flag} {q(program(name))}"


def probe_script(s: Settings) -> str:
    """The bash script that prints every section verify evaluates (each section ends with its exit status)."""
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
        section("proxy", f"systemctl is-active {q(s.hub_paths.proxy_service)}"),
        section("api", f"{run_program('hub_api.py')} {q(guest_hub_url(s))} {HTTP_TIMEOUT}"),
        section("access", f"$SUDO {run_program('hub_access.py')} {HUB_ACCESS} "
                          + " ".join(q(name) for name in s.hub.admin_users)),
        # The hub keeps admin users in its database (JupyterHub copies admin_users there at start and reads only
        # the database afterwards): the flavour's state directory holds it, where the unit runs
        section("admins", f'workdir=$(systemctl show -p WorkingDirectory --value {HUB_SERVICE} 2>/dev/null)\n'
                          f"$SUDO {run_program('hub_accounts.py')} {q(SYSTEM_USER_PREFIX)} "
                          f'"${{workdir:+$workdir/jupyterhub.sqlite}}" {q(s.hub_paths.database)}'),
        section("kernels", f"{q(env + '/bin/jupyter')} kernelspec list --json"),
        section("shared_data", f"echo link $(readlink {SKEL_LINK})\n"
                               f"test -d {SHARED_DATA}/ && ls -A1 {SHARED_DATA}/"),
    ]
    if python:
        parts.append(section("python", f"{run_program('python_imports.py', q(env + '/bin/python'))} "
                                        + " ".join(q(n) for n in python)))
    if s.material.nbgitpuller:
        parts.append(section("nbgitpuller", run_program("nbgitpuller_check.py", q(env + "/bin/python"))))
    if r:
        parts.append(section("r", "command -v Rscript >/dev/null || { echo Rscript not found; exit 127; }\n"
                                  f"{run_program('r_loads.R', 'Rscript')} " + " ".join(q(n) for n in r)))
    folder = binder.of(s)
    if folder and folder.apt:
        parts.append(section("binder_apt", "dpkg-query -W -f='@@hubvm-item ${Package}\\t${Version}\\t"
                                           "${db:Status-Status}\\n' " + " ".join(q(n) for _, n in folder.apt)))
    if folder and folder.runtime:
        parts.append(section("binder_runtime", f"{q(env + '/bin/python')} -c 'import platform; "
                                               "print(\"python\", platform.python_version())'\n"
                                               "Rscript -e 'cat(\"r\", paste(R.version$major, R.version$minor, "
                                               "sep = \".\"), \"\\n\")' 2>/dev/null"))
    if folder and (folder.has("install.R") or folder.has("postBuild")):
        state = guest.BINDER_STATE
        parts.append(section("binder_scripts",
                             f"for script in install.R postBuild; do echo \"ran $script $(cat {state}/$script.sha256 "
                             f"2>/dev/null)\"; done\n"
                             f"if [ -s {state}/install.R.packages ]; then {run_program('r_loads.R', 'Rscript')} "
                             f"$(cat {state}/install.R.packages); fi"))
    if s.hub.spawner == "slurm":
        parts.append(section("cluster", f"$SUDO {run_program('cluster_nodes.py')} {HUB_ACCESS} {q(env)}"))
    return "".join(parts)


def _wait_script(s: Settings) -> str:
    """Bash that waits (at most ssh.wait seconds) while the machine boots or the hub starts, then prints the
    seconds it waited: a freshly booted appliance starts its hub a minute or so after sshd (new secrets and
    database at the first boot), and checking it in that minute would report a hub that is merely starting."""
    wait = s.ssh.wait
    if wait <= 0:
        return "echo 0"     # `timeout 0` would wait forever
    api = f"{run_program('hub_api.py')} {q(guest_hub_url(s))} {HTTP_TIMEOUT}"
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

