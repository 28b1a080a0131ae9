"""Fixed POSIX shell snippets for host backends that reach a machine through a command (ssh, podman exec).

Recipe data never becomes shell text: each snippet is a constant script, and the paths, users and
commands it works on travel as its positional arguments (``sh -c SCRIPT sh ARG...``). Over ssh
the whole argv is quoted element by element with :func:`shlex.quote` (the remote side always
hands ssh's command line to a shell), which is the only place quoting happens.
"""

from __future__ import annotations

import shlex
from typing import Mapping, Optional, Sequence

from shlax_core.backends import Stat

#: existence, mode, type, owner and sha256 of one path, in one command (follows symlinks).
STAT_SCRIPT = r"""
p=$1
if [ ! -e "$p" ]; then echo missing; exit 0; fi
s=$(stat -L -c '%a %U:%G' -- "$p") || exit 3
if [ -d "$p" ]; then echo "dir $s"; exit 0; fi
d=$(sha256sum -- "$p" 2>/dev/null) || d=unreadable
echo "file $s ${d%% *}"
"""

#: extract a tar stream from stdin under $1, then chown the remaining arguments to $2 (if set;
#: a bare user name means that user and its login group, as the local backend does).
EXTRACT_SCRIPT = r"""
set -e
dest=$1; owner=$2; shift 2
mkdir -p -- "$dest"
tar -x -p -f - -C "$dest"
[ -n "$owner" ] && [ "$#" -gt 0 ] || exit 0
case $owner in *:*) ;; *) owner="$owner:$(id -gn -- "$owner")" ;; esac
chown -h -- "$owner" "$@"
"""

#: chown the arguments after $1 to $1 (a bare user name means that user and its login group);
#: symlinks themselves, not what they point to
CHOWN_SCRIPT = r"""
owner=$1; shift
[ "$#" -gt 0 ] || exit 0
case $owner in *:*) ;; *) owner="$owner:$(id -gn -- "$owner")" || exit 1 ;; esac
chown -h -- "$owner" "$@"
"""

#: run "$@" in directory $1.
CD_SCRIPT = 'cd -- "$1" && shift && exec "$@"'


def parse_stat(output: str, path: str) -> Stat:
    """Turn :data:`STAT_SCRIPT`'s one line into a :class:`Stat`."""
    line = output.strip().splitlines()[-1] if output.strip() else ""
    parts = line.split()
    if not parts or parts[0] == "missing":
        return Stat(False)
    kind, mode, owner = parts[0], int(parts[1], 8), parts[2]
    if kind == "dir":
        return Stat(True, mode, is_dir=True, owner=owner)
    digest = parts[3] if len(parts) > 3 and parts[3] != "unreadable" else None
    return Stat(True, mode, digest, owner=owner)


def wrap(argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
         workdir: Optional[str] = None) -> list[str]:
    """``argv`` run with extra environment in ``workdir``, as one argv list (no shell text)."""
    out = list(argv)
    if workdir:
        out = ["sh", "-c", CD_SCRIPT, "sh", workdir, *out]
    if env:
        out = ["env", *(f"{k}={v}" for k, v in env.items()), *out]
    return out


def command_line(argv: Sequence[str]) -> str:
    """One shell command line that runs exactly ``argv`` (every element quoted)."""
    return " ".join(shlex.quote(str(a)) for a in argv)
