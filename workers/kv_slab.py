"""A replica's running batch's keys and values: one preallocated slab per layer, `(2, rows, kv_heads, T, head_dim)`
on that layer's device (a replica split over GPUs keeps each layer's cache where the layer runs).

Row `r` of the running batch owns slab row `r` (rows stay dense: a row that leaves is replaced by the last one,
one row's copy). Its cache is `[deep prefix | input prompt + text | generated tokens]`, post-rotary as the
attention modules computed them (a deep prefix as stored: prefix keys carry no position), and `lengths[r]`
says how much of it is valid. A decode step writes each layer's one new key and value per row in place and
attends over a view of the first `max(lengths) + 1` positions with a mask that gives every other row's
padding exactly zero weight: nothing is concatenated or re-copied per step. The slab grows (one copy) when a
joining row needs more rows or positions than it has, within the engine's cached-token cap; it is freed when
the batch empties.
"""

from __future__ import annotations

import torch

from workers.deep_prompt import DeepLayout

GROW_T = 64  # positions are allocated in multiples of this (fewer regrowths as rows of new lengths join)


class KVSlab:
    def __init__(self, layout: DeepLayout, dtype: torch.dtype, device: torch.device):
        self.layout, self.dtype, self.device = layout, dtype, device
        self.layer_devices = [layout.device(i) or device for i in range(layout.n_slots)]
        self.kv: list[torch.Tensor] | None = None  # per layer: (2, rows, kv_heads, T, head_dim) on its device
        self.rows = 0  # rows in use (the running batch)
        self._step: tuple[torch.Tensor, torch.Tensor, int] | None = None  # (row index, write position, T)
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the step's (rows, positions) per device
        self._masks: dict[tuple[str, str], torch.Tensor] = {}
        self._valid: torch.Tensor | None = None

    @property
    def capacity(self) -> tuple[int, int]:
        """(rows, positions) allocated."""
        return (0, 0) if self.kv is None else (int(self.kv[0].shape[1]), int(self.kv[0].shape[3]))

    def cells(self) -> int:
        """Positions allocated over all rows: what the cached-token cap bounds."""
        rows, t = self.capacity
        return rows * t

    def reserve(self, rows: int, positions: int, cap_cells: int, max_rows: int) -> None:
        """Make room for `rows` rows of `positions` positions each, keeping the rows in use. Grows generously
        (twice the rows up to `max_rows`, positions rounded up) while that stays within `cap_cells`, exactly
        otherwise."""
        have_r, have_t = self.capacity
        if rows <= have_r and positions <= have_t:
            return
        t = max(have_t, -(-positions // GROW_T) * GROW_T)
        if t * rows > cap_cells:  # exactly what is needed (the rows in use never reach past `positions`)
            t = positions
        r = max(rows, min(2 * max(have_r, 1), cap_cells // t, max_rows))
        heads, dim = self.layout.kv_heads, self.layout.head_dim
        kv = [torch.zeros(2, r, heads, t, dim, dtype=self.dtype, device=d) for d in self.layer_devices]
        if self.kv is not None and self.rows:
            keep = min(have_t, t)
            for new, old in zip(kv, self.kv, strict=True):
                new[:, : self.rows, :, :keep] = old[:, : self.rows, :, :keep]
        self.kv = kv

    def release(self) -> None:
        """Free the memory (the batch is empty)."""
        self.kv, self.rows = None, 0

    def write(self, row: int, layers: list[torch.Tensor], at: int = 0) -> None:
        """Put each layer's `(2, kv_heads, n, head_dim)` keys and values into `row` from position `at`."""
        assert self.kv is not None
        for slab, kv in zip(self.kv, layers, strict=True):
            slab[:, row, :, at : at + kv.shape[2]] = kv.to(slab.device, self.dtype)

    def move(self, src: int, dst: int, length: int) -> None:
        """Row `src`'s first `length` positions become row `dst`'s (a leaving row's place is taken)."""
        assert self.kv is not None
        for slab in self.kv:
            slab[:, dst, :, :length] = slab[:, src, :, :length]

    def begin(self, lengths: torch.Tensor) -> None:
        """One decode step over rows `0..len(lengths)-1`: each row's new key goes at its `lengths[r]`, and it
        attends over positions `0..lengths[r]` (its own valid cache and the new token)."""
        n = int(lengths.shape[0])
        T = int(lengths.max()) + 1
        self._step = (torch.arange(n, device=self.device), lengths.to(self.device), T)
        self._valid = torch.arange(T, device=self.device)[None, :] <= self._step[1][:, None]  # (rows, T)
        self._on = {str(self.device): (self._step[0], self._step[1])}
        self._masks = {}

    def _index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's row indices and write positions on `device` (copied once per step and device)."""
        assert self._step is not None
        hit = self._on.get(str(device))
        if hit is None:
            hit = self._on[str(device)] = (self._step[0].to(device), self._step[1].to(device))
        return hit

    def _mask(self, base: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """SDPA takes a boolean mask (True: attend); eager adds a float one to the scores."""
        key = (base if base != "eager" else f"eager:{dtype}", str(device))
        m = self._masks.get(key)
        if m is None:
            assert self._valid is not None
            valid = self._valid.to(device)[:, None, None, :]
            if base == "eager":
                m = torch.zeros(valid.shape, dtype=dtype, device=device).masked_fill(~valid, torch.finfo(dtype).min)
            else:
                m = valid
            self._masks[key] = m
        return m

    def extend(self, layer: int, key: torch.Tensor, value: torch.Tensor, base: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The wrapped attention's hook (workers/deep_prompt.py `decoding`): store this layer's new key and value
        of each row (one position) and return the rows' cached keys, values and the mask to attend with."""
        assert self.kv is not None and self._step is not None
        slab, T = self.kv[layer], self._step[2]
        rows, at = self._index(slab.device)
        n = int(rows.shape[0])
        slab[0, rows, :, at] = key[:, :, -1].to(slab.device, self.dtype)
        slab[1, rows, :, at] = value[:, :, -1].to(slab.device, self.dtype)
        k = slab[0, :n, :, :T]
        v = slab[1, :n, :, :T]
        return k.to(key.dtype), v.to(value.dtype), self._mask(base, key.dtype, key.device)
