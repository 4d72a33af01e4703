"""Memory is bounded by bytes: the cache's byte budget, the budget's derivation from the function's
memory, and the handler keeping its per-client state within it while every decision stays right.

Bytes are estimates (cache.approx_bytes); the tests that compare them with tracemalloc keep the
estimates honest within a loose factor. No timing assertions.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from authorizer.cache import SLOT_BYTES, Budgets, ByteBudget, ExpiringCache, approx_bytes
from authorizer.crl import CrlIndex
from authorizer.settings import DEFAULT_MEMORY_MB, RUNTIME_RESERVE_MB, CacheBudget, Settings
from conftest import Authorizer, Configure, World
from pki import Credential, utcnow

MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LATER = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def unit(key: str = "k") -> int:
    """What an entry costs besides its weighed value: the slot and its key (one-letter keys)."""
    return SLOT_BYTES + approx_bytes(key)


def weighed_cache(max_bytes: int, max_entries: int = 100) -> ExpiringCache[str, int]:
    """A cache whose values are their own weight, so the tests can place the bounds exactly."""
    return ExpiringCache(max_entries, max_bytes=max_bytes, weigh=lambda value: value)


# ------------------------------------------------------------------------------------ the cache
def test_evicts_least_recently_used_until_within_the_byte_bound() -> None:
    cache = weighed_cache(max_bytes=3 * (unit() + 100))
    for key in "abc":
        cache.put(key, 100, LATER)
    assert cache.get("a", NOW) == 100  # a is now the most recently used
    cache.put("d", 100, LATER)
    assert [k for k in "abcd" if cache.peek(k)] == ["a", "c", "d"]
    assert cache.bytes <= 3 * (unit() + 100)
    budget = cache.budget
    assert budget is not None and budget.used == cache.bytes and budget.evictions == 1


def test_a_heavy_entry_evicts_as_many_light_ones_as_it_needs() -> None:
    cache = weighed_cache(max_bytes=4 * unit())
    for key in "abcd":
        cache.put(key, 0, LATER)
    cache.put("e", 2 * unit(), LATER)  # as heavy as three of the others
    assert [k for k in "abcde" if cache.peek(k)] == ["d", "e"]
    assert cache.bytes <= 4 * unit()


def test_the_entry_bound_still_applies() -> None:
    cache = weighed_cache(max_bytes=10**9, max_entries=2)
    for key in "abc":
        cache.put(key, 1, LATER)
    assert [k for k in "abc" if cache.peek(k)] == ["b", "c"]
    assert cache.bytes == 2 * (unit() + 1)


def test_replacing_and_clearing_keep_the_byte_count_exact() -> None:
    cache = weighed_cache(max_bytes=10**6)
    cache.put("a", 500, LATER)
    cache.put("a", 200, LATER)
    assert cache.bytes == unit() + 200
    cache.put("b", 300, LATER)
    cache.clear()
    budget = cache.budget
    assert cache.bytes == 0 and len(cache) == 0
    assert budget is not None and budget.used == 0


def test_an_oversize_entry_is_kept_and_at_most_one() -> None:
    limit = 2 * (unit() + 100)
    cache = weighed_cache(max_bytes=limit)
    cache.put("a", 100, LATER)
    cache.put("big", 10 * limit, LATER)  # bigger than the whole budget: still usable
    assert cache.get("big", NOW) == 10 * limit
    assert cache.get("a", NOW) == 100  # the others stay within the budget beside it
    cache.put("b", 100, LATER)
    cache.put("c", 100, LATER)
    assert [k for k in ("a", "b", "c", "big") if cache.peek(k)] == ["b", "c", "big"]
    budget = cache.budget
    assert budget is not None and budget.used - budget.oversize <= limit
    cache.put("huge", 20 * limit, LATER)  # a second oversize entry replaces the first
    assert cache.peek("big") is None and cache.get("huge", NOW) == 20 * limit
    assert budget.oversize == unit("huge") + 20 * limit


def test_get_ignores_expired_entries_but_peek_sees_them_and_touch_counts_as_a_use() -> None:
    cache = weighed_cache(max_bytes=2 * (unit() + 10))
    cache.put("a", 10, NOW)
    cache.put("b", 10, LATER)
    assert cache.get("a", NOW) is None
    assert cache.peek("a") == (NOW, 10)
    assert cache.peek("a", touch=True) is not None  # "a" is now the most recently used
    cache.put("c", 10, LATER)
    assert [k for k in "abc" if cache.peek(k)] == ["a", "c"]


def test_a_shared_budget_evicts_the_oldest_entry_of_any_of_its_caches() -> None:
    budget = ByteBudget(3 * (unit() + 100))
    first: ExpiringCache[str, int] = ExpiringCache(100, budget=budget, weigh=lambda value: value)
    second: ExpiringCache[str, int] = ExpiringCache(100, budget=budget, weigh=lambda value: value)
    first.put("a", 100, LATER)
    second.put("b", 100, LATER)
    first.put("c", 100, LATER)
    assert second.get("b", NOW) == 100
    second.put("d", 100, LATER)  # over budget: "a", in the other cache, is the oldest
    assert first.peek("a") is None and first.peek("c") and second.peek("b") and second.peek("d")
    assert budget.used == first.bytes + second.bytes <= budget.max_bytes
    assert budget.entries() == 3


def test_a_cache_without_a_budget_weighs_nothing() -> None:
    calls: list[int] = []

    def weigh(value: int) -> int:
        calls.append(value)
        return value

    cache: ExpiringCache[str, int] = ExpiringCache(10, weigh=weigh)
    cache.put("a", 1, LATER)
    assert cache.bytes == 0 and calls == [] and cache.budget is None


def test_one_bound_at_a_time() -> None:
    with pytest.raises(ValueError):
        ExpiringCache(10, max_bytes=10, budget=ByteBudget(10))


# ------------------------------------------------------------------------------------ estimates
def _traced(build: Callable[[], object]) -> tuple[object, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = build()
        gc.collect()
        return value, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_approx_bytes_of_a_crl_index_matches_tracemalloc() -> None:
    """Weighing an index reads its set's table and samples its serials: fast, and close."""
    entries = 50_000
    seed = os.urandom(8)

    def build() -> CrlIndex:
        serials = {hashlib.sha256(seed + i.to_bytes(4, "big")).digest()[:20] for i in range(entries)}
        return CrlIndex(
            issuer=None,  # type: ignore[arg-type]
            this_update=NOW,
            next_update=LATER,
            idp_urls=None,
            only_user_certs=False,
            only_ca_certs=False,
            revoked=serials,
            entries=entries,
        )

    index, traced = _traced(build)
    estimate = approx_bytes(index)
    assert 0.7 * traced <= estimate <= 1.4 * traced, (estimate, traced)
    assert 60 <= estimate / entries <= 130  # bytes per revoked serial


