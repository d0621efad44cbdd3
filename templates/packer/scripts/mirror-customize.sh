#!/bin/sh
# mmdebstrap customize hook of image.source "mirror" (run by hubvm/baseimage.py, on the host; $1 is the root
# directory mmdebstrap built). Makes the bootstrapped tree a system Packer can boot and log into:
# fstab, host name, DHCP networking, serial console, the build login with its password and sudo.
# Passwordless sudo and Vagrant's key come later from scripts/build-user.sh, as for every other source.
# Usage: mirror-customize.sh ROOT HOSTNAME USER PASSWORD ROOT_UUID
set -eu
root=$1 hostname=$2 user=$3 password=$4 root_uuid=$5

echo "$hostname" > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$hostname" \
  > "$root/etc/hosts"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$root_uuid" > "$root/etc/fstab"

# DHCP on the first NIC whatever its name (ens3, enp0s3, eth0): systemd-networkd, DNS by systemd-resolved
cat > "$root/etc/systemd/network/80-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Kernel and GRUB on the serial console too (builds under QEMU are watched through it); a short menu
install -d "$root/etc/default/grub.d"
cat > "$root/etc/default/grub.d/50-hubvm.cfg" <<'GRUB'
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB

# The build login: Packer logs in with the password and runs its scripts with sudo
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo "$user"
echo "$user:$password" | chroot "$root" chpasswd

# No SSH host keys and no machine-id in the image: every machine booted from it makes its own
rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable ssh-hostkeys.service
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
