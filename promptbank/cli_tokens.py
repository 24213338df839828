"""`promptbank tokens ...`: create, list and revoke access tokens (admin)."""

from __future__ import annotations

import argparse
import re

from google.protobuf.timestamp_pb2 import Timestamp

from promptbank.client import Client
from promptbank.output import table
from promptbank_api.v1 import auth_pb2 as ap

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """`30d`, `12h`, `90m`, `45s` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m or int(m[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h, 90m or 3600")
    return int(m[1]) * UNITS[m[2] or "s"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("tokens", help="access tokens (admin): create, list, revoke")
    ts = t.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ts.add_parser("create", help="create a token; its secret is printed once, alone on the last line")
    p.add_argument("--name", required=True, help="the token's name: its callers' identity, recorded on what they "
                   "write; never reused, even after a revoke; not admin, local, system or anonymous")
    p.add_argument("--role", required=True, choices=["reader", "trainer", "admin"])
    p.add_argument("--expires-in", type=duration, help="lifetime, e.g. 30d, 12h (default: never)")
    p = ts.add_parser("list", help="tokens (never their secrets)")
    p.add_argument("--json", action="store_true")
    p = ts.add_parser("revoke", help="revoke a token: calls with it are refused from then on")
    p.add_argument("name")


def _when(t: Timestamp) -> str:
    return t.ToJsonString() if t.seconds or t.nanos else "-"


def cmd_tokens(a: argparse.Namespace, c: Client) -> int:
    if a.action == "create":
        made = c.create_token(a.name, a.role, a.expires_in)
        print(f"created {made.token.name} ({a.role}); the secret below is shown only now:")
        print(made.secret)
    elif a.action == "list":
        table(c.list_tokens(), [("NAME", lambda t: t.name), ("ROLE", lambda t: ap.Role.Name(t.role).removeprefix("ROLE_").lower()),
                                ("CREATOR", lambda t: t.creator), ("CREATED", lambda t: _when(t.create_time)),
                                ("EXPIRES", lambda t: _when(t.expire_time)), ("REVOKED", lambda t: _when(t.revoke_time))],
              a.json, "tokens")
    else:
        revoked = c.revoke_token(a.name)
        print(f"revoked {revoked.name}")
    return 0



