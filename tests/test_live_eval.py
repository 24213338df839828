"""Live evaluation through a real coordinator: result ids and outcomes, a shadow scored in the same forward and
compared on the same rows, sticky canaries, promotion on evidence (refused, forced, by policy), with the
move's evidence in the alias history and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import live_pb2 as live
from promptbank_api.v1 import live_pb2_grpc as live_grpc
from tests.conftest import LiveServer
from tests.pg_fixtures import fresh_db_url
from tests.test_server import DATA, code_of, train

TEXTS = sorted({t for t, _ in DATA})
TRUTH = dict(DATA)


@pytest.fixture()
def stub(server: LiveServer) -> Iterator[live_grpc.LiveEvaluationStub]:
    with grpc.insecure_channel(server.address) as ch:
        yield live_grpc.LiveEvaluationStub(ch)


def classify(client: Client, ref: str, texts: list[str], keys: list[str] | None = None) -> list[inf.ClassifyResult]:
    rows = [inf.ClassifyRow(prompt=ref, text=t, routing_key=(keys[i] if keys else "")) for i, t in enumerate(texts)]
    return list(client.inference.Classify(inf.ClassifyRequest(rows=rows), timeout=60).results)


def record(stub: live_grpc.LiveEvaluationStub, pairs: list[tuple[str, str]]) -> live.RecordOutcomesResponse:
    req = live.RecordOutcomesRequest(outcomes=[live.Outcome(result_id=i, label=lab) for i, lab in pairs])
    return stub.RecordOutcomes(req, timeout=60)


def set_rollout(stub: live_grpc.LiveEvaluationStub, prompt: str, alias: str, **fields: object) -> live.Rollout:
    policy = fields.pop("policy", None)
    r = live.Rollout(name=f"prompts/{prompt}/aliases/{alias}/rollout", **fields)  # type: ignore[arg-type]
    paths = list(fields)
    if policy is not None:
        r.policy.CopyFrom(policy)  # type: ignore[arg-type]
        paths.append("policy")
    return stub.UpdateRollout(live.UpdateRolloutRequest(rollout=r, update_mask=FieldMask(paths=paths)), timeout=60)


def two_versions(client: Client, prompt: str) -> tuple[str, str]:
    """Versions 1 (alias prod) and 2 of one task, trained differently so they disagree on some rows."""
    v1 = train(client, prompt, aliases=["prod"]).result_version
    v2 = train(client, prompt, data=DATA[::3]).result_version
    return v1, v2


def test_results_carry_ids_and_outcomes_build_live_accuracy(client: Client, stub: live_grpc.LiveEvaluationStub) -> None:
    v1 = train(client, "live-acc", aliases=["prod"]).result_version
    results = classify(client, "live-acc@prod", TEXTS)
    ids = [r.id for r in results]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(r.version == v1 and not r.canary for r in results)
    first = record(stub, [(r.id, TRUTH[t]) for r, t in zip(results, TEXTS, strict=True)])
    assert (first.recorded, first.already_recorded, list(first.unknown_ids)) == (len(TEXTS), 0, [])
    flipped = {"positive": "negative", "negative": "positive"}[TRUTH[TEXTS[2]]]
    again = record(stub, [(ids[0], TRUTH[TEXTS[0]]), (ids[1], TRUTH[TEXTS[1]]), (ids[2], flipped), ("0" * 32, "positive")])
    assert (again.recorded, again.already_recorded) == (0, 2)
    assert list(again.unknown_ids) == ["0" * 32] and list(again.conflicting_ids) == [ids[2]]  # the first label stands
    correct = sum(r.label == TRUTH[t] for r, t in zip(results, TEXTS, strict=True))
    stats = client.get_version(v1).live
    for span in (stats.all_time, stats.recent):
        assert (span.served, span.labelled, span.correct) == (len(TEXTS), len(TEXTS), correct)
        assert span.low <= span.accuracy <= span.high and abs(span.accuracy - correct / len(TEXTS)) < 1e-9
        assert sum(c.count for c in span.confusion) == len(TEXTS)
        assert sum(c.count for c in span.confusion if c.label == c.predicted) == correct
    assert stats.window_seconds == 24 * 3600
    # a label the task does not have is refused whole, naming it; nothing of that batch is kept
    more = classify(client, "live-acc@prod", TEXTS[:2])
    code, msg = code_of(lambda: record(stub, [(more[0].id, "positive"), (more[1].id, "neutral")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "neutral" in msg
    assert client.get_version(v1).live.all_time.labelled == len(TEXTS)
    code, msg = code_of(lambda: record(stub, []))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outcomes" in msg


def test_shadow_is_scored_in_the_same_forward_and_compared_on_the_same_rows(
        client: Client, stub: live_grpc.LiveEvaluationStub) -> None:
    v1, v2 = two_versions(client, "live-shadow")
    rollout = set_rollout(stub, "live-shadow", "prod", shadow_version=v2)
    assert rollout.version == v1 and rollout.shadow_version == v2 and rollout.shadow_fraction == 1.0
    results = classify(client, "live-shadow@prod", TEXTS)
    assert all(r.version == v1 and not r.canary for r in results)  # the shadow never answers
    alone1 = classify(client, v1, TEXTS)  # each version pinned, on its own
    alone2 = classify(client, v2, TEXTS)
    assert [r.label for r in results] == [r.label for r in alone1]
    record(stub, [(r.id, TRUTH[t]) for r, t in zip(results, TEXTS, strict=True)])
    ev = stub.GetRollout(live.GetRolloutRequest(name="prompts/live-shadow/aliases/prod/rollout"), timeout=60)
    e = ev.shadow_evidence
    assert e.method == "paired" and e.rows == len(TEXTS) and e.candidate_version == v2 and e.primary_version == v1
    right1 = [a.label == TRUTH[t] for a, t in zip(alone1, TEXTS, strict=True)]
    right2 = [a.label == TRUTH[t] for a, t in zip(alone2, TEXTS, strict=True)]
    # the shadow's labels, recorded from the shared forward, are the ones v2 gives alone
    assert e.both_correct == sum(a and b for a, b in zip(right1, right2, strict=True))
    assert e.primary_only == sum(a and not b for a, b in zip(right1, right2, strict=True))
    assert e.candidate_only == sum(b and not a for a, b in zip(right1, right2, strict=True))
    assert abs(e.candidate_accuracy - sum(right2) / len(TEXTS)) < 1e-9
    assert e.low <= e.difference <= e.high and 0 <= e.p_value <= 1 and e.summary
    # the shadow's own live accuracy counts the rows it scored
    assert client.get_version(v2).live.all_time.labelled == len(TEXTS)
    cleared = set_rollout(stub, "live-shadow", "prod", shadow_version="")
    assert cleared.shadow_version == "" and not cleared.HasField("shadow_evidence")


def routed(server: LiveServer, route: str) -> float:
    return server.coord.metrics.registry.get_sample_value("promptbank_classify_routed_rows_total", {"route": route}) or 0


def test_canary_answers_its_share_sticky_per_routing_key(server: LiveServer, client: Client,
                                                         stub: live_grpc.LiveEvaluationStub) -> None:
    v1, v2 = two_versions(client, "live-canary")
    canaries_before = routed(server, "canary")
    set_rollout(stub, "live-canary", "prod", canary_version=v2, canary_fraction=0.5)
    keys = [f"user-{i}" for i in range(48)]
    texts = [TEXTS[i % len(TEXTS)] for i in range(48)]
    first = classify(client, "live-canary@prod", texts, keys)
    second = classify(client, "live-canary@prod", texts, keys)
    assert [r.canary for r in first] == [r.canary for r in second]  # sticky per key
    assert all(r.version == (v2 if r.canary else v1) for r in first + second)
    assert 8 <= sum(r.canary for r in first) <= 40  # about half of 48 keys (binomial, p ~ 1e-6 outside)
    assert routed(server, "canary") - canaries_before == 2 * sum(r.canary for r in first)
    set_rollout(stub, "live-canary", "prod", canary_fraction=0.0)
    assert not any(r.canary for r in classify(client, "live-canary@prod", texts, keys))
    set_rollout(stub, "live-canary", "prod", canary_fraction=1.0)
    assert all(r.canary and r.version == v2 for r in classify(client, "live-canary@prod", texts, keys))
    # a pinned version has no rollout: it answers itself
    assert all(not r.canary and r.version == v1 for r in classify(client, v1, texts[:4]))


def test_promotion_needs_evidence_or_force_and_is_recorded(client: Client, stub: live_grpc.LiveEvaluationStub) -> None:
    v1, v2 = two_versions(client, "live-promote")
    req = live.PromoteAliasRequest(alias="prompts/live-promote/aliases/prod", candidate=v2, margin=0.0)
    code, msg = code_of(lambda: stub.PromoteAlias(req, timeout=60))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no outcomes" in msg
    assert client.get_version("live-promote@prod").name == v1  # not moved
    cmp = stub.CompareVersions(live.CompareVersionsRequest(alias="live-promote@prod", candidate=v2), timeout=60)
    assert cmp.method == "none" and not cmp.clears
    forced = stub.PromoteAlias(live.PromoteAliasRequest(alias=req.alias, candidate=v2, force=True), timeout=60)
    assert forced.forced and forced.rollout.version == v2
    assert client.get_version("live-promote@prod").name == v2
    history = client.catalog.ListAliasHistory(cat.ListAliasHistoryRequest(parent="prompts/live-promote"), timeout=60)
    top = history.events[0]
    assert (top.alias, top.from_version, top.to_version, top.action) == ("prod", 1, 2, "promote")
    assert top.evidence.candidate_version == v2 and top.principal == "local"
    events = client.list_audit_events(method="PromoteAlias", resource="prompts/live-promote")
    assert events and "no outcomes" in events[0].detail and events[0].principal == "local"
    # bad requests name what is wrong
    for bad, word in ((live.PromoteAliasRequest(alias="live-promote@prod", candidate="other/versions/1"), "other"),
                      (live.PromoteAliasRequest(alias="live-promote@latest", candidate=v1), "latest"),
                      (live.PromoteAliasRequest(alias="live-promote", candidate=v1), "alias"),
                      (live.PromoteAliasRequest(alias="live-promote@prod", candidate=v1, margin=2.0), "margin")):
        code, msg = code_of(lambda bad=bad: stub.PromoteAlias(bad, timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and word in msg, (bad, msg)


def test_policy_promotes_the_shadow_once_its_evidence_clears(client: Client, stub: live_grpc.LiveEvaluationStub) -> None:
    v1, v2 = two_versions(client, "live-policy")
    set_rollout(stub, "live-policy", "prod", shadow_version=v2,
                policy=live.PromotionPolicy(auto=True, margin=1.0, min_rows=len(TEXTS)))  # a margin anything clears
    results = classify(client, "live-policy@prod", TEXTS)
    part = record(stub, [(r.id, TRUTH[t]) for r, t in zip(results[:-1], TEXTS[:-1], strict=True)])
    assert list(part.promoted) == [] and client.get_version("live-policy@prod").name == v1  # one row short
    last = record(stub, [(results[-1].id, TRUTH[TEXTS[-1]])])
    assert list(last.promoted) == ["prompts/live-policy/aliases/prod"]
    assert client.get_version("live-policy@prod").name == v2
    after = stub.GetRollout(live.GetRolloutRequest(name="prompts/live-policy/aliases/prod/rollout"), timeout=60)
    assert after.version == v2 and after.shadow_version == ""  # the shadow became the alias's version
    top = client.catalog.ListAliasHistory(cat.ListAliasHistoryRequest(parent="prompts/live-policy"), timeout=60).events[0]
    assert (top.action, top.principal, top.to_version) == ("promote", "policy", 2)


def test_rollout_updates_are_checked(client: Client, stub: live_grpc.LiveEvaluationStub) -> None:
    v1, v2 = two_versions(client, "live-checks")
    for fields, word in (({"shadow_version": v1}, "version"), ({"canary_fraction": 1.5}, "fraction"),
                         ({"shadow_fraction": 0.0}, "fraction"), ({"canary_version": "live-acc/versions/1"}, "live-acc")):
        code, msg = code_of(lambda fields=fields: set_rollout(stub, "live-checks", "prod", **fields))
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION) and word in msg, msg
    code, msg = code_of(lambda: stub.UpdateRollout(live.UpdateRolloutRequest(
        rollout=live.Rollout(name="prompts/live-checks/aliases/prod/rollout"), update_mask=FieldMask(paths=["colour"])),
        timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "colour" in msg
    code, msg = code_of(lambda: set_rollout(stub, "live-checks", "nosuch", shadow_version=v2))
    assert code == grpc.StatusCode.NOT_FOUND and "nosuch" in msg
    moved = set_rollout(stub, "live-checks", "prod", shadow_version=v2, shadow_fraction=0.25)
    assert moved.shadow_fraction == 0.25
    history = client.catalog.ListAliasHistory(cat.ListAliasHistoryRequest(parent="prompts/live-checks"), timeout=60)
    assert history.events[0].action == "shadow" and history.events[0].to_version == 2


def test_the_whole_loop_on_postgresql(request: pytest.FixtureRequest, ray_session: None, tiny_encoder: str,
                                      tmp_path: Path) -> None:
    """Results, a shadow, outcomes and a policy promotion with the bank on a real PostgreSQL server."""
    cfg = ServerConfig(port=0, db=fresh_db_url(request, "postgresql", tmp_path), grace_seconds=1.0, worker_cpus=0.25, data_roots=(str(tmp_path),),
                       backbones=(BackboneSpec("tiny-enc", tiny_encoder),))
    pg = LiveServer(cfg)
    try:
        with Client(pg.address, timeout=60) as c, grpc.insecure_channel(pg.address) as ch:
            s = live_grpc.LiveEvaluationStub(ch)
            v1, v2 = two_versions(c, "live-pg")
            set_rollout(s, "live-pg", "prod", shadow_version=v2,
                        policy=live.PromotionPolicy(auto=True, margin=1.0, min_rows=len(TEXTS)))
            results = classify(c, "live-pg@prod", TEXTS)
            assert all(r.version == v1 and len(r.id) == 32 for r in results)
            done = record(s, [(r.id, TRUTH[t]) for r, t in zip(results, TEXTS, strict=True)])
            assert done.recorded == len(TEXTS) and list(done.promoted) == ["prompts/live-pg/aliases/prod"]
            assert c.get_version("live-pg@prod").name == v2
            assert c.get_version(v1).live.all_time.labelled == len(TEXTS)
            assert c.get_version(v2).live.all_time.labelled == len(TEXTS)  # as the shadow
    finally:
        pg.stop()


def test_a_server_that_keeps_no_outcomes_gives_no_ids(ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, db=str(tmp_path / "bank.db"), grace_seconds=1.0, worker_cpus=0.25,
                       outcome_retention_days=0, backbones=(BackboneSpec("tiny-enc", tiny_encoder),))
    off = LiveServer(cfg)
    try:
        with Client(off.address, timeout=60) as c, grpc.insecure_channel(off.address) as ch:
            s = live_grpc.LiveEvaluationStub(ch)
            v1 = train(c, "live-off", aliases=["prod"]).result_version
            results = classify(c, "live-off@prod", TEXTS[:4])
            assert [r.id for r in results] == [""] * 4 and all(r.version == v1 for r in results)
            code, msg = code_of(lambda: record(s, [("a" * 32, "positive")]))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "--outcome-retention" in msg
            assert c.get_version(v1).live.all_time.served == 0
    finally:
        off.stop()
