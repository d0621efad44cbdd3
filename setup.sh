#!/usr/bin/env bash
# Set up a Debian or Ubuntu machine for this tool: host packages with apt, then a Python virtualenv in .venv/.
#
#   ./setup.sh           what `invoke all` needs: Packer, Vagrant, qemu-utils, the provider's packages
#   ./setup.sh --tests   also what the test suite needs (validators, test hosts in network namespaces)
#
# apt runs through sudo when you are not root. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

tests=false
case "${1:-}" in
  --tests) tests=true ;;
  "") ;;
  *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# apt package -> is it in this machine's archive? (Ubuntu 24.04 has no packer; Debian 12 has no virtualbox)
available() { [ -n "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; }

packages=(python3 python3-venv python3-pip git openssh-client qemu-utils vagrant)
# libvirt/QEMU: the cloud profile's provider, and the only one Debian 12 ships
packages+=(libvirt-daemon-system libvirt-clients qemu-system-x86 vagrant-libvirt mmdebstrap libguestfs-tools)
if $tests; then
  # validators, and test hosts: Debian root filesystems booted with systemd-nspawn in network namespaces
  packages+=(debconf-utils systemd-container nftables iproute2)
fi

echo "==> apt packages"
$sudo apt-get update -qq
wanted=()
for package in "${packages[@]}"; do
  if available "$package"; then wanted+=("$package"); else echo "    not in this distribution's archive: $package"; fi
done
if available packer; then wanted+=(packer); fi
if ! command -v VBoxManage >/dev/null && available virtualbox; then wanted+=(virtualbox); fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${wanted[@]}"

if ! command -v packer >/dev/null; then
  echo "    Packer is not in this distribution's archive: install it from https://developer.hashicorp.com/packer/install"
fi
if ! command -v VBoxManage >/dev/null; then
  echo "    VirtualBox is not installed (Debian has no package): https://www.virtualbox.org/wiki/Linux_Downloads;"
  echo "    or build for libvirt instead: invoke -f config/cloud.yaml all"
fi

echo "==> Python virtualenv in .venv/"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
if $tests; then .venv/bin/pip install -q -e '.[test]'; else .venv/bin/pip install -q -e .; fi

echo "==> done. Next: .venv/bin/invoke check   (tells what this machine still lacks)"
