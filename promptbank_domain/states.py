"""Job and replica states. Both are `StrEnum`s: the values are what the bank stores, the API's enum names
(jobs) and the metrics' labels (replicas), so a member compares equal to its stored string."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A train job's state (`TrainJob.State` in the API, `jobs.state` in the bank)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})  # ended for good


class ReplicaState(StrEnum):
    """A serving replica (one Ray actor) as the coordinator's pool sees it."""

    LIVE = "live"
    RESTARTING = "restarting"  # Ray is bringing it back
    DEAD = "dead"  # out of restarts
