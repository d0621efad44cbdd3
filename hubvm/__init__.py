"""hubvm: build a JupyterHub virtual machine with Packer, Vagrant and Ansible.

The modules import no invoke, except `invoke_config` (the bridge from invoke's configuration layers) and the
modules that take an invoke Context to run commands through it (`steps`, `remote`).
"""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
