"""LiveEvaluation: outcomes recorded against served rows, alias rollouts (shadow, canary, policy), comparisons
and promotions. The statistics are the bank's and promptbank_domain.evidence's; this maps messages to them."""

from __future__ import annotations

import math

import grpc

from bank import outcomes, rollouts
from bank.writer import BankDB, Tx
from coordinator import auth
from coordinator.config import ServerConfig
from coordinator.live_convert import comparison_to_proto, policy_from_proto, rollout_to_proto
from coordinator.metrics import Metrics
from coordinator.outcome_log import OutcomeLog
from promptbank_api.errors import FailedPrecondition, InvalidArgument
from promptbank_api.names import movable_alias, parse_ref, strip_collection
from promptbank_api.v1 import live_pb2 as live
from promptbank_api.v1 import live_pb2_grpc as live_grpc
from promptbank_domain.evidence import Comparison
from promptbank_domain.live import DEFAULT_MIN_ROWS, Policy, RolloutRecord

MAX_OUTCOMES = 10_000  # outcomes per RecordOutcomes call
MAX_ID_CHARS = 64  # result ids are 32 hex characters; anything much longer is not one
ROLLOUT_FIELDS = ("shadow_version", "shadow_fraction", "canary_version", "canary_fraction", "policy")


def alias_of(name: str, suffix: str = "") -> tuple[str, str]:
    """`prompts/{p}/aliases/{a}` (+ `suffix`) or `p@a` -> (p, a); INVALID_ARGUMENT naming the value otherwise."""
    shape = f"prompts/{{prompt}}/aliases/{{alias}}{suffix}"
    body = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
    if "/aliases/" in body:
        prompt, _, alias = strip_collection(body, "prompts").partition("/aliases/")
    elif "@" in body and "/" not in body:
        prompt, _, alias = body.partition("@")
    else:
        raise InvalidArgument(f"{name!r} is not an alias: give {shape} or task@alias")
    if not prompt or not alias or "/" in alias:
        raise InvalidArgument(f"{name!r} is not an alias: give {shape} or task@alias")
    return prompt, alias


def candidate_of(prompt: str, ref: str, what: str = "candidate") -> int:
    """A version of `prompt` named as `prompts/{p}/versions/{n}` or `p/versions/n` -> n."""
    if not ref:
        raise InvalidArgument(f"{what} is empty: name a version, e.g. prompts/{prompt}/versions/2")
    r = parse_ref(strip_collection(ref, "prompts"))
    if r.version is None:
        raise InvalidArgument(f"{what} {ref!r} names an alias; name a version, e.g. prompts/{prompt}/versions/2")
    if r.prompt != prompt:
        raise InvalidArgument(f"{what} {ref!r} is a version of {r.prompt!r}, not of {prompt!r}")
    return r.version


def margin_of(request: live.CompareVersionsRequest | live.PromoteAliasRequest) -> float | None:
    if not request.HasField("margin"):
        return None
    if not (math.isfinite(request.margin) and 0 <= request.margin <= 1):
        raise InvalidArgument(f"margin={request.margin}: must be in [0, 1] (an accuracy difference)")
    return request.margin


def policy_of(p: live.PromotionPolicy) -> Policy:
    if not (math.isfinite(p.margin) and 0 <= p.margin <= 1):
        raise InvalidArgument(f"policy.margin={p.margin}: must be in [0, 1] (an accuracy difference)")
    if p.min_rows < 0:
        raise InvalidArgument(f"policy.min_rows={p.min_rows}: must be >= 1 (0: the default {DEFAULT_MIN_ROWS})")
    policy = policy_from_proto(p)
    return policy if p.min_rows else Policy(policy.auto, policy.margin, DEFAULT_MIN_ROWS)


def evidence(s: Tx, r: RolloutRecord) -> tuple[Comparison | None, Comparison | None]:
    """The shadow's and the canary's comparisons with the alias's version (None where there is none)."""
    return rollouts.rollout_evidence(s, r.prompt, r.alias)


