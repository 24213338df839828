"""Async streams side by side: several at once, each item with its stream's index (a completion with many
prompts streams its choices as they come), and an item already taken put back in front of the rest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")


async def interleave(streams: Sequence[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T], None]:
    """Every stream's items as they arrive, with the stream's index; the first error ends all of them. Closing
    this closes every stream."""
    if len(streams) == 1:
        async with contextlib.aclosing(streams[0]) as only:  # type: ignore[type-var]
            async for item in only:
                yield 0, item
        return
    queue: asyncio.Queue[tuple[int, T | None, BaseException | None, bool]] = asyncio.Queue()

    async def pump(i: int, s: AsyncIterator[T]) -> None:
        try:
            async with contextlib.aclosing(s):  # type: ignore[type-var]
                async for item in s:
                    await queue.put((i, item, None, False))
            await queue.put((i, None, None, True))
        except Exception as exc:  # noqa: BLE001 - handed to the reader
            await queue.put((i, None, exc, True))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            i, got, exc, ended = await queue.get()
            if exc is not None:
                raise exc
            if ended:
                left -= 1
                continue
            assert got is not None  # only an ended stream's message carries None
            yield i, got
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prepend(first: Sequence[T], rest: AsyncIterator[T]) -> AsyncIterator[T]:
    """`first`'s items, then `rest`'s."""
    for item in first:
        yield item
    async for item in rest:
        yield item
