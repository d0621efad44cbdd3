"""The guest: paths inside it, declared once, and the programs this package installs there (hub_secrets.py as
hubvm-hub-secrets, hub_users.py as hubvm-users: modules of this package that ruff reads and the tests import).
The roles get both through the rendered variables (templates/ansible/vars.yml.j2); verify's checks read the paths
here; neither spells them a second time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubPaths:
    """Where a hub flavour keeps its parts."""

    hub_env: str       # the environment the hub itself runs in
    user_env: str      # the environment the users' kernels run in
    config_dir: str    # the hub's configuration
    state_dir: str     # per-instance secrets: cookie secret, database, passwords (made anew in each copy)
    proxy_service: str  # the proxy's systemd unit, apart from the hub's (TLJH's traefik, the pypi flavour's CHP)

    @property
    def database(self) -> str:
        return f"{self.state_dir}/jupyterhub.sqlite"


HUB_PATHS = {
    # TLJH's layout below its prefix /opt/tljh (TLJH_INSTALL_PREFIX)
    "tljh": HubPaths("/opt/tljh/hub", "/opt/tljh/user", "/opt/tljh/config", "/opt/tljh/state", "traefik"),
    "pypi": HubPaths("/opt/jupyterhub/hub", "/opt/jupyterhub/user", "/etc/jupyterhub", "/var/lib/jupyterhub",
                     "jupyterhub-proxy"),
}
HUB_SERVICE = "jupyterhub"
# Hub user NAME's server runs as the Linux account PREFIX+NAME, home /home/PREFIX+NAME (TLJH's prefix, and the pypi
# flavour's)
SYSTEM_USER_PREFIX = "jupyter-"
# On a cluster (hub.spawner slurm): the account files every node reads (libnss-extrausers), on the shared home
CLUSTER_ACCOUNTS = "/home/.hubvm/accounts"

# The shared data: the folder, where the VM sees vm.data (a synced folder), and every new user's link to it
SHARED_DATA_DIR = "/srv/shared_data"
SHARED_DATA_MOUNT = "/media/shared_data"
SHARED_DATA_LINK = "shared_data"
SKEL_LINK = f"/etc/skel/{SHARED_DATA_LINK}"

# A Binder repository (packages.binder): its copy on the guest, and what install.R and postBuild last ran from
BINDER_DIR = "/usr/local/share/hubvm/binder"
BINDER_STATE = "/var/lib/hubvm/binder"

# What the hub role records of who may log in and of HTTPS (password store, sign-up, HTTPS mode, certificate)
HUB_ACCESS = "/etc/hubvm/hub-access.json"
# Where each copy's generated admin passwords are kept (root only), and the guest tool that imports a class
ADMIN_PASSWORDS = "/root/hub-admin-passwords"
USERS_TOOL = "/usr/local/sbin/hubvm-users"
SECRETS_TOOL = "/usr/local/sbin/hubvm-hub-secrets"
BACKUP_TOOL = "/usr/local/sbin/hubvm-backup"
# Where this package is installed on the guest (GUEST_LIB/hubvm/guest/), and the commands that run its programs:
# command -> module (each command is a launcher that imports the module from GUEST_LIB and calls its main())
GUEST_LIB = "/usr/local/lib/hubvm"
PROGRAMS = {SECRETS_TOOL: "hub_secrets", USERS_TOOL: "hub_users", BACKUP_TOOL: "hub_backup"}
