"""The paths inside the guest, declared once in hubvm/guest.py: the roles put things there, verify reads them."""

from __future__ import annotations

from hubvm import guest
from tests.conftest import REPO, settings_with

ANSIBLE = REPO / "ansible"


def test_each_flavour_keeps_its_parts_in_its_own_places() -> None:
    tljh, pypi = guest.HUB_PATHS["tljh"], guest.HUB_PATHS["pypi"]
    assert tljh.database == "/opt/tljh/state/jupyterhub.sqlite"
    assert pypi.user_env == "/opt/jupyterhub/user" and pypi.state_dir == "/var/lib/jupyterhub"
    assert len({tljh.state_dir, pypi.state_dir, tljh.user_env, pypi.user_env}) == 4


def test_the_rendered_variables_carry_the_paths_to_the_roles() -> None:
    import yaml

    from hubvm import render

    s = settings_with(REPO, **{"hub.flavour": "pypi"})
    text = next(f.text for f in render.plan(s) if f.path.name == "vars.yml")
    variables = yaml.safe_load(text)
    paths = guest.HUB_PATHS["pypi"]
    assert variables["hub_user_env"] == variables["python_user_env"] == paths.user_env
    assert variables["cleanup_hub_state_dir"] == paths.state_dir and variables["cleanup_hub_env"] == paths.hub_env
    assert variables["shared_data_dir"] == guest.SHARED_DATA_DIR


def test_the_guest_paths_hubvm_reads_are_where_the_roles_put_them() -> None:
    """verify and the users task read these; the hub role makes them there."""
    hub = "\n".join(p.read_text() for p in (ANSIBLE / "roles" / "hub").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)  # the filter plugins' bytecode, once imported
    for path in (guest.HUB_ACCESS, guest.ADMIN_PASSWORDS, guest.USERS_TOOL):
        assert path in hub, path
    shared = (ANSIBLE / "roles" / "shared_data" / "defaults" / "main.yml").read_text()
    assert guest.SHARED_DATA_DIR in shared and f"shared_data_link_name: {guest.SHARED_DATA_LINK}" in shared
