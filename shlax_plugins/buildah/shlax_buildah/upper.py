"""What a mounted working container holds of its own: the overlay driver's upper folder.

A working container is kept for the steps after a commit (``buildah commit`` without ``--rm``)
rather than made again from the new layer (``buildah from`` + ``buildah mount``, the largest
per-step cost after the commit itself). A commit writes everything the container changed since
it was made, so each layer then repeats what the earlier steps of that container changed. That
is cheap while they changed little, and not after a big step (an apt install): every later
commit would write its files again (~13 ms a MB here) and every later layer would hold a copy.
So the backend measures the container's own changes before each commit and makes the container
again when they are big (:func:`big`).

containers/storage's overlay driver mounts a layer at ``<layer>/merged`` with its own changes in
``<layer>/diff`` (the upper folder). Another driver or layout is not guessed at: :func:`of`
answers None and the container is made again after every commit, as before.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

#: changes above which the container is made again after the commit. Carrying 4 MiB would cost
#: each later commit ~50 ms, a fifth of making the container again (from + mount, ~0.25 s here),
#: but every later layer repeats what it carries, and images are pushed and pulled whole: 1 MiB
#: bounds what a chain of small steps adds to an image to about 1 MiB a layer
MAX_BYTES = 1 << 20
#: entries above which it is too: a commit pays ~0.1 ms an entry (3000 small files: +0.3 s)
MAX_ENTRIES = 1000


def of(mountpoint: str) -> Optional[str]:
    """The upper folder of the container layer mounted at ``mountpoint``, or None when this is
    not the overlay driver's layout (``<layer>/merged`` beside ``<layer>/diff`` and ``<layer>/link``)."""
    mountpoint = mountpoint.rstrip("/")
    if os.path.basename(mountpoint) != "merged":
        return None
    layer = os.path.dirname(mountpoint)
    upper = os.path.join(layer, "diff")
    if os.path.isdir(upper) and os.path.isfile(os.path.join(layer, "link")):
        return upper
    return None


def big(upper: str, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES) -> bool:
    """True when ``upper`` holds more than ``max_bytes`` of file data or more than ``max_entries``
    entries; stops counting as soon as it knows. An unreadable folder counts as big (the safe
    answer: the container is made again)."""
    size = entries = 0
    todo = [upper]
    try:
        while todo:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    entries += 1
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        todo.append(entry.path)
                    else:
                        size += st.st_size
                    if entries > max_entries or size > max_bytes:
                        return True
    except OSError:
        return True
    return False
