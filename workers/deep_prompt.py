"""Deep prompts (prefix tuning, P-tuning v2): every self-attention layer gets its own prefix of keys and values.

A deep prompt is stored as one `(P, slots * 2 * kv_dim)` tensor in PEFT's PREFIX_TUNING layout: for each
prefix position, the keys then the values of every self-attention module in forward order. Rows of one batch
may carry deep prompts of different lengths, input prompts or none, so the prefixes cannot go through the
model's KV cache (one length per batch). Instead the backbone runs under an attention implementation
registered here, `promptbank+<sdpa|eager>`, that wraps the model's own: when a batch holds deep prompts it
puts row i's keys and values for that module in front of the module's own, masks the padding of shorter
prefixes out, and calls the original function. Masked keys get exactly zero weight, so each row's output
equals running it alone. A batch without deep prompts calls the original function untouched.

Positions follow PEFT (and the KV cache a prefix would sit in): a row's own positions start after its
prefix, `P_i, P_i + 1, ...`; prefix keys carry no position (no rotary phase, no relative-position bias).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from promptbank_api.errors import InvalidArgument
from promptbank_kinds.deep import DeepPrompt as DeepPrompt  # a row's deep prompt (the kind's own module)

NAME = "promptbank+"  # prefix of the attention implementations registered here
SUPPORTED = ("sdpa", "eager")  # implementations the wrapper can extend with prefix keys and a mask


@dataclass(frozen=True)
class DeepLayout:
    """Where a backbone's deep prompts go: its self-attention modules in forward order (encoder layers, then
    decoder layers) and the key/value shape each expects."""

    slots: dict[int, int]  # id(attention module) -> slot index
    kv_heads: int
    head_dim: int
    devices: tuple[torch.device, ...] = ()  # slot -> the device its module runs on (a split replica has several)

    def device(self, slot: int) -> torch.device | None:
        return self.devices[slot] if self.devices else None

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, key/value heads, head width): what the bank records of it."""
        return self.n_slots, self.kv_heads, self.head_dim

    @property
    def width(self) -> int:
        """Columns of a stored deep prompt: keys and values of every slot."""
        return self.n_slots * 2 * self.kv_heads * self.head_dim

    def split(self, prompt: torch.Tensor) -> torch.Tensor:
        """(P, width) -> (2 * slots, kv_heads, P, head_dim): PEFT's order, slot s's keys at 2s, values at 2s+1."""
        if prompt.dim() != 2 or prompt.shape[1] != self.width:
            raise InvalidArgument(f"a deep prompt for this backbone is [P, {self.width}] "
                                  f"({self.n_slots} layers x keys and values x {self.kv_heads * self.head_dim}), "
                                  f"got {list(prompt.shape)}")
        P = prompt.shape[0]
        return prompt.view(P, 2 * self.n_slots, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)


