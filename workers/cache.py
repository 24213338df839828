"""One LRU, bounded by a size of your choosing (tensor bytes on a replica, prompt bytes on the coordinator)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

import promptbank_kinds as kinds
from promptbank_kinds import Row

V = TypeVar("V")


class LRU(Generic[V]):
    """Least-recently-used map from str keys; evicts until the sum of `size(value)` is within `max_size`.
    A value larger than `max_size` is not kept. Thread-safe: Ray runs an actor's calls on several threads."""

    def __init__(self, max_size: int, size: Callable[[V], int] = lambda _: 1):
        self.max_size, self.size_of, self.size = max_size, size, 0
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        n = self.size_of(value)
        with self._lock:
            if key in self._items or n > self.max_size:
                return
            self._items[key] = value
            self.size += n
            while self.size > self.max_size:
                _, old = self._items.popitem(last=False)
                self.size -= self.size_of(old)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)


def tensor_bytes(t: torch.Tensor | Row) -> int:
    """Bytes held by a tensor, or by a row's prompt as its kind counts them (the size function of a replica's
    caches)."""
    if isinstance(t, Row):
        return kinds.get(t.kind).nbytes(t.tensor)
    return int(t.numel() * t.element_size())
