"""Build a JupyterHub VM: Packer makes the base box, Vagrant boots it and Ansible provisions it, then export.

Run with `hubvm` (invoke's command-line program with this project's configuration rules; plain `invoke` in this
folder hands over to it). `hubvm --list` shows the tasks, `hubvm --help TASK` their flags. Settings: invoke.yaml
(defaults), overridden by /etc/invoke.yaml, ~/.invoke.yaml, INVOKE_* variables, `-f FILE` and the flags below.
The logic lives in the hubvm package; each task here only reads its flags and calls it. Modules that load slowly
(fabric, jinja2) are imported inside the tasks that need them, so that listing the tasks stays fast.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from hubvm.errors import UserError, user_errors
from hubvm.program import layers_of, task_flags

IP_HELP = 'host-only IP of the VM, or "dhcp" (vm.ip)'
DATA_HELP = 'host folder shared with every hub user, or "none" (vm.data)'
HOST_HELP = "any machine over SSH instead of the Vagrant VM: [user@]address[:port]"
IDENTITY_HELP = "private key file (ssh.identity); for the Vagrant VM it replaces Vagrant's key"


def settings(c, ip=None, data=None):
    from hubvm.config import settings as settings_module

    return settings_module.load(layers_of(c.config), task_flags(c.config, {"ip": ip, "data": data}))


@task(help={"json": "print the findings as JSON (status: ok | missing | too old | not running | not usable here | "
                    "not packaged)"})
@user_errors
def check(c, json=False):
    """Check this host for what the configuration needs (tools, daemons, KVM, libguestfs) and how to get it."""
    from hubvm.host import check as checkhost

    checkhost.run(c, settings(c), as_json=json)


@task(help={"ip": IP_HELP, "data": DATA_HELP})
@user_errors
def render(c, ip=None, data=None):
    """Write the generated files under builds/ from templates/ and the configuration; runs nothing else.

    Packer template, variables and answer files, the Vagrantfile and the Ansible variables.
    """
    from hubvm import render as render_module
    from hubvm.shell import Shell, rel

    s = settings(c, ip, data)
    for path in render_module.render_files(Shell(c), s):
        print(rel(path, s.project_dir))


@task(help={"force": "rebuild even when the box's inputs are unchanged"})
@user_errors
def pack(c, force=False):
    """Build the base box with Packer (skipped when a box of the same inputs exists)."""
    from hubvm.vm.pack import pack as pack_box

    pack_box(c, settings(c), force)


@task(pre=[pack], help={"ip": IP_HELP, "data": DATA_HELP, "provision": "re-provision a VM that is already up"})
@user_errors
def up(c, ip=None, data=None, provision=False):
    """Boot the VM from the box with Vagrant, provision it with Ansible, then verify it."""
    from hubvm.verify.run import run_verify
    from hubvm.vm import vagrant

    s = settings(c, ip, data)
    vagrant.up(c, s, provision)
    if s.build.mode == "vm":  # native: no build VM; export verifies the image it makes
        run_verify(c, s, None, None, False)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "ip": IP_HELP, "data": DATA_HELP})
@user_errors
def provision(c, host=None, identity=None, ip=None, data=None):
    """Run the Ansible playbook on the Vagrant VM, or with --host on any Debian/Ubuntu machine over SSH."""
    from hubvm.provision import provision as run_playbook
    from hubvm.verify.target import parse

    s = settings(c, ip, data)
    target = None
    if host:
        target = parse(host, s.ssh.user, Path(identity).expanduser() if identity else s.ssh.identity)
    run_playbook(c, s, target)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "json": "print the results as JSON"})
@user_errors
def verify(c, host=None, identity=None, json=False):
    """Check the VM (or --host) over SSH: hub, kernels, packages, shared data; exits 1 if a check fails."""
    from hubvm.verify.run import run_verify

    run_verify(c, settings(c), host, identity, json)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP, "command": "run this command and exit with its status"})
@user_errors
def ssh(c, host=None, identity=None, command=None):
    """Open a shell in the VM (or --host), or run one command with -c."""
    from hubvm.verify.run import run_ssh

    if command is not None and not command.strip():
        raise UserError("--command is empty; give the command to run, or leave -c out for a shell")
    status = run_ssh(c, settings(c), host, identity, command)
    if status:
        raise Exit(code=status)


@task(help={"csv": "CSV file of the class: user name[,full name] per row (a header row and # lines are skipped)",
            "reset": "give this one user a new password instead", "host": HOST_HELP, "identity": IDENTITY_HELP,
            "output": "where the new passwords go (default builds/users/<host>-passwords.csv, mode 0600); with "
                      "--link, where the links go",
            "link": "print the nbgitpuller link that brings the course repository to the class (with --csv: each "
                    "student's own link, as CSV user,link); imports nobody",
            "repo": "with --link: the course repository's git URL (material.repo)",
            "branch": 'with --link: its branch (material.branch; "" = the repository\'s default)',
            "open": "with --link: what the link opens, a path inside the repository (material.open)",
            "app": "with --link: jupyterlab or classic (material.app, else hub.default_app)",
            "hub_url": "with --link: the hub's address as students reach it (default: --host's or the VM's, "
                       "https:// when HTTPS is on)"})
@user_errors
def users(c, csv=None, reset=None, host=None, identity=None, output=None, link=False, repo=None, branch=None,
          open=None, app=None, hub_url=None):
    """Create hub accounts for a class from a CSV file (or reset one's password), or print nbgitpuller links.

    Runs on the Vagrant VM or --host; a second run of the same file changes nothing, a new row adds one user. The
    new passwords are merged into a local file only you can read. With --link nothing is imported: it prints the
    link that clones (then updates) the course repository in each student's home, for the class or per student.
    """
    from hubvm import material
    from hubvm.layout import Layout
    from hubvm.users import run_users

    s = settings(c)
    if link:
        material.run_links(c, s, Layout.of(s), csv, reset, repo, branch, open, app, hub_url, host, identity, output)
        return
    material.refuse_link_flags({"--repo": repo, "--branch": branch, "--open": open, "--app": app,
                                "--hub-url": hub_url})
    run_users(c, s, Layout.of(s), csv, reset, host, identity, output)


@task(help={"host": HOST_HELP, "identity": IDENTITY_HELP,
            "output": "the archive to write (default builds/backups/<host>-<UTC time>.tar.gz); never overwritten"})
@user_errors
def backup(c, host=None, identity=None, output=None):
    """Save the hub's users, admins, passwords, homes and shared data into one archive (the Vagrant VM or --host).

    Streamed over SSH (nothing is copied onto the machine's disk); the hub and the users' servers stop while it is
    read, then the hub starts again. The archive holds a manifest with every file's sha256; FILE.sha256 beside it.
    """
    from hubvm.backup import run_backup
    from hubvm.layout import Layout

    s = settings(c)
    run_backup(c, s, Layout.of(s), host, identity, output)


@task(positional=["file"], help={"file": "the archive hubvm backup wrote", "host": HOST_HELP, "identity": IDENTITY_HELP,
            "merge": "restore beside work already on this hub (a newer file here is kept, and said so)"})
@user_errors
def restore(c, file, host=None, identity=None, merge=False):
    """Put a backup's users, passwords, homes and shared data onto a hub (the Vagrant VM or --host).

    The archive is checked first; a damaged or foreign file, a name the image reserves, or other users' work on
    the hub (without --merge) is refused with nothing changed. Restoring the same archive again changes nothing.
    """
    from hubvm.backup import run_restore
    from hubvm.layout import Layout

    s = settings(c)
    run_restore(c, s, Layout.of(s), file, host, identity, merge)


@task(pre=[up])
@user_errors
def export(c):
    """Package the provisioned VM into builds/vm/, then destroy the build VM.

    builds/vm/ gets the box, the formats of export.formats (OVF + VMDK, OVA, qcow2), SHA256SUMS and manifest.json.
    """
    from hubvm.pipeline import export as export_vm

    export_vm(c, settings(c))


@task(help={"replace": "upload even when an image of the same name exists; the old one is renamed "
                       "<name>-replaced-<time>"})
@user_errors
def publish(c, replace=False):
    """Upload builds/vm/<name>.qcow2 to an OpenStack image service (Glance), checked by its sha512.

    The cloud is read as the openstack CLI reads it (publish.cloud in clouds.yaml, OS_CLOUD, OS_* variables). When
    builds/vm/ is not the export of the current configuration, pack, up, verify and export run first.
    """
    from hubvm.publish.run import publish_export
    from hubvm.report import steps_table

    print(steps_table([publish_export(c, settings(c), replace)]))


@task(help={"yes": "do not ask for confirmation"})
@user_errors
def destroy(c, yes=False):
    """Stop and delete the Vagrant VM (build.sh -c)."""
    import sys

    from hubvm.layout import Layout
    from hubvm.shell import is_dry
    from hubvm.vm import vagrant

    s = settings(c)
    if not yes and not is_dry(c) and vagrant.vm_exists(Layout.of(s)):
        if not sys.stdin.isatty():
            raise UserError("destroy asks for confirmation and there is no terminal; pass --yes")
        if input(f"Destroy the VM {s.vm.name}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UserError("not confirmed; nothing was destroyed")
    vagrant.destroy(c, s)


@task(name="clean", help={"all": "also remove the boxes, the exported appliance and the download cache"})
@user_errors
def clean(c, all=False):
    """Remove rendered files, logs and Vagrant's state (build.sh -r); exported artifacts only with --all."""
    from hubvm.shell import rel
    from hubvm.vm import vagrant

    s = settings(c)
    removed = vagrant.clean(c, s, everything=all)
    print("\n".join(f"removed {rel(p, s.project_dir)}" for p in removed) if removed else "nothing to remove")


@task(name="all", help={"ip": IP_HELP, "data": DATA_HELP, "force": "rebuild the box even when it is up to date"})
@user_errors
def all_(c, ip=None, data=None, force=False):
    """Run pack, up (with verify) and export once each, in order, and print a table of the steps."""
    from hubvm import pipeline as build

    build.all_steps(c, settings(c, ip, data), force)
