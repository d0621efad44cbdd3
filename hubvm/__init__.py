"""hubvm: build a JupyterHub virtual machine with Packer, Vagrant and Ansible.

The flow: configuration (hubvm.layers, checked against hubvm.schema) -> hubvm.settings -> hubvm.render (files under
builds/) -> the tools (hubvm.pack, hubvm.vagrant, hubvm.provision, hubvm.export) -> artifacts in builds/vm/ ->
checks over SSH (hubvm.remote, hubvm.checks). hubvm.program is the command (invoke's Program); modules that
run commands take an invoke Context, the others import no invoke.
"""

from pathlib import Path

__version__ = "0.2.0"
PROJECT_DIR = Path(__file__).resolve().parent.parent
