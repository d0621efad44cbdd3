#!/usr/bin/env bash
# Set up a Debian 12 or Ubuntu 24.04 machine for this tool: host packages with apt, then a Python virtualenv in .venv/.
#
#   ./setup.sh           what `hubvm all` needs, for each provider as far as this distribution packages it
#   ./setup.sh --tests   also what the test suite needs
#
# apt runs through sudo when you are not root. Safe to run again: it installs only what is missing.
# The output of apt and pip goes to builds/logs/setup.log; you see one line per stage (its end, if one fails).
set -euo pipefail
cd "$(dirname "$0")"

tests=false
case "${1:-}" in
  --tests) tests=true ;;
  "") ;;
  *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

# Who the virtualenv and the libvirt group are for: you, also when you ran `sudo ./setup.sh`.
sudo="" as_user=() user=$(id -un)
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: not root and no sudo: run it as root, or install sudo" >&2; exit 1; }
  sudo="sudo"
elif [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  user=$SUDO_USER as_user=(sudo -u "$SUDO_USER")
fi

log=builds/logs/setup.log
"${as_user[@]}" mkdir -p builds/logs
"${as_user[@]}" touch "$log"
echo "==> $(date '+%F %T') ./setup.sh ${1:-}" >>"$log"

# Run a command with its output in the log; if it fails, say so and show the log's end.
quietly() {
  if ! "$@" </dev/null >>"$log" 2>&1; then
    echo "setup.sh: '$*' failed; the end of $log:" >&2
    tail -n 30 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
}
apt_get() { quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }
installed() { [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
available() { [ -n "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; }
count_installed() { dpkg-query -W -f '${db:Status-Status}\n' | grep -c '^installed$'; }
since() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# shellcheck source=/dev/null
. /etc/os-release
arch=$(dpkg --print-architecture)
distro="${NAME%% GNU/Linux} ${VERSION_ID:-}"   # Debian 12, Ubuntu 24.04

# ---------------------------------------------------------------------------------------------------------------
# What each path runs, by package (every package installs with --no-install-recommends: a Recommends that matters
# is named here). One line per group says why.
packages=()
# Python 3 and its venv module: the virtualenv of invoke, fabric and Ansible (pyproject.toml)
packages+=(python3 python3-venv)
# Vagrant boots and provisions the build VM; rsync copies vm.data into a libvirt VM (the rsync synced folder);
# ssh and ssh-keygen serve vagrant, ansible, vagrant-libvirt's forwarded ports and `hubvm ssh`
packages+=(vagrant rsync openssh-client)
# libvirt provider: the system daemon and virsh, QEMU and qemu-img, the vagrant-libvirt plugin, and dnsmasq
# (a Recommends) without which libvirt cannot start a NAT network such as vagrant-libvirt's management network
packages+=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils vagrant-libvirt dnsmasq-base)
# export on libvirt: `vagrant package` runs virt-sysprep and virt-sparsify (a kernel for their appliance: below)
packages+=(libguestfs-tools)
# image.source mirror: mmdebstrap, `mke2fs -d` (e2fsprogs), sfdisk (fdisk), the keyrings of Debian and Ubuntu guests
packages+=(mmdebstrap e2fsprogs fdisk debian-archive-keyring ubuntu-keyring)
# build.mode native: the container (systemd-nspawn), its network namespace and way out (ip, nft)
packages+=(systemd-container iproute2 nftables)
if $tests; then
  # tests: debconf-set-selections (the preseed validator); the test hosts use the native build's nspawn, ip, nft
  packages+=(debconf-utils)
  # tests: a real OpenStack Image service on loopback for the publish tests (Debian's glance-api, about 200
  # packages; the tests start it themselves)
  packages+=(glance-api)
fi

# libguestfs builds its appliance from a host kernel (supermin reads /boot/vmlinuz-* and its /lib/modules/):
# a machine without one (a container, WSL) gets the distribution's kernel package.
readable_kernel() {
  local kernel
  for kernel in /boot/vmlinuz-*; do
    if [ -d "/lib/modules/${kernel#/boot/vmlinuz-}" ] && "${as_user[@]}" test -r "$kernel"; then return 0; fi
  done
  return 1
}
any_kernel() { compgen -G '/boot/vmlinuz-*' >/dev/null; }
if ! any_kernel; then
  case "$ID" in
    ubuntu) packages+=(linux-image-generic) ;;
    *) packages+=("linux-image-$arch") ;;
  esac
fi

# Packer and VirtualBox: from the archive where it has them (Debian has Packer, Ubuntu has VirtualBox)
command -v packer >/dev/null || packages+=(packer)
if ! command -v VBoxManage >/dev/null; then
  # its kernel driver is built by DKMS (a Recommends brings no headers): the running kernel's headers
  packages+=(virtualbox virtualbox-dkms "linux-headers-$(uname -r)")
fi

# ---------------------------------------------------------------------------------------------------------------
missing=()
for package in "${packages[@]}"; do installed "$package" || missing+=("$package"); done

lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
split_by_availability() {  # missing -> wanted (in the archive) and unavailable (not in it)
  wanted=() unavailable=()
  for package in "${missing[@]}"; do
    if available "$package"; then wanted+=("$package"); else unavailable+=("$package"); fi
  done
}

started=$SECONDS
wanted=() unavailable=()
if [ "${#missing[@]}" -gt 0 ]; then
  split_by_availability
  # Fresh lists unless all that is missing is what this distribution does not have (VirtualBox on Debian)
  if [ "${#wanted[@]}" -gt 0 ] || ! lists_present; then
    [ -z "$sudo" ] || sudo true  # asks for the password now, not in the middle of the log (sudo -v would ask
    #                                 even where a NOPASSWD rule lets you run commands)
    apt_get update
    split_by_availability
  fi
fi
if [ "${#wanted[@]}" -eq 0 ]; then
  echo "==> apt: nothing to install ($(( ${#packages[@]} - ${#unavailable[@]} )) packages present)"
else
  echo "==> apt: installing ${#wanted[@]} packages and what they depend on: ${wanted[*]}"
  before=$(count_installed)
  apt_get install -y --no-install-recommends "${wanted[@]}"
  echo "    $(( $(count_installed) - before )) packages installed in $(since "$started") (apt's output: $log)"
  # glance-api's package starts a system service on port 9292 where systemd runs: the tests start their own
  if [[ " ${wanted[*]} " == *" glance-api "* ]] && [ -d /run/systemd/system ]; then
    quietly $sudo systemctl disable --now glance-api
    echo "    glance-api: its system service stopped and disabled (the tests start their own on loopback)"
  fi
fi
for package in "${unavailable[@]}"; do
  case "$package" in
    packer)
      echo "    Packer is not in ${distro}'s archive: add HashiCorp's apt repository, then apt-get install packer"
      echo "      (https://developer.hashicorp.com/packer/install#linux)" ;;
    virtualbox)
      echo "    VirtualBox is not in ${distro}'s archive: install Oracle's package, with its kernel driver"
      echo "      (https://www.virtualbox.org/wiki/Linux_Downloads), or build for libvirt: hubvm -f config/cloud.yaml all" ;;
    virtualbox-dkms | linux-headers-*) ;;  # only there to build VirtualBox's driver
    vagrant | vagrant-libvirt)
      echo "    $package is not in ${distro}'s archive: https://developer.hashicorp.com/vagrant/install," \
           "then: vagrant plugin install vagrant-libvirt" ;;
    ubuntu-keyring)  # Debian 12 has it in bookworm-backports only
      echo "    ubuntu-keyring (for Ubuntu guests with image.source mirror) is not in ${distro}'s main archive:"
      echo "      enable ${VERSION_CODENAME}-backports (https://backports.debian.org/Instructions/), then apt-get install ubuntu-keyring" ;;
    *) echo "    not in ${distro}'s archive: $package" ;;
  esac
