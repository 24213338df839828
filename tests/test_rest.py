"""The REST/JSON face on a real coordinator (loopback, real Ray, SQLite): every RPC reachable over HTTP through the
gRPC interceptor chain, JSON equal to gRPC's answers, the same status codes and messages, SSE streams, JSON-lines
uploads, and an OpenAPI document that matches the protos."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import json_format

from coordinator.__main__ import HTTP_PORT, parse
from coordinator.api import API
from coordinator.config import ServerConfig
from coordinator.rest.guard import refusal
from coordinator.rest.routes import routes_of
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import jobs_pb2 as jp
from tests.rest_fixtures import RestStack
from tests.test_server import code_of

ROOT = Path(__file__).resolve().parents[1]


def rest(stack: RestStack, method: str, path: str, role: str | None = "admin", **kw: Any) -> requests.Response:
    headers = {**({"Authorization": f"Bearer {stack.tokens[role]}"} if role else {}), **kw.pop("headers", {})}
    return requests.request(method, stack.url.rstrip("/") + path, headers=headers, timeout=60, **kw)


def events(resp: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of a Server-Sent Event stream, read to its end."""
    out, kind = [], "message"
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[len("data: "):])))
            kind = "message"
    return out


def test_the_openapi_document_is_fresh_and_served(rest_stack: RestStack, tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_openapi.py"), str(out)], check=True, cwd=ROOT,
                   env=env, capture_output=True, timeout=300)
    committed = ROOT / "coordinator" / "rest" / "openapi.json"
    assert out.read_text() == committed.read_text(), "stale coordinator/rest/openapi.json; run scripts/gen_openapi.py"
    served = rest(stack := rest_stack, "GET", "/openapi.json", role=None)
    assert served.status_code == 200 and served.json() == json.loads(committed.read_text())
    ops = {op["operationId"] for path in served.json()["paths"].values() for op in path.values()}
    assert ops == {f"{s.name}_{m.name}" for s in API for m in s.methods}
    assert stack.url.startswith("http://127.0.0.1:")


def test_every_rpc_is_reachable_over_http_through_the_interceptors(rest_stack: RestStack) -> None:
    """Each route is answered by its RPC (counted by the RPC metrics with transport http), not by a 404 of
    the router: dummy names and empty bodies make most of them fail, after the servicer saw them."""
    routes = routes_of(API)
    assert {r.rpc for r in routes} == {f"/{s.full_name}/{m.name}" for s in API for m in s.methods}
    registry = rest_stack.live.coord.metrics.registry

    def count(rpc: str) -> float:
        service, method = rpc.strip("/").split("/")
        return sum(registry.get_sample_value("promptbank_rpcs_total", {"service": service, "method": method,
                                                                      "code": code.name, "transport": "http"}) or 0
                   for code in grpc.StatusCode)

    for route in routes:
        path = re.sub(r"\{[\w.]+=([^}]*)\}", lambda m: m.group(1).replace("*", "nope"), route.template)
        before = count(route.rpc)
        resp = rest(rest_stack, route.http_method, path, json={} if route.body else None)
        assert "no route" not in resp.text and resp.status_code != 405, (route.template, path, resp.text)
        assert count(route.rpc) == before + 1, f"{route.rpc} was not reached over {route.http_method} {path}"


