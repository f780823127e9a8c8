"""`async for` readers of a live source (the Feed, a RedisFeed): each reader has its own
bounded queue, so a reader that falls behind loses its own oldest events and nobody
else's (counted by the source)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Readers(Generic[T]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.queues: list[asyncio.Queue[T | None]] = []  # one per reader; often none

    def reader(self) -> AsyncIterator[T]:
        """A new reader: what `__aiter__` returns. It ends at `close()`."""
        queue: asyncio.Queue[T | None] = asyncio.Queue()
        self.queues.append(queue)

        async def iterate() -> AsyncIterator[T]:
            try:
                while (event := await queue.get()) is not None:
                    yield event
            finally:
                self.queues.remove(queue)

        return iterate()

    def put(self, event: T) -> int:
        """Hand `event` to every reader; how many older events were dropped for it."""
        dropped = 0
        for queue in self.queues:
            if queue.qsize() >= self.size:
                queue.get_nowait()
                dropped += 1
            queue.put_nowait(event)
        return dropped

    def close(self) -> None:
        for queue in self.queues:
            queue.put_nowait(None)
