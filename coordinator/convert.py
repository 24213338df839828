"""API messages <-> domain values: the bank's read models to messages, task specs from messages, request digests
for idempotency, and opaque page tokens."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

import promptbank_kinds as kinds
from coordinator.limits import Limits
from coordinator.live_convert import comparison_to_proto
from promptbank_api.errors import InvalidArgument
from promptbank_api.names import to_timestamp
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_domain.catalog import AliasEventRecord, BackboneRecord, PromptRecord, VersionRecord
from promptbank_domain.evidence import Comparison
from promptbank_domain.jobs import JobEventRecord, JobRecord, JobSpec
from promptbank_domain.task import POOLINGS, TaskSpec
from promptbank_domain.train_config import PARAMS, on_wire

KIND = {k.name: cat.PromptKind.Value(k.proto_enum) for k in kinds.all()}  # promptbank_kinds' names <-> the API's enum
KIND_NAME = {v: k for k, v in KIND.items()}
ARCH = {
    "encoder": cat.ARCHITECTURE_ENCODER,
    "causal_lm": cat.ARCHITECTURE_CAUSAL_LM,
    "seq2seq": cat.ARCHITECTURE_SEQ2SEQ,
    "masked_lm": cat.ARCHITECTURE_MASKED_LM,
}
MAX_PAGE = 1000
MAX_OFFSET = 2**62  # far past any catalog; keeps SQL integers in range
DEFAULT_PAGE = 50
PAGE_BYTES = 1 << 20  # a list page stops once its messages pass this size (or a quarter of the message limit)
Row = TypeVar("Row")
M = TypeVar("M", bound=Message)


def task_from_proto(spec: cat.TaskSpec, limits: Limits) -> TaskSpec:
    """Validate a TaskSpec message: RESOURCE_EXHAUSTED over a limit, INVALID_ARGUMENT naming a bad value."""
    limits.check_task(tuple(spec.labels), tuple(spec.label_texts), tuple(spec.label_words))
    limits.check_chars("description_chars", spec.description, "task.description")
    limits.check_chars("field_chars", spec.kind, "task.kind")
    limits.check_chars("field_chars", spec.pooling, "task.pooling")
    return TaskSpec(
        labels=tuple(spec.labels), label_words=tuple(spec.label_words), label_texts=tuple(spec.label_texts),
        kind=spec.kind or "classification", description=spec.description, pooling=spec.pooling or POOLINGS[0],
    )


def task_from_dict(task: dict[str, Any], limits: Limits) -> TaskSpec:
    """A task spec from untrusted JSON (an adapter's metadata), validated as if a client had sent it."""
    fields = ("kind", "labels", "label_words", "label_texts", "description", "pooling")
    return task_from_proto(cat.TaskSpec(**{f: task[f] for f in fields if f in task}), limits)


def enum_name(enum: Any, value: int, field: str) -> str:
    """The name of an enum value a client sent; one this API does not define is INVALID_ARGUMENT."""
    try:
        return str(enum.Name(value))
    except ValueError:
        raise InvalidArgument(f"{field}={value} is not one of {list(enum.keys())}") from None


def request_digest(request: Message) -> str:
    """Hash of a create request without its request_id: the same id must come with the same payload."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def task_to_proto(task: TaskSpec) -> cat.TaskSpec:
    return cat.TaskSpec(kind=task.kind, labels=task.labels, label_words=task.label_words, label_texts=task.label_texts,
                        description=task.description, pooling=task.pooling)


def backbone_to_proto(bb: BackboneRecord, serving: list[cat.BackboneReplica] | None = None, dtype: str = "") -> cat.Backbone:
    """`serving`: this coordinator's replicas of it (empty when it does not serve the backbone); `dtype` theirs."""
    return cat.Backbone(
        name=f"backbones/{bb.name}", model=bb.model, revision=bb.revision, architecture=ARCH.get(bb.architecture, cat.ARCHITECTURE_UNSPECIFIED),
        hidden_size=bb.hidden_size, fingerprint=bb.fingerprint, replicas=len(serving or []),
        create_time=to_timestamp(bb.created_at), serving=serving or [], deep_prompt_width=bb.deep_width,
        dtype=dtype,
    )


def prompt_to_proto(p: PromptRecord) -> cat.Prompt:
    return cat.Prompt(
        name=f"prompts/{p.name}", task=task_to_proto(p.task), tags=p.tags, owner=p.owner,
        aliases=p.aliases, latest_version=p.latest_version,
        create_time=to_timestamp(p.created_at), update_time=to_timestamp(p.updated_at),
    )


def version_to_proto(v: VersionRecord) -> cat.PromptVersion:
    """The version; its tensor bytes when the record carries them (the bank loads them only when asked)."""
    lin = v.lineage
    return cat.PromptVersion(
        name=v.name, version=v.version, backbone=f"backbones/{v.backbone}",
        backbone_fingerprint=v.backbone_fingerprint, shape=v.shape, dtype=v.dtype, sha256=v.sha256,
        metrics=v.metrics,
        lineage=cat.Lineage(job=lin.get("job", ""), data=lin.get("data", ""), init=lin.get("init", ""),
                            imported_from=lin.get("imported_from", ""), principal=lin.get("principal", "")),
        aliases=v.aliases, tags=v.tags, create_time=to_timestamp(v.created_at),
        tensor=v.tensor, kind=KIND.get(v.kind, KIND[kinds.UNMARKED]),
    )


def alias_event_to_proto(e: AliasEventRecord) -> cat.AliasEvent:
    """One alias change; a promotion's with the comparison it was decided on."""
    return cat.AliasEvent(alias=e.alias, from_version=e.from_version, to_version=e.to_version,
                          time=to_timestamp(e.at), principal=e.principal, action=e.action,
                          evidence=comparison_to_proto(Comparison.from_json(e.evidence)) if e.evidence else None)


def hyperparameters_to_proto(spec: JobSpec) -> jp.Hyperparameters:
    """The job's hyperparameters as it runs them, every field on the wire set (TrainConfig's table says which)."""
    hp = spec.config
    values: dict[str, Any] = {name: getattr(hp, name) for name in on_wire("optional", "text")}
    values |= {name: None for name in on_wire("optional") if PARAMS[name].zero_unset and not values[name]}
    return jp.Hyperparameters(**values | {"init": spec.init or hp.init, "prompt_kind": KIND[hp.prompt_kind]})


def job_to_proto(j: JobRecord) -> jp.TrainJob:
    spec = j.spec
    hp = spec.config
    return jp.TrainJob(
        name=f"jobs/{j.id}", prompt=f"prompts/{j.prompt_name}", backbone=f"backbones/{j.backbone_name}",
        task=task_to_proto(spec.task),
        dataset=jp.Dataset(**{name: getattr(hp, name) for name in on_wire("dataset")}),
        hyperparameters=hyperparameters_to_proto(spec),
        aliases=spec.aliases, state=jp.TrainJob.State.Value(j.state), step=j.step,
        total_steps=j.total_steps, loss=j.loss, metrics=j.metrics,
        error=j.error, result_version=j.result_version, create_time=to_timestamp(j.created_at), start_time=to_timestamp(j.started_at),
        end_time=to_timestamp(j.ended_at), principal=j.principal, attempts=j.attempts,
        lease_owner=j.lease_owner,
    )


def event_to_proto(e: JobEventRecord) -> jp.TrainJobEvent:
    return jp.TrainJobEvent(
        job=f"jobs/{e.job_id}", sequence=e.sequence, kind=jp.TrainJobEvent.Kind.Value(e.kind),
        state=jp.TrainJob.State.Value(e.state), step=e.step, total_steps=e.total_steps, loss=e.loss,
        metrics=e.metrics, examples_per_second=e.examples_per_second,
        eta_seconds=e.eta_seconds, message=e.message, time=to_timestamp(e.at),
    )


def page(page_size: int, page_token: str, query: dict) -> tuple[int, int]:
    """(offset, limit) from a request; the token is opaque and bound to the query's filters."""
    if page_size < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {page_size}")
    limit = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    if not page_token:
        return 0, limit
    try:
        tok = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        offset = int(tok["o"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is not a token this server issued") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgument("page_token is not a token this server issued (offset out of range)")
    if tok.get("q") != query:
        raise InvalidArgument("page_token was issued for a different query; keep the filters unchanged")
    return offset, limit


def position_token(position: int, query: dict) -> str:
    """A page token that `page` reads back as `position`: an offset, or a keyset list's id to continue below."""
    return base64.urlsafe_b64encode(json.dumps({"o": position, "q": query}).encode()).decode()



def next_token(offset: int, limit: int, got: int, query: dict) -> str:
    return "" if got < limit else position_token(offset + got, query)


def page_bytes(limits: Limits) -> int:
    """The encoded size a list page stops at: far below the message limit and any client's default receive limit
    (4 MiB), whatever the rows hold."""
    return min(PAGE_BYTES, limits.message_bytes // 4)


def fill_page(rows: Sequence[Row], to_proto: Callable[[Row], M], offset: int, limit: int, query: dict,
              budget: int) -> tuple[list[M], str]:
    """A page of messages and its next_page_token: the rows, converted, until the page passes `budget` bytes
    (at least one row, so a reader always gets on), and a token whenever more rows may follow."""
    out: list[M] = []
    size = 0
    for row in rows:
        msg = to_proto(row)
        size += msg.ByteSize() + 16  # its field tag and length prefix, with room to spare
        if out and size > budget:
            break
        out.append(msg)
    more = len(out) < len(rows) or len(rows) >= limit
    return out, position_token(offset + len(out), query) if more else ""
