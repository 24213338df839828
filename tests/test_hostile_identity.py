"""Issue 30, items 5, 7, 13 and 14, as a hostile caller meets them on real servers: an expired token is refused
the moment it expires though it was cached (5); a token cannot take the name of one of the server's own
principals, a name is never reused, and a reserved-name token left in an older bank is refused (7); a newline or
an ANSI escape in a name a caller sends cannot forge a text log line (13); and the local Ray that a coordinator
bound to loopback starts listens on loopback only (14)."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import grpc
import psutil
import pytest

from bank.models import Token, utcnow
from bank.tokens import new_secret, secret_hash
from coordinator import logs
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from tests.conftest import LiveServer
from tests.processes import Coordinator
from tests.test_server import code_of

ADMIN = "pbt_hostile-identity-admin-0123456789abcdef012345"
FORGED = "2026-01-01 00:00:00,000 WARNING promptbank.coordinator: forged"
RESERVED = ("admin", "anonymous", "local", "system")  # bank/tokens.py RESERVED_NAMES, as documented
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


@pytest.fixture(scope="module")
def secured(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cfg = ServerConfig(port=0, db=str(tmp_path_factory.mktemp("hostile-identity") / "b.db"), auth="tokens",
                       admin_token=ADMIN, worker_cpus=0.25, grace_seconds=0.5,
                       backbones=(BackboneSpec("enc", tiny_encoder),))
    live = LiveServer(cfg)
    yield live
    live.stop()


@pytest.fixture()
def text_log() -> Iterator[io.StringIO]:
    """What the server's `promptbank` loggers write while the test runs, through the `--log-format text` handler."""
    buf, logger = io.StringIO(), logging.getLogger("promptbank")
    handler, level = logs.handler("text", (ADMIN,), stream=buf), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buf
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# item 5 ----------------------------------------------------------------------------------------------------------

def test_an_expired_token_is_refused_at_once_though_it_was_cached(secured: LiveServer) -> None:
    with Client(secured.address, token=ADMIN) as admin:
        made = admin.create_token("t-brief", "reader", ttl_seconds=3)
    expires = made.token.expire_time.ToDatetime(tzinfo=UTC).timestamp()
    with Client(secured.address, token=made.secret) as c:
        c.list_prompts()  # accepted, and now in the verification cache (which trusts it up to 5 s)
        assert time.time() < expires - 1.0, "the first call came too late to prove anything"
        time.sleep(max(0.0, expires - time.time()) + 0.3)
        code, msg = code_of(lambda: c.list_prompts())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in msg


# item 7 ----------------------------------------------------------------------------------------------------------

