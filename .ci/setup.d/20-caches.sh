#!/bin/sh
# apt/pip/npm cache tests and bench: buildah (image builds), debootstrap (the Debian base and the
# local-backend chroot), unshare from util-linux (offline rebuilds with the network cut), and the
# host CA bundle the cache plugins lend to build steps. Idempotent; starts nothing.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="buildah runc uidmap fuse-overlayfs debootstrap util-linux ca-certificates coreutils"
missing=""
for p in $PKGS; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
fi
exit 0