def test_accounted_bytes_of_many_small_entries_match_tracemalloc() -> None:
    """SLOT_BYTES plus the estimates of keys and values is about what the cache really holds."""
    budget = ByteBudget(10**9)
    count = 5_000

    def build() -> ExpiringCache[bytes, tuple[str, str, dt.datetime]]:
        cache: ExpiringCache[bytes, tuple[str, str, dt.datetime]] = ExpiringCache(10**6, budget=budget)
        for i in range(count):
            key = hashlib.sha256(i.to_bytes(4, "big")).digest()
            value = (key.hex(), f"CN=client {i:06d},O=Revocation Test Clients,C=US", NOW)
            cache.put(key, value, NOW + dt.timedelta(seconds=i))
        return cache

    _cache, traced = _traced(build)
    assert 0.75 * traced <= budget.used <= 1.4 * traced, (budget.used, traced)


# ------------------------------------------------------------------------------------ settings
def test_the_budget_comes_from_the_function_memory() -> None:
    settings = Settings.from_env({MEMORY: "512"})
    usable = (512 - RUNTIME_RESERVE_MB) * 1024 * 1024
    assert settings.cache == CacheBudget(512, usable // 4, int(usable * 0.35))
    assert settings.problems == ()
    small, large = Settings.from_env({MEMORY: "128"}).cache, Settings.from_env({MEMORY: "1769"}).cache
    assert small.client_bytes < settings.cache.client_bytes < large.client_bytes
    assert small.crl_bytes < settings.cache.crl_bytes < large.crl_bytes
    assert small.client_bytes + small.crl_bytes < (128 - RUNTIME_RESERVE_MB) * 1024 * 1024


def test_without_the_variable_the_default_memory_is_assumed() -> None:
    settings = Settings.from_env({})
    assert settings.cache == CacheBudget.for_memory(DEFAULT_MEMORY_MB) == Settings().cache
    assert settings.problems == ()


@pytest.mark.parametrize("raw", ["lots", "0", "-512", "1.5", "1e3", "inf"])
def test_a_bad_memory_size_falls_back_to_the_default_and_says_so(raw: str) -> None:
    settings = Settings.from_env({MEMORY: raw})
    assert settings.cache == CacheBudget.for_memory(DEFAULT_MEMORY_MB)
    assert len(settings.problems) == 1 and MEMORY in settings.problems[0]


def test_a_tiny_memory_size_gives_a_tiny_but_usable_budget() -> None:
    cache = Settings.from_env({MEMORY: "1"}).cache
    assert cache.memory_mb == 1 and 0 < cache.client_bytes < 256 * 1024 and cache.crl_bytes > 0


# ------------------------------------------------------------------------------------ the handler
@dataclass
class Clock:
    now: dt.datetime = field(default_factory=utcnow)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def tiny(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> Authorizer:
    """The authorizer with a 1 MB memory setting: a per-client budget of about a hundred clients."""
    monkeypatch.setenv(MEMORY, "1")
    return configure()


def budgets(authz: Authorizer) -> Budgets:
    runtime = authz.app._runtime_now()
    assert runtime.settings.cache.memory_mb == 1
    value: Budgets = runtime.budgets
    return value


def pem_key(cert: Credential) -> bytes:
    return hashlib.sha256(cert.pem.encode()).digest()


def crl_world(world: World, name: str, count: int) -> tuple[Credential, list[Credential]]:
    """A revoked leaf and `count` good ones (P-256, one shared key) under one CRL naming the revoked."""
    path, url = world.crl_url()
    revoked = world.leaf(f"{name} revoked", crl_urls=[url], key_type="ec")
    good = [world.leaf(f"{name} {i}", crl_urls=[url], key_type="ec") for i in range(count)]
    world.http.set(path, world.pki.crl(world.ica, [revoked]))
    return revoked, good


def test_many_clients_stay_within_the_budget_and_decisions_stay_right(world: World, tiny: Authorizer) -> None:
    revoked, good = crl_world(world, "memory-bound", 160)
    tiny.check("rest", revoked).expect(False, "revoked", revoked, "crl")
    clients = budgets(tiny).clients
    runtime = tiny.app._runtime_now()
    for i, leaf in enumerate(good):
        tiny.check("rest" if i % 2 else "v2", leaf).expect(True, "good", leaf, "crl")
        assert clients.used - clients.oversize <= clients.max_bytes
    assert clients.evictions > 0 and len(runtime.clients) < len(good)
    # The first clients were evicted: their decisions are recomputed, never defaulted.
    assert runtime.clients.peek(pem_key(revoked)) is None
    assert runtime.clients.peek(pem_key(good[0])) is None
    tiny.check("v2", revoked).expect(False, "revoked", revoked, "crl")
    tiny.check("rest", good[0]).expect(True, "good", good[0], "crl")
    assert clients.used - clients.oversize <= clients.max_bytes


def test_the_warm_path_parses_nothing_and_answers_the_same_context(
    world: World, authorizer: Authorizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _revoked, (leaf,) = crl_world(world, "warm-path", 1)
    parses: list[str] = []
    original = authorizer.app.load_client_cert

    def counting(pem: str) -> object:
        parses.append(pem)
        return original(pem)

    monkeypatch.setattr(authorizer.app, "load_client_cert", counting)
    first = authorizer.check("rest", leaf)
    first.expect(True, "good", leaf, "crl")
    assert len(parses) == 1
    again = authorizer.check("rest", leaf)
    assert len(parses) == 1  # the summary and the checker's decision answered
    assert again.context == first.context and again.response == first.response


def test_a_held_decision_never_outlives_the_certificate(world: World, configure: Configure) -> None:
    """The summary expires with the path's first notAfter, though the decision's data is still fresh."""
    clock = Clock()
    authz = configure(CLOCK_SKEW_SECONDS="0")
    authz.app.reset(clock=clock)
    path, url = world.crl_url()
    expires = clock.now + dt.timedelta(minutes=10)
    leaf = world.pki.leaf("memory-expiring", world.ica, key_type="ec", crl_urls=[url], not_after=expires)
    fresh_for_an_hour = world.pki.crl(
        world.ica, [], this_update=clock.now, next_update=clock.now + dt.timedelta(hours=1)
    )
    world.http.set(path, fresh_for_an_hour)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    clock.now += dt.timedelta(minutes=11)
    authz.check("rest", leaf).expect(False, "untrusted", leaf)
