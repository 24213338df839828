"""Property-based fuzzing (hypothesis, bounded): whatever arrives, the answer is OK or a documented status code
— never INTERNAL, never a crash. Parsers are fuzzed directly; every RPC is fuzzed against a real server
with messages built from its descriptor."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bank.codec import PROMPT_KEY, decode_prompt, encode_prompt
from bank.peft_format import import_peft
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.convert import page
from promptbank_api.errors import PromptBankError
from promptbank_api.files import read_labelled
from promptbank_api.names import parse_ref
from promptbank_api.v1 import auth_pb2, catalog_pb2, inference_pb2, jobs_pb2
from tests.conftest import LiveServer
from workers.checkpoint import TrainState

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NASTY = st.sampled_from(["", " ", "prompts/", "prompts/x/versions/0", "x/versions/99999999999999999999",
                         "../../etc/passwd", "/etc/hosts", "~", "datasets/..", "a@b@c", "tokens/", "jobs/",
                         "\x00", "é" * 50, "x" * 300, "backbones/../x", "latest", "*"])
TEXT = st.one_of(NASTY, st.text(max_size=40))
DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAUTHENTICATED}


def _only_documented(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except PromptBankError:
        pass  # a documented domain error: mapped to its status code in one place


# ---------------------------------------------------------------- parsers


@FAST
@given(TEXT)
def test_references_parse_or_are_invalid_argument(ref: str) -> None:
    _only_documented(parse_ref, ref)


@FAST
@given(st.one_of(TEXT, st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=8)
                 .map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode())),
       st.integers(-5, 5000))
def test_page_tokens_are_read_or_refused(token: str, size: int) -> None:
    _only_documented(page, size, token, {"q": 1})


def _safetensors(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


VALID = encode_prompt(torch.randn(3, 4))
HEADERS = st.fixed_dictionaries({
    PROMPT_KEY: st.fixed_dictionaries({
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX"]),
        "shape": st.lists(st.integers(-2, 10**6), max_size=4),
        "data_offsets": st.lists(st.integers(-5, 10**9), min_size=0, max_size=3),
    })})


@FAST
@given(st.one_of(
    st.binary(max_size=256),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),  # truncated
    st.integers(2**40, 2**63).map(lambda n: struct.pack("<Q", n) + b"{}"),  # header length far past the end
    st.tuples(HEADERS, st.binary(max_size=64)).map(lambda hb: _safetensors(*hb)),  # wrong dtype/shape/offsets
))
def test_the_codec_decodes_or_refuses(data: bytes) -> None:
    _only_documented(decode_prompt, data)
    _only_documented(TrainState.from_bytes, data, (3, 4))


CONFIG = st.one_of(
    st.binary(max_size=64),
    st.fixed_dictionaries({"peft_type": st.sampled_from(["PROMPT_TUNING", "LORA", 5, None]),
                           "task_type": st.sampled_from(["CAUSAL_LM", "SEQ_2_SEQ_LM", "FEATURE_EXTRACTION", "", 3]),
                           "num_virtual_tokens": st.one_of(st.integers(-3, 10**9), st.just("3"), st.none()),
                           "token_dim": st.one_of(st.integers(-3, 10**9), st.none()),
                           "num_transformer_submodules": st.one_of(st.integers(-1, 4), st.none())}
                          ).map(lambda d: json.dumps(d).encode()))


@FAST
@given(CONFIG, st.one_of(st.just(VALID), st.binary(max_size=128),
                         st.floats(allow_nan=True, allow_infinity=True, width=32).map(
                             lambda x: encode_prompt(torch.full((3, 4), x)))))
def test_the_peft_reader_reads_or_refuses(config: bytes, weights: bytes) -> None:
    _only_documented(import_peft, config, weights)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"]), st.binary(max_size=200))
def test_the_table_reader_reads_or_refuses(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    _only_documented(read_labelled, path, "text", "label")


# ---------------------------------------------------------------- every RPC, on a real server


def _value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return _message(f.message_type, depth + 1)
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(VALID))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-1, 6)
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(-(2**63), 2**63 - 1)


def _message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(desc)
    if depth > 2:
        return st.just(cls())
    parts = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            parts[f.name] = st.dictionaries(_value(key, depth), _value(val, depth), max_size=2)
        elif f.is_repeated:
            parts[f.name] = st.lists(_value(f, depth), max_size=3)
        else:
            parts[f.name] = _value(f, depth)

    def build(chosen: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in chosen.items():
            f = desc.fields_by_name[name]
            target = getattr(msg, name) if f.message_type is not None or f.is_repeated \
                else None
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if f.message_type.fields_by_name["value"].message_type is not None:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif f.is_repeated:
                target.extend(value)
            elif f.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=parts).map(build)


SERVICES = [d.services_by_name[n] for d in (catalog_pb2.DESCRIPTOR, jobs_pb2.DESCRIPTOR, inference_pb2.DESCRIPTOR,
                                            auth_pb2.DESCRIPTOR) for n in d.services_by_name]
METHODS = [(s, m) for s in SERVICES for m in s.methods]


@pytest.fixture(scope="module")
def fuzz_server(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerConfig(port=0, db=str(tmp_path_factory.mktemp("fuzz") / "b.db"), worker_cpus=0.25,
                                   grace_seconds=0.5, train_gather_s=3600.0,  # a stray valid job never starts
                                   backbones=(BackboneSpec("enc", tiny_encoder),)))
    yield live
    live.stop()


@pytest.mark.parametrize("service,method", METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_every_rpc_answers_fuzzed_requests_with_documented_codes(fuzz_server: LiveServer, service: Any,
                                                                  method: Any) -> None:
    cls = message_factory.GetMessageClass(method.output_type)
    path = f"/{service.full_name}/{method.name}"
    with grpc.insecure_channel(fuzz_server.address) as ch:
        kind = (method.client_streaming, method.server_streaming)
        call = {(False, False): ch.unary_unary, (False, True): ch.unary_stream, (True, False): ch.stream_unary,
                (True, True): ch.stream_stream}[kind](path, request_serializer=lambda m: m.SerializeToString(),
                                                      response_deserializer=cls.FromString)
        seen: list[grpc.StatusCode] = []

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        @given(_message(method.input_type))
        def fuzz(request: Any) -> None:
            try:
                arg = iter([request]) if method.client_streaming else request
                out = call(arg, timeout=15)
                if method.server_streaming:
                    for _ in zip(range(3), out, strict=False):
                        pass
                    out.cancel()
                seen.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                code = err.code()
                seen.append(code)
                assert code in DOCUMENTED or (method.server_streaming and code == grpc.StatusCode.CANCELLED), \
                    f"{path} answered {code.name}: {err.details()} for {request!r}"

        fuzz()
        assert seen, "no request was sent"