def test_json_answers_equal_grpc(rest_stack: RestStack) -> None:
    with rest_stack.client() as c:
        pairs = [
            ("/v1/prompts/rest-sentiment", c.catalog.GetPrompt(cat.GetPromptRequest(name="prompts/rest-sentiment")),
             cat.Prompt),
            ("/v1/prompts/rest-sentiment/versions/1", c.catalog.GetPromptVersion(
                cat.GetPromptVersionRequest(name="prompts/rest-sentiment/versions/1")), cat.PromptVersion),
            ("/v1/prompts/rest-sentiment/versions?pageSize=5", c.catalog.ListPromptVersions(
                cat.ListPromptVersionsRequest(parent="prompts/rest-sentiment", page_size=5)),
             cat.ListPromptVersionsResponse),
            ("/v1/prompts/rest-sentiment/aliasEvents", c.catalog.ListAliasHistory(
                cat.ListAliasHistoryRequest(parent="prompts/rest-sentiment")), cat.ListAliasHistoryResponse),
            (f"/v1/{rest_stack.job.name}", c.jobs.GetTrainJob(jp.GetTrainJobRequest(name=rest_stack.job.name)),
             jp.TrainJob),
            ("/v1/prompts?label=positive&tag=", c.catalog.ListPrompts(cat.ListPromptsRequest(label="positive")),
             cat.ListPromptsResponse),
        ]
        for path, want, kind in pairs:
            got = rest(rest_stack, "GET", path)
            assert got.status_code == 200, got.text
            assert json_format.ParseDict(got.json(), kind()) == want, path
            assert got.json() == json_format.MessageToDict(want)  # canonical JSON: lowerCamelCase, int64 as strings
        rows = [inf.ClassifyRow(prompt="rest-sentiment@prod", text=t) for t in ("good great lovely", "sad horrible")]
        rows.append(inf.ClassifyRow(prompt="rest-sentiment", text="fine", ensemble=["rest-sentiment/versions/1"]))
        request = inf.ClassifyRequest(rows=rows)
        want = c.inference.Classify(request)
    got = rest(rest_stack, "POST", "/v1/prompts:classify", role="reader", json=json_format.MessageToDict(request))
    answer = json_format.ParseDict(got.json(), inf.ClassifyResponse())
    for resp in (answer, want):  # each classified row gets an id of its own (a result to record an outcome for)
        assert all(len(r.id) == 32 for r in resp.results)
        for r in resp.results:
            r.ClearField("id")
    assert got.status_code == 200 and answer == want
    assert got.json()["results"][0]["version"] == "prompts/rest-sentiment/versions/1"


