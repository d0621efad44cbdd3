# The base box: a minimal Debian or Ubuntu with the build user, passwordless sudo and Vagrant's insecure key.
# One template for every provider and base image; `hubvm pack` picks the source with -only=<builder>.<name>
# and passes builds/packer/variables.pkrvars.json (rendered from the configuration).
#
#   source                 provider    base image
#   virtualbox-iso.iso     virtualbox  installer ISO + preseed/autoinstall served from http/
#   virtualbox-ovf.cloud   virtualbox  official cloud image (OVA), cloud-init seeded from http/cloud/
#   qemu.iso               libvirt     installer ISO + preseed/autoinstall served from http/
#   qemu.cloud             libvirt     official cloud image (qcow2), cloud-init seeded from http/cloud/
#   qemu.mirror            libvirt     disk image built from a package mirror by `hubvm pack` (no installer)
#
# Packer runs in builds/packer/, so relative paths are relative to that folder.

variable "name" {
  type        = string
  description = "VM name (vm.name)"
}

variable "cpus" {
  type = number
}

variable "memory" {
  type        = number
  description = "MiB"
}

variable "disk_size" {
  type        = number
  description = "MiB"
}

variable "ssh_username" {
  type = string
}

variable "ssh_password" {
  type      = string
  sensitive = true
}

variable "iso_url" {
  type        = string
  description = "installer ISO, cloud image or mirror-built disk image"
}

variable "iso_checksum" {
  type = string
}

variable "boot_command" {
  type    = list(string)
  default = []
}

variable "boot_wait" {
  type    = string
  default = "5s"
}

variable "guest_os_type" {
  type        = string
  description = "VirtualBox guest OS type"
}

variable "accelerator" {
  type        = string
  description = "QEMU accelerator: kvm or tcg"
}

variable "headless" {
  type    = bool
  default = true
}

variable "ssh_timeout" {
  type    = string
  default = "60m"
}

variable "mirror_kernel_args" {
  type        = list(list(string))
  default     = []
  description = "qemu arguments that boot the mirror-built image's kernel directly, before it has a boot loader"
}

variable "environment" {
  type        = list(string)
  default     = []
  description = "KEY=value pairs for the setup scripts (proxies)"
}

variable "output_box" {
  type        = string
  description = "where the Vagrant post-processor writes the box (renamed into place by hubvm pack)"
}

locals {
  shutdown_command = "echo '${var.ssh_password}' | sudo -S systemctl poweroff"
  # how the shell provisioner runs each script: as root, with the environment_vars
  sudo_script = "echo '${var.ssh_password}' | {{ .Vars }} sudo -S -E bash '{{ .Path }}'"
  # cloud-init reads its seed from Packer's HTTP server: the NoCloud data source named in the SMBIOS serial
  cloud_seed = "ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/cloud/"
}

source "virtualbox-iso" "iso" {
  guest_os_type        = var.guest_os_type
  iso_url              = var.iso_url
  iso_checksum         = var.iso_checksum
  cpus                 = var.cpus
  memory               = var.memory
  disk_size            = var.disk_size
  hard_drive_interface = "sata"
  http_directory       = "http"
  boot_wait            = var.boot_wait
  boot_command         = var.boot_command
  headless             = var.headless
  ssh_username         = var.ssh_username
  ssh_password         = var.ssh_password
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = local.shutdown_command
  guest_additions_mode = "upload"
  vm_name              = var.name
  output_directory     = "output-virtualbox-iso"
  # VirtualBox 7 NAT no longer reaches the host's loopback, where Packer serves the answer file
  vboxmanage = [["modifyvm", "{{ .Name }}", "--nat-localhostreachable1", "on"]]
}

source "virtualbox-ovf" "cloud" {
  source_path          = var.iso_url
  checksum             = var.iso_checksum
  headless             = var.headless
  http_directory       = "http"
  ssh_username         = var.ssh_username
  ssh_password         = var.ssh_password
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = local.shutdown_command
  guest_additions_mode = "upload"
  vm_name              = var.name
  output_directory     = "output-virtualbox-ovf"
  vboxmanage = [
    ["modifyvm", "{{ .Name }}", "--cpus", "${var.cpus}", "--memory", "${var.memory}"],
    ["modifyvm", "{{ .Name }}", "--nat-localhostreachable1", "on"],
    ["setextradata", "{{ .Name }}", "VBoxInternal/Devices/pcbios/0/Config/DmiSystemSerial", local.cloud_seed],
  ]
}

# The settings every QEMU build shares; the build block below names the three variants (iso, cloud, mirror).
source "qemu" "base" {
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  accelerator      = var.accelerator
  cpus             = var.cpus
  memory           = var.memory
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  format           = "qcow2"
  http_directory   = "http"
  headless         = var.headless
  ssh_username     = var.ssh_username
  ssh_password     = var.ssh_password
  ssh_timeout      = var.ssh_timeout
  shutdown_command = local.shutdown_command
  vm_name          = "${var.name}.qcow2"
}

build {
  sources = ["source.virtualbox-iso.iso", "source.virtualbox-ovf.cloud"]

  source "source.qemu.base" {
    name             = "iso"
    boot_wait        = var.boot_wait
    boot_command     = var.boot_command
    output_directory = "output-qemu-iso"
  }

  source "source.qemu.base" {
    name             = "cloud"
    disk_image       = true
    output_directory = "output-qemu-cloud"
    qemuargs         = [["-smbios", "type=1,serial=${local.cloud_seed}"]]
  }

  source "source.qemu.base" {
    name             = "mirror"
    disk_image       = true
    output_directory = "output-qemu-mirror"
    # the image has no boot loader yet: QEMU boots its kernel, and bootloader.sh installs GRUB
    qemuargs = var.mirror_kernel_args
  }

  provisioner "shell" {
    execute_command  = local.sudo_script
    environment_vars = concat(var.environment, ["BUILD_USER=${var.ssh_username}"])
    scripts          = ["scripts/build-user.sh"]
  }

  provisioner "shell" {
    only             = ["qemu.mirror"]
    execute_command  = local.sudo_script
    environment_vars = var.environment
    scripts          = ["scripts/bootloader.sh"]
  }

  provisioner "shell" {
    only             = ["virtualbox-iso.iso", "virtualbox-ovf.cloud"]
    execute_command  = local.sudo_script
    environment_vars = concat(var.environment, ["BUILD_USER=${var.ssh_username}"])
    scripts          = ["scripts/virtualbox-guest-additions.sh"]
  }

  provisioner "shell" {
    execute_command  = local.sudo_script
    environment_vars = var.environment
    scripts          = ["scripts/cleanup.sh"]
  }

  post-processor "vagrant" {
    output              = var.output_box
    compression_level   = 6
    keep_input_artifact = false
  }
}
