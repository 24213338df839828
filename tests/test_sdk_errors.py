"""The SDK's typed errors over a real server: `except NotFound` works, `except grpc.RpcError` still does, and
every Client method (unary, server-streaming and client-streaming calls) raises its status's class."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from promptbank import CallError, Client
from promptbank.cli import main as cli_main
from promptbank.errors import (
    BY_CODE,
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    typed,
)
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import catalog_pb2_grpc as cat_grpc
from tests.processes import free_port


def test_a_class_for_every_status() -> None:
    assert set(BY_CODE) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    for code, cls in BY_CODE.items():
        assert cls.status is code and issubclass(cls, grpc.RpcError) and cls.__name__.lower() == \
            code.name.replace("_", "").lower()


def test_missing_prompt_is_not_found_and_still_an_rpc_error(client: Client) -> None:
    with pytest.raises(NotFound) as err:
        client.get_prompt("prompts/no-such-prompt")
    assert err.value.code() is grpc.StatusCode.NOT_FOUND and "no-such-prompt" in err.value.details()
    assert str(err.value) == f"NOT_FOUND: {err.value.details()}" and err.value.trailing_metadata() is not None
    try:  # code written against raw grpc errors keeps working
        client.get_version("prompts/no-such-prompt@prod")
    except grpc.RpcError as raw:
        assert isinstance(raw, NotFound) and raw.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    else:
        raise AssertionError("no error for a missing prompt")


def test_streams_raise_typed_errors(client: Client) -> None:
    with pytest.raises(NotFound) as err:  # server streaming: the error comes while iterating
        list(client.generate("no-such-prompt", "hi"))
    assert isinstance(err.value, grpc.RpcError) and err.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(NotFound):
        list(client.watch_job("jobs/no-such-job", timeout=30))
    with pytest.raises(InvalidArgument) as bad:  # client streaming
        client.upload_dataset([("a text", "")], timeout=30)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_each_refusal_has_its_class(client: Client) -> None:
    client.create_prompt("typed-dup", ["negative", "positive"])
    with pytest.raises(AlreadyExists):
        client.create_prompt("typed-dup", ["negative", "positive"])
    with pytest.raises(ResourceExhausted):  # the fixture's server takes 64 rows a call
        client.classify([("typed-dup", "x")] * 65)
    with pytest.raises(DeadlineExceeded):
        Client(client.server, timeout=1e-6).list_prompts()


def _every_method(c: Client) -> dict[str, Callable[[], Any]]:
    """One call of each public Client method, with arguments the server would accept."""
    pb = b"{}"
    return {
        "wait_ready": lambda: c.wait_ready(timeout=0.3),
        "classify": lambda: c.classify([("p", "t")]),
        "classify_ensemble": lambda: c.classify_ensemble([(["p", "q"], "t")]),
        "generate": lambda: list(c.generate("p", "t")),
        "generate_full": lambda: c.generate_full(None, messages=[("user", "t")], backbone="b"),
        "upload_dataset": lambda: c.upload_dataset([("t", "a")], timeout=0.3),
        "create_train_job": lambda: c.create_train_job("p", "b", [("t", "a")]),
        "get_job": lambda: c.get_job("jobs/x"),
        "list_jobs": lambda: c.list_jobs(),
        "cancel_job": lambda: c.cancel_job("jobs/x"),
        "watch_job": lambda: list(c.watch_job("jobs/x", timeout=0.5)),
        "wait_job": lambda: c.wait_job("jobs/x", timeout=0.5),
        "get_backbone": lambda: c.get_backbone("b"),
        "list_backbones": lambda: c.list_backbones(),
        "list_prompts": lambda: c.list_prompts(),
        "get_prompt": lambda: c.get_prompt("prompts/p"),
        "get_version": lambda: c.get_version("prompts/p/versions/1"),
        "list_versions": lambda: c.list_versions("p"),
        "update_prompt": lambda: c.update_prompt("p", tags=["t"]),
        "create_prompt": lambda: c.create_prompt("p", ["a", "b"]),
        "delete_prompt": lambda: c.delete_prompt("p"),
        "delete_version": lambda: c.delete_version("prompts/p/versions/1"),
        "tag_version": lambda: c.tag_version("prompts/p/versions/1", ["t"]),
        "delete_alias": lambda: c.delete_alias("p", "prod"),
        "alias_history": lambda: c.alias_history("p"),
        "export_version": lambda: c.export_version("prompts/p/versions/1"),
        "import_version": lambda: c.import_version("p", "b", pb, pb),
        "register_backbone": lambda: c.register_backbone("b", "m", timeout=0.3),
        "deregister_backbone": lambda: c.deregister_backbone("b"),
        "set_alias": lambda: c.set_alias("p", "prod", 1),
        "create_token": lambda: c.create_token("t", "reader"),
        "list_tokens": lambda: c.list_tokens(),
        "revoke_token": lambda: c.revoke_token("tokens/t"),
        "list_audit_events": lambda: c.list_audit_events(),
        "record_outcomes": lambda: c.record_outcomes([("0" * 32, "a")]),
        "rollout": lambda: c.rollout("p@prod"),
        "set_shadow": lambda: c.set_shadow("p@prod", 2),
        "clear_shadow": lambda: c.clear_shadow("p@prod"),
        "set_canary": lambda: c.set_canary("p@prod", 2, 0.1),
        "clear_canary": lambda: c.clear_canary("p@prod"),
        "set_policy": lambda: c.set_policy("p@prod", True),
        "compare": lambda: c.compare("p@prod", 2),
        "promote": lambda: c.promote("p@prod", 2),
    }


def test_every_method_raises_typed_errors_when_nothing_answers() -> None:
    with Client(f"127.0.0.1:{free_port()}", timeout=0.3) as c:  # nothing listens there
        calls = _every_method(c)
        public = {n for n, f in inspect.getmembers(Client, inspect.isfunction) if not n.startswith("_")}
        assert set(calls) == public - {"close"}, "a Client method is missing from this table"
        for name, call in calls.items():
            with pytest.raises(CallError) as err:
                call()
            assert isinstance(err.value, Unavailable | DeadlineExceeded), (name, err.value)
            assert type(err.value) is BY_CODE[err.value.code()], name


def test_typed_keeps_a_typed_error_and_types_a_raw_one(client: Client) -> None:
    raw = grpc.insecure_channel(client.server)
    try:
        with pytest.raises(grpc.RpcError) as err:  # a raw stub, no interceptor: grpc's own error
            cat_grpc.PromptCatalogStub(raw).GetPrompt(cat.GetPromptRequest(name="prompts/raw-missing"), timeout=30)
        assert not isinstance(err.value, CallError)
        found = typed(err.value)
        assert isinstance(found, NotFound) and found.details() == err.value.details() and typed(found) is found
    finally:
        raw.close()


def test_cli_prints_the_class_and_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    # the deadline outlasts gRPC's retries (at most 3 s), so the call ends UNAVAILABLE, as the CLI says in one line
    assert cli_main(["--server", f"127.0.0.1:{free_port()}", "--timeout", "20", "prompts", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: UNAVAILABLE: ") and err.endswith("check --server and --tls-ca)"), err
    assert "\n" not in err