def test_errors_are_google_rpc_status_with_the_grpc_code_and_message(rest_stack: RestStack) -> None:
    with rest_stack.client("reader") as reader:
        code, message = code_of(lambda: reader.set_alias("rest-sentiment", "prod", 1))
    got = rest(rest_stack, "POST", "/v1/prompts/rest-sentiment:setAlias", role="reader",
               json={"alias": "prod", "version": "1"})
    assert code == grpc.StatusCode.PERMISSION_DENIED and got.status_code == 403
    assert got.json() == {"code": 7, "message": message, "details": []}
    with rest_stack.client() as admin:
        code, message = code_of(lambda: admin.get_prompt("nope"))
        over, over_msg = code_of(lambda: admin.classify([("rest-sentiment", "x")] * 65))
    got = rest(rest_stack, "GET", "/v1/prompts/nope")
    assert (got.status_code, got.json()["code"], got.json()["message"]) == (404, 5, message)
    got = rest(rest_stack, "POST", "/v1/prompts:classify", json={"rows": [{"prompt": "rest-sentiment", "text": "x"}] * 65})
    assert over == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (got.status_code, got.json()["code"], got.json()["message"]) == (429, 8, over_msg)
    anon = rest(rest_stack, "GET", "/v1/prompts", role=None)
    assert anon.status_code == 401 and anon.json()["code"] == 16 and "Bearer" in anon.json()["message"]
    bad = rest(rest_stack, "POST", "/v1/prompts:classify", data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["code"] == 3 and "JSON" in bad.json()["message"]
    unknown = rest(rest_stack, "POST", "/v1/prompts:classify", json={"rowz": []})
    assert unknown.status_code == 400 and "rowz" in unknown.json()["message"]
    query = rest(rest_stack, "GET", "/v1/prompts?colour=red")
    assert query.status_code == 400 and "colour" in query.json()["message"]
    assert rest(rest_stack, "GET", "/v1/nothing/here").status_code == 404
    wrong = rest(rest_stack, "PUT", "/v1/prompts")
    assert wrong.status_code == 405 and wrong.json()["code"] == 12


def test_server_streams_are_server_sent_events(rest_stack: RestStack) -> None:
    with rest_stack.client() as c:
        want = [json_format.MessageToDict(e) for e in c.watch_job(rest_stack.job.name, timeout=60)]
        grpc_pieces = [r.text for r in c.inference.Generate(inf.GenerateRequest(prompt=rest_stack.lm_prompt,
                                                                               text="hello there", max_new_tokens=6))]
    with rest(rest_stack, "GET", f"/v1/{rest_stack.job.name}:watch", stream=True) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        got = events(resp)
    assert [d for k, d in got if k == "message"] == want and got[-1] == ("end", {})
    assert any(d.get("kind") == "PROGRESS" for d in want) and want[-1]["state"] == "SUCCEEDED"
    with rest(rest_stack, "GET", f"/v1/{rest_stack.job.name}:watch?afterSequence={len(want) - 1}", stream=True) as resp:
        assert [d for k, d in events(resp) if k == "message"] == want[-1:]
    with rest(rest_stack, "POST", "/v1/prompts:generate", role="reader", stream=True,
              json={"prompt": rest_stack.lm_prompt, "text": "hello there", "maxNewTokens": 6}) as resp:
        pieces = events(resp)
    assert [d.get("text", "") for k, d in pieces if k == "message"] == grpc_pieces and pieces[-1] == ("end", {})
    assert [d for k, d in pieces if k == "message"][-1].get("done") is True
    refused = rest(rest_stack, "POST", "/v1/prompts:generate", json={"prompt": "rest-sentiment", "text": "hi"})
    assert refused.status_code == 400 and refused.json()["code"] == 9  # FAILED_PRECONDITION: an encoder
    missing = rest(rest_stack, "GET", "/v1/jobs/nope:watch")
    assert missing.status_code == 404 and missing.json()["code"] == 5


def test_uploads_take_one_json_body_or_json_lines(rest_stack: RestStack) -> None:
    one = rest(rest_stack, "POST", "/v1/datasets", role="trainer",
               json={"examples": [{"text": "good", "label": "positive"}, {"text": "bad", "label": "negative"}]})
    assert one.status_code == 200 and one.json()["rows"] == "2" and one.json()["name"].startswith("datasets/")
    lines = "\n".join(json.dumps({"examples": [{"text": f"t{i}-{j}", "label": "positive" if j % 2 else "negative"}
                                               for j in range(10)]}) for i in range(3))
    many = rest(rest_stack, "POST", "/v1/datasets", role="trainer", data=lines.encode(),
                headers={"Content-Type": "application/x-ndjson"})
    assert many.status_code == 200, many.text
    assert many.json()["rows"] == "30" and many.json()["labelCounts"] == {"negative": "15", "positive": "15"}
    empty = rest(rest_stack, "POST", "/v1/datasets", role="trainer", data=b"",
                 headers={"Content-Type": "application/x-ndjson"})
    assert empty.status_code == 400 and "empty" in empty.json()["message"]
    denied = rest(rest_stack, "POST", "/v1/datasets", role="reader", json={})
    assert denied.status_code == 403


def test_other_sites_cannot_reach_the_api_from_a_browser(rest_stack: RestStack) -> None:
    """A POST must be JSON (a foreign page cannot send that without a CORS preflight, never granted), a foreign
    Origin is refused, and with auth off only loopback Host names are served (no DNS rebinding)."""
    form = rest(rest_stack, "POST", f"/v1/{rest_stack.job.name}:cancel", data=b"x=1",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and form.json()["code"] == 3 and "application/json" in form.json()["message"]
    bare = rest(rest_stack, "POST", f"/v1/{rest_stack.job.name}:cancel")
    assert bare.status_code == 415
    foreign = rest(rest_stack, "GET", "/v1/prompts", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["message"]
    port = rest_stack.url.rsplit(":", 1)[1].strip("/")
    assert rest(rest_stack, "GET", "/v1/prompts", headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200
    assert refusal("GET", "", {"Host": "evil.example:8051"}, auth_off=True)[0] == 403  # rebinding, auth off
    assert refusal("GET", "", {"Host": "localhost:8051"}, auth_off=True) is None
    assert refusal("GET", "", {"Host": "[::1]:8051"}, auth_off=True) is None
    assert refusal("GET", "", {"Host": "coordinator.example:8443"}, auth_off=False) is None  # tokens: any name
    assert refusal("DELETE", "", {"Host": "127.0.0.1"}, auth_off=True) is None  # browsers preflight DELETE


def test_the_http_port_flag() -> None:
    argv = ["--port", "0", "--backbone", "x=/nonexistent"]
    assert parse(argv).http_port == HTTP_PORT and parse(argv).http_any_port  # the default: any port if taken
    assert not parse([*argv, "--http-port", str(HTTP_PORT)]).http_any_port  # asked for: that port or an error
    assert parse([*argv, "--http-port", "0"]).http_port is None  # 0: off
    assert parse([*argv, "--http-port", "9123"]).http_port == 9123
    assert ServerConfig().http_port is None  # programmatic servers (tests) open no HTTP port unless asked
    with pytest.raises(ValueError, match="--http-port"):
        ServerConfig(port=9000, http_port=9000)
