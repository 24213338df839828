"""Text generation one sequence at a time (HF KV cache), for causal-LM and seq2seq backbones: the path with
batching off, and seq2seq's; causal LMs batch continuously in workers/engine.py by default."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch

from promptbank_domain.task import ConfigError
from workers import context
from workers.backbone import CAUSAL_LM, SEQ2SEQ, FrozenBackbone
from workers.deep_prompt import prefixes
from workers.protocol import GeneratePiece
from workers.sampling import Sampler
from workers.soft_prompt import RowPrompt, bare, build_batch
from workers.text_stream import TextStream


def _cache_kw(model: torch.nn.Module) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (argument and output field); support both."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache(out: object) -> object:
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


@torch.inference_mode()
def generate(
    bb: FrozenBackbone,
    prompt: RowPrompt | None,
    text: str,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: tuple[str, ...] = (),
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[GeneratePiece]:
    """One sequence at a time (batching off, and seq2seq backbones). Yield the newly decoded text after each
    generated token (pieces concatenate to the whole output, cut before a stop string), then a last piece with
    the finish reason and token counts. `prompt` None is a bare row; `cancelled()` is asked before each step. A
    deep prompt's prefixes join every forward's attention; the KV cache holds only the text's own keys."""
    if bb.architecture not in (CAUSAL_LM, SEQ2SEQ):
        raise ConfigError(f"generation needs a causal-LM or seq2seq backbone, not {bb.architecture!r}")
    row = bare(bb) if prompt is None else prompt
    text_ids = [context.text_ids(bb, row, text, max_new_tokens)]  # refused now if it cannot finish
    batch = build_batch(bb, text_ids, [row])  # one row: no padding
    sampler = Sampler(temperature, top_k, top_p, seed)
    stream = TextStream(bb.tokenizer, stop)

    def model(**kw: Any) -> Any:  # the prefixes only around each forward: never held across a yield
        with prefixes(batch.prefixes):
            return bb.model(**kw)

    ckw = _cache_kw(bb.model)
    eos = bb.tokenizer.eos_token_id
    dev = batch.inputs_embeds.device
    out_ids: list[int] = []
    reason = "length"
    room = bb.max_positions  # causal LMs: tokens that may still be fed (the context is full after)
    if bb.architecture == CAUSAL_LM:
        kw: dict[str, object] = {"position_ids": batch.position_ids} if bb.accepts_position_ids else {}
        out = model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, use_cache=True, **kw)
        L = batch.inputs_embeds.shape[1]
        first = int(batch.position_ids[0, 0])  # a deep prompt's row starts after its prefix
        room -= first + L
    else:
        with prefixes(batch.prefixes):
            encoder_outputs = bb.model.get_encoder()(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask)
        start = torch.full((1, 1), bb.decoder_start_id, device=dev)
        out = model(encoder_outputs=encoder_outputs, attention_mask=batch.attention_mask, decoder_input_ids=start,
                    use_cache=True)
    for step in range(max_new_tokens):
        if cancelled():
            reason = "cancelled"
            break
        nxt = sampler.pick(out.logits[0, -1])
        if eos is not None and nxt == eos:
            reason = "eos"
            break
        out_ids.append(nxt)
        piece = stream.push(nxt)
        if piece:
            yield GeneratePiece(piece)
        if stream.stopped:
            reason = "stop"
            break
        if step + 1 == max_new_tokens or (bb.architecture == CAUSAL_LM and step >= room):
            break  # "length": the last token needs no forward
        ids = torch.tensor([[nxt]], device=dev)
        if bb.architecture == CAUSAL_LM:
            seen = L + step  # tokens in the cache once this one joins: the text's own, never the prefix
            kw = {"position_ids": torch.tensor([[first + seen]], device=dev)} if bb.accepts_position_ids else {}
            kw[ckw] = _cache(out)
            out = model(input_ids=ids, use_cache=True,
                        attention_mask=torch.ones(1, seen + 1, dtype=torch.long, device=dev), **kw)
        else:
            out = model(encoder_outputs=encoder_outputs, attention_mask=batch.attention_mask, decoder_input_ids=ids,
                        use_cache=True, **{ckw: _cache(out)})
    yield GeneratePiece(stream.flush(), finish_reason=reason, prompt_tokens=len(text_ids[0]),
                        generated_tokens=len(out_ids))
