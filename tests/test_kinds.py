"""Prompt kinds as plug-ins: every registered kind has every part of the protocol, the registry refuses one that
lacks a part or collides with another, the API enum and the CLI name the registered kinds, and a kind
registered from outside the package runs through the codec, the fit checks, the config and a mixed batch with
no edit to the bank or the workers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

import promptbank_kinds as kinds
from bank.codec import encode_prompt, read_prompt
from promptbank.cli_catalog import PROMPT_KINDS, kind_name
from promptbank_api.errors import InvalidArgument
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_domain import kinds as described
from promptbank_domain.task import POOLINGS, TaskSpec
from promptbank_domain.train_config import PARAMS, TrainConfig
from promptbank_kinds.base import members
from promptbank_kinds.input import InputKind
from workers.backbone import FrozenBackbone
from workers.heads import Heads
from workers.soft_prompt import build_batch, load_prompt, tokenize


@contextmanager
def registered(kind: kinds.PromptKind) -> Iterator[kinds.PromptKind]:
    """`kind` in the registry for the block only (the registry is process-wide)."""
    kinds.register(kind)
    try:
        yield kind
    finally:
        kinds.unregister(kind.name)


class ToyKind(InputKind):
    """A third kind: input vectors under another name (what a plug-in module would hold)."""

    name = "toy"
    proto_enum = "PROMPT_KIND_TOY"
    label = "toy prompt"
    help = "'toy' vectors before the text"
    peft_type = "TOY_TUNING"


def test_every_registered_kind_has_every_part() -> None:
    assert len(members()) >= 20 and {"apply", "width", "peft_config", "trainable", "init_rows"} <= set(members())
    for kind in kinds.all():
        missing = [m for m in members() if not hasattr(kind, m)]
        assert not missing, f"{kind.name} lacks {missing}"
        assert kinds.get(kind.name) is kind
    assert kinds.names() == (kinds.INPUT, kinds.DEEP) and kinds.UNMARKED in kinds.names()


def test_the_registry_refuses_an_incomplete_or_colliding_kind() -> None:
    class NoPeft:  # everything of an input kind but its PEFT config
        def __getattr__(self, name: str) -> object:
            if name == "peft_config":
                raise AttributeError(name)
            return getattr(InputKind(), name) if name != "name" else "half"

    with pytest.raises(TypeError, match=r"'half' lacks \['peft_config'\]"):
        kinds.register(NoPeft())  # type: ignore[arg-type]

    class NotCallable(ToyKind):
        apply = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"\['apply'\] must be methods"):
        kinds.register(NotCallable())
    with pytest.raises(TypeError, match="share name 'input'"):
        kinds.register(InputKind())
    with pytest.raises(TypeError, match="share peft_type 'PREFIX_TUNING'"):
        kinds.register(type("Clash", (ToyKind,), {"peft_type": "PREFIX_TUNING"})())
    assert kinds.names() == described.names() == (kinds.INPUT, kinds.DEEP)  # nothing half-registered
    with pytest.raises(InvalidArgument, match=r"prompt kind 'toy' is not one of \['input', 'deep'\]"):
        kinds.get("toy")


def test_the_domain_knows_each_kind_by_its_description() -> None:
    """The domain (a leaf without torch) holds each kind's description, the one its module in promptbank_kinds
    reads its name and wording from, in the same order; the CLI's help reads the same."""
    assert described.names() == kinds.names() and (described.INPUT.name, described.DEEP.name) == kinds.names()
    for k in kinds.all():
        info = described.get(k.name)
        assert (info.proto_enum, dict(info.train_defaults), info.projects, info.label, info.width_name, info.help) == (
            k.proto_enum, dict(k.train_defaults), k.projects, k.label, k.width_name, k.help)
        assert info.label and info.width_name and f"'{k.name}'" in info.help
    assert described.preferred() == kinds.DEFAULT and described.projected() == tuple(
        k.name for k in kinds.all() if k.projects)
    assert PARAMS["prompt_kind"].help == f"what to train: {described.help_text()}"
    described.describe(described.DEEP)  # the same description again: a no-op
    with pytest.raises(TypeError, match="described twice, differently"):
        described.describe(described.KindInfo(kinds.DEEP, "PROMPT_KIND_DEEP"))


