"""`python -m coordinator` (what `promptbank serve` runs): parse flags into a ServerConfig and serve."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys
from pathlib import Path

from coordinator import logs
from coordinator.config import LOG_FORMATS, BackboneSpec, ServerConfig, default_db, packaged_minilm
from coordinator.limits import FLAGS, LIMIT_HELP, Limits
from coordinator.server import serve_forever
from promptbank_api.errors import PromptBankError
from promptbank_domain.precision import SERVING_DTYPES

HTTP_PORT = 8051  # the REST/JSON and console port unless --http-port says otherwise


def read_secret(path: str | None, flag: str, fallback: str) -> str:
    """A secret from a file (stripped), else `fallback` (its environment variable)."""
    if not path:
        return fallback
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"{flag} {path}: {exc.strerror}") from None
    if not secret:
        raise ValueError(f"{flag} {path} is empty")
    return secret


def finite(text: str) -> float:
    """A number flag's value: NaN and infinity pass every `<` check unnoticed, so they stop here."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def gpus(text: str) -> float | str:
    """--worker-gpus: a finite number, or "auto"."""
    return "auto" if text.strip().lower() == "auto" else finite(text)


def parse_resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    try:
        return name.strip(), float(amount) if sep else float("nan")
    except ValueError:
        raise ValueError(f"--worker-resource {text!r}: use NAME=AMOUNT, e.g. accelerator_a100=1") from None


