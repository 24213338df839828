"""TrainConfig's table is the one list of hyperparameters: the proto's `Hyperparameters`, the CLI's `train` flags
and docs/configuration.md's table follow it, and a value given on any side reaches the job and its echo.

No server here: the CLI's parser and request builder, the coordinator's wire mapping and its echo are called
directly (tests/test_deep_service.py runs the same path through a live server).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from coordinator.convert import hyperparameters_to_proto
from coordinator.jobs_service import train_config
from promptbank.cli import build_parser, hyperparameters
from promptbank_api.v1 import jobs_pb2 as jp
from promptbank_domain.jobs import JobSpec
from promptbank_domain.params import KEY
from promptbank_domain.task import ConfigError, TaskSpec
from promptbank_domain.train_config import PARAMS, TYPES, TrainConfig, markdown_table, on_wire

ROOT = Path(__file__).resolve().parents[1]
F = FieldDescriptor
PROTO_TYPES = {"int": {F.TYPE_INT32, F.TYPE_INT64}, "float": {F.TYPE_DOUBLE}, "str": {F.TYPE_STRING}}
# `train` flags that are not hyperparameters: the task, its data, where the result goes, and how the CLI behaves.
# A new hyperparameter flag must come from the table instead of joining this list.
OTHER_FLAGS = {"help", "task", "backbone", "data", "data_uri", "text_column", "label_column", "labels", "label_texts",
               "label_words", "pooling", "init_from", "alias", "max_rows", "request_id", "no_wait", "json",
               "encoding", "reconnect_for"}


def train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_field_has_a_row() -> None:
    assert all(KEY in f.metadata for f in fields(TrainConfig))
    assert set(PARAMS) == {f.name for f in fields(TrainConfig)}
    internal = {n for n, p in PARAMS.items() if not p.wire}
    assert internal == {"eval_every_epochs", "progress_every", "init_from"}, "a field left off the wire: say why here"


def test_the_proto_carries_exactly_the_fields_on_the_wire() -> None:
    """A field in TrainConfig but not in the proto (or the other way round) fails here; so does a wrong type or a
    scalar without presence (unset must mean "the default", 0 must mean 0)."""
    proto = {f.name: f for f in jp.Hyperparameters.DESCRIPTOR.fields}
    assert set(proto) == set(on_wire("optional", "text", "kind"))
    for name in on_wire("optional", "text"):
        assert proto[name].type in PROTO_TYPES[TYPES[name]], name
        assert proto[name].has_presence == (PARAMS[name].wire == "optional"), name
    assert proto["prompt_kind"].type == F.TYPE_ENUM
    dataset = {f.name: f for f in jp.Dataset.DESCRIPTOR.fields}
    for name in on_wire("dataset"):
        assert dataset[name].has_presence and dataset[name].type in PROTO_TYPES[TYPES[name]], name


def test_the_cli_has_a_flag_for_every_field_on_the_wire_and_no_other_hyperparameter() -> None:
    dests = {a.dest for a in train_parser()._actions}
    flagged = {p.dest for p in PARAMS.values() if p.flag}
    assert {n for n, p in PARAMS.items() if p.wire and not p.flag} == set(), "a field on the wire without a flag"
    assert flagged <= dests
    assert dests - flagged == OTHER_FLAGS


def test_the_docs_table_is_the_tables() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert markdown_table() in doc, "docs/configuration.md's training table is stale: paste markdown_table()"
    undocumented = [name for name, p in PARAMS.items() if p.wire and not p.setting]
    assert not undocumented, "a setting a caller can change needs a docs row"


def _given() -> dict[str, object]:
    """A valid value for every field on the wire, each unlike its defaults (so a dropped one shows)."""
    values: dict[str, object] = {}
    for name in on_wire("optional", "dataset", "text"):
        p, base = PARAMS[name], {getattr(TrainConfig.defaults(k), name) for k in ("input", "deep")}
        if p.choices:
            values[name] = next(c for c in p.choices if c not in base)
        elif TYPES[name] == "str":
            values[name] = "text" if name == "init" else "a few words"
        else:
            low = 1 if p.low is None or p.zero_unset else p.low
            high = p.high if p.high is not None else low + 100
            value = low + (high - low) * 0.37 if TYPES[name] == "float" else int(low + 3)
            values[name] = value if value not in base else value + 1
    return values


def test_every_flag_reaches_the_job_and_its_echo() -> None:
    """CLI flags -> Hyperparameters -> the coordinator's TrainConfig -> the stored spec -> the job as returned."""
    given = _given()
    argv = ["--task", "t", "--data", "d.csv", "--kind", "deep"]
    for name, value in given.items():
        argv += [PARAMS[name].flag, str(value)]
    a = train_parser().parse_args(argv)
    hp = hyperparameters(a)
    cfg = train_config(hp, jp.Dataset(eval_fraction=a.eval_fraction))
    assert cfg.prompt_kind == "deep"
    for name, value in given.items():
        assert getattr(cfg, name) == pytest.approx(value) if TYPES[name] == "float" else getattr(cfg, name) == value, name
    echo = hyperparameters_to_proto(JobSpec(task=TaskSpec(labels=("a", "b")), config=cfg))
    for name in on_wire("optional", "text"):
        assert getattr(echo, name) == getattr(cfg, name), name


def test_unset_fields_take_the_kinds_defaults_and_new_fields_are_validated() -> None:
    assert train_config(jp.Hyperparameters(prompt_kind=1), jp.Dataset()) == TrainConfig.defaults("input")
    cfg = train_config(jp.Hyperparameters(weight_decay=0.0, warmup_fraction=0.0), jp.Dataset())
    assert (cfg.weight_decay, cfg.warmup_fraction) == (0.0, 0.0)  # 0 is a value, not "unset"
    for name, bad in (("weight_decay", -0.1), ("weight_decay", 1.5), ("warmup_fraction", 1.0)):
        with pytest.raises(ConfigError, match=f"{name}={bad} is invalid: must be in"):
            train_config(jp.Hyperparameters(**{name: bad}), jp.Dataset())
