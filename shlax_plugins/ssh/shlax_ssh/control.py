"""Where shlax keeps its ssh master connections between runs, and how they are listed and closed.

Each host's master (OpenSSH ``ControlMaster``) listens on a socket in one private per-user
folder, ``SHLAX_CACHE_DIR/ssh`` (``~/.cache/shlax/ssh``), mode 0700. The socket's name is a hash
of every option that decides how the connection was made (user, port, identity, known_hosts,
host key checking, ssh_config, jump hosts, extra options), so a run with other settings never
rides on a connection made under different ones. A master exits on its own after ``persist``
idle seconds (``ControlPersist``); ``shlax hosts close`` ends them at once.

Next to each socket, ``NAME.json`` says which host it reaches, for ``shlax hosts list``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from shlax_core.errors import ShlaxError
from shlax_core.filestate import stat_signature, write_json

#: ssh appends ".XXXXXXXXXXXXXXXX" to the socket path while creating it; sun_path holds 107
MAX_SOCKET = 88


def control_dir() -> Path:
    """The private folder of the control sockets (created 0700; refused if not ours)."""
    from shlax_core import dirs

    path = dirs.cache_root() / "ssh"
    if len(str(path)) + 18 > MAX_SOCKET:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        path = Path(tempfile.gettempdir()) / f"shlax-ssh-{os.getuid()}-{digest}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise ShlaxError(f"cannot create the ssh control folder {path}: {exc.strerror}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not path.is_dir() or path.is_symlink():
        raise ShlaxError(f"the ssh control folder {path} is not a private folder of this user",
                         hint="remove it (shlax recreates it with mode 0700)")
    return path


def socket_for(options: Sequence[str], files: Sequence[Optional[str]] = ()) -> str:
    """The control socket for a connection made with these ssh options (host included).

    ``files`` (known_hosts, ssh_config) count by their signature: editing them (a host key
    removed, a setting changed) makes a new connection instead of riding on one made under the
    old ones.
    """
    parts = list(options)
    for name in files:
        if name:
            try:
                sig = stat_signature(os.stat(os.path.expanduser(name)))
                parts.append(f"{name}:{':'.join(map(str, sig))}")
            except OSError:
                parts.append(f"{name}:-")
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return str(control_dir() / digest)


def remember(socket: str, info: dict[str, Any]) -> None:
    """Record which host a (new) master reaches, unless already recorded for this socket."""
    meta = Path(socket + ".json")
    try:
        ino = os.stat(socket).st_ino
    except OSError:
        return
    try:
        if json.loads(meta.read_text()).get("ino") == ino:
            return
    except (OSError, ValueError):
        pass
    write_json(meta, {**info, "ino": ino, "started": time.time()})


def _ctl(socket: str, command: str) -> bool:
    try:
        res = subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket}", "-O", command, "shlax"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def alive(socket: str) -> bool:
    return os.path.exists(socket) and _ctl(socket, "check")


def masters() -> list[dict[str, Any]]:
    """Every master shlax started that is still listening; records of dead ones are removed."""
    out = []
    folder = control_dir()
    for meta in sorted(folder.glob("*.json")):
        socket = str(meta)[:-5]
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        if not alive(socket):
            for stale in (meta, Path(socket)):
                try:
                    stale.unlink()
                except OSError:
                    pass
            continue
        out.append({**info, "socket": socket})
    return out


def close(socket: str) -> bool:
    """Stop one master now (its host's connection closes); True when it was running."""
    ok = os.path.exists(socket) and _ctl(socket, "exit")
    for stale in (Path(socket + ".json"),):
        try:
            stale.unlink()
        except OSError:
            pass
    return ok


def select(items: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The masters whose label or host is one of ``names`` (all when empty)."""
    if not names:
        return items
    wanted = set(names)
    return [m for m in items if wanted & {m.get("label"), m.get("host"), m.get("destination")}]


def age(info: dict[str, Any], now: Optional[float] = None) -> float:
    return (now or time.time()) - float(info.get("started", now or time.time()))