@dataclass(frozen=True)
class Prefixes:
    """One batch's deep prompts, padded to the longest: what the wrapped attention reads."""

    layout: DeepLayout
    kv: torch.Tensor  # (2 * slots, B, kv_heads, P_max, head_dim)
    keep: torch.Tensor  # (B, P_max) bool: True on a row's own prefix positions (left-padded: pads first)
    masks: dict[tuple[int, int, str, str], tuple[torch.Tensor | None, torch.Tensor]] = field(default_factory=dict)

    def mask(self, text: torch.Tensor | None, module: torch.nn.Module, base: str, q: int, k: int,
             causal: bool | None, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The module's mask with the prefix columns in front, on the module's `device`. The layers of one
        forward share one text mask, so the result is built once per forward, mask and device, not per layer."""
        key = (id(text), q, base, str(device))
        hit = self.masks.get(key)
        if hit is not None and hit[0] is text:
            return hit[1]
        B, P = self.keep.shape
        full = _text_mask(text, module, base, B, q, k, causal, dtype, device)
        heads = full.shape[1]
        keep = self.keep.to(full.device)[:, None, None, :].expand(B, heads, q, P)
        if full.dtype == torch.bool:
            pre = keep
        else:
            pre = torch.zeros(keep.shape, dtype=full.dtype, device=full.device).masked_fill(~keep, torch.finfo(full.dtype).min)
        out = torch.cat([pre, full.expand(B, heads, q, k)], dim=-1)
        if text is not None:  # a missing mask has no identity to key on
            self.masks[key] = (text, out)
        return out

    @classmethod
    def of(cls, layout: DeepLayout, prompts: list[torch.Tensor | None]) -> Prefixes | None:
        """Row i's deep prompt `(P_i, width)` or None; None when no row has one."""
        lengths = [0 if p is None else int(p.shape[0]) for p in prompts]
        P = max(lengths, default=0)
        if P == 0:
            return None
        ref = next(p for p in prompts if p is not None)
        if min(lengths) == P:  # every row has a prefix of one length (the common case): one copy, no padding
            kv = torch.stack([layout.split(p) for p in prompts if p is not None], dim=1)
        else:
            kv = ref.new_zeros(2 * layout.n_slots, len(prompts), layout.kv_heads, P, layout.head_dim)
            for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
                if p is not None:  # one copy of each row's prefix into place (autograd follows it), pads first
                    kv[:, i, :, P - n :] = layout.split(p)
        keep = torch.arange(P, device=kv.device).unsqueeze(0) >= P - torch.tensor(lengths, device=kv.device).unsqueeze(1)
        return cls(layout, kv, keep)


class DecodeCache(Protocol):
    """A running batch's cached keys and values (workers/kv_slab.py), read by the wrapped attention while decoding:
    `extend` stores one layer's new keys and values and returns all of them with the mask over each row's own."""

    layout: DeepLayout

    def extend(self, layer: int, key: torch.Tensor, value: torch.Tensor, base: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


_active: ContextVar[Prefixes | None] = ContextVar("promptbank_prefixes", default=None)
_trace: ContextVar[list[tuple[Any, int, int, int, int, torch.device]] | None] = ContextVar("promptbank_trace", default=None)
_capture: ContextVar[dict[int, tuple[torch.Tensor, torch.Tensor]] | None] = ContextVar("promptbank_capture",
                                                                                        default=None)
_decode: ContextVar[DecodeCache | None] = ContextVar("promptbank_decode", default=None)


@contextmanager
def prefixes(batch: Prefixes | None) -> Iterator[None]:
    """Run the forwards inside with `batch`'s deep prompts (per thread and task: replicas serve concurrently)."""
    token = _active.set(batch)
    try:
        yield
    finally:
        _active.reset(token)


@contextmanager
def decoding(cache: DecodeCache) -> Iterator[None]:
    """Run the forwards inside as one decode step of a running batch: each self-attention layer appends its new
    keys and values to `cache` and attends over the row's whole cache (deep prefix, text, new token)."""
    token = _decode.set(cache)
    try:
        yield
    finally:
        _decode.reset(token)


@contextmanager
def capturing(into: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Record each attention module's own keys and values (post-rotary, prefix excluded) by id(module): what a
    prefill leaves in the cache."""
    token = _capture.set(into)
    try:
        yield
    finally:
        _capture.reset(token)


def _inner(base: str, module: torch.nn.Module) -> Callable[..., Any]:
    """The attention function the model would have used: its own file's eager one, or the registered one."""
    fn: Callable[..., Any] = (sys.modules[type(module).__module__].eager_attention_forward if base == "eager"
                              else ALL_ATTENTION_FUNCTIONS[base])
    return fn


def _text_mask(mask: torch.Tensor | None, module: torch.nn.Module, base: str, B: int, q: int, k: int,
               causal: bool | None, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The module's own mask as an explicit tensor: SDPA reads a missing mask as causal or as no mask."""
    if mask is not None:
        return mask
    if base == "eager":  # eager adds no mask of its own: none means every key is visible
        return torch.zeros(B, 1, q, k, dtype=dtype, device=device)
    is_causal = causal if causal is not None else getattr(module, "is_causal", True)
    allowed = torch.ones(q, k, dtype=torch.bool, device=device)
    if is_causal and q > 1:
        allowed = torch.tril(allowed, diagonal=k - q)
    return allowed.expand(B, 1, q, k)


def _wrapped(base: str) -> Callable[..., Any]:
    def attend(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, **kw: Any) -> Any:
        inner = _inner(base, module)
        trace = _trace.get()
        if trace is not None:
            trace.append((module, query.shape[-2], key.shape[-2], key.shape[1], key.shape[-1], key.device))
        captured = _capture.get()
        if captured is not None:
            captured[id(module)] = (key, value)
        cache = _decode.get()
        layer = None if cache is None else cache.layout.slots.get(id(module))
        if layer is not None:
            assert cache is not None
            kw.pop("is_causal", None)
            key, value, mask = cache.extend(layer, key, value, base)
            return inner(module, query, key, value, mask, **kw)
        batch = _active.get()
        slot = None if batch is None else batch.layout.slots.get(id(module))
        if slot is None:
            return inner(module, query, key, value, attention_mask, **kw)
        assert batch is not None
        q, k, P = query.shape[-2], key.shape[-2], batch.keep.shape[1]
        mask = batch.mask(attention_mask, module, base, q, k, kw.pop("is_causal", None), query.dtype, query.device)
        # the prefix travels to this layer's device (a split replica) and dtype (fp32 prompts, half backbones)
        key = torch.cat([batch.kv[2 * slot].to(key.device, key.dtype), key], dim=2)
        value = torch.cat([batch.kv[2 * slot + 1].to(value.device, value.dtype), value], dim=2)
        bias = kw.get("position_bias")
        if bias is not None:  # relative-position models (T5): prefix keys carry none
            kw["position_bias"] = torch.cat([bias.new_zeros(*bias.shape[:-1], P).expand(*bias.shape[:-1], P), bias], -1)
        return inner(module, query, key, value, mask, **kw)

    return attend


def install(model: PreTrainedModel) -> DeepLayout | None:
    """Switch `model` to the wrapped attention and find its self-attention modules by tracing one forward.
    None when the model's attention cannot carry prefixes (then it is left as it was)."""
    base = model.config._attn_implementation or "eager"
    if base.startswith(NAME):
        base = base.removeprefix(NAME)
    if base not in SUPPORTED:
        return None
    name = NAME + base
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _wrapped(base))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    model.set_attn_implementation(name)
    calls: list[tuple[Any, int, int, int, int, torch.device]] = []
    token = _trace.set(calls)
    try:
        dev = next(model.get_input_embeddings().parameters()).device
        with torch.no_grad():
            ids = torch.ones(1, 5, dtype=torch.long, device=dev)
            if model.config.is_encoder_decoder:
                model(input_ids=ids, decoder_input_ids=ids[:, :3])
            else:
                model(input_ids=ids)
    finally:
        _trace.reset(token)
    self_attn = [(m, h, d, dev) for m, q, k, h, d, dev in calls if q == k]  # cross-attention: 5 keys, 3 queries
    slots: dict[int, int] = {}
    devices: list[torch.device] = []
    for m, _, _, dev in self_attn:
        if id(m) not in slots:
            slots[id(m)] = len(slots)
            devices.append(dev)
    shapes = {(h, d) for _, h, d, _ in self_attn}
    if not slots or len(shapes) != 1:
        model.set_attn_implementation(base)
        return None
    (kv_heads, head_dim), = shapes
    return DeepLayout(slots=slots, kv_heads=kv_heads, head_dim=head_dim, devices=tuple(devices))


@torch.no_grad()
def activations(model: PreTrainedModel, layout: DeepLayout, ids: list[int]) -> torch.Tensor:
    """`(len(ids), width)`: the keys and values each self-attention layer computes for `ids` read as one text.
    A deep prompt that starts here starts where real words put a layer's keys and values (prefix tuning's
    initialisation from real words' activations), not at noise the layers never saw."""
    dev = next(model.get_input_embeddings().parameters()).device
    x = torch.tensor([ids], dtype=torch.long, device=dev)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    token = _capture.set(captured)
    try:
        if model.config.is_encoder_decoder:
            model(input_ids=x, decoder_input_ids=x)  # encoder layers read ids, decoder layers read them too
        else:
            model(input_ids=x)
    finally:
        _capture.reset(token)
    by_slot = sorted((slot, captured[m]) for m, slot in layout.slots.items())
    kv = torch.stack([t[0].to("cpu") for _, (k, v) in by_slot for t in (k, v)])  # (2 * slots, kv_heads, n, head_dim)
    return kv.permute(2, 0, 1, 3).reshape(len(ids), layout.width).float()