def test_train_config_validates_without_the_kinds_package_or_torch() -> None:
    """TrainConfig and the CLI's `train` help need only the domain's descriptions: a fresh interpreter that builds
    them never imports promptbank_kinds or torch."""
    script = """
import json, sys
from promptbank_domain.train_config import TrainConfig
from promptbank.cli import build_parser
config, deep = TrainConfig(), TrainConfig.defaults("deep")
try:
    TrainConfig(prompt_kind="nope")
    refused = ""
except Exception as exc:
    refused = str(exc)
sub = next(a for a in build_parser()._actions if a.dest == "cmd")
help = sub.choices["train"].format_help()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "promptbank_kinds", "transformers"))
print(json.dumps({"kind": config.prompt_kind, "deep": [deep.epochs, deep.prefix_projection], "refused": refused,
                  "help": help, "loaded": loaded}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["kind"] == "input" and out["deep"] == [5, 512]
    assert "prompt kind 'nope'" in out["refused"] or "'nope'" in out["refused"]
    assert "prefix tuning" in " ".join(out["help"].split()) and "5 for a deep prompt" in " ".join(out["help"].split())


def test_the_api_enum_and_the_cli_name_exactly_the_registered_kinds() -> None:
    """The coordinator maps kinds to the enum by `proto_enum`; the SDK's CLI (which does not load the kinds)
    reads names off the enum, so each kind's value must be PROMPT_KIND_<NAME>."""
    enum = {n for n, v in cat.PromptKind.items() if v}
    assert {k.proto_enum for k in kinds.all()} == enum
    assert all(k.proto_enum == f"PROMPT_KIND_{k.name.upper()}" for k in kinds.all())
    assert set(PROMPT_KINDS) == set(kinds.names())
    for k in kinds.all():
        assert kind_name(cat.PromptKind.Value(k.proto_enum)) == k.name
    assert kind_name(cat.PROMPT_KIND_UNSPECIFIED) == kinds.UNMARKED


def test_defaults_and_fit_come_from_the_kinds() -> None:
    bare, prefixed = kinds.Geometry(32), kinds.Geometry(32, layers=2, kv_heads=4, head_dim=8)
    assert kinds.default_for(prefixed).name == kinds.DEFAULT == kinds.DEEP
    assert kinds.default_for(bare).name == kinds.INPUT
    assert kinds.misfit(kinds.DEEP, 128, prefixed, "b") == "" and kinds.misfit(kinds.INPUT, 32, bare, "b") == ""
    assert "cannot carry deep prompts; use a prompt of a kind it carries (input)" in kinds.misfit(kinds.DEEP, 128, bare, "b")
    assert "deep prompt width 96 does not match backbone 'b' deep prompt width 128" in kinds.misfit(
        kinds.DEEP, 96, prefixed, "b")
    for k in kinds.all():
        assert TrainConfig.defaults(k.name).prompt_kind == k.name
        assert all(getattr(TrainConfig.defaults(k.name), f) == v for f, v in k.train_defaults.items())


@pytest.fixture(scope="module")
def heads(tiny_encoder: str) -> Heads:
    return Heads(FrozenBackbone(tiny_encoder))


def test_a_third_kind_plugs_in_without_touching_bank_or_workers(heads: Heads) -> None:
    bb = heads.bb
    task = TaskSpec(labels=("a", "b"), label_texts=("bad", "good"), pooling=POOLINGS[0])
    tensor = torch.randn(3, bb.hidden_size)
    with registered(ToyKind()):
        data = encode_prompt(tensor, kind="toy")
        assert read_prompt(data)[1] == "toy"
        row = load_prompt(bb, data)
        assert row.kind == "toy"
        assert TrainConfig(prompt_kind="toy").prompt_kind == "toy"
        with pytest.raises(InvalidArgument, match=r"prefix_projection=8 is invalid: must be 0 unless prompt_kind is 'deep'"):
            TrainConfig(prompt_kind="toy", prefix_projection=8)  # an input-like kind: it trains directly
        ids = tokenize(bb, ["a good day", "a bad one"], 32)
        as_input = kinds.Row(row.tensor, kinds.INPUT)
        toy = heads.features(build_batch(bb, ids, [row, as_input]), [task, task])
        plain = heads.features(build_batch(bb, ids, [as_input, as_input]), [task, task])
        torch.testing.assert_close(toy, plain, atol=0, rtol=0)  # applied as its module says: as input vectors
        assert not torch.equal(toy, heads.features(build_batch(bb, ids, [tensor[:0]] * 2), [task, task]))
    with pytest.raises(InvalidArgument, match="prompt kind 'toy' is not one of"):
        read_prompt(data)  # unregistered again: its bytes are refused, not misread
    with pytest.raises(InvalidArgument, match=r"prompt_kind='toy' is invalid: must be one of \['input', 'deep'\]"):
        TrainConfig(prompt_kind="toy")  # and the domain forgot it too
