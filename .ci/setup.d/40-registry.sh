#!/bin/sh
# Registry tests and bench: Debian's docker-registry (the tests start their own instance on a free
# loopback port with a private config; the packaged service is not used). Idempotent.
set -eu
sh "$(dirname "$0")/../need-packages" docker-registry buildah
# the package may start its own service on :5000 where systemd runs; tests never rely on it
exit 0
