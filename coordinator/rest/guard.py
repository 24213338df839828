"""What keeps other web sites away from the REST API in a user's browser.

Bearer tokens travel in a header a foreign page cannot set, but the embedded default runs with auth off on
loopback, where any page the user opens could otherwise post to `127.0.0.1`. So: a POST (the one write a page may
send cross-site without a CORS preflight, which this server never grants) must carry a JSON content type; a
request whose `Origin` is another site is refused; and with auth off, the `Host` must be a loopback name, which
defeats DNS rebinding (a foreign name resolved to 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from urllib.parse import urlsplit

import grpc

JSON_TYPES = frozenset({"application/json", "application/x-ndjson", "application/jsonl", "application/jsonlines"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback_name(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(method: str, content_type: str, headers: Mapping[str, str], auth_off: bool
            ) -> tuple[int, grpc.StatusCode, str] | None:
    """(HTTP status, code, message) when the request must not reach the API; None when it may."""
    host = urlsplit(f"//{headers.get('Host', '')}").hostname or ""
    if auth_off and not is_loopback_name(host):
        return 403, grpc.StatusCode.PERMISSION_DENIED, (
            f"Host {host!r} is not a loopback name; with auth off the API answers only http://127.0.0.1 or "
            "http://localhost")
    origin = headers.get("Origin", "")
    if origin and origin != "null" and urlsplit(origin).netloc != headers.get("Host", ""):
        return 403, grpc.StatusCode.PERMISSION_DENIED, f"cross-origin request from {origin} refused"
    if origin == "null":
        return 403, grpc.StatusCode.PERMISSION_DENIED, "request from an opaque origin refused"
    if method == "POST" and content_type not in JSON_TYPES:
        return 415, grpc.StatusCode.INVALID_ARGUMENT, (
            f"a POST needs Content-Type: application/json (or application/x-ndjson), not {content_type or 'none'!r}")
    return None
