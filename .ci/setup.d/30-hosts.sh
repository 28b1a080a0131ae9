#!/bin/sh
# Hosts and containers (ssh, podman, local backends): sshd/ssh, podman with runc, sudo for
# `become`, iproute2 for network namespaces, busybox-static for a tiny test image.
# Idempotent: apt-get skips what is installed; nothing is started here (tests start their own
# sshd instances with private configs and stop them).
set -eu
sh "$(dirname "$0")/../need-packages" openssh-server openssh-client podman runc uidmap fuse-overlayfs iproute2 sudo busybox-static tar coreutils
# sshd refuses to start without its privilege-separation directory
mkdir -p /run/sshd
exit 0