done

# Ubuntu installs kernels readable by root only: supermin, run as you by `vagrant package`, cannot read them.
if any_kernel && ! readable_kernel; then
  echo "    libguestfs cannot read a kernel in /boot as $user (Ubuntu keeps them root-only); allow it with:"
  echo "      sudo chmod 0644 /boot/vmlinuz-*   (again after a kernel update)"
fi

# vagrant-libvirt talks to the system daemon (qemu:///system): members of group libvirt may
if [ "$user" != root ] && getent group libvirt >/dev/null && ! id -nG "$user" | tr ' ' '\n' | grep -qx libvirt; then
  quietly $sudo usermod -aG libvirt "$user"
  echo "    added $user to group libvirt: log in again for it to count"
fi

# ---------------------------------------------------------------------------------------------------------------
started=$SECONDS
extras=""
if $tests; then extras="[test]"; fi
echo "==> Python virtualenv in .venv/ (pip install -e '.$extras')"
[ -x .venv/bin/python ] || quietly "${as_user[@]}" python3 -m venv .venv
quietly "${as_user[@]}" .venv/bin/pip install --upgrade pip
quietly "${as_user[@]}" .venv/bin/pip install -e ".$extras"
echo "    $("${as_user[@]}" .venv/bin/pip list --format=freeze 2>/dev/null | wc -l) Python packages, ready in $(since "$started")"

echo "==> done. Next: .venv/bin/hubvm check   (tells what this machine still lacks)"
