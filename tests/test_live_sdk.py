"""Live evaluation through the Python SDK against a real coordinator: result ids and canary flags on predictions,
routing keys, record_outcomes in chunks, the rollout calls, comparison and promotion; and the SDK's own checks of
its arguments, made before anything is sent."""

from __future__ import annotations

import json
import re

import pytest

from coordinator.rollout import share
from promptbank import Client, OutcomeSummary
from promptbank.errors import FailedPrecondition
from promptbank.live_calls import OUTCOMES_PER_CALL, alias_ref, version_ref
from promptbank.retry import READS, channel_options
from promptbank_domain.evidence import paired
from promptbank_domain.live import PairedCounts
from tests.test_server import DATA, train

TEXTS = sorted({t for t, _ in DATA})
TRUTH = dict(DATA)


def two_versions(c: Client, prompt: str) -> tuple[str, str]:
    """Versions 1 (alias prod) and 2 of one task, trained on different data so they may disagree."""
    v1 = train(c, prompt, aliases=["prod"]).result_version
    v2 = train(c, prompt, data=DATA[::3]).result_version
    return v1, v2


# ------------------------------------------------------------ checks made here (no server needed)


def test_alias_and_version_refs_become_resource_names_or_a_value_error_naming_them() -> None:
    assert alias_ref("sentiment@prod").name == "prompts/sentiment/aliases/prod"
    assert alias_ref("prompts/sentiment/aliases/prod").rollout == "prompts/sentiment/aliases/prod/rollout"
    ref = alias_ref("sentiment@prod")
    for given in (4, "4", "sentiment/versions/4", "prompts/sentiment/versions/4"):
        assert version_ref(given, ref) == "prompts/sentiment/versions/4"
    for bad in ("sentiment", "sentiment/versions/2", "Sentiment@prod", "a@b@c", "", "prompts/x/aliases/"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            alias_ref(bad)
    with pytest.raises(ValueError, match=r"'other/versions/2' is a version of 'other', not of 'sentiment'"):
        version_ref("other/versions/2", ref)
    for bad_version in ("sentiment@canary", 0, "x", True):
        with pytest.raises(ValueError, match="must name a version"):
            version_ref(bad_version, ref)


def test_bad_arguments_are_refused_before_a_call_leaves() -> None:
    with Client("localhost:1", timeout=1) as c:  # nothing listens there: a call that left would fail otherwise
        with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\], got 0"):
            c.set_shadow("s@prod", 2, fraction=0)
        with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\], got 1.5"):
            c.set_canary("s@prod", 2, 1.5)
        with pytest.raises(ValueError, match=r"margin must be a number in \[0, 1\], got nan"):
            c.compare("s@prod", 2, margin=float("nan"))
        with pytest.raises(ValueError, match="min_rows must be a whole number >= 0, got -1"):
            c.set_policy("s@prod", True, margin=0.1, min_rows=-1)
        with pytest.raises(TypeError, match="auto must be True or False"):
            c.set_policy("s@prod", "yes", margin=0.1, min_rows=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="alias must be 'task@alias'"):
            c.promote("s", 2)
        with pytest.raises(ValueError, match="routing_key has 1 keys for 2 rows"):
            c.classify([("s", "a"), ("s", "b")], routing_key=["k"])
        with pytest.raises(TypeError, match="routing_key must hold strings, got 7"):
            c.classify([("s", "a")], routing_key=[7])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="item 1 is 'ab'"):
            c.record_outcomes([("id", "pos"), "ab"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="item 0 \\(result id 'id'\\) has no label"):
            c.record_outcomes({"id": ""})
        with pytest.raises(ValueError, match=f"chunk must be a whole number in 1..{OUTCOMES_PER_CALL}"):
            c.record_outcomes([("id", "pos")], chunk=OUTCOMES_PER_CALL + 1)
        assert c.record_outcomes([]) == OutcomeSummary()  # nothing to send: no call


def test_record_outcomes_and_the_rollout_reads_are_retried_and_promotion_is_not() -> None:
    assert set(READS["promptbank.v1.LiveEvaluation"]) == {"RecordOutcomes", "GetRollout", "UpdateRollout",
                                                          "CompareVersions"}
    config = json.loads(dict(channel_options())["grpc.service_config"])
    named = {(n["service"], n["method"]) for mc in config["methodConfig"] for n in mc["name"]}
    assert ("promptbank.v1.LiveEvaluation", "RecordOutcomes") in named
    assert ("promptbank.v1.LiveEvaluation", "PromoteAlias") not in named


# ------------------------------------------------------------ against the server


def test_predictions_carry_ids_and_outcomes_go_back_in_chunks(client: Client) -> None:
    v1 = train(client, "sdk-live", aliases=["prod"]).result_version
    preds = client.classify([("sdk-live@prod", t) for t in TEXTS], routing_key="user-1")
    assert len({p.id for p in preds}) == len(TEXTS) and all(len(p.id) == 32 and int(p.id, 16) >= 0 for p in preds)
    assert all(p.version == v1 and not p.canary for p in preds)
    ens = client.classify_ensemble([(["sdk-live@prod", v1], TEXTS[0])], routing_key=["k"])
    assert len(ens[0].id) == 32 and ens[0].id not in {p.id for p in preds}

    pairs = [(p.id, TRUTH[p.text]) for p in preds]
    done = client.record_outcomes(pairs, chunk=3)  # 8 outcomes in calls of 3, 3 and 2
    assert done == OutcomeSummary(recorded=len(TEXTS))
    flipped = {"positive": "negative", "negative": "positive"}[TRUTH[preds[0].text]]
    again = client.record_outcomes({preds[0].id: flipped, preds[1].id: TRUTH[preds[1].text], "f" * 32: "positive"})
    assert (again.recorded, again.already, again.unknown, again.conflicting) == (0, 1, ("f" * 32,), (preds[0].id,))

    live = client.get_version(v1).live
    correct = sum(p.label == TRUTH[p.text] for p in preds)
    assert (live.all_time.labelled, live.all_time.correct) == (len(TEXTS), correct)
    assert live.all_time.served >= len(TEXTS) and live.recent.labelled == len(TEXTS)


def test_shadow_canary_policy_comparison_and_promotion(client: Client) -> None:
    v1, v2 = two_versions(client, "sdk-roll")
    r = client.set_shadow("sdk-roll@prod", 2)
    assert (r.version, r.shadow_version, r.shadow_fraction) == (v1, v2, 1.0)
    assert client.rollout("prompts/sdk-roll/aliases/prod").shadow_version == v2
    assert client.set_shadow("sdk-roll@prod", v2, fraction=0.5).shadow_fraction == 0.5
    client.set_shadow("sdk-roll@prod", "sdk-roll/versions/2", fraction=1)
    preds = client.classify([("sdk-roll@prod", t) for t in TEXTS])
    assert all(p.version == v1 and not p.canary for p in preds)  # a shadow never answers
    client.record_outcomes([(p.id, TRUTH[p.text]) for p in preds])

    alone1 = client.classify([(v1, t) for t in TEXTS])
    alone2 = client.classify([(v2, t) for t in TEXTS])
    right = [(a.label == TRUTH[a.text], b.label == TRUTH[b.text]) for a, b in zip(alone1, alone2, strict=True)]
    counts = PairedCounts(sum(a and b for a, b in right), sum(a and not b for a, b in right),
                          sum(b and not a for a, b in right), sum(not a and not b for a, b in right))
    want = paired(v1, v2, counts, 0.0)
    cmp = client.compare("sdk-roll@prod", 2, margin=0.0)
    assert (cmp.method, cmp.rows, cmp.clears) == ("paired", len(TEXTS), want.clears)
    assert cmp.low == pytest.approx(want.low) and cmp.p_value == pytest.approx(want.p_value)
    assert cmp.margin == 0.0 and cmp.summary

    if not want.clears:  # margin 0 on 8 rows: the interval reaches below 0 unless v2 is far better
        with pytest.raises(FailedPrecondition) as refused:
            client.promote("sdk-roll@prod", 2, margin=0.0)
        assert f"{want.low:+.4f}" in refused.value.details()
        assert client.rollout("sdk-roll@prod").version == v1  # not moved
    moved = client.promote("sdk-roll@prod", "prompts/sdk-roll/versions/2", margin=0.0, force=not want.clears)
    assert moved.rollout.version == v2 and moved.forced == (not want.clears)
    assert moved.rollout.shadow_version == ""  # the shadow was the candidate: cleared by the move
    event = client.alias_history("sdk-roll")[0]
    assert (event.alias, event.action, event.to_version) == ("prod", "promote", 2)
    assert event.evidence.method == "paired" and event.evidence.rows == len(TEXTS)

    # a canary on everything answers every row and says so; cleared, the alias's version answers again
    r = client.set_canary("sdk-roll@prod", v1, 1.0)
    assert (r.canary_version, r.canary_fraction) == (v1, 1.0)
    answered = client.classify([("sdk-roll@prod", t) for t in TEXTS], routing_key="someone")
    assert all(p.version == v1 and p.canary for p in answered)
    r = client.clear_canary("sdk-roll@prod")
    assert r.canary_version == "" and r.canary_fraction == 0.0
    assert not any(p.canary for p in client.classify([("sdk-roll@prod", TEXTS[0])]))

    r = client.set_policy("sdk-roll@prod", True, margin=0.25, min_rows=5)
    assert (r.policy.auto, r.policy.margin, r.policy.min_rows) == (True, 0.25, 5)
    r = client.set_policy("sdk-roll@prod", False)  # margin and min_rows left as they were
    assert (r.policy.auto, r.policy.margin, r.policy.min_rows) == (False, 0.25, 5)


def test_a_canary_is_sticky_per_routing_key(client: Client) -> None:
    v1, v2 = two_versions(client, "sdk-canary")
    client.set_canary("sdk-canary@prod", v2, 0.5)
    keys = [f"user-{i}" for i in range(24)]
    first = client.classify([("sdk-canary@prod", TEXTS[0])] * len(keys), routing_key=keys)
    again = client.classify([("sdk-canary@prod", TEXTS[1])] * len(keys), routing_key=keys)
    assert [p.version for p in first] == [p.version for p in again]  # the same key, the same side
    assert [p.canary for p in first] == [share("sdk-canary", "prod", k) < 0.5 for k in keys]
    assert {p.version for p in first} == {v1, v2}
    assert all(p.version == (v2 if p.canary else v1) for p in first)


def test_an_automatic_policy_promotes_when_outcomes_clear_it(client: Client) -> None:
    v1, v2 = two_versions(client, "sdk-auto")
    client.set_shadow("sdk-auto@prod", v2)
    client.set_policy("sdk-auto@prod", True, margin=1.0, min_rows=4)  # margin 1: any evidence on 4 rows clears
    preds = client.classify([("sdk-auto@prod", t) for t in TEXTS[:3]])
    assert client.record_outcomes([(p.id, TRUTH[p.text]) for p in preds]).promoted == ()  # 3 rows: too few
    preds = client.classify([("sdk-auto@prod", t) for t in TEXTS[3:]])
    done = client.record_outcomes([(p.id, TRUTH[p.text]) for p in preds])
    assert done.promoted == ("prompts/sdk-auto/aliases/prod",)
    assert client.rollout("sdk-auto@prod").version == v2
    event = client.alias_history("sdk-auto")[0]
    assert (event.action, event.principal, event.from_version, event.to_version) == ("promote", "policy", 1, 2)
