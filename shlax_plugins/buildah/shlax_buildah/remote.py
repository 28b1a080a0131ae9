"""Remote builders: a buildah target whose buildah runs on another machine, reached over SSH.

``builder = "user@host"`` (or a table, :class:`BuilderHost`) in a buildah target makes every
buildah command run on that machine through the ssh plugin's connection handling
(``shlax_ssh.backend.SSHBackend``): one multiplexed master connection, strict host keys by
default, the control socket in a private temporary folder removed at close. Each argv list is
quoted element by element (:func:`shlax_core.remote.command_line`) for the remote shell; no other
shell text is ever built from recipe data.

What lives where:

- the image store (layers, base, final image, tags, pushes) is the builder's;
- files the backend hands buildah by path (a copy step's tar archive, a step's small mounted
  files such as apt's configuration or the CA bundle) are uploaded into a private temporary folder
  on the builder first; the folder is removed at close, also after a failure or Ctrl-C;
- mounted *folders* (download caches) are the builder's own: the same path is created on the
  builder (``mkdir -p``) and used verbatim. The cache locks shlax takes are on the machine that
  runs shlax, so two machines driving one builder do not lock each other out;
- plugins that hand buildah a file of their own (a registry auth file, a ``--digestfile``) put it
  in the same private folder (:meth:`SSHTransport.put`, :meth:`SSHTransport.path`) and remove it
  after the command; file contents travel on ssh's stdin, never on a command line.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence, Union

from shlax_core import process
from shlax_core.backends import Mount
from shlax_core.errors import RecipeError, ShlaxError, StepFailed, Unreachable
from shlax_core.params import doc
from shlax_core.remote import command_line

SSH_FAILED = 255

#: make each argument a folder unless it already exists (a file or a folder): mount sources
MKDIRS_SCRIPT = 'for d in "$@"; do [ -e "$d" ] || mkdir -p -- "$d" || exit 1; done'
#: write stdin to $1 (a path in our private temporary folder)
UPLOAD_SCRIPT = 'umask 077; cat > "$1"'
#: run "$@" and note the remote shell's pid ($1): sshd makes it a process-group leader, so an
#: interrupted run can stop the command it left running on the builder (ssh does not)
TRACK_SCRIPT = 'f=$1; shift; echo $$ > "$f"; "$@"; rc=$?; rm -f -- "$f"; exit $rc'
#: stop every tracked command still running under folder $1: TERM its process group and every
#: descendant (``buildah run``'s container process may have left the group), then KILL what is
#: still there after 10 s. ``kill -SIG -PGID``: dash's and busybox's kill take no ``--``
STOP_SCRIPT = r"""
tree() {
  { ps -e -o pid= -o ppid= 2>/dev/null || ps -o pid,ppid; } |
    awk -v root="$1" '$1 ~ /^[0-9]+$/ { up[$1] = $2 }
      END { for (p in up) { q = p; n = 0; while (q in up && q != root && n++ < 100) q = up[q]; if (q == root) print p } }'
}
for f in "$1"/run-*.pid; do
  [ -e "$f" ] || continue
  p=$(cat -- "$f")
  case $p in ''|*[!0-9]*) rm -f -- "$f"; continue ;; esac
  # still our wrapper (its argv names this pid file), not a process that got its pid since
  tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$f" || { rm -f -- "$f"; continue; }
  all=$(tree "$p")
  kill -TERM "-$p" $all 2>/dev/null
  i=0
  while [ $i -lt 50 ]; do
    alive=
    for q in "-$p" $all; do kill -0 "$q" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.2; i=$((i+1))
  done
  kill -KILL "-$p" $all 2>/dev/null; rm -f -- "$f"
