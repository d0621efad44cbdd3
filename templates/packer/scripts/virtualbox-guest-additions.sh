#!/bin/bash
# VirtualBox Guest Additions from the ISO Packer uploaded: shared folders (vm.data) need the vboxsf module.
set -euo pipefail
user="${BUILD_USER:?BUILD_USER is not set}"
iso="$(getent passwd "$user" | cut -d: -f6)/VBoxGuestAdditions.iso"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends build-essential dkms bzip2 "linux-headers-$(uname -r)"
mount_point=$(mktemp -d)
mount -o loop,ro "$iso" "$mount_point"
# The installer exits 2 when it could not load the modules into the running kernel, which is expected here:
# they load at the next boot. Any other failure stops the build.
status=0
sh "$mount_point/VBoxLinuxAdditions.run" --nox11 || status=$?
umount "$mount_point"
rm -rf "$mount_point" "$iso"
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  echo "VBoxLinuxAdditions.run failed with status $status" >&2
  exit "$status"
fi
modinfo vboxsf >/dev/null
