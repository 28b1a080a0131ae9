# The remote helper: a small program that host backends start once per host and run, over one
# channel (an ssh session, or any stdin/stdout pipe), every command, check and file transfer of
# a run -- the way Mitogen carries Ansible's modules -- instead of one ssh client per command.
#
# This file is never imported by shlax: its *text* is sent to the host and executed by the host's
# own python3 (3.6 or newer, standard library only). See shlax_core/channel.py for the controller
# side and docs/hosts.md for the protocol's rules.
#
# Frames, both ways: 8 bytes (header length, payload length, big-endian uint32), a JSON header,
# then the raw payload. The helper speaks first: a "hello" frame with the host's facts. Then each
# request gets zero or more "out" frames (command output) and one final frame (exit, stat, error).
#
# `become` in a request routes it to a child helper running as that user, started once through
# `sudo -n -H -u USER` and kept for the rest of the run: one sudo per user per run, not one per
# command. Recipe data never becomes shell text here: commands are argv lists for execve.
import hashlib
import json
import os
import pwd
import grp
import select
import signal
import socket
import struct
import subprocess
import sys
import threading

_IN = sys.stdin.buffer
_OUT = sys.stdout.buffer
_HEAD = struct.Struct(">II")
_CHILDREN = {}
# set by the bootstrap to this program's own source (sent again to become-children)
_SOURCE = globals().get("_S", b"")


def send(header, payload=b""):
    data = json.dumps(header).encode()
    _OUT.write(_HEAD.pack(len(data), len(payload)) + data + payload)
    _OUT.flush()


