"""`promptbank audit list`: the server's audit log of writes, newest first, with filters (admin)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from promptbank import cli_args
from promptbank.client import Client
from promptbank.output import table

DEFAULT_LIMIT = 100


def when(text: str) -> datetime:
    """An ISO time (`2026-01-01`, `2026-01-01T12:00`, `...+02:00`); a naive one is UTC."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time like 2026-01-31 or 2026-01-31T12:00: {text!r}") from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("audit", help="the audit log of writes: who called which RPC on what, when (admin)")
    acts = a.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = acts.add_parser("list", help="audit events, newest first")
    p.add_argument("--principal", default="", help="only this principal's (a token's name, admin or local)")
    p.add_argument("--method", default="", help="only calls of this RPC, e.g. DeletePrompt")
    p.add_argument("--resource", default="", help="only events on this resource or inside it, e.g. "
                                                   "prompts/sentiment (its versions and aliases too)")
    p.add_argument("--after", type=when, help="only events at or after this ISO time (UTC if naive)")
    p.add_argument("--before", type=when, help="only events before this ISO time (UTC if naive)")
    p.add_argument("--limit", type=cli_args.at_least_one, default=DEFAULT_LIMIT, metavar="N",
                   help=f"show the newest N events at most (default {DEFAULT_LIMIT})")
    p.add_argument("--json", action="store_true", help="print JSON (one object a line) instead of a table")


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def cmd_audit(a: argparse.Namespace, c: Client) -> int:
    if a.after is not None and a.before is not None and _utc(a.after) >= _utc(a.before):
        raise ValueError(f"--after {a.after.isoformat()} must be earlier than --before {a.before.isoformat()}")
    events = c.list_audit_events(principal=a.principal, method=a.method, resource=a.resource, after=a.after,
                                 before=a.before, most=a.limit + 1)  # one more says whether the list was cut
    shown = events[: a.limit]
    table(shown, [("TIME", lambda e: e.time.ToJsonString()), ("PRINCIPAL", lambda e: e.principal),
                  ("METHOD", lambda e: e.method), ("RESOURCE", lambda e: e.resource or "-")], a.json,
          "audit events")
    if len(events) > a.limit:
        print(f"(the newest {a.limit} shown; --limit N shows more, --before narrows)", file=sys.stderr)
    return 0
