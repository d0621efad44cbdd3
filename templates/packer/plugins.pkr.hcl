# The builder plugins box.pkr.hcl needs. Packer >= 1.7 installs them with `packer init .` (from 1.10 on there
# are no bundled builders). Packer 1.6 does not know this block: `hubvm pack` then passes box.pkr.hcl alone.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
    virtualbox = {
      source  = "github.com/hashicorp/virtualbox"
      version = ">= 1.1.0"
    }
    vagrant = {
      source  = "github.com/hashicorp/vagrant"
      version = ">= 1.1.0"
    }
  }
}
