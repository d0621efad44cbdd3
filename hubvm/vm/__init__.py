"""build.mode vm: the base box with Packer (pack.py), the build VM under Vagrant (vagrant.py), and its export into
builds/vm/ (export.py). The playbook they run is hubvm.provision's; the pipeline of `all` is hubvm.pipeline."""
