#!/bin/sh
# Rootless builds (tests/test_rootless.py): an ordinary user with a subordinate uid/gid range in
# /etc/subuid and /etc/subgid, for buildah's user namespace; uidmap (newuidmap/newgidmap) and
# fuse-overlayfs for rootless storage. The user's own image store lives in its home
# (~/.local/share/containers/storage). Idempotent: an existing user is kept, a missing range is
# added; starts nothing.
set -eu
USER_NAME=${SHLAX_ROOTLESS_USER:-shlax-rootless}
sh "$(dirname "$0")/../need-packages" buildah uidmap fuse-overlayfs util-linux passwd
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$USER_NAME"
fi
# useradd gives a new user a range when /etc/login.defs asks for one (Debian's does); a user made
# before, or elsewhere, may lack it: give one above every range already handed out
for kind in uid gid; do
    file=/etc/sub$kind
    touch "$file"
    if ! grep -q "^$USER_NAME:" "$file"; then
        start=$(awk -F: 'BEGIN { top = 100000 } { end = $2 + $3; if (end > top) top = end } END { print top }' "$file")
        usermod "--add-sub${kind}s" "$start-$((start + 65535))" "$USER_NAME"
    fi
done
exit 0
