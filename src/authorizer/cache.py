"""Bounded caches whose entries carry their own expiry (wall-clock, as revocation data does).

An `ExpiringCache` is bounded by its entry count and, optionally, by bytes. Bytes are an estimate
made once per entry when it is put (`weigh`, by default `approx_bytes`) and kept in a `ByteBudget`:
private to one cache (`max_bytes=`) or shared by several (`budget=`), so that caches holding the same
kind of state (everything kept per client) draw on one allowance. Past either bound the least recently
used entry goes, of whichever cache sharing the budget holds the oldest one.

An entry bigger than the whole budget (a CRL larger than the memory set aside for CRLs) is still kept,
so that the request that fetched it can use it and the next ones need not fetch it again: the budget
holds at most one such oversize entry, on top of the other entries, which stay within `max_bytes`.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from datetime import date, datetime, time, timedelta
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What one entry costs besides its key and value: the OrderedDict slot, the entry record and its expiry
# datetime. Measured with tracemalloc (tests/test_memory_bounds.py keeps the estimate honest).
SLOT_BYTES = 280

_ATOMS = (str, bytes, bytearray, int, float, complex, datetime, date, time, timedelta)
_MAX_DEPTH = 8
_MAX_NODES = 512  # objects walked per estimate, whatever the value's shape
_SAMPLE = 8  # a container longer than this is weighed from its first items (a CRL's million serials)
_ticks = itertools.count()  # recency across every cache sharing a budget


def approx_bytes(value: object) -> int:
    """An estimate of the memory `value` holds: `sys.getsizeof` of it and of everything it refers to,
    through tuples, lists, sets, dicts, dataclasses and plain objects.

    Cheap whatever the value: a container longer than a few items is weighed from its first items and
    scaled up (a set's own size is its hash table, read exactly: a CRL's million serials cost
    microseconds), and at most `_MAX_NODES` objects are walked. Conservative for shared objects
    (counted wherever they are referenced: weigh only what an entry owns). Objects of C extensions
    count their Python header only (a cryptography certificate's Rust heap is invisible); None,
    booleans and enum members count nothing.
    """
    return _approx(value, 0, [_MAX_NODES])


def _approx(value: object, depth: int, nodes: list[int]) -> int:
    if value is None or isinstance(value, bool | enum.Enum):
        return 0  # shared singletons
    size = sys.getsizeof(value)
    nodes[0] -= 1
    if isinstance(value, _ATOMS) or depth >= _MAX_DEPTH or nodes[0] <= 0:
        return size
    if isinstance(value, tuple | list | set | frozenset | dict):
        # Homogeneous in practice: weigh the first items, scale to the length.
        items: Iterable[object] = value
        total = len(value)
        if isinstance(value, dict):
            items, total = itertools.chain.from_iterable(value.items()), 2 * total
        sample = list(itertools.islice(items, _SAMPLE))
        weighed = sum(_approx(child, depth + 1, nodes) for child in sample)
        return size + (weighed * total // len(sample) if sample else 0)
    if isinstance(value, type):
        return size
    # Objects: every attribute (they differ), within the node limit.
    if dataclasses.is_dataclass(value):
        attributes: Iterable[object] = (getattr(value, f.name, None) for f in dataclasses.fields(value))
        if hasattr(value, "__dict__"):
            size += sys.getsizeof(vars(value))
    elif hasattr(value, "__dict__"):
        size += sys.getsizeof(vars(value))
        attributes = vars(value).values()
    else:
        return size
    return size + sum(_approx(child, depth + 1, nodes) for child in attributes)


class _Slot(Generic[V]):
    __slots__ = ("expires", "tick", "value", "weight")

    def __init__(self, expires: datetime, value: V, weight: int) -> None:
        self.expires = expires
        self.value = value
        self.weight = weight
        self.tick = next(_ticks)


class ByteBudget:
    """A byte allowance shared by the caches built with it; they all use its lock."""

    def __init__(self, max_bytes: int, name: str = "") -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.name = name
        self.lock = threading.Lock()
        self.evictions = 0  # entries evicted to stay within max_bytes
        self._used = 0
        self._members: list[ExpiringCache[Any, Any]] = []
        self._oversize: tuple[ExpiringCache[Any, Any], Hashable, int] | None = None

    @property
    def used(self) -> int:
        """The estimated bytes of every entry held, the oversize one included."""
        return self._used

    @property
    def oversize(self) -> int:
        """The estimated bytes of the one entry held beyond `max_bytes` (0 when there is none)."""
        return self._oversize[2] if self._oversize else 0

    def entries(self) -> int:
        with self.lock:
            return sum(len(member._items) for member in self._members)

    # --- called by member caches, with the lock held -------------------------------------------

    def _join(self, cache: ExpiringCache[Any, Any]) -> None:
        with self.lock:
            self._members.append(cache)

    def _added(self, cache: ExpiringCache[Any, Any], key: Hashable, weight: int) -> None:
        self._used += weight
        if weight > self.max_bytes:
            previous = self._oversize
            if previous is not None:  # at most one oversize entry: the newer one stays
                previous[0]._evict(previous[1])
                self.evictions += 1
            self._oversize = (cache, key, weight)

    def _removed(self, cache: ExpiringCache[Any, Any], key: Hashable, weight: int) -> None:
        self._used -= weight
        held = self._oversize
        if held is not None and held[0] is cache and held[1] == key:
            self._oversize = None

    def _settle(self, cache: ExpiringCache[Any, Any], key: Hashable) -> None:
        """Evict least recently used entries until the others than the oversize one fit; never the
        entry just put (`key` in `cache`): the request that put it is about to use it."""
        while self._used - self.oversize > self.max_bytes:
            victim = self._oldest(cache, key)
            if victim is None:
                return
            victim[0]._evict(victim[1])
            self.evictions += 1

    def _oldest(
        self, cache: ExpiringCache[Any, Any], key: Hashable
    ) -> tuple[ExpiringCache[Any, Any], Hashable] | None:
        held = self._oversize
        best: tuple[int, ExpiringCache[Any, Any], Hashable] | None = None
        for member in self._members:
            # Each cache is in recency order, so its oldest candidate is among its first three entries.
            for candidate, slot in itertools.islice(member._items.items(), 3):
                if (member is cache and candidate == key) or (
                    held is not None and held[0] is member and held[1] == candidate
                ):
                    continue
                if best is None or slot.tick < best[0]:
                    best = (slot.tick, member, candidate)
                break
        return (best[1], best[2]) if best is not None else None


@dataclasses.dataclass(frozen=True)
class Budgets:
    """The byte budgets of one runtime's caches (sized by settings.CacheBudget)."""

    clients: ByteBudget  # everything held per client: summaries, decisions, OCSP answers, failures
    crls: ByteBudget  # CRL indexes

    @classmethod
    def of(cls, client_bytes: int, crl_bytes: int) -> Budgets:
        return cls(ByteBudget(client_bytes, "clients"), ByteBudget(crl_bytes, "crls"))


class ExpiringCache(Generic[K, V]):
    """Least-recently-used eviction past `max_entries` (and past the byte budget, when there is one);
    `get` ignores entries past their expiry, `peek` does not.

    `max_bytes` gives the cache a budget of its own, `budget` a shared one; `weigh` estimates a value's
    bytes (default `approx_bytes`; the key and SLOT_BYTES are added to it).
    """

    def __init__(
        self,
        max_entries: int,
        *,
        max_bytes: int | None = None,
        budget: ByteBudget | None = None,
        weigh: Callable[[V], int] | None = None,
    ) -> None:
        if max_bytes is not None and budget is not None:
            raise ValueError("give max_bytes or budget, not both")
        self._max = max_entries
        if max_bytes is not None:
            budget = ByteBudget(max_bytes)
        self._budget = budget
        self._weigh: Callable[[V], int] = weigh or approx_bytes
        self._items: OrderedDict[K, _Slot[V]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        if self._budget is not None:
            self._lock = self._budget.lock
            self._budget._join(self)
        else:
            self._lock = threading.Lock()

    @property
    def budget(self) -> ByteBudget | None:
        return self._budget

    @property
    def bytes(self) -> int:
        """The estimated bytes of this cache's entries (0 without a budget: nothing is weighed)."""
        return self._bytes

    def get(self, key: K, now: datetime) -> V | None:
        with self._lock:
            slot = self._items.get(key)
            if slot is None or slot.expires <= now:
                return None
            self._touch(key, slot)
            return slot.value

    def peek(self, key: K, *, touch: bool = False) -> tuple[datetime, V] | None:
        """The entry even when expired (for conditional refreshes and fallbacks); `touch` counts it as
        a use for the LRU order."""
        with self._lock:
            slot = self._items.get(key)
            if slot is None:
                return None
            if touch:
                self._touch(key, slot)
            return slot.expires, slot.value

    def put(self, key: K, value: V, expires: datetime) -> None:
        # Weighed outside the lock: estimates walk the value, and nothing else needs to wait for that.
        weight = SLOT_BYTES + approx_bytes(key) + self._weigh(value) if self._budget is not None else 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._forget(key, old)
            self._items[key] = _Slot(expires, value, weight)
            self._bytes += weight
            if self._budget is not None:
                self._budget._added(self, key, weight)
            while len(self._items) > max(self._max, 1):
                self._evict(next(iter(self._items)))
            if self._budget is not None:
                self._budget._settle(self, key)

    def clear(self) -> None:
        with self._lock:
            for key, slot in list(self._items.items()):
                del self._items[key]
                self._forget(key, slot)

    def __len__(self) -> int:
        return len(self._items)

    # --- with the lock held --------------------------------------------------------------------

    def _touch(self, key: K, slot: _Slot[V]) -> None:
        slot.tick = next(_ticks)
        self._items.move_to_end(key)

    def _evict(self, key: K) -> None:
        slot = self._items.pop(key)
        self._forget(key, slot)
        self.evictions += 1

    def _forget(self, key: K, slot: _Slot[V]) -> None:
        self._bytes -= slot.weight
        if self._budget is not None:
            self._budget._removed(self, key, slot.weight)
