"""Every setting of the tool, declared once: its key, its kind, its validator, its doc, and what it goes into.

From this one table come: the type check of each configuration layer (`Kind.accepts`), the parsing of INVOKE_*
variables (`Kind.from_env`), the validation of the merged value (`Setting.check`), the "did you mean" suggestions,
what each step's input digest covers (`Setting.part`), and the tests that hold invoke.yaml's keys and comments and
the README's tables to it. The defaults stay in invoke.yaml (the design's one place for them); this module says
what they mean and what is allowed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from hubvm.config.kinds import BOOLEAN, INTEGER, LIST, MAPPING, NUMBER, TEXT, Kind
from hubvm.config.validators import (
    GIT_BRANCH,
    HOST_LABEL,
    HOST_SPEC,
    HUB_NAME,
    SLURM_TIME,
    UNIX_NAME,
    URL,
    Validator,
    boolean,
    checksum,
    choice,
    data_folder,
    existing_file,
    folder,
    git_url,
    image_url,
    integer,
    ip_address,
    known_os,
    list_of,
    locale,
    mapping_of,
    memory_limit,
    no_proxy,
    not_a_system_account,
    number,
    optional,
    repository_path,
    requirement,
    text,
    timezone,
    tool_command,
    version,
)

# What a setting goes into (what a step's input digest covers, hubvm.digests): the base box (and so everything
# made from it), the appliance that export makes from the box, or nothing that is built: a setting that only says
# how to build, reach or publish it (a tool's path, an SSH port, the cloud) never makes a box or an export stale.
BOX, APPLIANCE, NOWHERE = "box", "appliance", "nowhere"


@dataclass(frozen=True)
class Setting:
    key: str           # section.name
    kind: Kind
    check: Validator
    doc: str           # the comment beside the key in invoke.yaml
    part: str          # BOX, APPLIANCE or NOWHERE

    @property
    def section(self) -> str:
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        return self.key.partition(".")[2]

    @property
    def env_var(self) -> str:
        return "INVOKE_" + self.key.replace(".", "_").upper()


def _s(key: str, kind: Kind, check: Validator, doc: str, part: str) -> Setting:
    return Setting(key, kind, check, doc, part)


SETTINGS: tuple[Setting, ...] = (
    # vm
    _s("vm.name", TEXT, text(r"[a-z0-9][a-z0-9-]{0,62}", "use lower-case letters, digits and dashes, such as "
                             "jupyterhub-vm"), "name of the VM, the box and the exported appliance", APPLIANCE),
    _s("vm.hostname", TEXT, text(HOST_LABEL, "use lower-case letters, digits and dashes, such as jupyterhub"),
       "host name inside the guest", APPLIANCE),
    _s("vm.ip", TEXT, ip_address, 'host-only address of the VM, or "dhcp"; VirtualBox allows 192.168.56.0/21 by '
       "default", APPLIANCE),
    _s("vm.data", TEXT, data_folder, 'host folder offered to every hub user as ~/shared_data, or "none" (sample '
       "files)", APPLIANCE),
    _s("vm.cpus", INTEGER, integer(1, 64), "virtual CPUs, 1 to 64", APPLIANCE),
    _s("vm.memory_mb", INTEGER, integer(1024, 262144, " MiB"), "memory in MiB, 1024 to 262144 (the hub needs at "
       "least 1 GiB)", APPLIANCE),
    _s("vm.disk_gb", INTEGER, integer(8, 2048, " GiB"), "disk size in GiB, 8 to 2048", BOX),
    _s("vm.provider", TEXT, choice("virtualbox", "libvirt"), "virtualbox | libvirt", BOX),
    _s("vm.accelerator", TEXT, choice("kvm", "tcg"), "QEMU/libvirt only: kvm | tcg (software emulation, ~6x "
       "slower; hosts without working KVM)", NOWHERE),
    _s("vm.os", TEXT, known_os, 'debian12 (Debian 12 "bookworm") | ubuntu2404 (Ubuntu 24.04 "noble")', BOX),
    _s("vm.timezone", TEXT, timezone, "guest time zone, a name from the tz database", APPLIANCE),
    _s("vm.locale", TEXT, locale, "guest locale, a UTF-8 locale such as en_US.UTF-8", APPLIANCE),
    _s("vm.hub_host_port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "host port forwarded to the hub (127.0.0.1:8080 -> guest port hub.port)", NOWHERE),
    _s("vm.hub_https_host_port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "host port forwarded to the hub's HTTPS (127.0.0.1:8443 -> guest port hub.https_port)", NOWHERE),
    # build
    _s("build.mode", TEXT, choice("vm", "native"), "vm (Packer's box, provisioned in a VM by Vagrant) | native "
       "(image.source mirror: provisioned in a container, booted once to verify)", APPLIANCE),
    # image
    _s("image.source", TEXT, choice("iso", "cloud", "mirror"), "iso (installer + preseed/autoinstall) | cloud "
       "(official cloud image) | mirror (built from a package mirror, no installer)", BOX),
    _s("image.url", TEXT, image_url, 'base image URL or path; "" takes the OS\'s default for the source '
       "(templates/packer/os/<os>.yaml)", BOX),
    _s("image.checksum", TEXT, checksum, '"sha256:<hex>" or "file:<URL of a SHA256SUMS>"; "" takes the default\'s '
       "checksum", BOX),
    _s("image.mirror", TEXT, text(URL, 'set an http:// or https:// URL, or "" for the default', allow_empty=True),
       'package mirror for source "mirror"; "" takes the OS\'s default (deb.debian.org)', BOX),
    # ssh
    _s("ssh.user", TEXT, text(UNIX_NAME, "use a Unix login name such as vagrant (not root or a system account)",
                              refuse=not_a_system_account), "login of the build VM (Vagrant's convention)", BOX),
    # typed into preseed/autoinstall and Packer's `echo '...' | sudo -S`: no quotes, spaces, backslashes, $ or `
    _s("ssh.password", TEXT, text(r"[^'\"\\\s`$]{1,128}", "use letters, digits and punctuation other than quotes, "
                                  "backslash, $ and `"), "its build-time password (the exported image locks it, "
       "but for export.keep_vagrant_access)", BOX),
    _s("ssh.port", INTEGER, integer(1024, 65535, " (ports below 1024 need root on the host)"),
       "Vagrant's forwarded SSH port on 127.0.0.1", NOWHERE),
    _s("ssh.via", TEXT, choice("forwarded", "ip"), "how verify/ssh reach the VM: forwarded (127.0.0.1:port) | ip "
       "(vm.ip, or the DHCP lease)", NOWHERE),
    _s("ssh.identity", TEXT, optional(existing_file("private key")), 'private key for verify/ssh/provision; "" '
       "uses the key Vagrant reports", NOWHERE),
    _s("ssh.connect_timeout", INTEGER, integer(1, 600, " seconds"), "seconds for one SSH connection attempt", NOWHERE),
    _s("ssh.wait", INTEGER, integer(0, 3600, " seconds"), "seconds verify and ssh keep retrying while the VM boots "
       "(SSH, then the hub)", NOWHERE),
    # tools
    *(_s(f"tools.{name}", TEXT, tool_command, doc, NOWHERE) for name, doc in (
        ("packer", "Packer"), ("vagrant", "Vagrant"), ("vboxmanage", "VirtualBox's VBoxManage"),
        ("virsh", "libvirt's virsh"), ("qemu_img", "qemu-img"), ("qemu_system", "QEMU for x86_64 guests"),
        ("ansible_playbook", "Ansible's ansible-playbook"), ("mmdebstrap", "mmdebstrap (image.source mirror)"))),
    # hub
    _s("hub.flavour", TEXT, choice("tljh", "pypi"), "tljh (The Littlest JupyterHub's installer, needs GitHub) | "
       "pypi (Debian packages + PyPI)", APPLIANCE),
    _s("hub.tljh_version", TEXT, version, "TLJH release the installer pins", APPLIANCE),
    _s("hub.tljh_plugins", LIST, list_of(requirement(vcs=True)), "TLJH plugins, pip specs (or git+https://...) "
       "passed as --plugin", APPLIANCE),
    _s("hub.admin_users", LIST, list_of(text(HUB_NAME, "use names of lower-case letters, digits, - and _, such "
                                              "as admin (not root or a system account)", refuse=not_a_system_account),
                                         allow_empty=False),
       "hub administrators; each gets a password before the hub first answers (below)", APPLIANCE),
    _s("hub.memory_limit", TEXT, memory_limit, "memory limit of each user's server", APPLIANCE),
    _s("hub.cpu_limit", NUMBER, number(0, 256, "set a number of CPUs above 0, such as 1 or 0.5"),
       "CPU limit of each user's server", APPLIANCE),
    _s("hub.default_app", TEXT, choice("jupyterlab", "classic"), "jupyterlab | classic (Notebook 7)", APPLIANCE),
    _s("hub.port", INTEGER, integer(1, 65535, refuse={22: "is the guest's SSH port"}),
       "port the hub listens on inside the guest (HTTP; redirected to HTTPS when hub.https is on)", APPLIANCE),
    _s("hub.spawner", TEXT, choice("local", "slurm"), "local (each user's server a systemd unit on the hub) | slurm "
       "(a job of the cluster's Slurm, on a compute node; pypi flavour)", APPLIANCE),
    _s("hub.signup", TEXT, choice("closed", "open"), "closed (only accounts that exist: admins, imported users) | "
       "open (anyone reaching the hub makes an account)", APPLIANCE),
    _s("hub.admin_password_hashes", MAPPING, mapping_of(
        HUB_NAME, text(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}", "give a bcrypt hash ($2b$12$...), such as "
                       "python3 -c 'import bcrypt; print(bcrypt.hashpw(b\"...\", bcrypt.gensalt()).decode())' prints"),
        "write {admin: $2b$12$...}: an admin's name and the bcrypt hash of their password"),
       "admin -> bcrypt hash of their password; an admin not listed gets one generated on the machine", APPLIANCE),
    _s("hub.https", TEXT, choice("self-signed", "files", "acme", "off"), "self-signed (made on each copy) | files "
       "(hub.https_cert_file/key_file) | acme (Let's Encrypt) | off", APPLIANCE),
    _s("hub.https_port", INTEGER, integer(1, 65535, refuse={22: "is the guest's SSH port"}),
       "port of the hub's HTTPS inside the guest", APPLIANCE),
    _s("hub.https_cert_file", TEXT, optional(existing_file("pem")), 'hub.https files: the certificate (PEM, its '
       'chain after it); ""', APPLIANCE),
    _s("hub.https_key_file", TEXT, optional(existing_file("private key")), "hub.https files: its private key "
       '(PEM); ""', APPLIANCE),
    _s("hub.https_acme_domain", TEXT, text(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
                                           "give the hub's public DNS name, such as hub.example.org",
                                           allow_empty=True), "hub.https acme: the hub's public DNS name", APPLIANCE),
    _s("hub.https_acme_email", TEXT, text(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}",
                                          "give an e-mail address for Let's Encrypt's notices", allow_empty=True),
       "hub.https acme: the e-mail address Let's Encrypt writes to", APPLIANCE),
    # material (nbgitpuller links: hubvm users --link); only the first goes into the appliance, the link's parts
    # are read when a link is printed
    _s("material.nbgitpuller", BOOLEAN, boolean, "nbgitpuller in the users' environment: links that clone and "
       "update a course's repository in each student's home", APPLIANCE),
    _s("material.repo", TEXT, git_url, 'the course repository\'s git URL (https://... or git@host:path) the links '
       'bring; "" = none (give hubvm users --link --repo)', NOWHERE),
    _s("material.branch", TEXT, text(GIT_BRANCH, 'write a branch name such as main, or "" for the repository\'s '
                                     "default", allow_empty=True), 'its branch; "" = the repository\'s default branch',
       NOWHERE),
    _s("material.open", TEXT, repository_path, 'what a link opens, a path inside the repository (week1/intro.ipynb); '
       '"" = its folder', NOWHERE),
    _s("material.app", TEXT, choice("", "jupyterlab", "classic"), 'where a link opens it: jupyterlab | classic '
       '(Notebook 7); "" = hub.default_app', NOWHERE),
    # cluster (hub.spawner slurm)
    _s("cluster.controller", TEXT, text(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", "give the site "
                                        "controller's host name, or \"\" for the hub", allow_empty=True),
       '"" = the hub runs Slurm\'s controller; or the site\'s controller host (then give cluster.slurm_conf and '
       "cluster.munge_key)", APPLIANCE),
    _s("cluster.compute", LIST, list_of(text(HOST_SPEC, "write [user@]address[:port], such as root@10.0.0.5")),
       "compute nodes hubvm provisions with the hub ([user@]address[:port]; hubvm provision --host HUB)", NOWHERE),
    _s("cluster.partition", TEXT, text(r"[A-Za-z0-9_-]{1,40}", "use letters, digits, - and _, such as hub"),
       "the Slurm partition users' servers run in", APPLIANCE),
    _s("cluster.time_limit", TEXT, text(SLURM_TIME, "write a Slurm time such as 8:00:00 or 1-00:00:00"),
       "how long a user's server may run as a job (Slurm time: 8:00:00, 1-00:00:00)", APPLIANCE),
    _s("cluster.sbatch_options", LIST, list_of(text(r"--[a-z][a-z-]*(=[A-Za-z0-9_.,:@/+-]+)?", "write an sbatch "
                                                    "option such as --account=teaching")),
       "more sbatch options of every user's job (--account=..., --qos=...)", APPLIANCE),
    _s("cluster.home", TEXT, choice("nfs", "site"), "nfs (the hub exports /home to the compute nodes) | site (the "
       "site's shared file system is /home on every node)", APPLIANCE),
    _s("cluster.limits", TEXT, choice("cgroup", "none"), "cgroup (Slurm enforces each job's memory and cores; "
       "VMs) | none (containers, where Slurm's cgroup plugins cannot run)", APPLIANCE),
    _s("cluster.slurm_conf", TEXT, optional(existing_file()), 'a site controller\'s slurm.conf, copied to the hub; ""',
       APPLIANCE),
    _s("cluster.munge_key", TEXT, optional(existing_file()), 'a site controller\'s munge key, copied to the hub; ""',
       NOWHERE),
    # packages
    _s("packages.python", LIST, list_of(requirement()), "pip requirements installed where the users' kernels run",
       APPLIANCE),
    _s("packages.r", LIST, list_of(text(r"r-(cran|bioc|other)-[a-z0-9][a-z0-9.+-]*", "use Debian package names "
                                        "such as r-cran-ggplot2")), "R packages by their Debian/Ubuntu package "
       "names (r-cran-*, r-bioc-*)", APPLIANCE),
    _s("packages.cran", LIST, list_of(text(r"[A-Za-z][A-Za-z0-9.]*", "use CRAN package names such as ggplot2")),
       "R packages installed from CRAN sources (needs CRAN reachable)", APPLIANCE),
    _s("packages.bioconductor", LIST, list_of(text(r"[A-Za-z][A-Za-z0-9.]*", "use Bioconductor package names "
                                                   "such as limma")), "R packages installed with BiocManager "
       "(needs Bioconductor reachable)", APPLIANCE),
    _s("packages.cran_repo", TEXT, text(URL, "set an http:// or https:// URL"), "CRAN mirror for packages.cran "
       "and packages.bioconductor", APPLIANCE),
    _s("packages.binder", TEXT, folder('give the folder of a Binder repository (its requirements.txt, apt.txt, '
                                       'install.R, runtime.txt, postBuild), or ""'),
       'a folder with repo2docker\'s files (requirements.txt, apt.txt, install.R, runtime.txt, postBuild), '
       'installed after the lists above; ""', APPLIANCE),
    # guest
    _s("guest.apt_mirror", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'apt mirror for the guest; "" keeps the distribution\'s default', BOX),
    _s("guest.pip_index_url", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'PyPI index (or mirror) for pip in the guest; "" keeps pypi.org', APPLIANCE),
    _s("guest.http_proxy", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'proxy for HTTP in the guest (apt, pip, curl); "" for none', BOX),
    _s("guest.https_proxy", TEXT, text(URL, 'set an http:// or https:// URL, or "" for none', allow_empty=True),
       'proxy for HTTPS in the guest; "" for none', BOX),
    _s("guest.no_proxy", TEXT, no_proxy, "hosts, domains and networks the guest reaches without the proxy", BOX),
    _s("guest.ca_certificates", LIST, list_of(existing_file("pem")), "host paths of PEM CA certificates the guest "
       "must trust (a TLS-intercepting proxy's CA)", BOX),
    # export
    _s("export.formats", LIST, list_of(choice("ovf", "ova", "qcow2"), allow_empty=False), "what builds/vm/ holds: "
       "ovf (OVF + VMDK, a folder) | ova (the same in one file; both import into VirtualBox, from any provider and "
       "build mode) | qcow2 (libvirt, OpenStack)", APPLIANCE),
    _s("export.compression", TEXT, choice("zlib", "zstd", "none"), "the qcow2's compression: zlib (any QEMU) | zstd "
       "(about 5x faster to make; QEMU >= 5.1) | none", APPLIANCE),
    _s("export.ssh_user", TEXT, text(UNIX_NAME, "use a Unix login name such as hubadmin (not root or a system "
                                     "account)", refuse=not_a_system_account),
       "login created in the exported appliance for its administrator", APPLIANCE),
    _s("export.ssh_public_key", TEXT, optional(existing_file("public key")), 'public key file authorised for '
       'export.ssh_user; "": the appliance has no SSH logins', APPLIANCE),
    _s("export.keep_vagrant_access", BOOLEAN, boolean, "keep the vagrant user, its password and Vagrant's "
       "insecure key in the exported image", APPLIANCE),
    # publish
    _s("publish.cloud", TEXT, text(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "give the name of a cloud in clouds.yaml, or "
                                   '"" for OS_CLOUD and the OS_* variables', allow_empty=True),
       'a cloud of clouds.yaml; "" reads OS_CLOUD or the OS_* variables (as openstack does)', NOWHERE),
    _s("publish.image_name", TEXT, text(r"[A-Za-z0-9][A-Za-z0-9 ._+:@()-]{0,254}", "use letters, digits, spaces and "
                                        '._+:@()- (at most 255), or "" for the default', allow_empty=True),
       '"" = <vm.name>-<distro>-<version>-<export date>-<first 8 of the qcow2\'s sha256>', NOWHERE),
    _s("publish.disk_format", TEXT, choice("qcow2", "raw"), "qcow2, or raw (converted locally with qemu-img; what "
       "Ceph-backed clouds want)", NOWHERE),
    _s("publish.visibility", TEXT, choice("private", "shared", "community", "public"), "private | shared | "
       "community | public (public usually needs the cloud admins' policy)", NOWHERE),
    _s("publish.tags", LIST, list_of(text(r"[A-Za-z0-9][A-Za-z0-9 ._:@/+-]{0,254}", "use tags of letters, digits and "
                                          "._:@/+- such as jupyterhub")), "Glance image tags", NOWHERE),
    _s("publish.properties", MAPPING, mapping_of(
        r"[a-z][a-z0-9_:.-]{0,254}", text(r"[^\x00-\x1f\x7f]{0,255}", "use one line of text"),
        "write {hw_scsi_model: virtio-scsi}: lower-case keys, one-line values"),
       "extra Glance properties over the derived ones (e.g. hw_scsi_model: virtio-scsi)", NOWHERE),
    _s("publish.min_disk_gb", INTEGER, integer(0, 65536, " GiB"), "0 = the qcow2's virtual size rounded up to whole "
       "GiB", NOWHERE),
    _s("publish.min_ram_mb", INTEGER, integer(0, 16777216, " MiB"), "the smallest flavor RAM the hub runs in", NOWHERE),
    _s("publish.disk_bus", TEXT, choice("", "virtio", "scsi", "sata", "ide"), 'hw_disk_bus; "" keeps Nova\'s default '
       "(virtio)", NOWHERE),
    _s("publish.active_timeout", INTEGER, integer(10, 86400, " seconds"), "seconds to wait for the uploaded image "
       "to become active", NOWHERE),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))


def section_keys(section: str) -> list[str]:
    return [s.name for s in SETTINGS if s.section == section]


def choices_of(key: str) -> tuple[str, ...]:
    """The values a setting of choices takes (publish.disk_format -> qcow2, raw)."""
    return BY_KEY[key].check.choices  # type: ignore[attr-defined]


def fix_of(setting: Setting) -> str | None:
    """The fix a setting's check suggests, where it has one."""
    return getattr(setting.check, "fix", None)


def suggest(word: str, choices: list[str], cutoff: float = 0.5) -> str | None:
    """The nearest of `choices` to `word` (case-insensitive), or None."""
    lowered = {c.lower(): c for c in choices}
    near = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[near[0]] if near else None


def keys_in(*parts: str) -> list[str]:
    """The keys of the settings that go into these parts (BOX, APPLIANCE, NOWHERE)."""
    return [s.key for s in SETTINGS if s.part in parts]
