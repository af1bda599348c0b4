"""A queue that hands out full batches, shared by a stage's replicas."""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Consumers take exactly `n` items, fewer only once the producer side is closed (the last partial batch).

    A stage waits for its batch to fill, as IPA's batching does: that wait is part of the request latency.
    """

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put_many(self, items: list[T]) -> None:
        with self._cond:
            self._items.extend(items)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, n: int | Callable[[], int], stop: threading.Event) -> list[T] | None:
        """The next batch, or None when the queue is closed and drained or `stop` is set. `n`: the batch size, or a
        function giving it, read again while the batch fills (a batch size changed meanwhile applies at once)."""
        size = n if callable(n) else lambda: n
        with self._cond:
            while len(self._items) < size() and not self._closed and not stop.is_set():
                self._cond.wait(timeout=0.05)
            if stop.is_set() or not self._items:
                return None
            return [self._items.popleft() for _ in range(min(size(), len(self._items)))]

    def close_and_take_all(self) -> list[T]:
        """Close the queue and take every item it holds, whole batches or not: what no consumer has begun."""
        with self._cond:
            self._closed = True
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items
