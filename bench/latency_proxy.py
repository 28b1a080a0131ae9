"""A TCP proxy on loopback that adds a round-trip time, to bench registry traffic as a CI runner
sees it (a registry some milliseconds away) rather than as loopback does (none).

Every chunk is forwarded ``rtt / 2`` after it arrived, in each direction, without holding back
the chunks behind it: latency is added, bandwidth is not limited. Connection set-up itself is not
delayed, so a request costs about one ``rtt`` more than on loopback, a TCP handshake nothing more:
the figures are a lower bound on what a real network adds.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Optional


class LatencyProxy:
    """``127.0.0.1:<port>`` forwards to ``target`` (``host:port``) with ``rtt_ms`` added."""

    def __init__(self, target: str, rtt_ms: float):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.one_way = rtt_ms / 2000.0
        self.loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.AbstractServer] = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "LatencyProxy":
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)

            async def begin() -> None:
                self._server = await asyncio.start_server(self._handle, sock=self._sock)
                ready.set()

            self.loop.run_until_complete(begin())
            self.loop.run_forever()

        self._thread = threading.Thread(target=serve, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w), return_exceptions=True)
        for w in (up_w, client_w):
            w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await src.read(1 << 16)
                queue.put_nowait((self.loop.time() + self.one_way, data))
                if not data:
                    break
        except (ConnectionError, OSError):
            queue.put_nowait((self.loop.time(), b""))
        await sender