def parse(argv: list[str] | None = None) -> ServerConfig:
    ap = argparse.ArgumentParser(prog="promptbank serve", description="Run the promptbank coordinator.")
    ap.add_argument("--host", default=os.environ.get("PROMPTBANK_HOST", "127.0.0.1"), help="bind address")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PROMPTBANK_PORT", "50051")), metavar="PORT",
                    help="the gRPC port (env PROMPTBANK_PORT; default 50051; 0 = any free port)")
    ap.add_argument("--health-port", type=int, default=int(os.environ.get("PROMPTBANK_HEALTH_PORT", "0")),
                    help="also serve grpc.health.v1 alone, in plaintext, on this port: for Kubernetes' built-in "
                         "gRPC probe (env PROMPTBANK_HEALTH_PORT; default 0 = off)")
    ap.add_argument("--http-port", type=int, default=None, metavar="PORT",
                    help="serve REST/JSON and the web console at http://HOST:PORT/ (HTTPS with --tls-cert; same "
                         f"auth and limits as gRPC; env PROMPTBANK_HTTP_PORT). Default {HTTP_PORT}, or any free port "
                         "when that one is taken; 0: off")
    ap.add_argument("--http-header-timeout", type=finite, default=ServerConfig.http_header_timeout_s, metavar="SECONDS",
                    help="close an HTTP connection whose request headers (or next request) do not arrive within this "
                         f"(default {ServerConfig.http_header_timeout_s:g})")
    ap.add_argument("--http-body-timeout", type=finite, default=ServerConfig.http_body_timeout_s, metavar="SECONDS",
                    help="refuse (408) and close an HTTP request whose body sends nothing for this long "
                         f"(default {ServerConfig.http_body_timeout_s:g})")
    ap.add_argument("--http-max-connections", type=int, default=ServerConfig.http_max_connections, metavar="N",
                    help=f"open HTTP connections at most; more are answered 503 and closed "
                         f"(default {ServerConfig.http_max_connections})")
    ap.add_argument("--db", default=os.environ.get("PROMPTBANK_DB", default_db()),
                    help=f"SQLite file path or SQLAlchemy URL (postgresql://...) (env PROMPTBANK_DB; default {default_db()})")
    ap.add_argument("--ray-address", default=os.environ.get("PROMPTBANK_RAY_ADDRESS", ""),
                    help="'' starts a local Ray; 'auto' or 'ray://host:10001' joins a cluster")
    ap.add_argument("--backbone", action="append", default=[], metavar="NAME=MODEL",
                    help="backbone to serve (model id or path, optional @revision); repeatable. "
                         "Default: minilm = packaged all-MiniLM-L6-v2")
    ap.add_argument("--replicas", "--min-replicas", dest="replicas", type=int, default=1, metavar="N",
                    help="replicas (Ray actors) per backbone (default 1); with --max-replicas, the fewest it scales "
                         "down to")
    ap.add_argument("--max-replicas", type=int, default=0, metavar="N",
                    help="scale each backbone's replicas up to N while its micro-batcher's queue waits "
                         "(default: no autoscaling)")
    ap.add_argument("--scale-up-wait", type=finite, default=ServerConfig.scale_up_wait_ms, metavar="MS",
                    help="add a replica when rows waited this long on average over the last second "
                         f"(default {ServerConfig.scale_up_wait_ms:g})")
    ap.add_argument("--scale-down-after", type=finite, default=ServerConfig.scale_down_after_s, metavar="SECONDS",
                    help=f"remove a replica idle this long (default {ServerConfig.scale_down_after_s:g})")
    ap.add_argument("--worker-cpus", type=finite, default=0.0, help="Ray CPUs reserved per replica (default 1)")
    ap.add_argument("--worker-gpus", type=gpus, default=None, metavar="N|auto",
                    help="Ray GPUs per replica, fractions share a GPU; N > 1 splits a backbone by layers over its "
                         "N GPUs; 'auto': per backbone, the fewest GPUs its weights in --dtype fit (needs each GPU's "
                         "memory: --worker-gpu-memory, or nvidia-smi here). Default: 1 when the cluster has GPUs, "
                         "else 0")
    ap.add_argument("--worker-gpu-memory", type=finite, default=0.0, metavar="GIB",
                    help="memory of each GPU, for placement estimates (default: read with nvidia-smi where the "
                         "coordinator runs; unknown otherwise, and then each GPU replica checks its own)")
    ap.add_argument("--dtype", choices=list(SERVING_DTYPES), default="auto",
                    help="serving precision of the backbones started here: 'auto' (bf16 on GPUs that have it, fp16 "
                         "on other GPUs, fp32 on CPUs; default), bf16, fp16 or fp32. Prompts stay fp32 in the bank")
    ap.add_argument("--worker-resource", action="append", default=[], metavar="NAME=AMOUNT",
                    help="a Ray custom resource each replica needs, e.g. a node pool's; repeatable")
    ap.add_argument("--placement", choices=["spread", "pack"], default=ServerConfig.placement,
                    help="spread a backbone's replicas over Ray's nodes, or pack them (default spread)")
    ap.add_argument("--placement-timeout", type=finite, default=ServerConfig.placement_timeout_s, metavar="SECONDS",
                    help="fail a replica that Ray cannot place and start within this, naming what it needs "
                         f"(default {ServerConfig.placement_timeout_s:g})")
    ap.add_argument("--generate-batching", choices=["on", "off"], default="on",
                    help="Generate: batch each replica's generations continuously (on), or decode each one alone on "
                         "its own thread, at most 8 at a time per replica (off; the path benchmarks compare against)")
    ap.add_argument("--generate-max-seqs", type=int, default=ServerConfig.generate_max_seqs, metavar="N",
                    help="rows in a replica's running generation batch at most; more wait in a FIFO queue "
                         f"(default {ServerConfig.generate_max_seqs})")
    ap.add_argument("--generate-max-cached-tokens", type=int, default=ServerConfig.generate_max_cached_tokens,
                    metavar="N", help="key/value cache positions a replica holds for its running batch (rows x the "
                    "longest row's prompt + text + max_new_tokens); a request that alone needs more is "
                    f"RESOURCE_EXHAUSTED (default {ServerConfig.generate_max_cached_tokens})")
    ap.add_argument("--data-root", action="append", default=[], metavar="DIR",
                    help="a directory whose files train jobs may name in dataset.uri; repeatable "
                         "(env PROMPTBANK_DATA_ROOTS, ':'-separated). Default: none; clients send rows instead")
    ap.add_argument("--auth", choices=["none", "tokens"], default=os.environ.get("PROMPTBANK_AUTH", "none"),
                    help="'none' (loopback binds only: every local caller is an admin) or 'tokens': bearer tokens "
                         "with roles (env PROMPTBANK_AUTH)")
    ap.add_argument("--admin-token-file", metavar="FILE",
                    help="a file holding a secret that acts as an admin token (env PROMPTBANK_ADMIN_TOKEN)")
    ap.add_argument("--insecure", action="store_true",
                    help="allow binding a non-loopback address without TLS (and, with --auth none, without tokens)")
    ap.add_argument("--allow-model", action="append", default=[], metavar="PATTERN",
                    help="hub model ids RegisterBackbone may load (fnmatch, e.g. 'sentence-transformers/*'); "
                         "repeatable. Default: none")
    ap.add_argument("--model-root", action="append", default=[], metavar="DIR",
                    help="a directory whose models RegisterBackbone may load; repeatable. Default: none")
    ap.add_argument("--allow-hub", action="store_true",
                    help="let train jobs name Hugging Face hub datasets (default: files under --data-root only)")
    ap.add_argument("--db-password-file", metavar="FILE",
                    help="the database password, kept off the command line (env PROMPTBANK_DB_PASSWORD)")
    ap.add_argument("--tls-cert", default="", metavar="FILE", help="PEM certificate chain: serve TLS (with --tls-key)")
    ap.add_argument("--tls-key", default="", metavar="FILE", help="PEM private key of --tls-cert")
    ap.add_argument("--tls-client-ca", default="", metavar="FILE",
                    help="PEM CA: require client certificates it signed (mutual TLS)")
    ap.add_argument("--grace", type=finite, default=ServerConfig.grace_seconds, metavar="SECONDS",
                    help="on SIGTERM: how long in-flight calls may finish and running jobs may checkpoint "
                         f"(default {ServerConfig.grace_seconds:g})")
    ap.add_argument("--job-lease", type=finite, default=ServerConfig.job_lease_s, metavar="SECONDS",
                    help="a running job's lease, renewed every third of it; after a crash another coordinator "
                         f"resumes the job once it lapses (default {ServerConfig.job_lease_s:g})")
    ap.add_argument("--train-max-attempts", type=int, default=ServerConfig.train_max_attempts, metavar="N",
                    help="dispatches of one job (a dead replica or coordinator costs one) before it fails "
                         f"(default {ServerConfig.train_max_attempts})")
    ap.add_argument("--audit-retention-days", type=finite, default=ServerConfig.audit_retention_days, metavar="DAYS",
                    help="delete audit events older than this, at start and on each write (default "
                         f"{ServerConfig.audit_retention_days:g}; 0: keep them)")
    ap.add_argument("--audit-max-rows", type=int, default=ServerConfig.audit_max_rows, metavar="N",
                    help=f"keep at most about the newest N audit events (default {ServerConfig.audit_max_rows}; 0: no "
                         "bound)")
    ap.add_argument("--outcome-retention", type=finite, default=ServerConfig.outcome_retention_days, metavar="DAYS",
                    help="keep each classified row this long so its true label can be recorded (RecordOutcomes); "
                         f"default {ServerConfig.outcome_retention_days:g}; 0: keep none (results carry no id)")
    ap.add_argument("--outcome-max-rows", type=int, default=ServerConfig.outcome_max_rows, metavar="N",
                    help=f"keep at most about the newest N classified rows (default {ServerConfig.outcome_max_rows}; "
                         "0: no bound); versions' totals outlive them")
    ap.add_argument("--outcome-window-hours", type=finite, default=ServerConfig.outcome_window_hours, metavar="HOURS",
                    help=f"the span of a version's recent live accuracy (default {ServerConfig.outcome_window_hours:g})")
    for flag, name in FLAGS.items():  # one flag per row of the limits table
        default = getattr(Limits(), name)
        ap.add_argument(flag, type=int, default=default, metavar="N",
                        help=f"limit: {LIMIT_HELP[name]} (default {default})")
    ap.add_argument("--metrics-port", type=int, default=os.environ.get("PROMPTBANK_METRICS_PORT", "0"), metavar="PORT",
                    help="serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no auth; "
                         "env PROMPTBANK_METRICS_PORT). Default 0: off")
    ap.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("PROMPTBANK_LOG_FORMAT", "text"),
                    help="'text' or 'json': one object per line with the RPC, principal and job "
                         "(env PROMPTBANK_LOG_FORMAT)")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="the least severe log records written (default INFO)")
    a = ap.parse_args(argv)
    try:
        backbones = tuple(BackboneSpec.parse(b, a.replicas, a.dtype) for b in a.backbone)
        if not backbones:
            backbones = (BackboneSpec("minilm", packaged_minilm(), replicas=a.replicas, dtype=a.dtype),)
        roots = a.data_root or [r for r in os.environ.get("PROMPTBANK_DATA_ROOTS", "").split(":") if r]
        admin = read_secret(a.admin_token_file, "--admin-token-file", os.environ.get("PROMPTBANK_ADMIN_TOKEN", ""))
        config = ServerConfig(host=a.host, port=a.port, health_port=a.health_port, db=a.db, ray_address=a.ray_address,
                              backbones=backbones, worker_cpus=a.worker_cpus,
                              worker_gpus=None if a.worker_gpus == "auto" else a.worker_gpus,
                              worker_gpus_auto=a.worker_gpus == "auto", worker_gpu_memory_gib=a.worker_gpu_memory,
                              placement=a.placement, worker_resources=tuple(parse_resource(r) for r in a.worker_resource),
                              placement_timeout_s=a.placement_timeout, max_replicas=a.max_replicas,
                              scale_up_wait_ms=a.scale_up_wait, scale_down_after_s=a.scale_down_after,
                              data_roots=tuple(roots), auth=a.auth, admin_token=admin,
                              insecure=a.insecure, tls_cert=a.tls_cert, tls_key=a.tls_key,
                              tls_client_ca=a.tls_client_ca, grace_seconds=a.grace, job_lease_s=a.job_lease,
                              train_max_attempts=a.train_max_attempts, audit_retention_days=a.audit_retention_days,
                              audit_max_rows=a.audit_max_rows, outcome_retention_days=a.outcome_retention,
                              outcome_max_rows=a.outcome_max_rows, outcome_window_hours=a.outcome_window_hours,
                              generate_batching=a.generate_batching == "on", generate_max_seqs=a.generate_max_seqs,
                              generate_max_cached_tokens=a.generate_max_cached_tokens,
                              limits=Limits(**{name: getattr(a, flag[2:].replace("-", "_")) for flag, name in FLAGS.items()}), allow_models=tuple(a.allow_model),
                              model_roots=tuple(a.model_root), allow_hub=a.allow_hub,
                              metrics_port=a.metrics_port, log_format=a.log_format,
                              http_port=http_port(a.http_port),
                              http_any_port=a.http_port is None and "PROMPTBANK_HTTP_PORT" not in os.environ,
                              http_header_timeout_s=a.http_header_timeout, http_body_timeout_s=a.http_body_timeout,
                              http_max_connections=a.http_max_connections,
                              db_password=read_secret(a.db_password_file, "--db-password-file",
                                                      os.environ.get("PROMPTBANK_DB_PASSWORD", "")))
        logs.setup(config.log_format, a.log_level, (config.admin_token, config.db_password))  # secrets masked
        return config
    except ValueError as exc:
        ap.error(str(exc))
        raise


def http_port(flag: int | None) -> int | None:
    """--http-port: None (not given) -> the environment's or the default; 0 -> off."""
    if flag is None:
        flag = int(os.environ.get("PROMPTBANK_HTTP_PORT", str(HTTP_PORT)))
    return flag or None


def check_port(host: str, port: int) -> None:
    """Fail in a second, before Ray and the models load, when the port is taken (gRPC alone would share it)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


def main(argv: list[str] | None = None) -> None:
    config = parse(argv)
    for flag, port in (("--port", config.port), ("--metrics-port", config.metrics_port),
                       ("--http-port", 0 if config.http_any_port else config.http_port or 0),
                       ("--health-port", config.health_port or 0)):
        try:
            check_port(config.host, port)
        except OSError as exc:
            sys.exit(f"error: cannot listen on {config.host}:{port}: {exc.strerror or exc} "
                     f"(is another promptbank serve running there? choose another {flag})")
    try:
        asyncio.run(serve_forever(config))
    except PromptBankError as exc:  # the bank or a backbone could not be opened: one line, no traceback
        sys.exit(f"error: {exc}")
    except OSError as exc:  # a port taken between the check above and the bind, a TLS file it cannot read
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