class LiveEvaluationService(live_grpc.LiveEvaluationServicer):
    def __init__(self, db: BankDB, config: ServerConfig, outcome_log: OutcomeLog | None, metrics: Metrics):
        self.db, self.config, self.outcome_log, self.metrics = db, config, outcome_log, metrics

    async def RecordOutcomes(self, request: live.RecordOutcomesRequest, context: grpc.aio.ServicerContext
                             ) -> live.RecordOutcomesResponse:
        if self.outcome_log is None:
            raise FailedPrecondition("this server keeps no outcomes (--outcome-retention 0): its results carry no "
                                     "ids to record against")
        n = len(request.outcomes)
        if not n or n > MAX_OUTCOMES:
            raise InvalidArgument(f"outcomes has {n} item(s): send 1..{MAX_OUTCOMES} per call")
        for i, o in enumerate(request.outcomes):
            if not o.result_id or len(o.result_id) > MAX_ID_CHARS:
                raise InvalidArgument(f"outcomes[{i}].result_id {o.result_id[:80]!r} is not a result id (the `id` of "
                                      f"a Classify result)")
            if not o.label:
                raise InvalidArgument(f"outcomes[{i}].label is empty: give the row's true label")
            self.config.limits.check_text(o.label, f"outcomes[{i}].label")
        await self.outcome_log.flush()  # rows answered a moment ago are in the bank before they are matched
        pairs = [(o.result_id, o.label) for o in request.outcomes]
        report = await self.db.run(outcomes.record_outcomes, pairs)
        for result, n in (("recorded", report.recorded), ("already", report.already),
                          ("unknown", len(report.unknown)), ("conflicting", len(report.conflicting))):
            if n:
                self.metrics.outcome_results.labels(result).inc(n)
        promoted: list[str] = []
        if report.touched:
            moves = await self.db.run(rollouts.auto_promote, report)
            promoted = [f"prompts/{p}/aliases/{a}" for p, a, _ in moves]
        return live.RecordOutcomesResponse(recorded=report.recorded, already_recorded=report.already,
                                           unknown_ids=report.unknown, conflicting_ids=report.conflicting,
                                           promoted=promoted)

    async def GetRollout(self, request: live.GetRolloutRequest, context: grpc.aio.ServicerContext) -> live.Rollout:
        prompt, alias = alias_of(request.name, "/rollout")

        def q(s: Tx) -> live.Rollout:
            r = rollouts.get_rollout(s, prompt, alias)
            return rollout_to_proto(r, *evidence(s, r))

        return await self.db.read(q)

    async def UpdateRollout(self, request: live.UpdateRolloutRequest, context: grpc.aio.ServicerContext
                            ) -> live.Rollout:
        prompt, alias = alias_of(request.rollout.name, "/rollout")
        movable_alias(alias)
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(f"update_mask is empty: name the fields to change ({', '.join(ROLLOUT_FIELDS)})")
        unknown = [p for p in paths if p not in ROLLOUT_FIELDS]
        if unknown:
            raise InvalidArgument(f"update_mask names {unknown[0]!r}: a rollout's fields are {', '.join(ROLLOUT_FIELDS)}")
        r = request.rollout

        def version(field: str) -> int | None:  # None: left as it is; 0: cleared
            ref = getattr(r, field)
            return None if field not in paths else candidate_of(prompt, ref, field) if ref else 0

        def fraction(field: str) -> float | None:
            value = float(getattr(r, field))
            if field in paths and not math.isfinite(value):
                raise InvalidArgument(f"{field}={value}: must be a finite number")
            return value if field in paths else None

        shadow, canary = version("shadow_version"), version("canary_version")
        shadow_fraction, canary_fraction = fraction("shadow_fraction"), fraction("canary_fraction")
        policy = policy_of(r.policy) if "policy" in paths else None
        who = auth.current().name

        def q(s: Tx) -> live.Rollout:
            rec = rollouts.update_rollout(s, prompt, alias, who, shadow_version=shadow, shadow_fraction=shadow_fraction,
                                          canary_version=canary, canary_fraction=canary_fraction, policy=policy)
            return rollout_to_proto(rec, *evidence(s, rec))

        return await self.db.run(q)

    async def CompareVersions(self, request: live.CompareVersionsRequest, context: grpc.aio.ServicerContext
                              ) -> live.Comparison:
        prompt, alias = alias_of(request.alias)
        candidate = candidate_of(prompt, request.candidate)
        margin = margin_of(request)
        return await self.db.read(lambda s: comparison_to_proto(rollouts.compare(s, prompt, alias, candidate, margin)))

    async def PromoteAlias(self, request: live.PromoteAliasRequest, context: grpc.aio.ServicerContext
                           ) -> live.Promotion:
        prompt, alias = alias_of(request.alias)
        movable_alias(alias)
        candidate = candidate_of(prompt, request.candidate)
        margin = margin_of(request)
        who = auth.current().name

        def q(s: Tx) -> live.Promotion:
            rec, cmp, forced = rollouts.promote(s, prompt, alias, candidate, who, margin=margin, force=request.force)
            return live.Promotion(rollout=rollout_to_proto(rec, *evidence(s, rec)), evidence=comparison_to_proto(cmp),
                                  forced=forced)

        return await self.db.run(q)
