#!/bin/sh
# Hosts and containers (ssh, podman, local backends): sshd/ssh, podman with runc, sudo for
# `become`, iproute2 for network namespaces, busybox-static for a tiny test image.
# Idempotent: apt-get skips what is installed; nothing is started here (tests start their own
# sshd instances with private configs and stop them).
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="openssh-server openssh-client podman runc uidmap fuse-overlayfs iproute2 sudo busybox-static tar coreutils"
missing=""
for p in $PKGS; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
fi
# sshd refuses to start without its privilege-separation directory
mkdir -p /run/sshd
exit 0
