"""Prometheus metrics of Generate, by backbone, on the coordinator's registry (coordinator/metrics.py): what
each stream's caller saw (time to first token, inter-token latency, tokens, finish reasons, cancels) and
what the replicas' engines report (running and queued rows, queue waits, cache use, tokens/s).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workers.protocol import FINISH_REASONS

SECONDS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300)
CANCEL_OUTCOMES = ("removed", "not_running", "no_answer")


class GenerationMetrics:
    def __init__(self, r: CollectorRegistry):
        self.ttft = Histogram("promptbank_generate_time_to_first_token_seconds", "Time from a Generate call to its "
                              "first piece (queue wait and prefill included)", ["backbone"], buckets=SECONDS, registry=r)
        self.inter_token = Histogram("promptbank_generate_inter_token_seconds", "Time between a stream's pieces of "
                                     "text", ["backbone"], buckets=SECONDS, registry=r)
        self.tokens = Counter("promptbank_generate_tokens", "Tokens generated for finished streams (rate: tokens/s "
                              "as callers got them)", ["backbone"], registry=r)
        self.finished = Counter("promptbank_generate_finished", "Streams that ended on their replica, by finish reason",
                                ["backbone", "reason"], registry=r)
        self.cancels = Counter("promptbank_generate_cancels", "Streams whose caller went before the end, by what the "
                               "replica answered the cancel: removed (the row left its batch at the next step), "
                               "not_running (it had finished, or had not arrived: it ends at once when it does), "
                               "no_answer", ["backbone", "outcome"], registry=r)
        self.running = Gauge("promptbank_generate_running", "Rows in the replicas' running batches (last poll)",
                             ["backbone"], registry=r)
        self.queued = Gauge("promptbank_generate_queued", "Generate requests waiting to join a running batch "
                            "(last poll)", ["backbone"], registry=r)
        self.queue_wait = Histogram("promptbank_generate_queue_wait_seconds", "Time a request waited in its "
                                    "replica's queue before its prefill", ["backbone"], buckets=SECONDS, registry=r)
        self.cached_tokens = Gauge("promptbank_generate_cached_tokens", "Key/value cache positions the replicas "
                                   "hold for their running batches (last poll)", ["backbone"], registry=r)
        self.tokens_per_second = Gauge("promptbank_generate_tokens_per_second", "Tokens the replicas generated per "
                                       "second between the last two polls", ["backbone"], registry=r)
        self.removed = Gauge("promptbank_generate_rows_cancelled", "Rows the replicas removed from their running "
                             "batches because the caller went (since each replica started)", ["backbone"], registry=r)

    def backbone(self, name: str) -> None:
        """The series of a served backbone exist from the start, at 0."""
        for m in (self.ttft, self.inter_token, self.tokens, self.running, self.queued, self.queue_wait,
                  self.cached_tokens, self.tokens_per_second, self.removed):
            m.labels(name)
        for reason in FINISH_REASONS:
            self.finished.labels(name, reason)
        for outcome in CANCEL_OUTCOMES:
            self.cancels.labels(name, outcome)
