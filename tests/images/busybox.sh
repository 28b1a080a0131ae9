#!/bin/sh
set -e
NAME=${1:-localhost/shlax-test-busybox:latest}
W=$(mktemp -d); cd $W
apt-get download busybox-static >/dev/null 2>&1 
dpkg-deb -x busybox-static*.deb root
mkdir -p root/bin root/tmp root/etc root/root
for a in $(root/bin/busybox --list); do [ -e root/bin/$a ] || ln -s busybox root/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > root/etc/passwd
echo 'root:x:0:' > root/etc/group
C=$(buildah from scratch)
buildah copy $C root/ / >/dev/null
buildah config --env PATH=/bin --cmd '["/bin/sh"]' $C
buildah commit --quiet $C $NAME
buildah rm $C >/dev/null
rm -rf $W