def write_all(stream, data):
    """Write every byte to an unbuffered pipe (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view):]


def read_exact(stream, n):
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(stream):
    head = read_exact(stream, _HEAD.size)
    if head is None:
        return None, b""
    hlen, plen = _HEAD.unpack(head)
    header = json.loads(read_exact(stream, hlen).decode())
    payload = read_exact(stream, plen) if plen else b""
    return header, payload


def os_release():
    out = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path) as f:
                for line in f:
                    if "=" in line and not line.startswith("#"):
                        k, v = line.rstrip("\n").split("=", 1)
                        out[k.strip()] = v.strip().strip("\"'")
            break
        except OSError:
            continue
    return out


def facts():
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return {"hostname": socket.gethostname(), "architecture": os.uname().machine,
            "os_release": os_release(), "user": user, "uid": os.getuid(),
            "python": sys.executable, "systemd": os.path.isdir("/run/systemd/system")}


def owner_of(st):
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user + ":" + group


def stat_one(path, digest):
    import stat as S

    try:
        st = os.stat(path)
    except OSError:
        return None
    if S.S_ISDIR(st.st_mode):
        return ["dir", S.S_IMODE(st.st_mode), owner_of(st), None]
    value = None
    if digest and S.S_ISREG(st.st_mode):
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            value = h.hexdigest()
        except OSError:
            value = None
    return ["file", S.S_IMODE(st.st_mode), owner_of(st), value]


def _feed(proc, data):
    try:
        proc.stdin.write(data)
    except OSError:
        pass
    try:
        proc.stdin.close()
    except OSError:
        pass


def run(req, stdin):
    argv = req["argv"]
    cwd = req.get("cwd")
    env = dict(os.environ)
    env.update(req.get("env") or {})
    if cwd and not os.path.isdir(cwd):
        send({"t": "out"}, ("cd: %s: No such file or directory\n" % cwd).encode())
        send({"t": "exit", "code": 2})
        return
    try:
        proc = subprocess.Popen(argv, cwd=cwd or None, env=env,
                                stdin=subprocess.PIPE if req.get("stdin") else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        send({"t": "out"}, ("%s: %s\n" % (argv[0], exc.strerror)).encode())
        send({"t": "exit", "code": code})
        return
    feeder = None
    if req.get("stdin"):
        feeder = threading.Thread(target=_feed, args=(proc, stdin), daemon=True)
        feeder.start()
    out = proc.stdout.fileno()
    watch = [out, _IN.fileno()]
    while True:
        ready, _, _ = select.select(watch, [], [])
        if _IN.fileno() in ready and not _IN.peek(1):
            # the controller is gone (Ctrl-C, connection lost): stop the command, then leave
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            sys.exit(0)
        if out in ready:
            chunk = os.read(out, 65536)
            if not chunk:
                break
            send({"t": "out"}, chunk)
    code = proc.wait()
    if feeder is not None:
        feeder.join()
    send({"t": "exit", "code": code if code >= 0 else 128 - code})


def child(user):
    """The helper running as ``user`` (through sudo), started on first use."""
    found = _CHILDREN.get(user)
    if found is not None:
        return found
    boot = ("import sys,zlib;_S=zlib.decompress(sys.stdin.buffer.read(%d));exec(_S)"
            % len(_packed()))
    # unbuffered pipes: relay() selects on the child's stdout, so no frame may wait in a buffer
    proc = subprocess.Popen(["sudo", "-n", "-H", "-u", user, "--", sys.executable, "-c", boot],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    write_all(proc.stdin, _packed())
    hello, _ = receive(proc.stdout)
    if hello is None:
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.wait()
        return {"error": err or "sudo exited with code %s" % proc.returncode, "code": proc.returncode}
    _CHILDREN[user] = proc
    return proc


_PACKED = []


def _packed():
    if not _PACKED:
        import zlib

        _PACKED.append(zlib.compress(_SOURCE))
    return _PACKED[0]


def relay(proc, header, payload):
    """Hand a request to a become-child and copy its frames back until the final one."""
    data = json.dumps(header).encode()
    try:
        write_all(proc.stdin, _HEAD.pack(len(data), len(payload)) + data + payload)
    except OSError:
        send({"t": "error", "message": "the helper for user %s ended" % header.get("as")})
        return
    while True:
        ready, _, _ = select.select([proc.stdout.fileno(), _IN.fileno()], [], [])
        if _IN.fileno() in ready and not _IN.peek(1):
            proc.stdin.close()  # the child sees EOF, stops its command and leaves
            sys.exit(0)
        if proc.stdout.fileno() not in ready:
            continue
        frame, body = receive(proc.stdout)
        if frame is None:
            send({"t": "error", "message": "the helper for user %s ended" % header.get("as")})
            return
        send(frame, body)
        if frame.get("t") != "out":
            return


def serve():
    send({"t": "hello", "facts": facts()})
    while True:
        req, payload = receive(_IN)
        if req is None or req.get("op") == "exit":
            for proc in _CHILDREN.values():
                try:
                    proc.stdin.close()
                    proc.wait()
                except OSError:
                    pass
            return
        user = req.pop("become", None)
        if user and user != facts_user():
            proc = child(user)
            if isinstance(proc, dict):
                send({"t": "become-failed", "message": proc["error"], "code": proc["code"]})
                continue
            req["as"] = user
            relay(proc, req, payload)
            continue
        try:
            op = req.get("op")
            if op == "run":
                run(req, payload)
            elif op == "stat":
                send({"t": "stat", "items": [stat_one(p, req.get("digest", True)) for p in req["paths"]]})
            elif op == "ping":
                send({"t": "pong"})
            else:
                send({"t": "error", "message": "unknown request %r" % op})
        except Exception as exc:  # never die on one request: the controller reports it
            send({"t": "error", "message": "%s: %s" % (type(exc).__name__, exc)})


_ME = []


def facts_user():
    if not _ME:
        try:
            _ME.append(pwd.getpwuid(os.getuid()).pw_name)
        except KeyError:
            _ME.append(str(os.getuid()))
    return _ME[0]


signal.signal(signal.SIGPIPE, signal.SIG_DFL)
serve()
