"""Run one step in a mounted container root: the first process of a fresh PID namespace.

:mod:`shlax_buildah.chroot` starts this file as ``unshare --mount --pid --fork --kill-child
--propagation private --mount-proc=ROOT/proc -- python3 -I -S enter.py SPEC``, so it runs in a
mount namespace of its own (everything it mounts vanishes with it, nothing reaches the host or
the container's layer) as PID 1 of a PID namespace (when it exits, the kernel kills whatever the
step left running). It bind-mounts what the step is lent (/dev, /sys, the hosts and resolv.conf
copies, the step's cache folders; read-only where asked), then forks the step: chroot into the
root, change folder, take the user's ids and groups, exec the argv with exactly the environment
given. It stays as a small init: forwards SIGTERM/SIGINT/SIGHUP to the step, reaps orphans, and
exits with the step's code (128+N when a signal N ended it).

Standard library only, and no ``site``: it starts in milliseconds where ``buildah run`` takes
most of a second. Its command line is ``enter.py SPEC CONTAINER``: CONTAINER, the working
container's name, is only there for :func:`shlax_buildah.owners.stop_users` to find a step a
killed shlax left running. SPEC is JSON: ``root`` (the host path of the mounted root), ``binds``
(``[host source, host target, read-only, recursive]``, targets already created and confined to
the root by the caller), ``uid``, ``gid``, ``groups``, ``cwd``, ``env``, ``argv``.
"""

import ctypes
import json
import os
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384


def _mount(libc, source, target, flags):
    if libc.mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount {source or target} at {target}: {os.strerror(err)}")


def _bind(libc, source, target, readonly, recursive):
    _mount(libc, source, target, MS_BIND | (MS_REC if recursive else 0))
    if readonly:  # keeping the flags the source has (statvfs's ST_* bits are the MS_* ones)
        kept = os.statvfs(target).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _mount(libc, None, target, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _exec(argv, env):
    """execvpe without its lazy imports (the standard library is out of reach after chroot)."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    error = OSError(2, "command not found", name)
    for folder in env.get("PATH", "").split(":"):
        path = os.path.join(folder or ".", name)
        try:
            os.execve(path, argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            error = exc
    raise error


def _step(spec):
    """The forked child: never returns."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.chroot(spec["root"])
        os.chdir(spec["cwd"])
        os.setgroups(spec["groups"])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        _exec(spec["argv"], spec["env"])
    except OSError as exc:
        what = spec["argv"][0] if exc.filename in (None, spec["argv"][0]) else exc.filename
        os.write(2, f"shlax: cannot run {spec['argv'][0]}: {exc.strerror} ({what})\n".encode())
        os._exit(127 if exc.errno == 2 else 126)
    os._exit(127)


def main():
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        for source, target, readonly, recursive in spec["binds"]:
            _bind(libc, source, target, readonly, recursive)
    except OSError as exc:
        os.write(2, f"shlax: {exc.strerror}\n".encode())
        os._exit(125)
    child = os.fork()
    if child == 0:
        _step(spec)

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(125)
        except InterruptedError:
            continue
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
