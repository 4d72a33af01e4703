"""A small bounded cache whose entries carry their own expiry (wall-clock, as revocation data does)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Least-recently-used eviction past `max_entries`; `get` ignores entries past their expiry."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[K, tuple[datetime, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, now: datetime) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= now:
                return None
            self._items.move_to_end(key)
            return item[1]

    def peek(self, key: K) -> tuple[datetime, V] | None:
        """The entry even when expired (for conditional refreshes)."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V, expires: datetime) -> None:
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
