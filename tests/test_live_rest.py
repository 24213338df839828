"""Live evaluation over REST/JSON with tokens: a reader classifies and records outcomes for its own results; only
an admin sets a rollout or promotes; a refused promotion is HTTP 400 with gRPC's FAILED_PRECONDITION."""

from __future__ import annotations

from typing import Any

import requests

from promptbank_api.v1 import jobs_pb2 as jp
from tests.rest_fixtures import RestStack
from tests.test_server import DATA, HP

TEXTS = sorted({t for t, _ in DATA})[:6]
TRUTH = dict(DATA)


def call(stack: RestStack, method: str, path: str, role: str, **kw: Any) -> requests.Response:
    return requests.request(method, stack.url.rstrip("/") + path, headers={"Authorization": f"Bearer "
                            f"{stack.tokens[role]}"}, timeout=60, **kw)


def test_outcomes_rollouts_and_promotion_over_rest(rest_stack: RestStack) -> None:
    with rest_stack.client() as admin:
        for data in (DATA, DATA[::3]):  # versions 1 (alias prod) and 2
            job = admin.create_train_job("rest-live", "enc", data, hyperparameters=HP, aliases=["prod"])
            assert admin.wait_job(job.name, timeout=300).state == jp.TrainJob.SUCCEEDED
        admin.set_alias("rest-live", "prod", 1)
    rows = [{"prompt": "rest-live@prod", "text": t} for t in TEXTS]
    got = call(rest_stack, "POST", "/v1/prompts:classify", "reader", json={"rows": rows})
    assert got.status_code == 200, got.text
    ids = [r["id"] for r in got.json()["results"]]
    assert len(set(ids)) == len(TEXTS) and all(len(i) == 32 for i in ids)

    rollout = "/v1/prompts/rest-live/aliases/prod/rollout"
    body = {"shadowVersion": "prompts/rest-live/versions/2"}
    refused = call(rest_stack, "PATCH", rollout + "?updateMask=shadowVersion", "reader", json=body)
    assert refused.status_code == 403 and "admin" in refused.json()["message"]
    shadowed = call(rest_stack, "PATCH", rollout + "?updateMask=shadowVersion", "admin", json=body)
    assert shadowed.status_code == 200, shadowed.text
    assert shadowed.json()["shadowVersion"] == "prompts/rest-live/versions/2"

    got = call(rest_stack, "POST", "/v1/prompts:classify", "reader", json={"rows": rows})
    outcomes = [{"resultId": r["id"], "label": TRUTH[t]} for r, t in zip(got.json()["results"], TEXTS, strict=True)]
    recorded = call(rest_stack, "POST", "/v1/outcomes:record", "reader", json={"outcomes": outcomes})
    assert recorded.status_code == 200 and recorded.json()["recorded"] == len(TEXTS), recorded.text
    bad = call(rest_stack, "POST", "/v1/outcomes:record", "reader",
               json={"outcomes": [{"resultId": ids[0], "label": "sideways"}]})
    assert bad.status_code == 400 and "sideways" in bad.json()["message"]

    evidence = call(rest_stack, "GET", rollout, "reader").json()["shadowEvidence"]
    assert evidence["method"] == "paired" and int(evidence["rows"]) == len(TEXTS)  # int64 is a JSON string
    compared = call(rest_stack, "GET", "/v1/prompts/rest-live/aliases/prod:compare?candidate=rest-live/versions/2",
                    "reader")
    assert compared.status_code == 200 and compared.json()["summary"] == evidence["summary"]
    promote = "/v1/prompts/rest-live/aliases/prod:promote"
    no = call(rest_stack, "POST", promote, "admin", json={"candidate": "rest-live/versions/2", "margin": 0.0})
    assert no.status_code == 400 and no.json()["code"] == 9 and "does not clear" in no.json()["message"]  # 9: gRPC FAILED_PRECONDITION
    assert call(rest_stack, "POST", promote, "reader", json={"candidate": "rest-live/versions/2"}).status_code == 403
    forced = call(rest_stack, "POST", promote, "admin", json={"candidate": "rest-live/versions/2", "force": True})
    assert forced.status_code == 200 and forced.json()["forced"] and forced.json()["rollout"]["version"].endswith("/2")
