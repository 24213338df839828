"""Two coordinators on one bank: a write that loses a race to the other is ABORTED and leaves nothing."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from bank import catalog
from bank.models import Prompt
from bank.writer import BankDB
from coordinator.errors import status_for
from promptbank_api.errors import Aborted
from promptbank_domain.task import TaskSpec
from tests.pg_fixtures import BACKENDS, fresh_db_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_create_that_loses_a_race_is_aborted_and_writes_nothing(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = fresh_db_url(request, backend, tmp_path)
    first, second = BankDB(url), BankDB(url)
    try:
        def create_after_the_other_coordinator(s):  # type: ignore[no-untyped-def]
            assert catalog.find_prompt(s, "sent") is None  # the store's own existence check passes...
            second.run_sync(lambda s2: catalog.create_prompt(s2, "sent", TaskSpec(labels=("a", "b")), owner="second"))
            s.add(Prompt(name="sent", task={"labels": ["x", "y"]}, owner="first"))  # ...then the other one wins
            s.flush()

        with pytest.raises(Aborted) as err:
            first.run_sync(create_after_the_other_coordinator)
        assert status_for(err.value) == (grpc.StatusCode.ABORTED, "a concurrent change to the same resource won; "
                                                                   "retry the request")
        p = first.run_sync(lambda s: catalog.get_prompt(s, "sent"))
        assert (p.owner, p.task.labels) == ("second", ("a", "b"))
        first.run_sync(lambda s: catalog.create_prompt(s, "other", TaskSpec(labels=("a", "b"))))  # the session recovers
    finally:
        first.close()
        second.close()
