"""A throwaway PostgreSQL server for tests and benchmarks (no pytest here; bench/catalog.py imports it too).

`start_server()` runs initdb into a fresh temporary folder, starts `postgres` on a free loopback port (its
unix socket in that folder too) with durability off (fsync, synchronous_commit), and returns a handle whose
`url(db)` is a `postgresql://` URL; `stop()` shuts it down and removes the folder. PostgreSQL refuses to run
as root, so under root (as CI runs) every server command goes through `runuser -u postgres --` (or `nobody`
where no `postgres` user exists) and the folder is handed to that user.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

USER = "promptbank"  # the database superuser initdb creates (trust auth, loopback only)
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; the tests need a real PostgreSQL. "
    "Install them: `apt-get install -y postgresql-15` (Debian/Ubuntu; `bash scripts/bootstrap.sh` does it "
    "when run as root), or point PROMPTBANK_PG_BIN at the folder holding them."
)


class PostgresMissing(RuntimeError):
    """The server binaries are not installed."""


def find_bindir() -> Path:
    """PROMPTBANK_PG_BIN, else the newest /usr/lib/postgresql/N/bin, else initdb on PATH."""
    candidates = [Path(os.environ["PROMPTBANK_PG_BIN"])] if os.environ.get("PROMPTBANK_PG_BIN") else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    candidates += reversed(versions)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for d in candidates:
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    raise PostgresMissing(INSTALL_HINT)


def _server_user() -> str | None:
    """The unprivileged account to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    base: Path  # holds data/, the unix socket and server.log
    port: int
    run_as: str | None
    _stopped: bool = field(default=False, repr=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    def log_tail(self, n: int = 30) -> str:
        log = self.base / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else "(no server log)"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _run(self, ["pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _run(srv: PgServer, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(srv.bindir / argv[0]), *argv[1:]]
    if srv.run_as:
        cmd = ["runuser", "-u", srv.run_as, "--", *cmd]
    proc = subprocess.run(cmd, cwd=srv.base, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{srv.log_tail()}")
    return proc


def start_server(tries: int = 3) -> PgServer:
    """initdb + start on a free port; raises PostgresMissing when the binaries are not installed."""
    bindir, run_as = find_bindir(), _server_user()
    base = Path(tempfile.mkdtemp(prefix="promptbank-pg-"))
    srv = PgServer(bindir=bindir, base=base, port=0, run_as=run_as)
    try:
        if run_as:
            pw = pwd.getpwnam(run_as)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        _run(srv, ["initdb", "-D", str(base / "data"), "-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        conf = base / "data" / "postgresql.conf"
        original = conf.read_text()
        for attempt in range(tries):
            srv.port = _free_port()  # a small race with other processes; retried below
            conf.write_text(original + (
                f"\nport = {srv.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            ))
            proc = _run(srv, ["pg_ctl", "-D", str(base / "data"), "-l", str(base / "server.log"), "-w", "-t", "60", "start"],
                        check=False)
            if proc.returncode == 0:
                atexit.register(srv.stop)
                return srv
            if attempt == tries - 1 or "could not bind" not in srv.log_tail():
                raise RuntimeError(f"PostgreSQL did not start:\n{proc.stdout}{proc.stderr}\n{srv.log_tail()}")
    except BaseException:
        srv.stop()
        raise
    raise AssertionError("unreachable")
