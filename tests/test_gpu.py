"""The GPU path, run where CUDA is (scripts/device_check.sh; skipped with the reason elsewhere): training,
classification and generation on CUDA agree with the CPU within the dtype's tolerance, co-batched training
equals each job alone, a bf16 replica serves mixed batches exactly within its tolerance, and with two GPUs a
replica split over both answers as one GPU does.

Runs without Ray, the bank's SQL or this folder's conftest (`pytest --noconftest -m gpu tests/test_gpu.py`):
its models and tokenizer are made here from configs (bench/_synthetic.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _synthetic import LLAMA_TINY, causal_lm  # noqa: E402

from bank.codec import encode_prompt, sha256_hex  # noqa: E402
from promptbank_domain.precision import MIXED_BATCH_TOL  # noqa: E402
from promptbank_domain.task import TaskSpec  # noqa: E402
from promptbank_domain.train_config import TrainConfig  # noqa: E402
from promptbank_kinds import DEEP  # noqa: E402
from workers.actor import BackboneWorker  # noqa: E402
from workers.devices import Placement  # noqa: E402
from workers.protocol import ClassifyBatch, EventKind, GenerateRequest, TrainEvent, TrainRequest  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device here: the GPU path runs in scripts/device_check.sh")]
TASK = TaskSpec(labels=("negative", "positive"), label_words=("bad", "good"))
TEXTS = ["a good day", "this is a much longer sentence about a very bad film", "ok", "the cat sat on the mat",
         "one two three four five six seven eight", "why not"]
FP32_ATOL = 2e-3  # CUDA vs CPU fp32 kernels (TF32 off) differ in summation order only


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return causal_lm(tmp_path_factory.mktemp("gpu-llama"), LLAMA_TINY, "fp32")


@pytest.fixture(scope="module", autouse=True)
def no_tf32() -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def cpu_worker(model: str, dtype: str = "fp32") -> BackboneWorker:
    """The same model on the CPU, in a CUDA machine's process: hide the GPUs only while it loads."""
    return BackboneWorker(model, num_threads=2, dtype=dtype, placement=Placement(dtype, (torch.device("cpu"),)))


def prompts(w: BackboneWorker) -> dict[str, bytes]:
    assert w.bb.deep is not None
    g = torch.Generator().manual_seed(0)
    blobs = [encode_prompt(torch.randn(n, w.bb.hidden_size, generator=g)) for n in (3, 8)]
    blobs += [encode_prompt(torch.randn(n, w.bb.deep.width, generator=g), kind=DEEP) for n in (2, 5)]
    return {sha256_hex(b): b for b in blobs}


def classify(w: BackboneWorker, blobs: dict[str, bytes]) -> list[list[float]]:
    rows = [(k, t) for k in blobs for t in TEXTS]
    return w.classify(ClassifyBatch(rows, blobs, dict.fromkeys(blobs, TASK)))


def result(events: list[TrainEvent], job: str) -> TrainEvent:
    [r] = [e for e in events if e.job == job and e.kind is EventKind.RESULT]
    return r


def jobs(n: int) -> list[TrainRequest]:
    cfg = TrainConfig.from_dict({"epochs": 2, "batch_size": 4, "prompt_kind": "input", "num_virtual_tokens": 4,
                                 "eval_fraction": 0.25, "seed": 0, "precision": "fp32"})
    data = [(f"{w} thing number {i}", "positive" if w == "good" else "negative") for i in range(8) for w in ("good", "bad")]
    return [TrainRequest(f"job{j}", TASK, cfg, data[j:] + data[:j]) for j in range(n)]


def test_classify_train_and_generate_on_cuda_agree_with_the_cpu(model: str) -> None:
    gpu, cpu = BackboneWorker(model, dtype="fp32"), cpu_worker(model)
    assert gpu.info().device.startswith("cuda") and cpu.info().device == "cpu"
    assert gpu.info().fingerprint == cpu.info().fingerprint
    blobs = prompts(gpu)
    for a, b in zip(classify(gpu, blobs), classify(cpu, blobs), strict=True):
        assert a == pytest.approx(b, abs=FP32_ATOL)
    [job] = jobs(1)
    ga, ca = result(list(gpu.train(job)), "job0"), result(list(cpu.train(job)), "job0")
    assert ga.metrics["eval_loss"] == pytest.approx(ca.metrics["eval_loss"], abs=1e-2)
    req = GenerateRequest(next(iter(blobs)), blobs, "the cat sat", max_new_tokens=8)
    assert [p.text for p in gpu.generate(req)] == [p.text for p in cpu.generate(req)]


def test_co_batched_training_on_cuda_equals_each_job_alone(model: str) -> None:
    w = BackboneWorker(model, dtype="fp32")
    together = list(w.train_group(jobs(3)))
    for job in jobs(3):
        alone = result(list(w.train(job)), job.job_id)
        assert result(together, job.job_id).metrics["eval_loss"] == pytest.approx(alone.metrics["eval_loss"], abs=1e-4)


def test_a_bf16_replica_on_cuda_serves_mixed_batches_within_its_tolerance(model: str) -> None:
    w = BackboneWorker(model)  # auto: bf16 where the GPU has it
    assert w.info().dtype in ("bf16", "fp16")
    atol, rtol = MIXED_BATCH_TOL[w.info().dtype]
    blobs = prompts(w)
    rows = [(k, t) for k in blobs for t in TEXTS]
    mixed = w.classify(ClassifyBatch(rows, blobs, dict.fromkeys(blobs, TASK)))
    for row, got in zip(rows, mixed, strict=True):
        alone = w.classify(ClassifyBatch([row], {}, dict.fromkeys(blobs, TASK)))[0]
        assert got.index(max(got)) == alone.index(max(alone))
        torch.testing.assert_close(torch.tensor(got), torch.tensor(alone), atol=atol, rtol=rtol)
    cpu = cpu_worker(model, "bf16")
    for a, b in zip(classify(w, blobs), classify(cpu, blobs), strict=True):  # bf16 on two kinds of kernels
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=4 * atol, rtol=4 * rtol)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU here: the two-GPU split needs two")
def test_a_replica_split_over_two_gpus_answers_as_one_gpu_does(model: str) -> None:
    one = BackboneWorker(model, dtype="fp32", placement=Placement("fp32", (torch.device("cuda", 0),)))
    weights = sum(p.numel() * p.element_size() for p in one.bb.model.parameters())
    devices = (torch.device("cuda", 0), torch.device("cuda", 1))
    split = BackboneWorker(model, dtype="fp32", placement=Placement("fp32", devices, {0: weights // 2, 1: weights * 4}))
    assert split.bb.deep is not None and len(set(split.bb.deep.devices)) == 2  # layers on both GPUs
    assert split.info().devices == ("cuda:0", "cuda:1")
    blobs = prompts(one)
    for a, b in zip(classify(split, blobs), classify(one, blobs), strict=True):
        assert a == pytest.approx(b, abs=FP32_ATOL)
    for key in blobs:  # input and deep prompts, continuously batched across the split
        req = GenerateRequest(key, blobs, "the cat sat", max_new_tokens=8)
        assert [p.text for p in split.generate(req)] == [p.text for p in one.generate(req)]
    [job] = jobs(1)
    assert result(list(split.train(job)), "job0").metrics["eval_loss"] == pytest.approx(
        result(list(one.train(job)), "job0").metrics["eval_loss"], abs=1e-3)
