"""Small root trees for the local backend's ``root`` (a chroot): Debian's static busybox, with
its applets, a few users and an /etc/os-release of its own, built in well under a second."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"  # busybox-static (./dev setup installs it)

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:4242:4242:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
app:x:4242:
staff:x:50:app
nogroup:x:65534:
"""


def busybox_tree(root: Path) -> Path:
    """A chroot tree at ``root``: /bin/busybox and its applet links (relative), /etc/passwd and
    /etc/group (users root, app 4242, nobody), /etc/os-release (ID=shlaxtree), /tmp, /home/app."""
    assert os.path.exists(BUSYBOX), "busybox-static is missing (./dev setup installs it)"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # pytest's tmp folders are 0700: other users could not reach "/"
    for d in ("bin", "etc", "tmp", "root", "home/app", "usr/lib"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not os.path.lexists(link):
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "usr" / "lib" / "os-release").write_text('ID=shlaxtree\nVERSION_CODENAME=tiny\n')
    (root / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    os.chown(root / "home" / "app", 4242, 4242)
    return root
