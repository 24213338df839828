"""Tokens with roles on a real server: every RPC has a rule, each role gets what it may and a clear status
for what it may not, trainers reach only their own jobs, revoked and expired tokens stop working, writes
record their principal, and no secret reaches a message or a log line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bank.tokens import secret_hash
from coordinator import auth
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import auth_pb2, catalog_pb2, inference_pb2, jobs_pb2
from promptbank_api.v1 import jobs_pb2 as jp
from tests.conftest import LiveServer
from tests.test_server import DATA, code_of, input_hp

ADMIN = "pbt_test-admin-secret-0123456789abcdef0123456789"
HP = input_hp(num_virtual_tokens=2, epochs=1, batch_size=8)
SHORT_TTL_S = 4  # long enough to use the token once on a loaded machine


@pytest.fixture(scope="module")
def secured(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cfg = ServerConfig(port=0, db=str(tmp_path_factory.mktemp("auth") / "b.db"), auth="tokens", admin_token=ADMIN,
                       worker_cpus=0.25, grace_seconds=0.5, backbones=(BackboneSpec("enc", tiny_encoder),))
    live = LiveServer(cfg)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def tokens(secured: LiveServer) -> dict[str, str]:
    with Client(secured.address, token=ADMIN) as admin:
        return {role: admin.create_token(f"t-{role}", role).secret for role in ("reader", "trainer")}


def test_every_rpc_has_a_rule() -> None:
    services = [d.services_by_name[n] for d in (catalog_pb2.DESCRIPTOR, jobs_pb2.DESCRIPTOR,
                                                inference_pb2.DESCRIPTOR, auth_pb2.DESCRIPTOR)
                for n in d.services_by_name]
    services += [health_pb2.DESCRIPTOR.services_by_name["Health"],
                 reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]
    missing = [f"{s.full_name}/{m.name}" for s in services for m in s.methods if auth.rule(f"/{s.full_name}/{m.name}")
               is None]
    assert not missing, f"RPCs without an access rule in coordinator/auth.py: {missing}"
    assert len(services) == 6 and sum(len(s.methods) for s in services) >= 30


def test_no_token_or_a_wrong_one_is_unauthenticated_but_health_is_open(secured: LiveServer) -> None:
    with Client(secured.address, token="") as anon:
        code, msg = code_of(lambda: anon.list_prompts())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in msg
    with Client(secured.address, token="pbt_not-a-real-token") as wrong:
        code, msg = code_of(lambda: wrong.classify([("x", "y")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "pbt_not" not in msg
    with grpc.insecure_channel(secured.address) as ch:
        got = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert got.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as err:
            list(refl.ServerReflectionInfo(iter([ask]), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        names = [s.name for r in refl.ServerReflectionInfo(iter([ask]), timeout=10,
                                                          metadata=[("authorization", f"Bearer {ADMIN}")])
                 for s in r.list_services_response.service]
        assert "promptbank.v1.Tokens" in names


def test_each_role_gets_what_it_may(secured: LiveServer, tokens: dict[str, str]) -> None:
    with Client(secured.address, token=tokens["trainer"]) as trainer:
        job = trainer.create_train_job("auth-task", "enc", DATA, hyperparameters=HP)
        done = trainer.wait_job(job.name, timeout=300)
        assert done.state == jp.TrainJob.SUCCEEDED and done.principal == "t-trainer"
        code, msg = code_of(lambda: trainer.set_alias("auth-task", "prod", 1))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "SetAlias needs the admin role" in msg
        assert "'t-trainer' has the trainer role" in msg
    with Client(secured.address, token=tokens["reader"]) as reader:
        assert reader.classify([("auth-task", "great")])[0].version == "prompts/auth-task/versions/1"
        assert [p.name for p in reader.list_prompts()] == ["prompts/auth-task"]
        code, msg = code_of(lambda: reader.create_train_job("auth-x", "enc", DATA, hyperparameters=HP))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "CreateTrainJob needs the trainer role" in msg
        code, _ = code_of(lambda: reader.list_tokens())
        assert code == grpc.StatusCode.PERMISSION_DENIED
    with Client(secured.address, token=ADMIN) as admin:
        admin.set_alias("auth-task", "prod", 1)
        moved = admin.alias_history("auth-task")[0]
        assert (moved.alias, moved.principal) == ("prod", "admin")
        latest = next(e for e in admin.alias_history("auth-task") if e.alias == "latest")
        assert latest.principal == "t-trainer"  # the job's publish is the submitter's write
        assert admin.get_job(job.name).principal == "t-trainer"
        assert admin.get_version("auth-task/versions/1").lineage.principal == "t-trainer"  # the version too


def test_a_trainer_reaches_only_its_own_jobs(secured: LiveServer, tokens: dict[str, str]) -> None:
    with Client(secured.address, token=ADMIN) as admin:
        other = admin.create_train_job("auth-admin-job", "enc", DATA, hyperparameters=HP)
        admin.wait_job(other.name, timeout=300)
    with Client(secured.address, token=tokens["trainer"]) as trainer:
        mine = trainer.create_train_job("auth-mine", "enc", DATA, hyperparameters=HP)
        trainer.wait_job(mine.name, timeout=300)
        for call in (lambda: trainer.get_job(other.name), lambda: trainer.cancel_job(other.name),
                     lambda: list(trainer.watch_job(other.name, timeout=10))):
            code, msg = code_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "another principal" in msg
        names = [j.name for j in trainer.list_jobs()]
        assert mine.name in names and other.name not in names
    with Client(secured.address, token=ADMIN) as admin:
        assert {other.name, mine.name} <= {j.name for j in admin.list_jobs()}


def test_revoked_and_expired_tokens_stop_working(secured: LiveServer) -> None:
    with Client(secured.address, token=ADMIN) as admin:
        made = time.monotonic()
        short = admin.create_token("t-short", "reader", ttl_seconds=SHORT_TTL_S).secret
        with Client(secured.address, token=short) as c:
            c.list_prompts()  # works before it expires, and is now cached: the cache must not outlive the expiry
            assert time.monotonic() - made < SHORT_TTL_S, "too slow to use the token before it expired"
            time.sleep(max(0.0, made + SHORT_TTL_S + 0.5 - time.monotonic()))
            code, _ = code_of(lambda: c.list_prompts())
            assert code == grpc.StatusCode.UNAUTHENTICATED
        doomed = admin.create_token("t-doomed", "reader").secret
        with Client(secured.address, token=doomed) as c:
            c.list_prompts()  # works, and is now cached
            revoked = admin.revoke_token("t-doomed")
            assert revoked.revoke_time.seconds > 0
            code, _ = code_of(lambda: c.list_prompts())
            assert code == grpc.StatusCode.UNAUTHENTICATED
        listed = {t.name: t for t in admin.list_tokens()}
        assert listed["tokens/t-doomed"].revoke_time.seconds > 0 and listed["tokens/t-short"].expire_time.seconds > 0
        code, msg = code_of(lambda: admin.create_token("t-doomed", "reader"))
        assert code == grpc.StatusCode.ALREADY_EXISTS


def test_the_cli_creates_and_uses_tokens_and_no_secret_is_logged(secured: LiveServer, tokens: dict[str, str],
                                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="promptbank")
    admin_file = tmp_path / "admin.token"
    admin_file.write_text(ADMIN + "\n")
    base = [sys.executable, "-m", "promptbank.cli", "--server", secured.address]
    env = {k: v for k, v in os.environ.items() if k != "PROMPTBANK_TOKEN"}
    made = subprocess.run([*base, "--token-file", str(admin_file), "tokens", "create", "--name", "t-cli",
                           "--role", "reader", "--expires-in", "30d"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("pbt_") and len(secret) >= 40
    listed = subprocess.run([*base, "--token-file", str(admin_file), "tokens", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=60)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"tokens/t-cli", "tokens/t-reader"} <= {r["name"] for r in rows}
    assert secret not in listed.stdout and ADMIN not in listed.stdout
    used = subprocess.run([*base, "prompts", "list"], capture_output=True, text=True, timeout=60,
                          env={**env, "PROMPTBANK_TOKEN": secret})
    assert used.returncode == 0 and "NAME" in used.stdout, used.stderr
    denied = subprocess.run([*base, "tokens", "list"], capture_output=True, text=True, timeout=60,
                            env={**env, "PROMPTBANK_TOKEN": secret})
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr and secret not in denied.stderr
    anon = subprocess.run([*base, "prompts", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert anon.returncode == 1 and "UNAUTHENTICATED" in anon.stderr and "--token-file" in anon.stderr  # the hint
    with Client(secured.address, token="pbt_wrong-secret-value") as wrong:
        code_of(lambda: wrong.list_prompts())
    for s in (ADMIN, secret, tokens["reader"], tokens["trainer"], "pbt_wrong-secret-value"):
        assert s not in caplog.text


def test_auth_off_is_only_for_loopback() -> None:
    with pytest.raises(ValueError, match="--insecure"):
        ServerConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="without TLS"):
        ServerConfig(host="0.0.0.0", auth="tokens")
    assert ServerConfig(host="0.0.0.0", insecure=True).insecure  # allowed when asked for, with a warning
    assert ServerConfig(host="::1").auth == "none" and ServerConfig(host="localhost").host == "localhost"
    with pytest.raises(ValueError, match="auth is off"):
        ServerConfig(admin_token="x")
    assert ADMIN not in repr(ServerConfig(auth="tokens", admin_token=ADMIN))


def test_the_secret_cache_is_bounded() -> None:
    """A stream of wrong secrets cannot grow the coordinator's memory; the admin secret needs no lookup."""
    import asyncio

    looked_up: list[str] = []

    async def lookup(digest: str) -> auth.Grant | None:
        looked_up.append(digest)
        return None

    verify = auth.Verifier(lookup, admin_secret=ADMIN)

    async def run() -> None:
        assert await verify(ADMIN) == auth.Principal("admin", "admin")
        for i in range(auth.CACHE_ITEMS + 50):
            assert await verify(f"pbt_wrong-{i}") is None
        assert await verify("pbt_wrong-0") is None  # cleared or still cached: never a principal

    asyncio.run(run())
    assert len(verify._cache) <= auth.CACHE_ITEMS
    assert secret_hash(ADMIN) not in looked_up and len(looked_up) >= auth.CACHE_ITEMS + 50
    assert secret_hash("pbt_wrong-1") in looked_up  # the bank is asked by hash, never with the secret


