"""TrainJobs: validate a job at the edge, commit it QUEUED, then let the scheduler run it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import grpc

import promptbank_kinds as kinds
from bank import catalog, datasets
from bank import jobs as jobstore
from bank.writer import BankDB, Tx
from coordinator import auth
from coordinator import convert as cv
from coordinator.accepted import accepted
from coordinator.config import ServerConfig
from coordinator.data import check_examples, check_rows, check_uri, inline_rows, load_uri
from coordinator.limits import Limits
from coordinator.pool import ReplicaPool
from coordinator.scheduler import JobScheduler
from promptbank_api.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from promptbank_api.names import check_name, movable_alias, parse_ref, strip_collection
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_api.v1 import jobs_pb2_grpc as jp_grpc
from promptbank_domain import cost
from promptbank_domain.catalog import PromptRecord
from promptbank_domain.jobs import JobRecord, JobSpec
from promptbank_domain.states import TERMINAL_STATES
from promptbank_domain.task import TaskSpec
from promptbank_domain.train_config import INITS, PARAMS, TrainConfig, on_wire


def train_config(hp: jp.Hyperparameters, ds: jp.Dataset, geometry: kinds.Geometry | None = None) -> TrainConfig:
    """TrainConfig's table (`PARAMS`) says where each field travels. Unset optional fields take the defaults of
    the job's prompt kind and set ones are used as given (0 included); empty strings take the defaults. A job
    that names no kind gets `kinds.default_for` the backbone's `geometry` (None: one that carries every kind).
    The dataclass validates the result and names any bad value and its range."""
    unnamed = kinds.DEFAULT if geometry is None else kinds.default_for(geometry).name
    kind = cv.KIND_NAME.get(hp.prompt_kind, "") if hp.prompt_kind else unnamed
    base = TrainConfig.defaults(kind)
    set_hp, set_ds = ({f.name for f, _ in m.ListFields()} for m in (hp, ds))  # optional fields: those the client set
    over: dict[str, Any] = {name: getattr(hp, name) for name in on_wire("optional") if name in set_hp}
    over |= {name: getattr(ds, name) for name in on_wire("dataset") if name in set_ds}
    for name in on_wire("optional"):
        if name in over and PARAMS[name].zero_unset and over[name] < 1:
            raise InvalidArgument(f"{name}={over[name]} is invalid: must be >= 1 (leave it unset for none)")
    over |= {name: getattr(hp, name) or getattr(base, name) for name in on_wire("text")}
    init = over["init"]  # a stored prompt to start from is a reference (or "nearest"), not an init method
    over.update(init=init if init in INITS else base.init, init_from="" if init in INITS else init)
    return replace(base, **over)


def own_job(s: Tx, job_id: str, who: auth.Principal) -> JobRecord:
    """The job, if `who` may see it: an admin every job, a trainer only the jobs it submitted."""
    job = jobstore.get_job(s, job_id)
    if not who.may("admin") and job.principal != who.name:
        raise PermissionDenied(f"job 'jobs/{job_id}' was submitted by another principal; a trainer reaches only "
                               f"its own jobs")
    return job


def check_publisher(p: PromptRecord | None, who: auth.Principal) -> None:
    """A trainer's job publishes versions to (and so moves `latest` and names aliases on) only a prompt it
    created; an admin's anywhere. A prompt that does not exist yet will be the job's own."""
    if p is not None and not who.may("admin") and p.created_by != who.name:
        raise PermissionDenied(f"prompt {p.name!r} was created by another principal: a trainer's job publishes "
                               f"versions and moves aliases only on prompts its principal created; train a prompt "
                               f"of your own, or ask an admin to train this one")


def check_job_fields(job: jp.TrainJob, request_id: str, limits: Limits) -> None:
    """The job's free-text fields within their limits, and no reserved alias, before anything is read."""
    limits.check_chars("field_chars", request_id, "request_id")
    limits.check("job_aliases", len(job.aliases), "job.aliases: aliases")
    for alias in job.aliases:
        movable_alias(alias, "job.aliases names")
    hp, ds = job.hyperparameters, job.dataset
    limits.check_text(hp.init_text, "hyperparameters.init_text")
    for name, value in (("precision", hp.precision), ("select_on", hp.select_on)):
        limits.check_chars("field_chars", value, f"hyperparameters.{name}")
    for name, value in (("text_column", ds.text_column), ("label_column", ds.label_column)):
        limits.check_chars("field_chars", value, f"dataset.{name}")


