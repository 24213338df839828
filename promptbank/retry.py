"""How the SDK rides out a coordinator restart: gRPC's own retry policy (a service config on the channel),
fast reconnects, and a watch that resumes after the last event it saw.

Retried on UNAVAILABLE (the server is restarting, or a replica is): every read, Classify and Generate (before
their first response), and writes that are idempotent by nature (setting an alias or tags, an update, a rollout's
shadow/canary/policy, outcomes: an outcome sent again for its result id changes nothing). Those
are also retried on CANCELLED: a server closing its port cancels the calls that reached it in that instant,
before any handler ran (gRPC core's shutdown), and a caller's own cancel never comes back to be retried. Creates
carry a request_id (the SDK always sends one), so a repeat returns the first result: they are also retried
on ABORTED (a concurrent change won). Deletes, cancels, promotions and token creation are not retried: a repeat of one
that did commit would report NOT_FOUND or make a second secret. With `wait_for_ready` those calls also wait
out an unreachable server (up to their deadline) instead of failing at once.
"""

from __future__ import annotations

import json
from typing import Any

RETRY_ATTEMPTS = 5  # gRPC caps maxAttempts at 5
# Four retries wait at most 0.2 + 0.4 + 0.8 + 1.6 = 3 s (gRPC draws each wait at random below its bound), so a
# call with a deadline of a few seconds still ends UNAVAILABLE, with its cause, when nothing answers (a server
# down, a TLS mismatch); riding out a restart that takes longer is what `wait_for_ready` is for. The channel
# tries to reconnect at least every half second meanwhile, so a server back up is found within the retries.
INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 1.6
BACKOFF_MULTIPLIER = 2.0
RECONNECT_MAX_MS = 500

READS = {
    "promptbank.v1.PromptCatalog": ["ListBackbones", "GetBackbone", "GetPrompt", "ListPrompts", "GetPromptVersion",
                                    "ListPromptVersions", "ListAliasHistory", "ExportPromptVersion",
                                    "SetAlias", "UpdatePrompt", "UpdatePromptVersion", "RegisterBackbone"],
    "promptbank.v1.TrainJobs": ["GetTrainJob", "ListTrainJobs", "WatchTrainJob"],
    "promptbank.v1.Inference": ["Classify", "Generate"],
    "promptbank.v1.Tokens": ["ListTokens", "ListAuditEvents"],
    "promptbank.v1.LiveEvaluation": ["RecordOutcomes", "GetRollout", "UpdateRollout", "CompareVersions"],
    "grpc.health.v1.Health": ["Check"],
}
CREATES = {
    "promptbank.v1.PromptCatalog": ["CreatePrompt", "ImportPromptVersion"],
    "promptbank.v1.TrainJobs": ["CreateTrainJob", "UploadDataset"],
}


def _policy(methods: dict[str, list[str]], codes: list[str], wait_for_ready: bool) -> dict[str, Any]:
    return {
        "name": [{"service": svc, "method": m} for svc, ms in methods.items() for m in ms],
        "waitForReady": wait_for_ready,
        "retryPolicy": {"maxAttempts": RETRY_ATTEMPTS, "initialBackoff": f"{INITIAL_BACKOFF_S}s",
                        "maxBackoff": f"{MAX_BACKOFF_S}s", "backoffMultiplier": BACKOFF_MULTIPLIER,
                        "retryableStatusCodes": codes},
    }


def channel_options(wait_for_ready: bool = False) -> list[tuple[str, Any]]:
    """gRPC channel options for the SDK. `wait_for_ready`: a call made while the server is unreachable waits for
    it (up to the call's deadline) instead of failing fast: a coordinator restart costs time, not an error."""
    config = {"methodConfig": [_policy(READS, ["UNAVAILABLE", "CANCELLED"], wait_for_ready),
                               _policy(CREATES, ["UNAVAILABLE", "ABORTED"], wait_for_ready)]}
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        # reconnect soon after a restart (gRPC's default backoff grows to two minutes)
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
    ]
