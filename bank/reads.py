"""ORM rows -> the domain's read models, built inside the session that loaded the rows: what bank functions
return, so no row, lazy relationship or session leaves bank/."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bank.models import Alias, AliasEvent, AuditEvent, Backbone, Job, JobEvent, Prompt, PromptVersion, Token
from promptbank_domain.catalog import (
    AliasEventRecord,
    BackboneRecord,
    PromptRecord,
    ServedVersion,
    VersionRecord,
)
from promptbank_domain.jobs import JobEventRecord, JobRecord, JobSpec
from promptbank_domain.states import JobState
from promptbank_domain.task import TaskSpec
from promptbank_domain.tokens import AuditRecord, TokenRecord


def alias_map(s: Session, prompt_id: int) -> dict[str, int]:
    rows = s.execute(select(Alias.name, PromptVersion.version).join(PromptVersion, Alias.version_id == PromptVersion.id)
                     .where(Alias.prompt_id == prompt_id)).all()
    return {name: number for name, number in rows}


def version_aliases(s: Session, version_id: int) -> list[str]:
    return sorted(s.scalars(select(Alias.name).where(Alias.version_id == version_id)).all())


def backbone(bb: Backbone) -> BackboneRecord:
    return BackboneRecord(name=bb.name, model=bb.model, revision=bb.revision, architecture=bb.architecture,
                          hidden_size=bb.hidden_size, fingerprint=bb.fingerprint,
                          deep_layers=bb.deep_layers, deep_kv_heads=bb.deep_kv_heads, deep_head_dim=bb.deep_head_dim,
                          created_at=bb.created_at)


def prompt(s: Session, p: Prompt) -> PromptRecord:
    return PromptRecord(name=p.name, task=TaskSpec.from_dict(p.task), tags=tuple(p.tags or ()), owner=p.owner,
                        created_by=p.created_by, latest_version=p.latest_version, aliases=alias_map(s, p.id),
                        created_at=p.created_at, updated_at=p.updated_at)


def version(s: Session, v: PromptVersion, *, tensor: bool = False) -> VersionRecord:
    """`tensor`: load the deferred bytes too (only when the caller needs them)."""
    return VersionRecord(
        prompt=v.prompt.name, version=v.version, backbone=v.backbone.name, backbone_fingerprint=v.backbone_fingerprint,
        sha256=v.sha256, shape=tuple(int(x) for x in v.shape), kind=v.kind, dtype=v.dtype,
        metrics={k: float(x) for k, x in (v.metrics or {}).items()}, lineage=dict(v.lineage or {}),
        tags=tuple(v.tags or ()), aliases=tuple(version_aliases(s, v.id)), created_at=v.created_at,
        tensor=v.tensor if tensor else b"",
    )


def served(v: PromptVersion) -> ServedVersion:
    return ServedVersion(prompt=v.prompt.name, version=f"prompts/{v.prompt.name}/versions/{v.version}",
                         sha256=v.sha256, backbone=v.backbone.name, fingerprint=v.backbone_fingerprint,
                         task=TaskSpec.from_dict(v.prompt.task), n_virtual=int(v.shape[0]), id=v.id)


def alias_event(e: AliasEvent) -> AliasEventRecord:
    return AliasEventRecord(alias=e.alias, from_version=e.from_version, to_version=e.to_version, at=e.at,
                            principal=e.principal, action=e.action, evidence=dict(e.evidence or {}))


def job(j: Job) -> JobRecord:
    return JobRecord(
        id=j.id, prompt_name=j.prompt_name, backbone_name=j.backbone_name, spec=JobSpec.from_json(j.spec),
        state=JobState(j.state), step=j.step, total_steps=j.total_steps, loss=j.loss,
        metrics={k: float(x) for k, x in (j.metrics or {}).items()}, error=j.error, result_version=j.result_version,
        cancel_requested=j.cancel_requested, attempts=j.attempts, lease_owner=j.lease_owner, principal=j.principal,
        created_at=j.created_at, started_at=j.started_at, ended_at=j.ended_at,
    )


def job_event(e: JobEvent) -> JobEventRecord:
    return JobEventRecord(
        job_id=e.job_id, sequence=e.sequence, kind=e.kind, state=JobState(e.state), step=e.step,
        total_steps=e.total_steps, loss=e.loss, metrics={k: float(x) for k, x in (e.metrics or {}).items()},
        examples_per_second=e.examples_per_second, eta_seconds=e.eta_seconds, message=e.message, at=e.at,
    )


def token(t: Token) -> TokenRecord:
    return TokenRecord(name=t.name, role=t.role, creator=t.creator, created_at=t.created_at, expires_at=t.expires_at,
                       revoked_at=t.revoked_at)


def audit_event(e: AuditEvent) -> AuditRecord:
    return AuditRecord(at=e.at, principal=e.principal, rpc=e.rpc, resource=e.resource, id=e.id, detail=e.detail)
