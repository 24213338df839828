"""Live evaluation's read models to messages (and a rollout's update back from one)."""

from __future__ import annotations

from promptbank_api.names import version_name
from promptbank_api.v1 import live_pb2 as live
from promptbank_domain.evidence import Comparison, wilson
from promptbank_domain.live import Accuracy, LiveStatsRecord, Policy, RolloutRecord


def comparison_to_proto(c: Comparison) -> live.Comparison:
    return live.Comparison(
        primary_version=c.primary_version, candidate_version=c.candidate_version, method=c.method, rows=c.rows,
        primary_rows=c.primary_rows, primary_accuracy=c.primary_accuracy, candidate_accuracy=c.candidate_accuracy,
        both_correct=c.paired.both, primary_only=c.paired.primary_only, candidate_only=c.paired.candidate_only,
        neither_correct=c.paired.neither, difference=c.difference, low=c.low, high=c.high, p_value=c.p_value,
        margin=c.margin, clears=c.clears, summary=c.summary)


def accuracy_to_proto(a: Accuracy) -> live.Accuracy:
    low, high = wilson(a.correct, a.labelled)
    return live.Accuracy(served=a.served, labelled=a.labelled, correct=a.correct, accuracy=a.accuracy, low=low,
                         high=high, confusion=[live.ConfusionCell(label=t, predicted=p, count=n)
                                               for (t, p), n in sorted(a.confusion.items())])


def live_stats_to_proto(r: LiveStatsRecord) -> live.LiveStats:
    return live.LiveStats(all_time=accuracy_to_proto(r.all_time), recent=accuracy_to_proto(r.recent),
                          window_seconds=r.window_s)


def rollout_name(prompt: str, alias: str) -> str:
    return f"prompts/{prompt}/aliases/{alias}/rollout"


def rollout_to_proto(r: RolloutRecord, shadow: Comparison | None = None, canary: Comparison | None = None
                     ) -> live.Rollout:
    msg = live.Rollout(
        name=rollout_name(r.prompt, r.alias), version=version_name(r.prompt, r.version),
        shadow_version=version_name(r.prompt, r.shadow_version) if r.shadow_version else "",
        shadow_fraction=r.shadow_fraction,
        canary_version=version_name(r.prompt, r.canary_version) if r.canary_version else "",
        canary_fraction=r.canary_fraction,
        policy=live.PromotionPolicy(auto=r.policy.auto, margin=r.policy.margin, min_rows=r.policy.min_rows))
    if shadow is not None:
        msg.shadow_evidence.CopyFrom(comparison_to_proto(shadow))
    if canary is not None:
        msg.canary_evidence.CopyFrom(comparison_to_proto(canary))
    return msg


def policy_from_proto(p: live.PromotionPolicy) -> Policy:
    return Policy(auto=p.auto, margin=p.margin, min_rows=p.min_rows)
