"""Deep prompts through the real service (gRPC on loopback, a local Ray replica, a SQLite bank): trained from
the SDK and the CLI, stored with their kind, served in one Classify beside input prompts and bare rows
(each row as it scores alone), in ensembles, streamed Generate, PEFT export and import, and `nearest`
transfer that only looks at prompts of the job's kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bank.codec import encode_prompt, read_prompt
from coordinator.jobs_service import train_config
from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_domain.train_config import TrainConfig
from promptbank_kinds import DEEP, INPUT, Geometry
from promptbank_kinds import DEFAULT as DEFAULT_KIND
from tests.test_cli import cli
from tests.test_server import DATA, TOPIC, code_of, train

# lr 0.005: through the default 512-unit projection, 0.05 collapses tiny-lm's prefix (every row scored alike),
# which the trainer now refuses to publish
DEEP_HP = jp.Hyperparameters(num_virtual_tokens=3, epochs=1, batch_size=8, learning_rate=0.005,
                             prompt_kind=cat.PROMPT_KIND_DEEP)


@pytest.fixture(scope="module")
def deep_prompts(client_module: Client) -> dict[str, str]:
    """A deep and an input version of one prompt on tiny-enc, a deep one on tiny-lm."""
    c = client_module
    out = {"deep": train(c, "dp-sent", hyperparameters=DEEP_HP).result_version,
           "input": train(c, "dp-sent").result_version,
           "lm": train(c, "dp-lm", backbone="tiny-lm", hyperparameters=DEEP_HP, label_words=["bad", "good"],
                       labels=["negative", "positive"]).result_version}
    return out


@pytest.fixture(scope="module")
def client_module(server) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=60) as c:
        yield c


def test_a_deep_version_records_its_kind_and_shape(client_module: Client, deep_prompts: dict[str, str]) -> None:
    c = client_module
    bb = c.get_backbone("tiny-enc")
    assert bb.deep_prompt_width == 2 * 2 * bb.hidden_size  # 2 layers x (keys, values) x 4 heads x 8
    v = c.get_version(deep_prompts["deep"], include_tensor=True)
    assert v.kind == cat.PROMPT_KIND_DEEP and list(v.shape) == [3, bb.deep_prompt_width]
    tensor, kind = read_prompt(v.tensor)
    assert kind == DEEP and list(tensor.shape) == list(v.shape)
    assert c.get_version(deep_prompts["input"]).kind == cat.PROMPT_KIND_INPUT
    kinds = sorted(j.hyperparameters.prompt_kind for j in c.list_jobs(prompt="dp-sent"))  # what each job trained
    assert kinds == [cat.PROMPT_KIND_INPUT, cat.PROMPT_KIND_DEEP]


def test_one_classify_mixes_kinds_and_each_row_scores_as_alone(client_module: Client,
                                                              deep_prompts: dict[str, str]) -> None:
    c = client_module
    texts = ["what a lovely day", "awful, just awful and slow", "ok"]
    refs = [deep_prompts["deep"], deep_prompts["input"], deep_prompts["lm"], deep_prompts["deep"]]
    rows = [(refs[i % len(refs)], texts[i % len(texts)]) for i in range(9)]
    together = c.classify(rows)
    for (ref, text), got in zip(rows, together, strict=True):
        alone = c.classify([(ref, text)])[0]
        assert got.version == alone.version
        for label, score in alone.scores.items():
            assert got.scores[label] == pytest.approx(score, abs=1e-5)
    deep_row, input_row = together[0], together[1]
    assert deep_row.scores != input_row.scores
    # an ensemble of a deep and an input version of the same task averages the two rows' probabilities
    ens = c.classify_ensemble([([deep_prompts["deep"], deep_prompts["input"]], texts[0])])[0]
    a, b = c.classify([(deep_prompts["deep"], texts[0])])[0], c.classify([(deep_prompts["input"], texts[0])])[0]
    for label in ens.scores:
        assert ens.scores[label] == pytest.approx((a.scores[label] + b.scores[label]) / 2, abs=1e-5)


def test_generate_streams_with_a_deep_prompt(client_module: Client, deep_prompts: dict[str, str]) -> None:
    pieces = list(client_module.generate(deep_prompts["lm"], "the film was", max_new_tokens=5))
    again = list(client_module.generate(deep_prompts["lm"], "the film was", max_new_tokens=5))
    assert pieces and pieces == again  # greedy: the same stream twice


def test_peft_export_and_import_keep_a_deep_prompt(client_module: Client, deep_prompts: dict[str, str]) -> None:
    c = client_module
    exported = c.export_version(deep_prompts["deep"])
    assert b'"PREFIX_TUNING"' in exported.adapter_config
    v = c.import_version("dp-imported", "tiny-enc", exported.adapter_config, exported.adapter_model,
                         labels=["negative", "positive"])
    assert v.kind == cat.PROMPT_KIND_DEEP
    text = "a lovely surprise"
    src, imp = c.classify([(deep_prompts["deep"], text), (v.name, text)])
    for label, score in src.scores.items():
        assert imp.scores[label] == pytest.approx(score, abs=1e-6)
    # a prefix made for a model of another depth does not fit: refused, naming both shapes
    config = json.loads(exported.adapter_config) | {"num_layers": 1}
    one_layer = encode_prompt(read_prompt(exported.adapter_model)[0][:, :64], kind=DEEP)
    code, msg = code_of(lambda: c.import_version("dp-wrong", "tiny-enc", json.dumps(config).encode(), one_layer,
                                                 labels=["negative", "positive"]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "num_layers=1, num_attention_heads=4, token_dim=32; backbone 'tiny-enc' has num_layers=2" in msg


def test_nearest_transfer_looks_only_at_prompts_of_the_jobs_kind(client_module: Client,
                                                                 deep_prompts: dict[str, str]) -> None:
    c = client_module
    exported = c.export_version(deep_prompts["deep"])  # a prompt whose latest version is deep: a candidate
    c.import_version("dp-near-src", "tiny-enc", exported.adapter_config, exported.adapter_model,
                     labels=["negative", "positive"])
    hp = jp.Hyperparameters(num_virtual_tokens=3, epochs=1, init="nearest", prompt_kind=cat.PROMPT_KIND_DEEP)
    near = train(c, "dp-near", data=TOPIC, hyperparameters=hp)
    init = c.get_version(near.result_version).lineage.init
    assert init.startswith("nearest:prompts/")
    source = init.removeprefix("nearest:").split(" ")[0]
    assert c.get_version(source).kind == cat.PROMPT_KIND_DEEP
    # starting a deep job from a stored input prompt fails the job, naming both kinds
    hp = jp.Hyperparameters(num_virtual_tokens=3, epochs=1, init=deep_prompts["input"], prompt_kind=cat.PROMPT_KIND_DEEP)
    job = c.create_train_job("dp-mismatch", "tiny-enc", DATA, hyperparameters=hp)
    done = c.wait_job(job.name, timeout=120)
    assert done.state == jp.TrainJob.FAILED and "init prompt is 'input'" in done.error


def test_the_cli_trains_a_deep_prompt_and_lists_its_kind(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in DATA))
    out = cli(server, "train", "--task", "dp-cli", "--backbone", "tiny-enc", "--data", str(data), "--kind", "deep",
              "--virtual-tokens", "2", "--epochs", "1", "--prefix-projection", "8",
              "--max-grad-norm", "0.5", "--weight-decay", "0.01", "--warmup-fraction", "0.25")
    assert out.stdout.startswith("prompts/dp-cli/versions/1")
    listing = cli(server, "prompts", "versions", "dp-cli").stdout
    assert "KIND" in listing and "deep" in listing.splitlines()[1]
    with Client(server.address) as c:
        v = c.get_version("dp-cli@latest")
        assert v.kind == cat.PROMPT_KIND_DEEP and list(v.shape) == [2, c.get_backbone("tiny-enc").deep_prompt_width]
        job = c.list_jobs(prompt="dp-cli")[0]  # trained through the projection, stored as the prefix alone
        assert job.hyperparameters.prefix_projection == 8 and job.hyperparameters.max_grad_norm == 0.5
        assert job.hyperparameters.weight_decay == 0.01 and job.hyperparameters.warmup_fraction == 0.25


def test_a_job_takes_its_kinds_defaults_and_set_values_win() -> None:
    """A job that names no kind gets DEFAULT_KIND (deep) where the backbone can carry deep prompts and an input
    prompt elsewhere; unset hyperparameters are that kind's defaults (a deep prompt's learning rate is far
    smaller than an input prompt's); a value the caller sets is used as given."""
    assert DEFAULT_KIND == DEEP
    assert train_config(jp.Hyperparameters(), jp.Dataset()) == TrainConfig.defaults(DEEP)
    no_prefixes, carries_them = Geometry(hidden_size=32), Geometry(hidden_size=32, layers=2, kv_heads=4, head_dim=8)
    assert train_config(jp.Hyperparameters(), jp.Dataset(), no_prefixes) == TrainConfig.defaults(INPUT)
    assert train_config(jp.Hyperparameters(), jp.Dataset(), carries_them) == TrainConfig.defaults(DEEP)
    named = jp.Hyperparameters(prompt_kind=cat.PROMPT_KIND_INPUT)
    assert train_config(named, jp.Dataset()) == TrainConfig.defaults(INPUT)
    assert TrainConfig.defaults(DEEP).learning_rate < TrainConfig.defaults(INPUT).learning_rate
    for kind in (cat.PROMPT_KIND_UNSPECIFIED, cat.PROMPT_KIND_INPUT, cat.PROMPT_KIND_DEEP):
        given = jp.Hyperparameters(learning_rate=0.2, prompt_kind=kind)
        assert train_config(given, jp.Dataset()).learning_rate == pytest.approx(0.2)


def test_a_job_that_names_no_kind_trains_a_deep_prompt(client_module: Client) -> None:
    """Through the service: the job shows the kind and the defaults it resolved to, and stores a deep version."""
    c = client_module
    done = train(c, "dp-unnamed", hyperparameters=jp.Hyperparameters(num_virtual_tokens=2, epochs=1, batch_size=8))
    v = c.get_version(done.result_version)
    assert v.kind == cat.PROMPT_KIND_DEEP and list(v.shape) == [2, c.get_backbone("tiny-enc").deep_prompt_width]
    shown = c.get_job(done.name).hyperparameters
    deep = TrainConfig.defaults(DEEP)
    assert shown.prompt_kind == cat.PROMPT_KIND_DEEP and shown.prefix_projection == deep.prefix_projection
    assert shown.learning_rate == pytest.approx(deep.learning_rate)
