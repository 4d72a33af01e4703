"""No revoked certificate gets an Allow, whatever the network replays, withholds or slows down.

Each test plays the attacker (or a lagging CDN edge) against the rules the checker writes once for
every source: anti-rollback (RFC 5280 §5.2.3, RFC 6960), permanent revocation (RFC 5280 §5.3.1),
fallback data never freezing a decision, and refreshes that are single-flight and outlive a slow
request. Through the handler, on the fake clock, against loopback servers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import Authorizer, Configure, World
from pki import Credential
from test_cache_rules import BACKOFF, Clock, authorizer, clock  # noqa: F401  (fixtures used below)

HOUR = dt.timedelta(hours=1)


def crl_at(
    world: World, when: dt.datetime, revoked: list[Credential], number: int, hours: float = 24
) -> bytes:
    return world.pki.crl(
        world.ica,
        revoked,
        this_update=when - dt.timedelta(minutes=1),
        next_update=when + dt.timedelta(hours=hours),
        crl_number=number,
    )


# ------------------------------------------------------------------------- CRL rollback (§5.2.3)
def test_rfc5280_5_2_3_older_crl_is_refused_after_the_max_age(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """A lagging edge serves CRL #1 (still before its nextUpdate) after #2 listed the leaf."""
    authz = authorizer(max_age=600)
    path, url = world.crl_url()
    leaf = world.leaf("rollback-leaf", crl_urls=[url])
    sibling = world.leaf("rollback-sibling", crl_urls=[url])  # never checked before the rollback
    older = crl_at(world, clock.now - HOUR, [], number=1)
    world.http.set(path, crl_at(world, clock.now, [leaf, sibling], number=2))
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")

    world.http.set(path, older)
    clock.advance(601)
    authz.check("rest", sibling).expect(False, "revoked", sibling, "crl")  # #2 keeps serving
    authz.check("v2", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 2  # the older CRL was fetched, and refused


def test_rfc5280_5_2_3_older_crl_of_the_same_scope_at_another_url_is_refused(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """Two URLs of one CA's complete CRL: the lagging one cannot undo what the newer one said."""
    authz = authorizer()
    new_path, new_url = world.crl_url()
    old_path, old_url = world.crl_url()
    first = world.leaf("scope-first", crl_urls=[new_url])
    victim = world.leaf("scope-victim", crl_urls=[old_url])
    world.http.set(new_path, crl_at(world, clock.now, [victim], number=7))
    world.http.set(old_path, crl_at(world, clock.now - HOUR, [], number=6))
    authz.check("rest", first).expect(True, "good", first, "crl")
    authz.check("rest", victim).expect(False, "revocation_unavailable", victim, "crl")


def test_newer_crl_replaces_the_held_one(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """The control: a newer cRLNumber is accepted as usual (an unrevoked hold, say)."""
    authz = authorizer(max_age=600)
    path, url = world.crl_url()
    leaf = world.leaf("forward", crl_urls=[url])
    world.http.set(path, crl_at(world, clock.now, [], number=3))
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    clock.advance(601)
    world.http.set(path, crl_at(world, clock.now, [leaf], number=4))
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


# ------------------------------------------------------------------------- OCSP rollback
def ocsp_answer(
    leaf: Credential,
    issuer: Credential,
    status: str,
    this_update: dt.datetime,
    next_update: dt.datetime,
    reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
    request: bytes | None = None,
) -> bytes:
    """An issuer-signed OCSP response; with `request`, its nonce is echoed (without, none: a replay)."""
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert,
        issuer=issuer.cert,
        algorithm=hashes.SHA1(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if status == "revoked" else ocsp.OCSPCertStatus.GOOD,
        this_update=this_update,
        next_update=next_update,
        revocation_time=this_update - HOUR if status == "revoked" else None,
        revocation_reason=reason if status == "revoked" else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
    if request is not None:
        nonce = ocsp.load_der_ocsp_request(request).extensions.get_extension_for_class(x509.OCSPNonce)
        builder = builder.add_extension(nonce.value, critical=False)
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_rfc5280_5_3_1_verified_ocsp_revocation_is_permanent(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """After `revoked` and its nextUpdate, a replayed older `good` (no nonce) changes nothing."""
    authz = authorizer()
    path = world.path("ocsp")
    leaf = world.leaf("ocsp-rollback", ocsp_url=world.http.url(path))
    start = clock.now
    world.http.respond(
        path,
        lambda request: ocsp_answer(
            leaf, world.ica, "revoked", start - dt.timedelta(minutes=1), start + HOUR, request=request
        ),
    )
    authz.check("rest", leaf).expect(False, "revoked", leaf, "ocsp")
    replay = ocsp_answer(leaf, world.ica, "good", start - dt.timedelta(minutes=30), start + 48 * HOUR)
    world.http.respond(path, lambda _request: replay)
    clock.advance(3600 + 60)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "ocsp")
    authz.check("v2", leaf).expect(False, "revoked", leaf, "ocsp")
    assert world.http.requests(path) == 2  # the replay was fetched, and did not count


def test_rfc6960_ocsp_answer_older_than_the_held_one_is_refused(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """A certificateHold may be lifted, but only by a newer answer: an older `good` is refused."""
    authz = authorizer()
    path = world.path("ocsp")
    leaf = world.leaf("ocsp-hold", ocsp_url=world.http.url(path))
    start = clock.now
    hold = x509.ReasonFlags.certificate_hold
    world.http.respond(
        path,
        lambda request: ocsp_answer(
            leaf, world.ica, "revoked", start - dt.timedelta(minutes=1), start + HOUR, hold, request
        ),
    )
    authz.check("rest", leaf).expect(False, "revoked", leaf, "ocsp")
    replay = ocsp_answer(leaf, world.ica, "good", start - dt.timedelta(minutes=30), start + 48 * HOUR)
    world.http.respond(path, lambda _request: replay)
    clock.advance(3600 + 60)
    decision = authz.check("rest", leaf)
    assert not decision.allowed, decision.context

    # Lifting the hold with a newer answer works.
    clock.advance(BACKOFF + 1)
    lifted = clock.now
    world.http.respond(
        path,
        lambda request: ocsp_answer(
            leaf, world.ica, "good", lifted - dt.timedelta(minutes=1), lifted + HOUR, request=request
        ),
    )
    authz.check("rest", leaf).expect(True, "good", leaf, "ocsp")


def test_rfc5280_5_3_1_crl_revocation_outlives_a_crl_that_drops_the_entry(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """A newer CRL that no longer lists a keyCompromise revocation cannot unrevoke it in this container."""
    authz = authorizer(max_age=600)
    path, url = world.crl_url()
    leaf = world.leaf("dropped-entry", crl_urls=[url])
    world.http.set(path, crl_at(world, clock.now, [leaf], number=10))
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    clock.advance(601)
    world.http.set(path, crl_at(world, clock.now, [], number=11))
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


def test_rfc5280_5_3_1_crl_certificate_hold_may_be_lifted_by_a_newer_crl(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer(max_age=600)
    path, url = world.crl_url()
    leaf = world.leaf("crl-hold", crl_urls=[url])
    hold = (
        x509.RevokedCertificateBuilder()
        .serial_number(leaf.serial)
        .revocation_date(clock.now - HOUR)
        .add_extension(x509.CRLReason(x509.ReasonFlags.certificate_hold), critical=False)
        .build()
    )
    world.http.set(
        path,
        world.pki.crl(
            world.ica,
            entries=[hold],
            this_update=clock.now - dt.timedelta(minutes=1),
            next_update=clock.now + 24 * HOUR,
            crl_number=20,
        ),
    )
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    clock.advance(601)
    world.http.set(path, crl_at(world, clock.now, [], number=21))
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")


# ------------------------------------------------------------------------- fallback never freezes a decision
def test_newer_crl_fetched_for_a_sibling_applies_at_once_to_a_fallback_decision(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    """The leaf's own CDP is down (held CRL serves); a sibling's CDP brings the newer CRL of the same
    issuer and scope that lists the leaf: the leaf is revoked on its next request, not 10 min later."""
    authz = authorizer(max_age=600)
    down_path, down_url = world.crl_url()
    up_path, up_url = world.crl_url()
    leaf = world.leaf("fallback-leaf", crl_urls=[down_url])
    sibling = world.leaf("fallback-sibling", crl_urls=[up_url])
    world.http.set(down_path, crl_at(world, clock.now, [], number=1))
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")

    world.http.set(down_path, b"down", status=503)
    clock.advance(601)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")  # fallback to the held CRL
    world.http.set(up_path, crl_at(world, clock.now, [leaf], number=2))
    authz.check("rest", sibling).expect(True, "good", sibling, "crl")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


def test_decision_on_fallback_data_is_cached_no_longer_than_the_backoff(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer]
) -> None:
    authz = authorizer(max_age=600)
    path, url = world.crl_url()
    leaf = world.leaf("fallback-ttl", crl_urls=[url])
    world.http.set(path, crl_at(world, clock.now, [], number=1))
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    world.http.set(path, b"down", status=503)
    clock.advance(601)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")  # fallback
    world.http.set(path, crl_at(world, clock.now, [leaf], number=2))
    clock.advance(BACKOFF + 1)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 3


# ------------------------------------------------------------------------- slow downloads, single flight
SLOW_SECONDS = 1.5


class SlowServer:
    """A loopback HTTP server that answers every GET with `body`, after SLOW_SECONDS; counts requests."""

    def __init__(self) -> None:
        self.body = b""
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                time.sleep(SLOW_SECONDS)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(server.body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/slow.crl"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    yield server
    server.close()


def test_crl_slower_than_the_budget_completes_in_the_background(
    configure: Configure, world: World, slow_server: SlowServer
) -> None:
    authz = configure(AUTHORIZER_BUDGET_SECONDS="0.5")
    leaf = world.leaf("slow-crl", crl_urls=[slow_server.url])
    slow_server.body = world.pki.crl(world.ica, [leaf])
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    deadline = time.monotonic() + 10
    decision = authz.check("rest", leaf)
    while decision.reason == "revocation_unavailable" and time.monotonic() < deadline:
        time.sleep(0.2)
        decision = authz.check("rest", leaf)
    decision.expect(False, "revoked", leaf, "crl")
    assert slow_server.requests == 1  # one download, finished after the first request gave up


def test_concurrent_requests_share_one_download(
    configure: Configure, world: World, slow_server: SlowServer
) -> None:
    authz = configure(AUTHORIZER_BUDGET_SECONDS="5")
    leaves = [world.leaf(f"flight-{i}", crl_urls=[slow_server.url]) for i in range(6)]
    slow_server.body = world.pki.crl(world.ica, leaves[:1])
    with concurrent.futures.ThreadPoolExecutor(len(leaves)) as pool:
        decisions = list(pool.map(lambda leaf: authz.check("rest", leaf), leaves))
    decisions[0].expect(False, "revoked", leaves[0], "crl")
    for leaf, decision in zip(leaves[1:], decisions[1:], strict=True):
        decision.expect(True, "good", leaf, "crl")
    assert slow_server.requests == 1


@pytest.mark.parametrize("hung", [8, 20])
def test_hung_sources_do_not_starve_another_ca(configure: Configure, world: World, hung: int) -> None:
    """Many CAs whose servers never answer: every other CA's clients are still decided at once."""
    # The budget is generous so that only starvation, never a loaded machine, can deny the healthy CA.
    authz = configure(AUTHORIZER_BUDGET_SECONDS="2", FETCH_TIMEOUT_SECONDS="30")
    stuck = [world.leaf(f"hung-{i}", crl_urls=[world.http.hang(world.path("hang"))]) for i in range(hung)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        for decision, leaf in zip(
            pool.map(lambda leaf: authz.check("rest", leaf), stuck), stuck, strict=True
        ):
            decision.expect(False, "revocation_unavailable", leaf, "crl")
    healthy = world.leaf("healthy", crl=True)
    authz.check("rest", healthy).expect(True, "good", healthy, "crl")
