"""The Python SDK: a thin, typed wrapper over the gRPC API with a deadline on every call."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from promptbank.admin_calls import AdminCalls
from promptbank.catalog_calls import CatalogCalls, task_spec
from promptbank.checks import address, integer, pair, seconds, strings
from promptbank.checks import rows as _rows
from promptbank.credentials import BearerToken
from promptbank.errors import DeadlineExceeded, TypedErrors, Unavailable, said
from promptbank.generation import Generation, GenerationResult, Message
from promptbank.generation import request as generate_request
from promptbank.live_calls import LiveCalls, routing_keys
from promptbank.retry import MAX_BACKOFF_S, channel_options
from promptbank_api.names import job_name
from promptbank_api.v1 import auth_pb2_grpc as ap_grpc
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import inference_pb2_grpc as inf_grpc
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_api.v1 import jobs_pb2_grpc as jp_grpc
from promptbank_api.v1 import live_pb2_grpc as lv_grpc
from promptbank_domain.states import TERMINAL_STATES

RpcError = grpc.RpcError
DEFAULT_SERVER = "localhost:50051"
RECONNECT_FOR_S = 300.0  # how long watching a job rides out a coordinator that does not answer
TERMINAL = {jp.TrainJob.State.Value(s) for s in TERMINAL_STATES}


@dataclass(frozen=True)
class Prediction:
    """One classified row. `id` is the result's id: send the row's true label back with it
    (`Client.record_outcomes`); empty when the server keeps no outcomes. `canary` is True when an alias's canary
    answered (then `version` names the canary)."""

    prompt: str
    text: str
    version: str
    label: str
    scores: dict[str, float] = field(default_factory=dict)
    id: str = ""
    canary: bool = False


def _prediction(prompt: str, text: str, r: inf.ClassifyResult) -> Prediction:
    return Prediction(prompt, text, r.version, r.label, {s.label: s.score for s in r.scores}, r.id, r.canary)


PEM = str | Path | bytes


def _pem(value: PEM | None, name: str) -> bytes | None:
    """PEM bytes from bytes or a file path; what is not PEM is refused here, naming it (gRPC would take it and
    fail every handshake: DEADLINE_EXCEEDED, or abort the process)."""
    if value is None:
        return None
    data = value if isinstance(value, bytes) else Path(value).read_bytes()
    if b"-----BEGIN " not in data:
        shown = "the bytes given" if isinstance(value, bytes) else str(value)
        raise ValueError(f"{name} {shown} is not PEM (no -----BEGIN line)")
    return data


# Bytes of examples per upload message: far below the server's default receive limit (96 MiB), so long texts
# never make one chunk too large to send.
UPLOAD_CHUNK_BYTES = 8 << 20


class Client(CatalogCalls, AdminCalls, LiveCalls):
    """`Client("localhost:50051", token=..., tls_ca=...)`; every unary call carries `timeout` seconds as its
    deadline. `token` (default: env PROMPTBANK_TOKEN) is sent as a bearer token on every call. `tls_ca` (a PEM
    file or its bytes; default: env PROMPTBANK_TLS_CA) turns TLS on and is the CA the server's certificate
    must chain to; `tls_cert` and `tls_key` present a client certificate (mutual TLS). Reads, Classify and
    creates are retried on UNAVAILABLE (promptbank/retry.py); `wait_for_ready=True` makes them wait out an
    unreachable server, such as a coordinator restarting, up to their deadline instead of failing at once.
    A failed call raises its status's class from `promptbank.errors` (`NotFound`, `InvalidArgument`, ...), each
    a `grpc.RpcError`, streams included. The admin calls (backbones, tokens, the audit log) are in
    promptbank/admin_calls.py; outcomes, rollouts and promotion in promptbank/live_calls.py."""

    def __init__(self, server: str | None = None, timeout: float = 60.0, max_message_bytes: int = 256 << 20,
                 token: str | None = None, tls_ca: PEM | None = None, tls_cert: PEM | None = None,
                 tls_key: PEM | None = None, wait_for_ready: bool = False):
        self.server = address(server) if server is not None else os.environ.get("PROMPTBANK_SERVER") or DEFAULT_SERVER
        self.timeout = seconds(timeout)
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes), *channel_options(wait_for_ready)]
        tls_ca = tls_ca if tls_ca is not None else os.environ.get("PROMPTBANK_TLS_CA") or None
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both (the --tls-cert and --tls-key files) or "
                             "neither")
        if tls_ca is not None or tls_cert is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca, "tls_ca"),
                                                 private_key=_pem(tls_key, "tls_key"),
                                                 certificate_chain=_pem(tls_cert, "tls_cert"))
            self._raw = grpc.secure_channel(self.server, creds, options=opts)
        else:
            self._raw = grpc.insecure_channel(self.server, options=opts)
        secret = token if token is not None else os.environ.get("PROMPTBANK_TOKEN", "")
        self.channel = grpc.intercept_channel(self._raw, TypedErrors(), *([BearerToken(secret)] if secret else []))
        self.tokens = ap_grpc.TokensStub(self.channel)
        self.catalog = cat_grpc.PromptCatalogStub(self.channel)
        self.jobs = jp_grpc.TrainJobsStub(self.channel)
        self.inference = inf_grpc.InferenceStub(self.channel)
        self.live = lv_grpc.LiveEvaluationStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self._raw.close()

    def _deadline(self, timeout: float | None) -> float:
        """A call's deadline: its own `timeout`, checked, or the client's."""
        return self.timeout if timeout is None else seconds(timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ health

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server answers its health check SERVING; `DeadlineExceeded` when it does not answer
        within `timeout` (the check waits for the channel to come up)."""
        try:
            resp = self._health.Check(  # type: ignore[attr-defined]  # types-grpcio-health-checking's HealthStub lists no methods
                health_pb2.HealthCheckRequest(), timeout=seconds(timeout), wait_for_ready=True)
        except DeadlineExceeded:
            raise said(DeadlineExceeded, f"server {self.server} did not answer within {timeout:g} s (is it "
                                         f"running there, and is the address right?)") from None
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"server {self.server} is {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")

    # ------------------------------------------------------------ inference

    def classify(self, rows: Iterable[tuple[str, str]], timeout: float | None = None, *,
                 routing_key: str | Sequence[str] | None = None) -> list[Prediction]:
        """Classify (prompt reference, text) rows; rows may name different tasks. `routing_key` keeps a caller on
        one side of an alias's canary: one string for every row, or a list with one key per row (None: each row
        is routed at random)."""
        rows = _rows(rows, "classify")
        keys = routing_keys(routing_key, len(rows), "classify")
        req = inf.ClassifyRequest(rows=[inf.ClassifyRow(prompt=p, text=t, routing_key=k)
                                        for (p, t), k in zip(rows, keys, strict=True)])
        resp = self.inference.Classify(req, timeout=self._deadline(timeout))
        return [_prediction(p, t, r) for (p, t), r in zip(rows, resp.results, strict=True)]

    def classify_ensemble(self, rows: Iterable[tuple[Sequence[str], str]], timeout: float | None = None, *,
                          routing_key: str | Sequence[str] | None = None) -> list[Prediction]:
        """Rows of ([ref, more refs of the same task...], text): scores averaged over the refs in one forward.
        `routing_key` as in `classify`."""
        rows = [(strings(refs, f"row {i}'s prompts"), t)
                for i, (refs, t) in enumerate(_rows(rows, "classify_ensemble", both=False))]
        empty = [i for i, (refs, _) in enumerate(rows) if not refs]
        if empty:
            raise ValueError(f"classify_ensemble: row {empty[0]} names no prompt; give at least one reference")
        keys = routing_keys(routing_key, len(rows), "classify_ensemble")
        req = inf.ClassifyRequest(rows=[inf.ClassifyRow(prompt=r[0], ensemble=r[1:], text=t, routing_key=k)
                                        for (r, t), k in zip(rows, keys, strict=True)])
        resp = self.inference.Classify(req, timeout=self._deadline(timeout))
        return [_prediction("+".join(refs), t, r) for (refs, t), r in zip(rows, resp.results, strict=True)]

    def generate(self, prompt: str | None, text: str = "", max_new_tokens: int | None = None, temperature: float = 0.0,
                 seed: int = 0, timeout: float | None = None, *, top_p: float | None = None, top_k: int | None = None,
                 stop: Sequence[str] | str = (), backbone: str | None = None,
                 messages: Iterable[Message] | None = None) -> Generation:
        """Stream generated text pieces (causal-LM and seq2seq backbones) under `prompt`, or under no prompt with
        `backbone` (trainer role). `text` is the input, or `messages` a chat of (role, content) rendered with the
        backbone's chat template. Iterate the result for the pieces; its `finish_reason` ("length", "stop", "eos",
        "cancelled"), `prompt_tokens` and `generated_tokens` are set once it ends (`result()` drains it)."""
        req = generate_request(prompt, text, max_new_tokens, temperature, seed, top_p, top_k, stop, backbone,
                               messages)
        return Generation(self.inference.Generate(req, timeout=self._deadline(timeout)))

    def generate_full(self, prompt: str | None, text: str = "", max_new_tokens: int | None = None,
                      temperature: float = 0.0, seed: int = 0, timeout: float | None = None,
                      **options: Any) -> GenerationResult:
        """`generate` read to its end: the whole text, its finish reason and token counts."""
        return self.generate(prompt, text, max_new_tokens, temperature, seed, timeout, **options).result()

    # ------------------------------------------------------------ training

    def upload_dataset(self, examples: Iterable[tuple[str, str]], chunk_rows: int = 5000,
                       request_id: str | None = None, timeout: float = 600,
                       chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> jp.UploadedDataset:
        """Stream a large dataset in chunks of at most `chunk_rows` rows and about `chunk_bytes` bytes (each
        message well under the server's receive limit, whatever the texts' lengths); pass the returned name as
        `dataset_uri` to create_train_job."""
        rid = request_id or uuid.uuid4().hex
        chunk_rows = integer(chunk_rows, "chunk_rows", 1, 1 << 30)
        refused: list[TypeError] = []  # a bad row ends the stream (grpc would say only UNKNOWN); raised below

        def chunks() -> Iterator[jp.UploadDatasetRequest]:
            batch: list[jp.Example] = []
            first, size = True, 0
            for i, row in enumerate(examples):
                try:
                    text, label = pair(row, i, "upload_dataset")
                except TypeError as exc:
                    refused.append(exc)
                    raise
                batch.append(jp.Example(text=text, label=label))
                size += len(text.encode()) + len(label.encode()) + 8  # + the fields' framing
                if len(batch) >= chunk_rows or size >= chunk_bytes:
                    yield jp.UploadDatasetRequest(request_id=rid if first else "", examples=batch)
                    batch, first, size = [], False, 0
            if batch or first:
                yield jp.UploadDatasetRequest(request_id=rid if first else "", examples=batch)

        try:
            return self.jobs.UploadDataset(chunks(), timeout=timeout)
        except grpc.RpcError:
            if refused:
                raise refused[0] from None
            raise

    def create_train_job(
        self,
        prompt: str,
        backbone: str,
        examples: Sequence[tuple[str, str]] = (),
        *,
        dataset_uri: str = "",
        text_column: str = "",
        label_column: str = "",
        labels: Sequence[str] = (),
        label_texts: Sequence[str] = (),
        label_words: Sequence[str] = (),
        description: str = "",
        pooling: str = "",
        hyperparameters: jp.Hyperparameters | None = None,
        eval_fraction: float | None = None,
        aliases: Sequence[str] = (),
        request_id: str | None = None,
    ) -> jp.TrainJob:
        """Submit a job; it is committed QUEUED before this returns. A fresh request_id makes retries safe.

        Data: `examples` inline, or `dataset_uri` = an upload (`datasets/{id}`), a file path on the coordinator
        or a hub dataset id (with `text_column` / `label_column`). `eval_fraction` None: the server's default;
        0: no held-out split. Hyperparameters left unset take the server's defaults.
        """
        examples = _rows(examples, "create_train_job", "text")
        if dataset_uri and examples:
            raise ValueError(f"create_train_job: give examples or dataset_uri, not both ({len(examples)} examples "
                             f"and dataset_uri={dataset_uri!r})")
        dataset = (jp.Dataset(uri=dataset_uri, text_column=text_column, label_column=label_column) if dataset_uri
                   else jp.Dataset(inline=jp.InlineExamples(examples=[jp.Example(text=t, label=lab)
                                                                      for t, lab in examples])))
        if eval_fraction is not None:
            dataset.eval_fraction = eval_fraction
        job = jp.TrainJob(
            prompt=f"prompts/{prompt}",
            backbone=backbone if backbone.startswith("backbones/") else f"backbones/{backbone}",
            task=task_spec(labels, label_texts, label_words, description, pooling),
            dataset=dataset,
            hyperparameters=hyperparameters or jp.Hyperparameters(),
            aliases=strings(aliases, "aliases"),
        )
        req = jp.CreateTrainJobRequest(job=job, request_id=request_id or uuid.uuid4().hex)
        return self.jobs.CreateTrainJob(req, timeout=self.timeout)

    def get_job(self, job: str) -> jp.TrainJob:
        return self.jobs.GetTrainJob(jp.GetTrainJobRequest(name=job_name(job)), timeout=self.timeout)

    def list_jobs(self, state: jp.TrainJob.State.ValueType = jp.TrainJob.STATE_UNSPECIFIED, prompt: str = "",
                  page_size: int = 0) -> list[jp.TrainJob]:
        req = jp.ListTrainJobsRequest(page_size=page_size, state=state, prompt=f"prompts/{prompt}" if prompt else "")
        return self._all_pages(self.jobs.ListTrainJobs, req, "jobs")

    def cancel_job(self, job: str) -> jp.TrainJob:
        return self.jobs.CancelTrainJob(jp.CancelTrainJobRequest(name=job_name(job)), timeout=self.timeout)

    def watch_job(self, job: str, timeout: float = 24 * 3600, reconnect_for: float = RECONNECT_FOR_S,
                  on_retry: Callable[[str], None] | None = None) -> Iterator[jp.TrainJobEvent]:
        """Every event of the job from the first, until it ends (deadline `timeout` for the whole stream).
        A stream dropped by a coordinator restart (UNAVAILABLE) is reopened after the last event seen, so
        nothing is missed or repeated, for up to `reconnect_for` seconds without an answer (then Unavailable
        says so); `on_retry` hears once per outage that the connection was lost."""
        deadline = time.monotonic() + seconds(timeout)
        seen, backoff, lost_since = 0, 0.25, None
        while True:
            request = jp.WatchTrainJobRequest(name=job_name(job), after_sequence=seen)
            try:
                for ev in self.jobs.WatchTrainJob(request, timeout=max(deadline - time.monotonic(), 0.001)):
                    seen, backoff, lost_since = ev.sequence, 0.25, None
                    yield ev
                return
            except Unavailable as err:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    if on_retry is not None:
                        on_retry(f"lost the connection to {self.server} ({err.details() or 'unavailable'}); "
                                 f"retrying for up to {reconnect_for:g} s")
                if now - lost_since + backoff > reconnect_for:
                    raise said(Unavailable, f"no answer from {self.server}: gave up retrying after "
                                            f"{now - lost_since:.0f} s (the reconnect limit is {reconnect_for:g} s); "
                                            f"{err.details()}") from None
                if deadline - now <= backoff:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def wait_job(self, job: str, timeout: float = 24 * 3600) -> jp.TrainJob:
        for _ in self.watch_job(job, timeout):
            pass
        return self.get_job(job)