def test_a_token_may_not_take_a_reserved_or_overlong_name(secured: LiveServer) -> None:
    from bank.tokens import RESERVED_NAMES

    assert RESERVED_NAMES == set(RESERVED)
    with Client(secured.address, token=ADMIN) as admin:
        for name in RESERVED:
            code, msg = code_of(lambda name=name: admin.create_token(name, "trainer"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and f"token name {name!r} is reserved" in msg
        code, msg = code_of(lambda: admin.create_token("t" * 65, "reader"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "use 1-64" in msg
        assert not {f"tokens/{n}" for n in RESERVED} & {t.name for t in admin.list_tokens()}


def test_a_token_name_is_never_reused_even_after_a_revoke(secured: LiveServer) -> None:
    with Client(secured.address, token=ADMIN) as admin:
        admin.create_token("t-once", "trainer")
        admin.revoke_token("tokens/t-once")
        code, msg = code_of(lambda: admin.create_token("t-once", "trainer"))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "never reused" in msg


def test_a_reserved_name_token_from_an_older_bank_is_refused(secured: LiveServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A bank written before names were checked may hold a trainer token named `admin`: it would own the admin
    secret's jobs and uploads. It is refused with a log line that says what to do, and the admin can revoke it."""
    caplog.set_level(logging.WARNING, logger="promptbank")
    secrets = {name: new_secret() for name in ("admin", "local")}

    def plant(s) -> None:  # type: ignore[no-untyped-def]  # as an older server would have stored them
        for name, secret in secrets.items():
            s.add(Token(name=name, role="trainer", secret_sha256=secret_hash(secret), creator="admin",
                        created_at=utcnow()))

    secured.coord.db.run_sync(plant)
    for name, secret in secrets.items():
        with Client(secured.address, token=secret) as impostor:
            code, _ = code_of(lambda impostor=impostor: impostor.list_jobs())
            assert code == grpc.StatusCode.UNAUTHENTICATED, name
        assert f"refused a token named {name!r}: the name is reserved" in caplog.text
        assert secret not in caplog.text
    with Client(secured.address, token=ADMIN) as admin:
        assert admin.revoke_token("tokens/admin").revoke_time.seconds > 0
        admin.list_jobs()  # the admin secret itself is untouched


# item 13 ---------------------------------------------------------------------------------------------------------

def test_a_newline_in_a_job_name_cannot_forge_a_text_log_line(secured: LiveServer, text_log: io.StringIO) -> None:
    hostile = f"jobs/nope\n{FORGED}\r\x1b[2J\u2028x"
    with Client(secured.address, token=ADMIN) as admin:
        code, msg = code_of(lambda: admin.get_job(hostile))
        assert code == grpc.StatusCode.NOT_FOUND and FORGED in msg  # the caller gets its own text back as sent
    out = text_log.getvalue()
    assert "nope\\n" + FORGED + "\\r\\x1b[2J\\u2028x" in out  # the one line that names it, escaped
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    for line in out.split("\n")[:-1]:
        assert TEXT_LINE.match(line) or line.startswith("  "), f"a line no record of ours wrote: {line!r}"
        assert not line.startswith(FORGED)


def test_text_tracebacks_are_indented_and_escaped() -> None:
    buf = io.StringIO()
    logger = logging.getLogger("promptbank.test-hostile-logs")
    logger.addHandler(logs.handler("text", stream=buf))
    logger.propagate = False
    try:
        raise ValueError(f"bad name\n{FORGED}\x1b[31m")
    except ValueError:
        logger.exception("failed on %s", f"a\n{FORGED}")
    finally:
        logger.handlers.clear()
    first, *rest = buf.getvalue().rstrip("\n").split("\n")
    assert TEXT_LINE.match(first) and first.endswith(f"failed on a\\n{FORGED}")
    assert rest and all(line.startswith("  ") for line in rest) and "  ValueError: bad name" in rest
    assert f"  {FORGED}\\x1b[31m" in rest  # still readable, but indented: not a record of its own


# item 14 ---------------------------------------------------------------------------------------------------------

def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_the_local_ray_of_a_loopback_coordinator_listens_on_loopback_only(tiny_encoder: str, tmp_path: Path) -> None:
    """`serve` on 127.0.0.1 with no --ray-address starts Ray itself (a separate process: this session's own Ray
    is started by the test fixture): none of the GCS, raylet, agent or worker sockets may face the network."""
    coord = Coordinator(str(tmp_path / "b.db"), {"tiny": tiny_encoder}, tmp_path, extra=("--host", "127.0.0.1", "--http-port", "0"))
    tree: list[psutil.Process] = []
    try:
        coord.wait_ready()
        root = psutil.Process(coord.pid)
        tree = [root, *root.children(recursive=True)]
        pids = {p.pid: p.name() for p in tree}
        listening = [(pids[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids]
        names = {name for name, _, _ in listening}
        assert {"gcs_server", "raylet"} <= names, (listening, coord.tail())
        exposed = [s for s in listening if not _loopback(s[1])]
        assert not exposed, f"Ray sockets beyond loopback: {exposed}"
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            coord.terminate(60)
        coord.close()
        for p in tree:  # whatever of the coordinator's Ray is left, by pid (psutil checks it is the same process)
            with contextlib.suppress(psutil.Error):
                p.kill()
