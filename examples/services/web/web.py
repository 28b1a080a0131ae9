"""A tiny web app for the services demo: counts visits in the `db` service (Redis), by name."""

import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer

DB = os.environ.get("DB_HOST", "db")


def incr(key: str) -> int:
    """INCR through Redis's wire protocol (RESP): no client library needed."""
    with socket.create_connection((DB, 6379), timeout=5) as s:
        s.sendall(f"*2\r\n$4\r\nINCR\r\n${len(key)}\r\n{key}\r\n".encode())
        reply = s.makefile("rb").readline()
    if not reply.startswith(b":"):
        raise RuntimeError(f"unexpected reply from {DB}: {reply!r}")
    return int(reply[1:])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            body = b"ok\n"
        else:
            body = f"hello from a shlax-built image: visit {incr('visits')} (counted by {DB})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print(f"listening on :8000, counting in {DB}", flush=True)
    HTTPServer(("", 8000), Handler).serve_forever()
