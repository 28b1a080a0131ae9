#!/bin/sh
# dnf and pacman tests: Debian's own dnf, rpm (rpmbuild), createrepo-c, pacman (repo-add) and
# makepkg build tiny packages and repositories served on loopback; zstd and bsdtar pack them.
# Idempotent; starts nothing.
set -eu
sh "$(dirname "$0")/../need-packages" dnf rpm createrepo-c pacman-package-manager makepkg libarchive-tools zstd
exit 0
