#!/bin/sh
# apt/pip/npm cache tests and bench: buildah (image builds), debootstrap (the Debian base and the
# local-backend chroot), unshare from util-linux (offline rebuilds with the network cut), and the
# host CA bundle the cache plugins lend to build steps. Idempotent; starts nothing.
set -eu
sh "$(dirname "$0")/../need-packages" buildah runc uidmap fuse-overlayfs debootstrap util-linux ca-certificates coreutils
exit 0
