#!/bin/bash
# The build user, Vagrant's way: passwordless sudo and Vagrant's public "insecure" key, which Vagrant swaps
# for a fresh key at the first `vagrant up`. The exported appliance removes both (ansible role cleanup).
set -euo pipefail
user="${BUILD_USER:?BUILD_USER is not set}"
home=$(getent passwd "$user" | cut -d: -f6)

echo "$user ALL=(ALL) NOPASSWD: ALL" > "/etc/sudoers.d/$user"
chmod 0440 "/etc/sudoers.d/$user"
visudo -cf "/etc/sudoers.d/$user"

install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
# Vagrant's insecure public key, as shipped in vagrant's keys/vagrant.pub
cat > "$home/.ssh/authorized_keys" <<'KEY'
ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key
KEY
chown "$user:$user" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"

# No reverse DNS lookups of clients: they stall every login on networks without DNS for the host-only range
install -d /etc/ssh/sshd_config.d
echo "UseDNS no" > /etc/ssh/sshd_config.d/10-build.conf
