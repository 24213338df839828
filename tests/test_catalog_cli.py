"""Catalog from the CLI, PEFT adapters both ways through the running server, backbone registration."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from promptbank import Client
from tests.test_cli import cli
from tests.test_server import code_of, train
from workers.actor import BackboneWorker
from workers.protocol import GenerateRequest

LM_TASK = {"labels": ["negative", "positive"], "label_words": ["bad", "good"]}


def peft_scores(model_dir: str, adapter: Path, text: str) -> dict[str, float]:
    """Label probabilities the way promptbank defines them, computed by PEFT's own model."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(adapter)).eval()
    enc = tok([text], return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0, -1]
    ids = [tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in LM_TASK["label_words"]]
    probs = torch.softmax(logits[ids], dim=-1)
    return dict(zip(LM_TASK["labels"], probs.tolist(), strict=True))


def test_export_loads_in_peft_with_the_same_scores_and_import_serves_them(server, tiny_causal_lm: str,
                                                                         tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "peft-src", backbone="tiny-lm", labels=LM_TASK["labels"], label_words=LM_TASK["label_words"])
        text = "what a lovely film"
        ours = c.classify([("peft-src", text)])[0].scores
    out = tmp_path / "adapter"
    assert cli(server, "prompts", "export", "peft-src", str(out)).stdout.strip() == str(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == "CAUSAL_LM" and cfg["num_virtual_tokens"] == 4
    theirs = peft_scores(tiny_causal_lm, out, text)
    assert theirs == pytest.approx(ours, abs=1e-5)

    imported = cli(server, "prompts", "import", str(out), "--task", "peft-copy", "--backbone", "tiny-lm",
                   "--labels", *LM_TASK["labels"], "--label-words", *LM_TASK["label_words"]).stdout.strip()
    assert imported == "prompts/peft-copy/versions/1"
    with Client(server.address) as c:
        assert c.classify([("peft-copy", text)])[0].scores == pytest.approx(ours, abs=1e-6)
        v = c.get_version("peft-copy")
        assert v.lineage.imported_from.startswith("peft:") and v.sha256 == c.get_version("peft-src").sha256


def test_import_refuses_pickles_and_wrong_backbones(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "peft-enc")
        exported = c.export_version("peft-enc")
        code, msg = code_of(lambda: c.import_version("x-pickle", "tiny-enc", exported.adapter_config,
                                                     b"\x80\x04\x95" + b"\x00" * 32, labels=["a", "b"]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "pickle" in msg
        code, msg = code_of(lambda: c.import_version("x-lm", "tiny-lm", exported.adapter_config,
                                                     exported.adapter_model, labels=["a", "b"]))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "tiny-lm" in msg
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_bytes(exported.adapter_config)
    torch.save({"prompt_embeddings": torch.zeros(2, 32)}, pickled / "adapter_model.bin")
    out = cli(server, "prompts", "import", str(pickled), "--task", "x", "--backbone", "tiny-enc", check=False)
    assert out.returncode == 2 and "pickle" in out.stderr


def test_catalog_commands(server) -> None:  # type: ignore[no-untyped-def]
    made = json.loads(cli(server, "prompts", "create", "cat-cli", "--labels", "no", "yes", "--tags", "t1",
                          "--json").stdout)
    assert made["name"] == "prompts/cat-cli" and made["tags"] == ["t1"]
    bad = cli(server, "prompts", "create", "cat-bad", "--labels", "no", "yes", "--pooling", "cls", check=False)
    assert bad.returncode == 2 and "--pooling" in bad.stderr and "'cls'" in bad.stderr
    with Client(server.address) as c:
        train(c, "cat-cli", data=[("yes indeed", "yes"), ("no way", "no")] * 16)
        train(c, "cat-cli", data=[("yes indeed", "yes"), ("no way", "no")] * 16)
    cli(server, "prompts", "alias", "cat-cli/versions/1", "prod")
    listed = cli(server, "prompts", "list", "--tag", "t1").stdout
    assert "prompts/cat-cli" in listed and "prod->1" in listed and "latest->2" in listed
    cli(server, "prompts", "update", "cat-cli", "--tags", "t2", "--owner", "me")
    assert json.loads(cli(server, "prompts", "list", "--tag", "t2", "--json").stdout)["owner"] == "me"
    tagged = json.loads(cli(server, "prompts", "tag", "cat-cli@prod", "--tags", "golden", "--json").stdout)
    assert tagged["tags"] == ["golden"] and tagged["name"] == "prompts/cat-cli/versions/1"
    history = cli(server, "prompts", "history", "cat-cli").stdout.splitlines()
    assert history[0].split() == ["TIME", "ALIAS", "ACTION", "FROM", "TO", "BY"]  # a table with a header
    assert history[1].split()[1:] == ["prod", "move", "-", "1", "local"]  # newest first: prod set to version 1
    cli(server, "prompts", "unalias", "cat-cli", "prod")
    denied = cli(server, "prompts", "delete", "cat-cli/versions/2", check=False)
    assert denied.returncode == 1 and "FAILED_PRECONDITION" in denied.stderr
    cli(server, "prompts", "delete", "cat-cli/versions/1")
    versions = cli(server, "prompts", "versions", "cat-cli").stdout
    assert "versions/2" in versions and "versions/1" not in versions
    cli(server, "prompts", "delete", "cat-cli", "--force")
    assert "cat-cli" not in cli(server, "prompts", "list").stdout


def test_register_backbone_starts_replicas(server, tiny_models: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(cli(server, "backbones", "register", "tiny-s2s", tiny_models["seq2seq"], "--json").stdout)
    assert out["name"] == "backbones/tiny-s2s" and out["architecture"] == "seq2seq" and out["replicas"] == 1
    again = cli(server, "backbones", "register", "tiny-s2s", tiny_models["seq2seq"], "--json")
    assert json.loads(again.stdout)["fingerprint"] == out["fingerprint"]
    clash = cli(server, "backbones", "register", "tiny-s2s", tiny_models["masked_lm"], check=False)
    assert clash.returncode == 1 and "ALREADY_EXISTS" in clash.stderr
    with Client(server.address) as c:
        train(c, "s2s-task", backbone="tiny-s2s", labels=["negative", "positive"], label_words=["bad", "good"])
        assert c.classify([("s2s-task", "great")])[0].version == "prompts/s2s-task/versions/1"
        served = list(c.generate("s2s-task", "translate this", max_new_tokens=4))
        v = c.get_version("s2s-task", include_tensor=True)
        local = BackboneWorker(tiny_models["seq2seq"], num_threads=1)  # the registered replica's own math
        assert served == [p.text for p in local.generate(GenerateRequest(v.sha256, {v.sha256: v.tensor}, "translate this",
                                                                           max_new_tokens=4)) if p.text]
        assert 1 <= len(served) <= 4
    ghost = str(Path(tiny_models["seq2seq"]).parent / "no-such-model")  # allowed place, nothing there
    missing = cli(server, "backbones", "register", "ghost", ghost, check=False)
    assert missing.returncode == 1 and "FAILED_PRECONDITION" in missing.stderr and "ghost" in missing.stderr
    for model in ("/no/such/model", "gpt2", "../../etc"):  # outside --model-root, or a hub id nobody allowed
        refused = cli(server, "backbones", "register", "nope", model, check=False)
        assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, (model, refused.stderr)