done
exit 0
"""
#: unmount everything below folder $1 (deepest first), then remove it without crossing into any
#: file system still mounted there: a debootstrap interrupted between mounting /proc and /sys in
#: its rootfs and unmounting them must not make ``rm -rf`` walk the builder's own /proc
DISCARD_SCRIPT = r"""
[ -n "$1" ] || exit 0
while read -r _ m _; do case $m in "$1"/*) echo "$m" ;; esac; done < /proc/mounts | sort -r |
  while read -r m; do umount -l "$m" 2>/dev/null; done
rm -rf --one-file-system -- "$1"
"""
#: check buildah ($1) is there; make our private folder (uploads, pid files) and buildah's own
#: temporary folder, beside the builder's TMPDIR (else /var/tmp) like here: /tmp may be a small tmpfs
OPEN_SCRIPT = r"""
command -v "$1" >/dev/null || { echo missing; exit 0; }
d=$(mktemp -d /tmp/shlax-remote-XXXXXXXX) || exit 1
b=$(mktemp -d "${TMPDIR:-/var/tmp}/shlax-buildah-XXXXXXXX") || { rmdir -- "$d"; exit 1; }
echo "$d"; echo "$b"
"""
#: cgroup v2 unified (the OCI runtime works) or not
CGROUP_SCRIPT = '[ -e /sys/fs/cgroup/cgroup.controllers ] && echo oci || echo chroot'


@dataclass
class BuilderHost:
    """A remote builder written as a table: ``builder = { host = "build1", port = 2222 }``."""

    host: str = doc("host name, ssh_config alias or address of the machine that runs buildah")
    user: Optional[str] = doc("login user (root, or a user allowed to run buildah)", None)
    port: Optional[int] = doc("ssh port", None)
    identity: Optional[str] = doc("private key file (relative to the recipe)", None)
    become: bool = doc("run buildah through `sudo -n` (passwordless sudo on the builder)", False)
    host_key_checking: Literal["strict", "accept-new", "off"] = doc(
        "strict: unknown or changed host keys are refused; accept-new; off (throw-away hosts only)", "strict")
    known_hosts: Optional[str] = doc("known_hosts file to use instead of ssh's default", None)
    ssh_config: Optional[str] = doc("ssh client config file (ssh -F)", None)
    jump: Optional[str] = doc("jump host(s), as ssh -J takes them", None)
    options: dict[str, str] = doc("more ssh client options", default_factory=dict)
    connect_timeout: int = doc("seconds to wait for the connection", 10)

    def validate(self) -> Optional[str]:
        if not self.host or self.host.startswith("-"):
            return f"builder host {self.host!r} is not a host name or address"
        if self.port is not None and not 0 < self.port < 65536:
            return f"builder port {self.port} is out of range"
        if self.connect_timeout <= 0:
            return "builder connect_timeout must be positive"
        if self.jump is not None and any(hop.strip().startswith("-") for hop in self.jump.split(",")):
            return f"builder jump {self.jump!r} is not [user@]host[:port][,...]"
        return None


BuilderSpec = Union[str, BuilderHost]


def _path(value: Optional[str], base: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    value = os.path.expanduser(value)
    return str(base / value) if base is not None and not os.path.isabs(value) else value


class SSHTransport:
    """buildah's commands, uploads and mount folders on a builder, over one ssh master connection."""

    def __init__(self, spec: BuilderSpec, target: Any, session: Any):
        try:
            from shlax_ssh.backend import SSHBackend
            from shlax_ssh.params import SSHHost, parse_host
        except ImportError:
            raise ShlaxError(f"builder {spec if isinstance(spec, str) else spec.host!r} needs the ssh plugin, "
                             "which is not installed", where=target.where_of("builder"),
                             hint="pip install 'shlax-plugin-buildah[remote]' (or shlax-plugin-ssh)") from None
        if isinstance(spec, str):
            entry = parse_host(spec)
            spec = BuilderHost(host=entry.host, user=entry.user, port=entry.port)
            problem = spec.validate() or (None if spec.host and "@" not in spec.host else "bad host")
            if problem:
                raise RecipeError(f"builder {spec.host!r}: {problem}", where=target.where_of("builder"),
                                  hint='write builder = "host", "user@host" or "user@host:port"')
        base = getattr(session, "recipe_dir", None)
        self.label = "builder " + (f"{spec.user}@" if spec.user else "") + spec.host + \
            (f":{spec.port}" if spec.port else "")
        host = SSHHost(label=self.label, host=spec.host, user=spec.user, port=spec.port,
                       identity=_path(spec.identity, base), become=spec.become,
                       host_key_checking=spec.host_key_checking, known_hosts=_path(spec.known_hosts, base),
                       ssh_config=_path(spec.ssh_config, base), jump=spec.jump, options=dict(spec.options),
                       connect_timeout=spec.connect_timeout)
        self.conn = SSHBackend(target, host, session, label=self.label)
        self.tmp: Optional[str] = None        # private folder on the builder, made at open
        self.buildah_tmp: Optional[str] = None  # buildah's TMPDIR there (beside its own TMPDIR)
        self._uploads: dict[tuple[str, int, int], str] = {}
        self._folders: set[str] = set()
        self._count = 0

    # -- connection ----------------------------------------------------------------------------
    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The ssh argv that runs ``argv`` on the builder (every element quoted for its shell)."""
        switch = ["sudo", "-n", "-H", "--"] if self.conn.host.become else []
        return [*self.conn.ssh_argv("-o", "ControlMaster=no", "-T"), command_line([*switch, *argv])]

    def tracked(self, argv: Sequence[str]) -> list[str]:
        """Like :meth:`wrap`, for long commands (steps, pulls): :meth:`stop` can end them."""
        if self.tmp is None:
            return self.wrap(argv)
        self._count += 1
        return self.wrap(["sh", "-c", TRACK_SCRIPT, "sh", f"{self.tmp}/run-{self._count}.pid", *argv])

    def stop(self) -> None:
        """End commands an interrupted run left running on the builder (before removing containers)."""
        if self.tmp and self.conn.alive():
            try:
                subprocess.run(self.wrap(["sh", "-c", STOP_SCRIPT, "sh", self.tmp]), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def check(self, res: process.Exec) -> None:
        """ssh exits 255 for its own failures: with the master gone, the builder dropped."""
        if res.returncode == SSH_FAILED and not self.conn.alive():
            raise Unreachable(f"{self.label}: the connection was lost (builder down, rebooted or network cut)",
                              argv=res.argv, returncode=res.returncode, tail=res.tail[-5:])

    def sh(self, script: str, *args: str, stdin: Any = None, data: Optional[bytes] = None, what: str) -> str:
        """Run a fixed script with ``args`` as its positional parameters; its output. Its stdin is
        ``stdin`` (a file) or ``data`` (bytes: secrets travel this way, never as arguments)."""
        argv = self.wrap(["sh", "-c", script, "sh", *args])
        if data is not None:
            proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        else:
            proc = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).decode("utf-8", "replace").splitlines()[-10:]
            self.check(process.Exec(argv[-1:], proc.returncode, "", tail))
            raise StepFailed(f"{what} failed on {self.label}", argv=[what, *args], returncode=proc.returncode,
                             tail=tail)
        return proc.stdout.decode("utf-8", "replace")

    def stream(self, argv: Sequence[str], *, output: Optional[Callable[[str], None]], what: str,
               display: Optional[Sequence[str]] = None) -> process.Exec:
        """A long command on the builder (not buildah: debootstrap), its output streamed;
        :meth:`stop` can end it after an interrupt."""
        shown = list(display) if display is not None else list(argv)
        res = process.run(self.tracked(argv), output=output, check=False, display=shown)
        if not res.ok:
            self.check(res)
            raise StepFailed(f"{what} exited with code {res.returncode} on {self.label}", argv=shown,
                             returncode=res.returncode, tail=res.tail)
        return res

    def open(self, buildah_argv0: Sequence[str]) -> None:
        """Connect (Unreachable names the builder), check buildah is there, make the temp folders."""
        self.conn.open()
        out = self.sh(OPEN_SCRIPT, buildah_argv0[0], what="preparing the builder").strip()
        if out == "missing" or not out:
            raise ShlaxError(f"buildah is not installed on {self.label}",
                             hint="install it there: apt-get install buildah (Debian/Ubuntu)")
        lines = out.splitlines()
        self.tmp = lines[-2] if len(lines) > 1 else lines[-1]
        self.buildah_tmp = lines[-1] if len(lines) > 1 else None

    def buildah(self, argv: Sequence[str]) -> list[str]:
        """A buildah argv as it runs on the builder: its temporary files (``buildahNNN`` folders of
        run, add, commit, pull) in our private folder there, so an interrupted buildah cannot leave
        them in the builder's TMPDIR."""
        return ["env", f"TMPDIR={self.buildah_tmp}", *argv] if self.buildah_tmp else list(argv)

    def isolation(self) -> str:
        """The builder's own choice (see :mod:`shlax_buildah.isolation`): its cgroups decide."""
        return self.sh(CGROUP_SCRIPT, what="probing cgroups").strip() or "chroot"

    def close(self) -> None:
        """Remove the temporary folders, stop the master connection (its socket folder goes too)."""
        try:
            for folder in (self.tmp, self.buildah_tmp):
                if folder:
                    self.discard(folder)
        finally:
            self.tmp = self.buildah_tmp = None
            self.conn.close()

    # -- files ---------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        """A new, unused path in the private temporary folder on the builder (not created)."""
        assert self.tmp is not None, "builder path before open"
        self._count += 1
        return f"{self.tmp}/{self._count}-{name}"

    def upload(self, local: Path, name: str) -> str:
        """Stream a local file into the temporary folder on the builder; its path there."""
        dest = self.path(name)
        with open(local, "rb") as f:
            self.sh(UPLOAD_SCRIPT, dest, stdin=f, what=f"uploading {local.name}")
        return dest

    def put(self, data: bytes, name: str) -> str:
        """Write ``data`` to a new file (mode 0600) in the temporary folder on the builder; its
        path there. The bytes go through ssh's stdin: a secret never shows in a process list."""
        dest = self.path(name)
        self.sh(UPLOAD_SCRIPT, dest, data=data, what=f"writing {name}")
        return dest

    def remove(self, path: str) -> None:
        subprocess.run(self.wrap(["rm", "-f", "--", path]), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def discard(self, folder: str) -> None:
        """Remove a folder on the builder, unmounting what is mounted below it first; never
        raises (it runs in cleanups), and gives up after a minute."""
        if not self.conn.alive():
            return
        try:
            subprocess.run(self.wrap(["sh", "-c", DISCARD_SCRIPT, "sh", folder]), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except subprocess.TimeoutExpired:
            pass

    def mounts(self, mounts: Sequence[Mount]) -> list[Mount]:
        """Mounts as the builder sees them: folders are the builder's own (made if missing, used
        verbatim); files (configuration, CA bundle) are uploaded once per content version."""
        out: list[Mount] = []
        folders: list[str] = []
        for m in mounts:
            if os.path.isfile(m.source):
                st = os.stat(m.source)
                key = (m.source, st.st_size, st.st_mtime_ns)
                if key not in self._uploads:
                    self._uploads[key] = self.upload(Path(m.source), os.path.basename(m.source) or "file")
                out.append(Mount(self._uploads[key], m.target, m.readonly))
            else:
                if m.source not in self._folders:
                    folders.append(m.source)
                out.append(m)
        if folders:
            self.sh(MKDIRS_SCRIPT, *folders, what="creating cache folders")
            self._folders.update(folders)
        return out