TASK_FIELDS = ("labels", "label_texts", "label_words", "pooling")  # what a job may say about its prompt's task


def requested_task(spec: cat.TaskSpec, distinct: list[str], limits: Limits) -> tuple[TaskSpec | None, list[str]]:
    """The task a job asks for, and which of TASK_FIELDS it gave: label texts or words without labels pair with
    the data's labels, sorted (the labels' default), so their count is checked rather than the texts dropped."""
    given = [f for f in TASK_FIELDS if getattr(spec, f)]
    if not given:
        return None, given
    full = cat.TaskSpec()
    full.CopyFrom(spec)
    if not full.labels:
        full.labels.extend(distinct)
    return cv.task_from_proto(full, limits), given


def check_labels(task: TaskSpec, rows: list[tuple[str, str]]) -> None:
    unknown = sorted({label for _, label in rows} - set(task.labels))
    if unknown:
        raise InvalidArgument(f"dataset labels {unknown[:10]} are not among the task's labels {list(task.labels)}")


class JobsService(jp_grpc.TrainJobsServicer):
    def __init__(self, db: BankDB, pool: ReplicaPool, scheduler: JobScheduler, config: ServerConfig):
        self.db, self.pool, self.scheduler, self.config = db, pool, scheduler, config
        self.page_bytes = cv.page_bytes(config.limits)  # list pages are bounded in bytes as well as rows
        self._watching: dict[str, int] = {}  # principal -> its WatchTrainJob streams open here

    @contextlib.contextmanager
    def _watch_slot(self, who: str) -> Iterator[None]:
        """One of `who`'s WatchTrainJob slots (RESOURCE_EXHAUSTED past the limit), held while its stream lives."""
        n = self._watching.get(who, 0) + 1
        self.config.limits.check("watch_streams", n, f"WatchTrainJob streams open by {who!r}")
        self._watching[who] = n
        try:
            yield
        finally:
            left = self._watching[who] - 1
            if left:
                self._watching[who] = left
            else:
                del self._watching[who]

    async def CreateTrainJob(self, request: jp.CreateTrainJobRequest, context: grpc.aio.ServicerContext) -> jp.TrainJob:
        job, limits, who = request.job, self.config.limits, auth.current()
        prompt = check_name("prompt", strip_collection(job.prompt, "prompts"))
        backbone = strip_collection(job.backbone, "backbones")
        if not backbone:
            raise InvalidArgument("job.backbone is required (e.g. 'backbones/minilm')")
        check_job_fields(job, request.request_id, limits)
        await self.db.read(lambda s: check_publisher(catalog.find_prompt(s, prompt), who))  # before any data is read
        served = self.pool.get(backbone)  # FAILED_PRECONDITION when not served
        rows, data_ref, note = await self._rows(job.dataset, who)
        distinct = sorted({lab for _, lab in rows})
        if len(distinct) < 2:
            raise InvalidArgument(f"dataset has a single label {distinct}; a classifier needs at least two")
        geometry = kinds.Geometry.of(served.info.hidden_size, served.info.deep)
        cfg = train_config(job.hyperparameters, job.dataset, geometry)
        uncarried = kinds.uncarried(cfg.prompt_kind, geometry, backbone)
        if uncarried:
            raise FailedPrecondition(uncarried)
        room = served.info.max_positions
        if cfg.num_virtual_tokens + cfg.max_length > room:
            raise InvalidArgument(f"num_virtual_tokens={cfg.num_virtual_tokens} + max_length={cfg.max_length} "
                                  f"positions do not fit backbone {backbone!r}, which has {room}")
        if cfg.init_from and cfg.init_from != "nearest":
            parse_ref(cfg.init_from)
        request_hash = cv.request_digest(request)
        examples = datasets.encode_rows(rows)
        requested, given = requested_task(job.task, distinct, limits)
        limits.check("labels", len(distinct), "labels in the data")

        def pick_task(s: Tx) -> TaskSpec:
            existing = catalog.find_prompt(s, prompt)
            if existing is None:
                task = requested or TaskSpec(labels=tuple(distinct))
            else:
                task = existing.task
                if requested and requested.labels != task.labels and "labels" in given:
                    raise FailedPrecondition(
                        f"prompt {prompt!r} has labels {list(task.labels)}, the job asks for {list(requested.labels)}"
                    )
                other = [f for f in given if f != "labels" and requested and getattr(requested, f) != getattr(task, f)]
                if other:  # the stored task decides how rows are read; a job's other value would be ignored
                    f = other[0]
                    raise FailedPrecondition(f"prompt {prompt!r} has {f} {getattr(task, f)!r}, the job asks for "
                                             f"{getattr(requested, f)!r}; a prompt's task is fixed when it is created")
            check_labels(task, rows)
            return task

        task = await self.db.run(pick_task)
        await self.pool.check_task(backbone, task)  # label words/texts usable on this backbone, before any compute
        spec = JobSpec(task=task, config=cfg, aliases=tuple(job.aliases), init_from=cfg.init_from, data_ref=data_ref)
        note = "; ".join(n for n in (note, cost.heavy_note(spec, served.info.architecture)) if n)

        def q(s: Tx) -> jp.TrainJob:
            existing = catalog.find_prompt(s, prompt)
            check_publisher(existing, who)  # again: it may have been created since the first look
            if existing is None:
                catalog.create_prompt(s, prompt, task, created_by=who.name)
            if cfg.init_from and cfg.init_from != "nearest":  # "nearest" is chosen when the job starts
                init_v = catalog.resolve(s, cfg.init_from)
                if init_v.backbone != backbone or init_v.backbone_fingerprint != served.info.fingerprint:
                    raise FailedPrecondition(f"init prompt {cfg.init_from!r} belongs to another backbone")
            j, _ = jobstore.create_job(s, prompt_name=prompt, backbone_name=backbone, spec=spec,
                                       examples=examples, request_id=request.request_id, request_hash=request_hash,
                                       note=note, principal=who.name, inline=job.dataset.HasField("inline"),
                                       quota=limits.upload_storage)
            return cv.job_to_proto(j)

        out = await self.db.run(q)
        self.scheduler.wake()
        return out

    async def _rows(self, ds: jp.Dataset, who: auth.Principal) -> tuple[list[tuple[str, str]], str, str]:
        """The job's examples, validated, and a reference to them for the version's lineage. An upload is
        usable only by the principal that uploaded it (and admins)."""
        limit, which = self.config.limits, ds.WhichOneof("source")
        if which == "inline":
            return check_rows(inline_rows(ds), limit, "dataset.inline"), f"inline:{len(ds.inline.examples)} rows", ""
        if which != "uri" or not ds.uri:
            raise InvalidArgument("dataset is empty: send examples in dataset.inline or name them in dataset.uri")
        check_uri(ds.uri, limit)
        if ds.uri.startswith("datasets/"):
            data_id = ds.uri.removeprefix("datasets/")
            mine = None if who.may("admin") else who.name
            rows = await self.db.read(lambda s: datasets.dataset_rows(s, data_id, mine))
            return check_rows(rows, limit, ds.uri), ds.uri, ""
        rows, note = await asyncio.to_thread(load_uri, ds.uri, ds.text_column, ds.label_column,
                                             self.config.data_roots, self.config.allow_hub)
        return check_rows(rows, limit, f"dataset {ds.uri!r}"), ds.uri, note

    async def UploadDataset(self, request_iterator, context: grpc.aio.ServicerContext) -> jp.UploadedDataset:  # type: ignore[no-untyped-def]
        """Rows are checked and spooled chunk by chunk (never held whole in memory); every limit stops the
        stream as soon as it is passed."""
        limits, who = self.config.limits, auth.current().name
        used = await self.db.run(lambda s: datasets.stored_bytes(s, who))
        spool, request_id = datasets.UploadSpool(), ""
        try:
            async for chunk in request_iterator:
                request_id = request_id or chunk.request_id
                limits.check_chars("field_chars", request_id, "request_id")
                rows = [(ex.text, ex.label) for ex in chunk.examples]
                check_examples(rows, limits, "the upload", first=spool.rows)
                spool.add(rows)
                limits.check("train_examples", spool.rows, "the upload: examples")
                limits.check("upload_bytes", spool.size, "the upload: bytes")
                limits.check("upload_storage", used + spool.size, f"uploads and inline examples by {who!r}: bytes")
            if not spool.rows:
                raise InvalidArgument("the upload is empty: a train job needs labelled examples")

            def q(s: Tx) -> jp.UploadedDataset:
                up = datasets.save_upload(s, spool, request_id, who, limits.upload_storage)
                return jp.UploadedDataset(name=f"datasets/{up.id}", rows=up.rows, label_counts=up.label_counts)

            return await self.db.run(q)
        finally:
            spool.close()

    async def GetTrainJob(self, request: jp.GetTrainJobRequest, context: grpc.aio.ServicerContext) -> jp.TrainJob:
        job_id, who = strip_collection(request.name, "jobs"), auth.current()
        return await self.db.read(lambda s: cv.job_to_proto(own_job(s, job_id, who)))

    async def ListTrainJobs(self, request: jp.ListTrainJobsRequest, context: grpc.aio.ServicerContext) -> jp.ListTrainJobsResponse:
        state = cv.enum_name(jp.TrainJob.State, request.state, "state") if request.state else ""
        query = {"state": state, "prompt": strip_collection(request.prompt, "prompts")}
        offset, limit = cv.page(request.page_size, request.page_token, query)

        who = auth.current()
        mine = None if who.may("admin") else who.name  # a trainer lists its own jobs

        def q(s: Tx) -> jp.ListTrainJobsResponse:
            rows = jobstore.list_jobs(s, offset, limit, state=state, prompt=query["prompt"], principal=mine)
            out, token = cv.fill_page(rows, cv.job_to_proto, offset, limit, query, self.page_bytes)
            return jp.ListTrainJobsResponse(jobs=out, next_page_token=token)

        return await self.db.read(q)

    async def CancelTrainJob(self, request: jp.CancelTrainJobRequest, context: grpc.aio.ServicerContext) -> jp.TrainJob:
        job_id, who = strip_collection(request.name, "jobs"), auth.current()

        def q(s: Tx) -> jp.TrainJob:
            own_job(s, job_id, who)
            return cv.job_to_proto(jobstore.request_cancel(s, job_id))

        out = await self.db.run(q)
        await self.scheduler.cancel(job_id)
        await self.scheduler.notify()
        return out

    async def WatchTrainJob(
        self, request: jp.WatchTrainJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jp.TrainJobEvent]:
        job_id, who = strip_collection(request.name, "jobs"), auth.current()
        if request.after_sequence < 0:
            raise InvalidArgument(f"after_sequence={request.after_sequence} must be >= 0 (0: from the first event)")
        await self.db.read(lambda s: own_job(s, job_id, who))  # NOT_FOUND / PERMISSION_DENIED before streaming
        with self._watch_slot(who.name):
            await accepted(context)  # a REST stream opens now, before the job's next event
            async for ev in self._events(job_id, request.after_sequence):
                yield ev

    async def _events(self, job_id: str, seq: int) -> AsyncIterator[jp.TrainJobEvent]:
        """The job's events after `seq`, as they are persisted, until it has ended and all were sent."""
        while True:
            def q(s: Tx, after: int = seq) -> tuple[list[jp.TrainJobEvent], str]:
                evs = jobstore.events_after(s, job_id, after)
                return [cv.event_to_proto(e) for e in evs], jobstore.get_job(s, job_id).state

            events, state = await self.db.read(q)
            for ev in events:
                seq = ev.sequence
                yield ev
            if state in TERMINAL_STATES and not events:
                return
            async with self.scheduler.changed:
                try:
                    await asyncio.wait_for(self.scheduler.changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass
