"""The hub role's access settings rendered by Ansible itself, for every HTTPS mode and sign-up: the pypi hub's
jupyterhub_config.py (valid Python, the proxy's TLS and redirect options), certbot's command line for acme (which
cannot run here: no public DNS name), the guest tools' settings file, and the role's checks of bad values."""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HUB = REPO / "ansible/roles/hub"
CASES = {
    "off": {"hub_https": "off", "hub_signup": "open"},
    "self-signed": {"hub_https": "self-signed", "hub_signup": "closed"},
    "files": {"hub_https": "files", "hub_https_cert_file": "/host/hub.crt", "hub_https_key_file": "/host/hub.key",
              "hub_signup": "closed"},
    "acme": {"hub_https": "acme", "hub_https_acme_domain": "hub.example.org",
             "hub_https_acme_email": "teacher@example.org", "hub_https_acme_staging": True, "hub_signup": "closed"},
}


def _render(root: Path) -> Path:
    """Render, in one ansible-playbook run on localhost, what the role writes for each case and flavour, into
    root/FLAVOUR/CASE/. The templates are rendered on the controller (a template lookup per case, then one file),
    which is how the template module renders them too, and eight times faster than a task per file."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook is not installed beside {sys.executable}")
    tasks = []
    names = {}
    for flavour in ("pypi", "tljh"):
        for case, values in CASES.items():
            template, dest = (("jupyterhub_config.py.j2", "jupyterhub_config.py") if flavour == "pypi"
                              else ("hubvm_access.py.j2", "hubvm-access.py"))
            names[f"{flavour}/{case}"] = dest
            entry = (f"{{'{flavour}/{case}': {{'file': lookup('ansible.builtin.template', "
                     f"'{HUB / 'templates' / template}'), 'access': hub_access, 'certbot': hub_certbot_argv, "
                     "'tljh': hub_tljh_settings, 'units': hub_units_needing_secrets, 'proxy': hub_proxy_argv, "
                     f"'proxy_unit': lookup('ansible.builtin.template', "
                     f"'{HUB / 'templates' / 'jupyterhub-proxy.service.j2'}')}}}}")
            tasks.append({"name": f"Render the {flavour} hub configuration ({case})", "vars": {
                "hub_flavour": flavour, **values}, "ansible.builtin.set_fact": {
                "hubvm_rendered": f"{{{{ hubvm_rendered | default({{}}) | combine({entry}) }}}}"}})
    tasks.append({"name": "Write what was rendered", "ansible.builtin.copy": {
        "content": "{{ hubvm_rendered | to_json }}", "dest": str(root / "rendered.json"), "mode": "0644"}})
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(HUB / "defaults/main.yml"), str(HUB / "vars/main.yml")], "tasks": tasks}]))
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)], capture_output=True,
                            text=True, env={"PATH": str(ANSIBLE_PLAYBOOK.parent) + ":/usr/bin:/bin",
                                            "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for key, value in json.loads((root / "rendered.json").read_text()).items():
        out = root / key
        out.mkdir(parents=True)
        (out / names[key]).write_text(value.pop("file"))
        (out / "derived.json").write_text(json.dumps(value))
    return root


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("rendered"))


@pytest.fixture(scope="module")
def pypi(rendered: Path) -> Path:
    return rendered / "pypi"


@pytest.fixture(scope="module")
def tljh(rendered: Path) -> Path:
    return rendered / "tljh"


def derived(root: Path, case: str) -> dict:
    return json.loads((root / case / "derived.json").read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_pypi_config_is_python_with_the_modes_options(pypi: Path, case: str) -> None:
    config = pypi / case / "jupyterhub_config.py"
    py_compile.compile(str(config), doraise=True)
    text = config.read_text()
    signup = CASES[case]["hub_signup"]
    assert f"c.FirstUseAuthenticator.create_users = {signup == 'open'}" in text
    assert 'c.FirstUseAuthenticator.dbm_path = "/var/lib/jupyterhub/passwords.dbm"' in text
    assert '{"name": "hubvm-users", "scopes": ["admin:users"], "services": ["hubvm-users"]}' in text
    assert 'USERNAME_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,23}$"' in text
    if case == "off":
        assert 'c.JupyterHub.bind_url = "http://:80"' in text and "ssl_cert" not in text
        return
    cert, key = {"self-signed": ("/etc/hubvm/tls/self-signed.crt", "/etc/hubvm/tls/self-signed.key"),
                 "files": ("/etc/hubvm/tls/hub.crt", "/etc/hubvm/tls/hub.key"),
                 "acme": ("/etc/letsencrypt/live/hub.example.org/fullchain.pem",
                          "/etc/letsencrypt/live/hub.example.org/privkey.pem")}[case]
    assert 'c.JupyterHub.bind_url = "https://:443"' in text
    # the proxy runs apart (issue 18: the hub gave the proxy it started 10 s and crash-looped on a slow host)
    assert "c.ConfigurableHTTPProxy.should_start = False" in text and "ssl_cert" not in text
    assert derived(pypi, case)["proxy"] == [
        "/usr/bin/configurable-http-proxy", "--ip", "", "--port", "443", "--api-ip", "127.0.0.1", "--api-port", "8001",
        "--default-target", "http://127.0.0.1:8081", "--error-target", "http://127.0.0.1:8081/hub/error",
        "--ssl-key", key, "--ssl-cert", cert, "--redirect-port", "80", "--redirect-to", "443"]  # CHP 4.5's options


def test_the_proxy_is_a_service_the_hub_waits_for(pypi: Path) -> None:
    unit = derived(pypi, "self-signed")["proxy_unit"]
    assert "EnvironmentFile=/var/lib/jupyterhub/proxy.env" in unit
    assert "ExecStart=/usr/bin/configurable-http-proxy --ip '' --port 443 --api-ip 127.0.0.1" in unit
    assert "ExecStartPost=/bin/bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/8001)" in unit
    assert "TimeoutStartSec=300" in unit
    hub_unit = (REPO / "ansible/roles/hub/templates/jupyterhub.service.j2").read_text()
    assert "After=network-online.target jupyterhub-proxy.service" in hub_unit
    assert "Wants=network-online.target jupyterhub-proxy.service" in hub_unit and "Requires=" not in hub_unit
    off = derived(pypi, "off")["proxy"]
    assert off[:5] == ["/usr/bin/configurable-http-proxy", "--ip", "", "--port", "80"] and "--ssl-key" not in off


def test_certbot_command_for_acme(pypi: Path) -> None:
    assert derived(pypi, "acme")["certbot"] == [
        "certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos",
        "--email", "teacher@example.org", "--domain", "hub.example.org", "--http-01-port", "80",
        "--pre-hook", "systemctl stop jupyterhub", "--post-hook", "systemctl start jupyterhub", "--test-cert"]


def test_guest_tools_settings(pypi: Path, tljh: Path) -> None:
    access = derived(pypi, "self-signed")["access"]
    assert access == {
        "flavour": "pypi", "admins": ["admin"], "admin_passwords_file": "/root/hub-admin-passwords",
        "password_db": "/var/lib/jupyterhub/passwords.dbm", "password_length": 16,
        "username_pattern": "^[a-z0-9][a-z0-9_.-]{0,23}$", "system_user_prefix": "jupyter-",
        "api_url": "http://127.0.0.1:8081/hub/api", "users_token_file": "/var/lib/jupyterhub/hubvm-users.token",
        "signup": "closed", "https": "self-signed", "http_port": 80, "https_port": 443,
        "tls_cert": "/etc/hubvm/tls/self-signed.crt", "tls_key": "/etc/hubvm/tls/self-signed.key",
        "self_signed_days": 3650, "proxy_env_file": "/var/lib/jupyterhub/proxy.env",
        "restore_token_file": "/var/lib/jupyterhub/hubvm-restore.token",
        "database": "/var/lib/jupyterhub/jupyterhub.sqlite", "shared_data_dir": "/srv/shared_data",
        "image_file": "/etc/hubvm/image.json", "cluster_accounts_dir": "", "cluster_hub_url": ""}
    assert derived(pypi, "off")["access"]["tls_cert"] == ""
    tljh_access = derived(tljh, "acme")["access"]
    assert tljh_access["password_db"] == "/opt/tljh/state/passwords.dbm"
    assert tljh_access["api_url"] == "http://127.0.0.1:15001/hub/api"
    assert tljh_access["tls_cert"] == ""  # traefik keeps Let's Encrypt's certificate itself
    assert derived(tljh, "acme")["units"] == ["jupyterhub.service", "traefik.service"]
    assert derived(pypi, "acme")["units"] == ["jupyterhub.service", "jupyterhub-proxy.service"]
    assert tljh_access["proxy_env_file"] == ""
    extra = (tljh / "acme" / "hubvm-access.py").read_text()
    py_compile.compile(str(tljh / "acme" / "hubvm-access.py"), doraise=True)
    assert 'c.FirstUseAuthenticator.dbm_path = "/opt/tljh/state/passwords.dbm"' in extra


def test_tljh_settings_per_mode(tljh: Path) -> None:
    def values(case: str) -> dict[str, str]:
        return {item["key"]: item["value"] for item in derived(tljh, case)["tljh"]}

    assert values("off")["https.enabled"] == "false" and values("off")["auth.FirstUseAuthenticator.create_users"] \
        == "true"
    assert values("files")["https.tls.cert"] == "/etc/hubvm/tls/hub.crt"
    acme = values("acme")
    assert (acme["https.enabled"], acme["https.tls.cert"], acme["https.letsencrypt.email"]) == (
        "true", "", "teacher@example.org")


def test_the_role_refuses_bad_access_settings(tmp_path: Path) -> None:
    """The role's assert task with bad values (one block each, in one run) fails naming the settings; with good
    values it passes."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("ansible-playbook is not installed")
    main = yaml.safe_load((HUB / "tasks/main.yml").read_text())
    check = next(task for task in main if task["name"].startswith("Check the access settings"))
    cases = [{"hub_signup": "maybe"}, {"hub_https": "letsencrypt"}, {"hub_https": "files"},
             {"hub_https": "acme", "hub_https_acme_domain": "hub.example.org"},
             {"hub_admin_password_hashes": {"admin": "secret"}},
             {"hub_admin_password_hashes": {"nobody": "$2b$12$" + "a" * 53}},
             {"hub_https_port": 80},
             {"hub_admin_password_hashes": {"admin": "$2b$12$" + "a" * 53}}]  # the last one is good
    blocks = [{"name": f"Case {index}", "vars": values,
               "block": [check, {"name": "Record a pass", "ansible.builtin.set_fact": {
                   "outcomes": "{{ outcomes + ['pass'] }}"}}],
               "rescue": [{"name": "Record a failure", "ansible.builtin.set_fact": {
                   "outcomes": "{{ outcomes + [ansible_failed_result.msg] }}"}}]}
              for index, values in enumerate(cases)]
    out = tmp_path / "outcomes.json"
    playbook = tmp_path / "check.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(HUB / "defaults/main.yml"), str(HUB / "vars/main.yml")], "vars": {"outcomes": []},
        "tasks": [*blocks, {"name": "Write the outcomes", "ansible.builtin.copy": {
            "content": "{{ outcomes | to_json }}", "dest": str(out), "mode": "0644"}}]}]))
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)], capture_output=True,
                            text=True, env={"PATH": str(ANSIBLE_PLAYBOOK.parent) + ":/usr/bin:/bin",
                                            "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg")})
    assert result.returncode == 0, result.stdout[-3000:]
    outcomes = json.loads(out.read_text())
    assert len(outcomes) == len(cases) and outcomes[-1] == "pass"
    for outcome in outcomes[:-1]:
        assert outcome.startswith("Invalid access settings"), outcome
