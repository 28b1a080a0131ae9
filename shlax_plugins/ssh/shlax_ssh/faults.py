"""Turning what ``ssh`` printed on a failed connection into one clear message that names the host.

Only ssh's own diagnostic lines are kept for the tail: they hold host names, addresses and key
fingerprints (public), never key material or passwords (BatchMode never asks for one).
"""

from __future__ import annotations

import re
from typing import Any

_RESOLVE = re.compile(r"Could not resolve hostname ([^:\s]+)")

_RULES: list[tuple[tuple[str, ...], str]] = [
    (("REMOTE HOST IDENTIFICATION HAS CHANGED",),
     "host key mismatch: the host presented a key different from the one in known_hosts; "
     "connection refused (this can be a man-in-the-middle attack). If the host was really "
     "reinstalled, remove its old key with `ssh-keygen -R HOST` and add the new one"),
    (("Host key verification failed", "No matching host key", "host key for", "is not known"),
     "host key unknown: the host is not in known_hosts and host keys are checked strictly; "
     "add its key (ssh-keyscan, after checking its fingerprint) or set host_key_checking = \"accept-new\""),
    (("Invalid -J argument",), "ssh refused the `jump` setting: write it as ssh -J takes it, "
                               "[user@]host[:port][,...]"),
    (("Could not resolve hostname", "Name or service not known", "nodename nor servname"),
     "unknown host: the name does not resolve"),
    (("Connection refused",), "connection refused: no ssh server listening on that address and port"),
    (("Connection timed out", "Operation timed out", "timed out"), "connection timed out"),
    (("No route to host", "Network is unreachable"), "no route to host"),
    (("Permission denied", "Too many authentication failures"),
     "authentication failed: the host refused every key offered (check user, identity or agent)"),
    (("Connection closed by", "Connection reset by", "kex_exchange_identification", "closed by remote host"),
     "the host closed the connection during the handshake"),
]


def explain(label: str, host: Any, lines: list[str], *, timed_out: bool = False) -> tuple[str, list[str]]:
    """(message, tail): why ``label`` could not be reached, and the ssh lines that say so."""
    where = host.host + (f" port {host.port}" if host.port else "")
    if host.user:
        where = f"{host.user}@{where}"
    diag = [line for line in lines if not line.startswith(("debug", "@@@"))][-8:]
    text = "\n".join(lines)
    if timed_out:
        return f"cannot reach {label} ({where}): connection timed out", diag
    for needles, reason in _RULES:
        if any(n in text for n in needles):
            unresolved = _RESOLVE.search(text)
            if reason.startswith("unknown host") and unresolved and unresolved.group(1) != host.host:
                reason = f"unknown host: the name {unresolved.group(1)!r} (a jump host?) does not resolve"
            return f"cannot reach {label} ({where}): {reason}", diag
    last = diag[-1] if diag else "ssh failed without a message"
    return f"cannot reach {label} ({where}): {last}", diag
