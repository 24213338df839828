"""Catalog admin over gRPC: update masks, aliases and their history, guarded deletes."""

from __future__ import annotations

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from tests.test_server import TOPIC, code_of, train


def test_update_prompt_and_version_tags(client: Client) -> None:
    train(client, "cat-upd")
    p = client.update_prompt("cat-upd", tags=["b", "a", "a"], owner="team-x", description="demo task")
    assert list(p.tags) == ["a", "b"] and p.owner == "team-x" and p.task.description == "demo task"
    assert list(p.task.labels) == ["negative", "positive"]  # untouched by the mask
    assert [x.name for x in client.list_prompts(tag="a")] == ["prompts/cat-upd"]
    code, msg = code_of(lambda: client.catalog.UpdatePrompt(
        cat.UpdatePromptRequest(prompt=cat.Prompt(name="prompts/cat-upd"), update_mask=FieldMask(paths=["task.labels"])),
        timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "task.labels" in msg
    v = client.catalog.UpdatePromptVersion(cat.UpdatePromptVersionRequest(
        version=cat.PromptVersion(name="prompts/cat-upd/versions/1", tags=["golden"]),
        update_mask=FieldMask(paths=["tags"])), timeout=10)
    assert list(v.tags) == ["golden"] and list(client.get_version("cat-upd/versions/1").tags) == ["golden"]


def test_aliases_history_and_guarded_deletes(client: Client) -> None:
    train(client, "cat-alias")
    train(client, "cat-alias")
    alias = client.set_alias("cat-alias", "prod", 1)
    assert alias.version == "prompts/cat-alias/versions/1"
    client.set_alias("cat-alias", "prod", 2)
    client.catalog.DeleteAlias(cat.DeleteAliasRequest(name="prompts/cat-alias/aliases/prod"), timeout=10)
    hist = client.catalog.ListAliasHistory(cat.ListAliasHistoryRequest(parent="prompts/cat-alias"), timeout=10).events
    moves = [(e.alias, e.from_version, e.to_version) for e in hist]
    assert moves[:3] == [("prod", 2, 0), ("prod", 1, 2), ("prod", 0, 1)]
    assert ("latest", 1, 2) in moves
    code, msg = code_of(lambda: client.catalog.DeletePromptVersion(
        cat.DeletePromptVersionRequest(name="prompts/cat-alias/versions/2"), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "latest" in msg
    client.catalog.DeletePromptVersion(cat.DeletePromptVersionRequest(name="prompts/cat-alias/versions/1"), timeout=10)
    assert [v.version for v in client.list_versions("cat-alias")] == [2]
    code, msg = code_of(lambda: client.catalog.DeletePrompt(cat.DeletePromptRequest(name="prompts/cat-alias"), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "force" in msg
    client.catalog.DeletePrompt(cat.DeletePromptRequest(name="prompts/cat-alias", force=True), timeout=10)
    code, _ = code_of(lambda: client.get_prompt("cat-alias"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_create_prompt_validates_the_task(client: Client) -> None:
    made = client.catalog.CreatePrompt(cat.CreatePromptRequest(
        prompt_id="cat-new", prompt=cat.Prompt(task=cat.TaskSpec(labels=["x", "y"], label_texts=["ex", "why"]))),
        timeout=10)
    assert made.name == "prompts/cat-new" and list(made.task.label_texts) == ["ex", "why"] and made.latest_version == 0
    assert made.task.pooling == "all"  # the default for new prompts; a stored choice is kept
    assert client.create_prompt("cat-text", ["x", "y"], pooling="text").task.pooling == "text"
    assert client.get_prompt("cat-text").task.pooling == "text"
    code, msg = code_of(lambda: client.create_prompt("cat-pool", ["x", "y"], pooling="cls"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pooling 'cls'" in msg
    code, msg = code_of(lambda: client.catalog.CreatePrompt(cat.CreatePromptRequest(
        prompt_id="cat-new", prompt=cat.Prompt(task=cat.TaskSpec(labels=["x", "y"]))), timeout=10))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, msg = code_of(lambda: client.catalog.CreatePrompt(cat.CreatePromptRequest(
        prompt_id="cat-bad", prompt=cat.Prompt(task=cat.TaskSpec(labels=["x"]))), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at least 2 labels" in msg
    code, msg = code_of(lambda: client.classify([("cat-new", "hello")]))
    assert code == grpc.StatusCode.NOT_FOUND and "no versions yet" in msg


def test_request_ids_make_creates_and_imports_idempotent(client: Client) -> None:
    first = client.create_prompt("idem-p", ["a", "b"], request_id="cp-1")
    again = client.create_prompt("idem-p", ["a", "b"], request_id="cp-1")
    assert again.name == first.name == "prompts/idem-p"
    code, msg = code_of(lambda: client.create_prompt("idem-p", ["a", "c"], request_id="cp-1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "cp-1" in msg
    code, _ = code_of(lambda: client.create_prompt("idem-p", ["a", "b"], request_id="cp-2"))
    assert code == grpc.StatusCode.ALREADY_EXISTS  # a new id really tries again, and the name is taken

    train(client, "idem-src")
    files = client.export_version("idem-src")
    v1 = client.import_version("idem-imp", "tiny-enc", files.adapter_config, files.adapter_model,
                               labels=["negative", "positive"], request_id="imp-1")
    v2 = client.import_version("idem-imp", "tiny-enc", files.adapter_config, files.adapter_model,
                               labels=["negative", "positive"], request_id="imp-1")
    assert v1.name == v2.name == "prompts/idem-imp/versions/1"
    assert [v.version for v in client.list_versions("idem-imp")] == [1]
    code, msg = code_of(lambda: client.import_version("idem-imp", "tiny-enc", files.adapter_config,
                                                      files.adapter_model, labels=["negative", "positive"],
                                                      label_texts=["bad", "good"], request_id="imp-1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS


def test_list_filters_over_grpc(client: Client) -> None:
    from datetime import UTC, datetime

    topic = [(text, f"filt-{label}") for text, label in TOPIC]  # labels no other test uses
    train(client, "filt-a", data=topic)
    cut = datetime.now(UTC)
    train(client, "filt-b")
    train(client, "filt-a", data=topic)
    assert [p.name for p in client.list_prompts(label="filt-sports")] == ["prompts/filt-a"]
    later = {p.name for p in client.list_prompts(created_after=cut)}
    assert "prompts/filt-b" in later and "prompts/filt-a" not in later
    assert [v.version for v in client.list_versions("filt-a", created_after=cut)] == [2]
    assert [v.version for v in client.list_versions("filt-a", backbone="tiny-lm")] == []
    client.tag_version("filt-a/versions/1", ["keep"])
    assert [v.version for v in client.list_versions("filt-a", tag="keep")] == [1]
