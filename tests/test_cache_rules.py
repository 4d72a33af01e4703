"""Cache rules, proven through the handler with a controllable clock (never timings).

CRLs are kept until nextUpdate or the maximum age, OCSP answers until nextUpdate, decisions while their
data is fresh; refreshes are conditional; failures are held only for the back-off; data past
nextUpdate is used only within the stale grace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from conftest import Authorizer, Configure, World
from pki import Credential, utcnow

BACKOFF = 10.0


@dataclass
class Clock:
    now: dt.datetime = field(default_factory=utcnow)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authorizer(
    configure: Configure, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Authorizer]:
    """An authorizer on the fake clock, with exact freshness (no skew) and the given cache settings."""

    def make(max_age: float = 3600, grace: float = 0) -> Authorizer:
        authz = configure(CLOCK_SKEW_SECONDS="0")
        monkeypatch.setenv("REVOCATION_CACHE_MAX_AGE_SECONDS", str(max_age))
        monkeypatch.setenv("REVOCATION_STALE_GRACE_SECONDS", str(grace))
        monkeypatch.setenv("REVOCATION_FAILURE_BACKOFF_SECONDS", str(BACKOFF))
        authz.app.reset(clock=clock)
        return authz

    return make


def publish_crl(world: World, clock: Clock, path: str, revoked: list[Credential], hours: float = 1) -> None:
    world.http.set(
        path,
        world.pki.crl(
            world.ica,
            revoked,
            this_update=clock.now - dt.timedelta(minutes=1),
            next_update=clock.now + dt.timedelta(hours=hours),
        ),
    )


def crl_leaf(world: World) -> tuple[str, Credential]:
    path, url = world.crl_url()
    return path, world.leaf("crl-cache", crl_urls=[url])


def held_crl_leaf(
    world: World, clock: Clock, authz: Authorizer, *, hours: float = 1, profile: str = "rest"
) -> tuple[str, Credential]:
    """A leaf whose (empty) CRL is published for ``hours`` and already checked once: the CRL is held."""
    path, leaf = crl_leaf(world)
    publish_crl(world, clock, path, [], hours=hours)
    expect_good(world, authz, path, leaf, profile=profile)
    return path, leaf


def expect_good(
    world: World,
    authz: Authorizer,
    path: str,
    leaf: Credential,
    *,
    fetches: int | None = None,
    profile: str = "rest",
) -> None:
    """``leaf`` is allowed as good by its CRL; with ``fetches``, the CRL has been fetched that often."""
    authz.check(profile, leaf).expect(True, "good", leaf, "crl")
    if fetches is not None:
        assert world.http.requests(path) == fetches


# ---------------------------------------------------------------------------------------------- CRL
def test_crl_is_fetched_once_and_reused_until_next_update(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer()
    path, leaf = held_crl_leaf(world, clock, authz)
    sibling = world.leaf("crl-sibling", crl_urls=[world.http.url(path)])
    expect_good(world, authz, path, leaf)  # seen before: decision cache
    authz.check("v2", sibling).expect(True, "good", sibling, "crl")  # new certificate, same CRL: index
    assert world.http.requests(path) == 1

    clock.advance(3600 - 1)
    authz.check("rest", sibling)
    assert world.http.requests(path) == 1
    clock.advance(2)  # past nextUpdate: the CRL must be fetched again
    publish_crl(world, clock, path, [])
    expect_good(world, authz, path, leaf, fetches=2)


def test_crl_expires_at_the_maximum_age_before_next_update(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer(max_age=600)
    path, leaf = held_crl_leaf(world, clock, authz, hours=24)
    clock.advance(599)
    authz.check("rest", leaf)
    assert world.http.requests(path) == 1
    clock.advance(2)
    expect_good(world, authz, path, leaf, fetches=2)


def test_crl_refresh_is_conditional(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer(max_age=600)
    path, leaf = crl_leaf(world)
    world.http.set(
        path, world.pki.crl(world.ica, [], next_update=clock.now + dt.timedelta(days=1)), etag='"v1"'
    )
    expect_good(world, authz, path, leaf)
    clock.advance(601)
    expect_good(world, authz, path, leaf, fetches=2)
    assert world.http.not_modified(path) == 1  # answered 304: the index was kept, not re-downloaded


def test_valid_crl_keeps_serving_when_a_max_age_refresh_fails(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer(max_age=600)
    path, leaf = held_crl_leaf(world, clock, authz, hours=24)
    world.http.set(path, b"down", status=503)
    clock.advance(601)
    expect_good(world, authz, path, leaf, fetches=2)  # still before its nextUpdate


def test_newly_revoking_crl_takes_effect_once_the_old_one_expires(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer()
    path, leaf = held_crl_leaf(world, clock, authz, profile="v2")
    clock.advance(1800)
    publish_crl(world, clock, path, [leaf])  # revoked now, but the held CRL is still fresh
    expect_good(world, authz, path, leaf, profile="v2")
    clock.advance(1801)
    authz.check("v2", leaf).expect(False, "revoked", leaf, "crl")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


def test_crl_failure_is_held_only_for_the_backoff(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer()
    path, leaf = crl_leaf(world)
    world.http.set(path, b"down", status=503)
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    clock.advance(BACKOFF / 2)
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    assert world.http.requests(path) == 1  # within the back-off: not asked again
    publish_crl(world, clock, path, [])
    clock.advance(BACKOFF)
    expect_good(world, authz, path, leaf, fetches=2)


@pytest.mark.parametrize(("grace", "past", "expected"), [(0, 1, False), (600, 300, True), (600, 601, False)])
def test_stale_crl_is_used_only_within_the_grace(
    world: World,
    clock: Clock,
    authorizer: Callable[..., Authorizer],
    grace: float,
    past: float,
    expected: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    authz = authorizer(grace=grace)
    path, leaf = held_crl_leaf(world, clock, authz)
    world.http.set(path, b"down", status=503)
    clock.advance(3600 + past)
    caplog.clear()
    decision = authz.check("rest", leaf)
    if expected:
        decision.expect(True, "good", leaf, "crl")
        assert any("past nextUpdate" in record.getMessage() for record in caplog.records)
    else:
        decision.expect(False, "revocation_unavailable", leaf, "crl")


# ---------------------------------------------------------------------------------------------- OCSP
def ocsp_leaf(world: World, clock: Clock, status: str = "good", hours: float = 1) -> tuple[str, Credential]:
    path = world.path("ocsp")
    leaf = world.leaf("ocsp-cache", ocsp_url=world.http.url(path))
    world.http.respond(
        path,
        lambda request: world.pki.ocsp_response(
            leaf,
            world.ica,
            request_der=request,
            status=status,  # type: ignore[arg-type]
            this_update=clock.now - dt.timedelta(minutes=1),
            next_update=clock.now + dt.timedelta(hours=hours),
        ),
    )
    return path, leaf


@pytest.mark.parametrize(
    ("status", "allowed", "reason"), [("good", True, "good"), ("revoked", False, "revoked")]
)
def test_ocsp_answer_is_asked_once_per_freshness_window(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer], status: str, allowed: bool, reason: str
) -> None:
    authz = authorizer()
    path, leaf = ocsp_leaf(world, clock, status)
    for _ in range(3):
        authz.check("rest", leaf).expect(allowed, reason, leaf, "ocsp")
        clock.advance(600)
    assert world.http.requests(path) == 1
    clock.advance(1801)  # past nextUpdate
    authz.check("v2", leaf).expect(allowed, reason, leaf, "ocsp")
    assert world.http.requests(path) == 2


def test_ocsp_failure_is_retried_after_the_backoff(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer()
    path = world.path("ocsp")
    leaf = world.leaf("ocsp-down", ocsp_url=world.http.url(path))
    world.http.set(path, b"down", status=500)
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "ocsp")
    clock.advance(BACKOFF - 1)
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "ocsp")
    assert world.http.requests(path) == 1
    world.http.respond(path, lambda request: world.pki.ocsp_response(leaf, world.ica, request_der=request))
    clock.advance(2)
    # The responder signs with the real time; the fake clock is only seconds ahead of it.
    authz.check("rest", leaf).expect(True, "good", leaf, "ocsp")
    assert world.http.requests(path) == 2
