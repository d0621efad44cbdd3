#!/bin/bash
# image.source mirror only: the disk built from the mirror has no boot loader yet (Packer booted its kernel
# directly). Install GRUB into the first virtio disk and generate grub.cfg, so the box boots by itself.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
disk=/dev/vda
# grub-pc's upgrades reinstall GRUB on the devices recorded here
echo "grub-pc grub-pc/install_devices multiselect $disk" | debconf-set-selections
grub-install --target=i386-pc "$disk"
update-grub
