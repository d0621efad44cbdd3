"""hubvm: build a JupyterHub virtual machine with Packer, Vagrant and Ansible.

The flow, as the sub-packages show it: configuration (hubvm.config: kinds, validators, the schema table, the
layers, one validated Settings) -> hubvm.render (files under builds/, paths from hubvm.layout) -> the tools
(hubvm.vm: pack, vagrant, export; or hubvm.native: the build without a VM; hubvm.provision for both; the
pipeline of `all` in hubvm.pipeline) -> artifacts in builds/vm/ -> checks over SSH (hubvm.verify) -> OpenStack
(hubvm.publish). hubvm.host says what each task needs on this machine; hubvm.guest is what runs in the guest.
hubvm.program is the command (invoke's Program); modules that run commands take an invoke Context or a
hubvm.shell.Runner, the others import no invoke.
"""

from pathlib import Path

__version__ = "0.3.0"
PROJECT_DIR = Path(__file__).resolve().parent.parent
