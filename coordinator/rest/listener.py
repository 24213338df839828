"""The HTTP port's listener: a bounded number of connections, each of which must send its request headers in time.

aiohttp arms its keep-alive timer when a connection opens and after each response, and closes the connection
when the timer fires while no complete request has arrived: with that timeout set to the header timeout, a
connection that sends nothing, or only part of its headers (slowloris), is closed within it. A TLS handshake
has the same deadline. Connections beyond `http_max_connections` are answered 503 and closed at once, so a flood
of half-open connections cannot take every file descriptor.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from coordinator.config import ServerConfig

REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Gate:
    """Open connections, and the most allowed."""

    most: int
    open: int = 0


class CountedHandler(web.RequestHandler):
    """aiohttp's handler of one connection, counted by `gate` from its opening to its end; over the cap it answers
    503 and closes without starting. The count changes only on the event loop, one connection at a time."""

    def __init__(self, gate: Gate, manager: web.Server, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.gate, self.counted = gate, False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.gate.open >= self.gate.most:
            transport.write(REFUSED)  # type: ignore[attr-defined]  # a stream server's is a Transport; typeshed says Base
            transport.close()
            return
        self.gate.open += 1
        self.counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.counted:
            self.counted = False
            self.gate.open -= 1
            super().connection_lost(exc)


def handler_options(config: ServerConfig) -> dict[str, Any]:
    """aiohttp's per-connection settings: the header deadline, and how long an answered request's unread body
    (one refused before it was read) is drained and dropped so that its client reads the answer."""
    return {"keepalive_timeout": config.http_header_timeout_s, "lingering_time": config.http_header_timeout_s,
            "access_log": None}


async def listen(runner: web.AppRunner, config: ServerConfig, host: str, port: int,
                 tls: ssl.SSLContext | None) -> asyncio.Server:
    """A listening socket on host:port whose connections `runner`'s application serves."""
    loop, gate, manager, options = asyncio.get_running_loop(), Gate(config.http_max_connections), runner.server, \
        handler_options(config)
    assert manager is not None, "the runner is set up first"
    return await loop.create_server(lambda: CountedHandler(gate, manager, loop=loop, **options), host, port, ssl=tls,
                                    ssl_handshake_timeout=config.http_header_timeout_s if tls else None,
                                    reuse_port=False)
