#!/bin/sh
# Registry tests and bench: Debian's docker-registry (the tests start their own instance on a free
# loopback port with a private config; the packaged service is not used). Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="docker-registry buildah"
missing=""
for p in $PKGS; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
fi
# the package may start its own service on :5000 where systemd runs; tests never rely on it
exit 0