def test_every_write_is_in_the_audit_log_with_its_principal(secured: LiveServer, tokens: dict[str, str]) -> None:
    """Deletes and tag changes included: the log outlives what they removed."""
    with Client(secured.address, token=ADMIN) as admin:
        admin.create_prompt("audit-p", ["a", "b"], tags=["x"])
        admin.update_prompt("audit-p", owner="team")
        admin.delete_prompt("audit-p")
        with pytest.raises(grpc.RpcError):
            admin.delete_prompt("audit-p")  # a failed write leaves no row
    with Client(secured.address, token=tokens["reader"]) as reader:
        reader.list_prompts()  # reads are not audited
    with Client(secured.address, token=ADMIN) as admin:
        events = admin.list_audit_events()  # newest first
    rows = [(e.principal, e.method, e.resource) for e in reversed(events)]
    mine = [r for r in rows if r[2].endswith("audit-p")]
    assert mine == [("admin", "CreatePrompt", "prompts/audit-p"), ("admin", "UpdatePrompt", "prompts/audit-p"),
                    ("admin", "DeletePrompt", "prompts/audit-p")]
    assert ("admin", "CreateToken", "tokens/t-reader") in rows and ("t-trainer", "CreateTrainJob", "") not in rows
    assert any(r[0] == "t-trainer" and r[1] == "CreateTrainJob" and r[2].startswith("jobs/") for r in rows)
    assert not any(r[0] == "t-reader" for r in rows)
    assert set(auth.WRITES) <= {m for rules in auth.RULES.values() for m in rules}  # every write has a rule


