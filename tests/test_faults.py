"""Fault tolerance: the invocation stays bounded and fails closed when servers, S3 or URLs misbehave.

Every fault is driven through real loopback servers (or moto for S3). Durations are asserted only as
generous upper bounds that separate "bounded by the budget" from "waited for the server".
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from typing import Any

import pytest

from conftest import Configure, FakeLambdaContext, World
from pki import Credential

SLOW = 30.0  # what a fetch would take without the budget


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def decision_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.getMessage() == "decision"]


# ------------------------------------------------------------------------------------------ time budget
def test_budget_bounds_a_path_of_servers_that_never_answer(configure: Configure, world: World) -> None:
    authz = configure(AUTHORIZER_BUDGET_SECONDS="1", FETCH_TIMEOUT_SECONDS=str(SLOW))
    leaf = world.leaf(
        "hangs",
        ocsp_url=world.http.hang(world.path("hang")),
        crl_urls=[world.http.hang(world.path("hang")), world.http.hang(world.path("hang"))],
    )
    decision, seconds = timed(lambda: authz.check("rest", leaf))
    decision.expect(False, "revocation_unavailable", leaf)
    assert seconds < 5


def test_budget_bounds_a_server_trickling_a_byte_a_second(configure: Configure, world: World) -> None:
    authz = configure(AUTHORIZER_BUDGET_SECONDS="1.5", FETCH_TIMEOUT_SECONDS="2")
    path = world.path("trickle")
    leaf = world.leaf("trickled", crl_urls=[world.http.trickle(path, world.pki.crl(world.ica), interval=1.0)])
    decision, seconds = timed(lambda: authz.check("v2", leaf))
    decision.expect(False, "revocation_unavailable", leaf, "crl")
    assert seconds < 5


def test_lambda_remaining_time_caps_the_budget(configure: Configure, world: World) -> None:
    authz = configure(AUTHORIZER_BUDGET_SECONDS="60", FETCH_TIMEOUT_SECONDS=str(SLOW))
    authz.context = FakeLambdaContext(remaining_ms=2000)
    leaf = world.leaf("short-lambda", crl_urls=[world.http.hang(world.path("hang"))])
    decision, seconds = timed(lambda: authz.check("rest", leaf))
    decision.expect(False, "revocation_unavailable", leaf, "crl")
    assert seconds < 5


# ------------------------------------------------------------------------------------------ size limits
def big_crl(world: World) -> bytes:
    return world.pki.crl(world.ica, list(range(10**6, 10**6 + 300)))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_crl_over_the_limit_is_refused(configure: Configure, world: World, declared: bool) -> None:
    body = big_crl(world)
    path = world.path("big")
    url = world.http.set(path, body) if declared else world.http.stream(path, body)
    leaf = world.leaf("big-crl", crl_urls=[url])
    configure(MAX_CRL_BYTES=str(len(body) - 1)).check("rest", leaf).expect(
        False, "revocation_unavailable", leaf, "crl"
    )
    configure(MAX_CRL_BYTES=str(len(body))).check("rest", leaf).expect(True, "good", leaf, "crl")


def test_ocsp_response_over_the_limit_is_refused(configure: Configure, world: World) -> None:
    leaf = world.leaf("big-ocsp", ocsp="issuer")
    configure(MAX_OCSP_BYTES="64").check("rest", leaf).expect(False, "revocation_unavailable", leaf, "ocsp")
    configure().check("rest", leaf).expect(True, "good", leaf, "ocsp")


# ------------------------------------------------------------------------------ redirects, schemes
def crl_behind(world: World, first_hop: str) -> Credential:
    return world.leaf("redirected", crl_urls=[first_hop])


def test_redirect_to_a_good_crl_is_followed(configure: Configure, world: World) -> None:
    target, target_url = world.crl_url()
    world.http.set(target, world.pki.crl(world.ica))
    leaf = crl_behind(world, world.http.redirect(world.path("r"), target_url))
    configure().check("rest", leaf).expect(True, "good", leaf, "crl")
    assert world.http.requests(target) == 1


def test_too_many_redirects_are_refused(configure: Configure, world: World) -> None:
    target, url = world.crl_url()
    world.http.set(target, world.pki.crl(world.ica))
    for _ in range(4):
        url = world.http.redirect(world.path("r"), url)
    leaf = crl_behind(world, url)
    configure().check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    assert world.http.requests(target) == 0


def test_redirect_into_a_blocked_network_is_refused(
    configure: Configure, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    target, _ = world.crl_url()
    world.http.set(target, world.pki.crl(world.ica))
    blocked_target = f"http://127.0.0.2:{world.http.port}{target}"
    leaf = crl_behind(world, world.http.redirect(world.path("r"), blocked_target))
    authz = configure(FETCH_BLOCKED_NETWORKS="127.0.0.2/32")
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    assert decision_records(caplog)[-1].fetchFailures == ["blocked"]


@pytest.mark.parametrize(
    "scheme", ["ldap://ldap.example.com/cn=crl", "file:///etc/passwd", "ftp://127.0.0.1/x"]
)
def test_redirect_to_another_scheme_is_refused(configure: Configure, world: World, scheme: str) -> None:
    leaf = crl_behind(world, world.http.redirect(world.path("r"), scheme))
    configure().check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")


def test_non_http_sources_count_as_declared_but_unusable(configure: Configure, world: World) -> None:
    """RFC 5280 4.2.1.13 / 4.2.2.1: a CDP or OCSP pointer this checker cannot fetch (ldap://, file://)
    still declares revocation information, so there is no answer (not "no info"), and nothing is fetched."""
    leaf = world.leaf(
        "ldap-only",
        ocsp_url="ldap://ldap.example.com/ocsp",
        crl_urls=["ldap://ldap.example.com/cn=CA,o=Example?certificateRevocationList", "file:///tmp/ca.crl"],
        issuer=world.private_ica,
    )
    authz = configure()
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf)
    assert world.http.total_requests() == 0


# ------------------------------------------------------------------------------------------ S3
def test_failed_refresh_keeps_the_last_good_truststore(
    configure: Configure, world: World, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    leaf = world.leaf("s3-flaky", crl=True)
    authz = configure(key="flaky/truststore.pem", TRUSTSTORE_REFRESH_SECONDS="0")
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    s3.delete_all_versions("flaky/truststore.pem")
    authz.check("v2", leaf).expect(True, "good", leaf, "crl")
    assert any("keeping the last good truststore" in str(getattr(r, "error", "")) for r in caplog.records)


def test_unparseable_block_is_skipped_and_logged(
    configure: Configure, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from pki import pem_bundle

    broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    bundle = pem_bundle(world.trusted[:1]) + broken + pem_bundle(world.trusted[1:])
    leaf = world.leaf("skip-broken", crl=True)
    configure(bundle).check("rest", leaf).expect(True, "good", leaf, "crl")
    assert any(r.getMessage() == "truststore block skipped" for r in caplog.records)


def test_cold_start_s3_failure_denies_untrusted_with_a_clear_log_line(
    configure: Configure, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    leaf = world.leaf("no-s3", crl=True)
    authz = configure(key="missing/truststore.pem", upload=False)
    authz.check("rest", leaf).expect(False, "untrusted", leaf)
    authz.check("v2", leaf).expect(False, "untrusted", leaf)
    errors = [r for r in caplog.records if r.getMessage() == "truststore could not be read"]
    assert len(errors) == 1  # retried only after a back-off, and said once
    assert "missing/truststore.pem" in errors[0].error


def test_s3_that_never_answers_is_bounded_by_the_budget(
    configure: Configure, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaf = world.leaf("s3-hangs", crl=True)
    authz = configure(AUTHORIZER_BUDGET_SECONDS="1")
    world.http.hang("/hanging-bucket")  # S3 path-style requests: /{bucket}/{key}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", world.http.base_url)
    monkeypatch.setenv("TRUSTSTORE_BUCKET", "hanging-bucket")
    authz.reset()
    decision, seconds = timed(lambda: authz.check("rest", leaf))
    decision.expect(False, "untrusted", leaf)
    assert seconds < 5


class Relay:
    """A TCP relay on loopback to `upstream` that can be switched to accept and never answer."""

    def __init__(self, upstream: tuple[str, int], hang_seconds: float) -> None:
        self.upstream, self.hanging, self.hang_seconds = upstream, False, hang_seconds
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if relay.hanging:
                    time.sleep(relay.hang_seconds)
                    return
                with socket.create_connection(relay.upstream) as upstream:
                    pipe = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
                    pipe.start()
                    _copy(self.request, upstream)
                    pipe.join(SLOW)

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def test_slow_refresh_keeps_serving_the_last_good_truststore(
    configure: Configure, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    from urllib.parse import urlsplit

    leaf = world.leaf("s3-slow-refresh", crl=True)
    authz = configure(
        key="slow/truststore.pem", TRUSTSTORE_REFRESH_SECONDS="0", AUTHORIZER_BUDGET_SECONDS="1"
    )
    moto = urlsplit(os.environ["AWS_ENDPOINT_URL_S3"])
    relay = Relay((moto.hostname or "127.0.0.1", moto.port or 80), hang_seconds=3)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", relay.url)
        authz.reset()
        authz.check("rest", leaf).expect(True, "good", leaf, "crl")
        relay.hanging = True  # every refresh from now on hangs
        decision, seconds = timed(lambda: authz.check("v2", leaf))
        decision.expect(True, "good", leaf, "crl")
        assert seconds < 2.5  # the budget, not the 3 s the refresh hangs
    finally:
        relay.hanging = False
        time.sleep(4)  # let the background refresh finish (its retry now reaches S3) before closing
        relay.close()
