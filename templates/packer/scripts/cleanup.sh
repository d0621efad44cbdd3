#!/bin/bash
# Make the box small: package caches dropped, logs truncated, free blocks given back.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
find /var/log -type f -exec truncate -s 0 {} +
# Every clone must make its own machine-id (systemd creates one at boot when the file is empty)
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
# qcow2 disks get their free blocks back with fstrim (discard); zero-filling would make them non-sparse.
# VirtualBox's VMDK has no discard here, so it is zero-filled for `vagrant package` to compress well.
if fstrim -v / 2>/dev/null; then
  echo "free blocks discarded"
else
  if ! dd if=/dev/zero of=/EMPTY bs=1M status=none 2>/dev/null; then
    echo "free space zero-filled (dd stops when the disk is full)"
  fi
  rm -f /EMPTY
fi
sync