def test_only_admins_read_the_audit_log_with_its_filters_and_pages(secured: LiveServer, tokens: dict[str, str],
                                                                   tmp_path: Path) -> None:
    for role in ("reader", "trainer"):
        with Client(secured.address, token=tokens[role]) as c:
            code, msg = code_of(lambda: c.list_audit_events())  # noqa: B023 - called at once
            assert code == grpc.StatusCode.PERMISSION_DENIED and "ListAuditEvents needs the admin role" in msg
            code, msg = code_of(lambda: c.deregister_backbone("enc"))  # noqa: B023
            assert code == grpc.StatusCode.PERMISSION_DENIED and "DeregisterBackbone needs the admin role" in msg
    with Client(secured.address, token=ADMIN) as admin:
        started = datetime.now(UTC)
        for name in ("audit-f", "audit-f-2"):
            admin.create_prompt(name, ["a", "b"])
        admin.update_prompt("audit-f", tags=["t"])
        ended = datetime.now(UTC)
        mine = admin.list_audit_events(after=started, before=ended)
        assert [(e.method, e.resource) for e in mine] == [
            ("UpdatePrompt", "prompts/audit-f"), ("CreatePrompt", "prompts/audit-f-2"),
            ("CreatePrompt", "prompts/audit-f")]
        assert all(e.principal == "admin" and e.name.startswith("auditEvents/") for e in mine)
        by_resource = admin.list_audit_events(resource="prompts/audit-f")  # not prompts/audit-f-2
        assert [e.method for e in by_resource] == ["UpdatePrompt", "CreatePrompt"]
        tokens_made = admin.list_audit_events(method="/promptbank.v1.Tokens/CreateToken", principal="admin")
        assert {"tokens/t-reader", "tokens/t-trainer"} <= {e.resource for e in tokens_made}
        assert {e.method for e in tokens_made} == {"CreateToken"}
        assert admin.list_audit_events(principal="t-reader") == []  # a reader wrote nothing

        first = admin.tokens.ListAuditEvents(auth_pb2.ListAuditEventsRequest(page_size=2), timeout=10)
        admin.create_prompt("audit-f-3", ["a", "b"])  # newer events do not shift the next page
        second = admin.tokens.ListAuditEvents(
            auth_pb2.ListAuditEventsRequest(page_size=2, page_token=first.next_page_token), timeout=10)
        ids = [int(e.name.split("/")[1]) for e in [*first.events, *second.events]]
        assert len(ids) == 4 and ids == sorted(ids, reverse=True) and len(set(ids)) == 4
        code, msg = code_of(lambda: admin.tokens.ListAuditEvents(auth_pb2.ListAuditEventsRequest(
            page_size=2, page_token=first.next_page_token, principal="admin"), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "different query" in msg
        code, msg = code_of(lambda: admin.list_audit_events(after=ended, before=started))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "must be earlier" in msg

    admin_file = tmp_path / "admin.token"
    admin_file.write_text(ADMIN)
    base = [sys.executable, "-m", "promptbank.cli", "--server", secured.address, "--token-file", str(admin_file)]
    out = subprocess.run([*base, "audit", "list", "--resource", "prompts/audit-f", "--json"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["method"] for line in out.stdout.splitlines()] == ["UpdatePrompt", "CreatePrompt"]
    out = subprocess.run([*base, "audit", "list", "--method", "CreatePrompt", "--limit", "1"], capture_output=True,
                         text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0].split() == ["TIME", "PRINCIPAL", "METHOD", "RESOURCE"]
    assert len(lines) == 2 and "prompts/audit-f-3" in lines[1] and "--limit N shows more" in out.stderr
    out = subprocess.run([*base, "audit", "list", "--after", "2026-02-01", "--before", "2026-01-01"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must be earlier than --before" in out.stderr and "Traceback" not in out.stderr
