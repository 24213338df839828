"""Hand-written HTTP/1.1 over a plain socket, for what no well-behaved client does (tests/test_hostile_transport.py):
send headers and only part of a body, stall, drip, or open connections that never send a request."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server of `url` (http://host:port/)."""
    host, port = re.match(r"https?://\[?([^\]/]+?)\]?:(\d+)/", url).groups()  # type: ignore[union-attr]
    return socket.create_connection((host, int(port)), timeout=timeout)


def head(method: str, path: str, length: int | None, token: str = "", content_type: str = "application/json",
         chunked: bool = False) -> bytes:
    """A request's line and headers, as a client that means to send `length` bytes of body would write them."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of the next response; socket.timeout when none comes within `timeout`."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data!r}")
        data += chunk
    raw, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length]) if length else None


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), looking without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        sock.setblocking(True)


def wait_closed(socks: list[socket.socket], within: float, drip: list[socket.socket] = ()) -> float:  # type: ignore[assignment]
    """Seconds until the server closed every one of `socks`; sends one more header byte on each of `drip` every
    0.2 s meanwhile (slowloris). AssertionError naming how many stayed open past `within`."""
    began, open_ = time.monotonic(), list(socks)
    while open_ and time.monotonic() - began < within:
        for s in drip:
            if s in open_:
                try:
                    s.send(b"X")
                except OSError:
                    pass
        open_ = [s for s in open_ if not closed(s)]
        time.sleep(0.2)
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {within:g} s"
    return time.monotonic() - began


def peak_rss_growth(call) -> tuple[Any, int]:  # type: ignore[no-untyped-def]
    """(call's result, bytes by which this process's peak RSS rose above its RSS before the call): the peak is
    reset first (Linux /proc/self/clear_refs), so the figure is the call's own high-water mark."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    result = call()
    return result, (_status_kb("VmHWM") - before) * 1024


def _status_kb(key: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1])
