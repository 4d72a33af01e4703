"""Decisions of ``lambda_handler`` for real certificates against real (loopback) OCSP responders and CRLs.

Rules (see the brief): (1) untrusted path -> Deny untrusted, no fetch; (2)/(3) revocation of the leaf and
every
intermediate, OCSP and CRL, revoked anywhere -> Deny; (4) no revocation info -> Allow (or Deny by setting);
(5) no verified answer -> Deny revocation_unavailable (or Allow by setting). Nothing here mocks a fetch.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography import x509

from conftest import Authorizer, Configure, Format, World
from pki import Credential, flip_last_byte, name, utcnow
from servers import refused_url

BREAKAGES = ["refused", "http500", "http404", "garbage", "empty", "html"]


def broken_url(world: World, kind: str) -> str:
    """A URL that gives no usable revocation data."""
    http = world.http
    path = world.path(f"broken-{kind}")
    if kind == "refused":
        return refused_url(path)
    if kind == "hang":
        return http.hang(path)
    body, status, content_type = {
        "http500": (b"internal error", 500, "text/plain"),
        "http404": (b"not found", 404, "text/plain"),
        "garbage": (bytes(range(256)) * 4, 200, "application/pkix-crl"),
        "empty": (b"", 200, "application/octet-stream"),
        "html": (b"<html><body>captive portal</body></html>", 200, "text/html"),
    }[kind]
    return http.set(path, body, status=status, content_type=content_type)


def static_ocsp_leaf(
    world: World, make: Callable[[Credential, bytes], bytes], **leaf_args: object
) -> Credential:
    """A leaf whose OCSP URL is served by ``make(leaf, request_der)`` (a response built with cryptography)."""
    path = world.path("static-ocsp")
    holder: list[Credential] = []
    world.http.respond(path, lambda request: make(holder[0], request))
    leaf = world.leaf("static ocsp client", ocsp_url=world.http.url(path), **leaf_args)  # type: ignore[arg-type]
    holder.append(leaf)
    return leaf


# ============================================================================ rule 1: untrusted, no fetch
def assert_untrusted_without_fetch(
    authorizer: Authorizer, world: World, fmt: Format, leaf: Credential
) -> None:
    decision = authorizer.check(fmt, leaf)
    decision.expect(False, "untrusted", cert=leaf)
    assert world.http.total_requests() == 0


def test_unknown_ca_is_untrusted(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("stranger", issuer=world.unknown_ica, ocsp="issuer", crl=True)
    assert_untrusted_without_fetch(authorizer, world, fmt, leaf)


def test_self_signed_client_cert_is_untrusted(authorizer: Authorizer, world: World, fmt: Format) -> None:
    assert_untrusted_without_fetch(authorizer, world, fmt, world.unknown_root)


def test_impostor_ca_with_same_name_is_untrusted(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("impostor client", issuer=world.impostor_ica, ocsp="issuer", crl=True)
    assert leaf.cert.issuer == world.ica.cert.subject
    assert_untrusted_without_fetch(authorizer, world, fmt, leaf)


@pytest.mark.parametrize("window", ["expired", "not_yet_valid"])
def test_leaf_outside_validity_is_untrusted(
    authorizer: Authorizer, world: World, fmt: Format, window: str
) -> None:
    now = utcnow()
    if window == "expired":
        times = {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}
    else:
        times = {"not_before": now + dt.timedelta(days=1), "not_after": now + dt.timedelta(days=30)}
    leaf = world.leaf(f"{window} client", ocsp="issuer", crl=True, **times)  # type: ignore[arg-type]
    assert_untrusted_without_fetch(authorizer, world, fmt, leaf)


def test_leaf_issued_by_non_ca_is_untrusted(configure: Configure, world: World, fmt: Format) -> None:
    not_a_ca = world.leaf("not a ca")
    leaf = world.pki.leaf(
        "child of a leaf", not_a_ca, ocsp_url=world.ocsp_url("issuer"), crl_urls=[world.crl_url()[1]]
    )
    authorizer = configure([*world.trusted, not_a_ca])
    assert_untrusted_without_fetch(authorizer, world, fmt, leaf)


def test_bad_signature_is_untrusted(authorizer: Authorizer, world: World, fmt: Format) -> None:
    good = world.leaf("tampered", ocsp="issuer", crl=True)
    tampered = replace(good, cert=x509.load_der_x509_certificate(flip_last_byte(good.der)))
    assert_untrusted_without_fetch(authorizer, world, fmt, tampered)


def test_anchor_must_be_in_truststore(configure: Configure, world: World, fmt: Format) -> None:
    """The intermediate alone (without its root) is not an anchor: it is not self-signed."""
    leaf = world.leaf("no anchor", ocsp="issuer")
    authorizer = configure([world.ica])
    assert_untrusted_without_fetch(authorizer, world, fmt, leaf)


# ============================================================================ rule 2/3: OCSP
@pytest.mark.parametrize("key_type", ["rsa", "ec"])
@pytest.mark.parametrize("responder", ["issuer", "delegated"])
def test_ocsp_good_allows(
    authorizer: Authorizer, world: World, fmt: Format, responder: str, key_type: str
) -> None:
    leaf = world.leaf(f"{key_type} client", ocsp=responder, key_type=key_type)  # type: ignore[arg-type]
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="ocsp")
    assert world.http.requests(f"/ocsp/{responder}") >= 1


@pytest.mark.parametrize("responder", ["issuer", "delegated"])
def test_ocsp_revoked_denies(authorizer: Authorizer, world: World, fmt: Format, responder: str) -> None:
    leaf = world.leaf("revoked client", ocsp=responder, ocsp_status="revoked")
    authorizer.check(fmt, leaf).expect(False, "revoked", cert=leaf, source="ocsp")


def test_ocsp_revocation_is_seen_live(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("soon revoked", ocsp="delegated")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="ocsp")
    world.responders["delegated"].set_status(leaf, "revoked")
    authorizer.reset()  # a new container: no cached answer
    authorizer.check(fmt, leaf).expect(False, "revoked", cert=leaf, source="ocsp")


@pytest.mark.parametrize("responder", ["noeku", "impostor"])
def test_ocsp_from_unauthorized_responder_is_unavailable(
    authorizer: Authorizer, world: World, fmt: Format, responder: str
) -> None:
    """A responder without OCSPSigning, or issued by an impostor CA of the same name, is not believed."""
    leaf = world.leaf("client", ocsp=responder)
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.requests(f"/ocsp/{responder}") >= 1


def test_ocsp_unknown_is_not_good(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("unknown to responder", ocsp="issuer", ocsp_status="unknown")
    decision = authorizer.check(fmt, leaf)
    decision.expect(False, "revocation_unavailable", cert=leaf)


def _ago(**delta: float) -> dt.datetime:
    return utcnow() - dt.timedelta(**delta)


def _ahead(**delta: float) -> dt.datetime:
    return utcnow() + dt.timedelta(**delta)


STATIC_OCSP_DEFECTS: dict[str, Callable[[World], Callable[[Credential, bytes], bytes]]] = {
    "stale": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(
            leaf, w.ica, request_der=req, this_update=_ago(hours=3), next_update=_ago(hours=2)
        )
    ),
    "future_this_update": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(
            leaf, w.ica, request_der=req, this_update=_ahead(hours=2), next_update=_ahead(hours=3)
        )
    ),
    "wrong_cert_id": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(leaf, w.ica, request_der=req, for_serial=leaf.serial + 1)
    ),
    "bad_signature": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(leaf, w.ica, request_der=req, corrupt_signature=True)
    ),
    "signed_by_root": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(leaf, w.ica, request_der=req, responder=w.root)
    ),
    "signed_by_impostor_ca": lambda w: (
        lambda leaf, req: w.pki.ocsp_response(leaf, w.impostor_ica, request_der=req)
    ),
    "not_ocsp": lambda w: lambda leaf, req: w.pki.crl(w.ica),
}


def test_static_ocsp_control_good_and_revoked(authorizer: Authorizer, world: World, fmt: Format) -> None:
    """Hand-built responses are accepted when nothing is wrong with them (so the defects below count)."""
    good = static_ocsp_leaf(
        world, lambda leaf, req: world.pki.ocsp_response(leaf, world.ica, request_der=req)
    )
    authorizer.check(fmt, good).expect(True, "good", cert=good, source="ocsp")
    revoked = static_ocsp_leaf(
        world, lambda leaf, req: world.pki.ocsp_response(leaf, world.ica, request_der=req, status="revoked")
    )
    authorizer.check(fmt, revoked).expect(False, "revoked", cert=revoked, source="ocsp")


@pytest.mark.parametrize("defect", sorted(STATIC_OCSP_DEFECTS))
def test_defective_ocsp_response_is_unavailable(
    authorizer: Authorizer, world: World, fmt: Format, defect: str
) -> None:
    leaf = static_ocsp_leaf(world, STATIC_OCSP_DEFECTS[defect](world))
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)


@pytest.mark.parametrize(("skew", "allowed"), [("300", True), ("0", False)])
def test_clock_skew_applies_to_ocsp_this_update(
    configure: Configure, world: World, fmt: Format, skew: str, allowed: bool
) -> None:
    leaf = static_ocsp_leaf(
        world,
        lambda leaf, req: world.pki.ocsp_response(
            leaf, world.ica, request_der=req, this_update=_ahead(seconds=120), next_update=_ahead(hours=2)
        ),
    )
    decision = configure(CLOCK_SKEW_SECONDS=skew).check(fmt, leaf)
    decision.expect(allowed, "good" if allowed else "revocation_unavailable", cert=leaf)


@pytest.mark.parametrize("kind", BREAKAGES)
def test_unreachable_ocsp_is_unavailable(
    authorizer: Authorizer, world: World, fmt: Format, kind: str
) -> None:
    leaf = world.leaf("client", ocsp_url=broken_url(world, kind))
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)


# ============================================================================ rule 2/3: CRL
def test_crl_good_allows(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("crl client", crl=True)
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="crl")


def test_crl_revoked_denies(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("crl revoked client", crl=True, crl_revoked=True)
    authorizer.check(fmt, leaf).expect(False, "revoked", cert=leaf, source="crl")


def test_crl_good_for_ecdsa_leaf(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("ec crl client", crl=True, key_type="ec")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="crl")


CRL_DEFECTS: dict[str, Callable[[World, Credential, str], bytes]] = {
    "stale": lambda w, leaf, url: w.pki.crl(w.ica, this_update=_ago(days=8), next_update=_ago(days=1)),
    "future_this_update": lambda w, leaf, url: w.pki.crl(w.ica, this_update=_ahead(hours=2)),
    "bad_signature": lambda w, leaf, url: flip_last_byte(w.pki.crl(w.ica)),
    "signed_by_impostor_ca": lambda w, leaf, url: w.pki.crl(w.impostor_ica),
    "other_issuer_name": lambda w, leaf, url: w.pki.crl(w.ica, issuer_name=name("Some Other CA")),
    "issued_by_root": lambda w, leaf, url: w.pki.crl(w.root),
    "idp_other_distribution_point": lambda w, leaf, url: w.pki.crl(
        w.ica, idp=w.pki.idp(w.http.url("/crl/some-other-partition.crl"))
    ),
    "idp_only_ca_certs": lambda w, leaf, url: w.pki.crl(w.ica, idp=w.pki.idp(url, only_ca_certs=True)),
    "not_a_crl": lambda w, leaf, url: leaf.der,
}


@pytest.mark.parametrize("defect", sorted(CRL_DEFECTS))
def test_defective_crl_is_unavailable(authorizer: Authorizer, world: World, fmt: Format, defect: str) -> None:
    path, url = world.crl_url()
    leaf = world.leaf("crl client", crl_urls=[url])
    world.http.set(path, CRL_DEFECTS[defect](world, leaf, url))
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.requests(path) >= 1


@pytest.mark.parametrize("kind", BREAKAGES)
def test_unreachable_crl_is_unavailable(authorizer: Authorizer, world: World, fmt: Format, kind: str) -> None:
    leaf = world.leaf("client", crl_urls=[broken_url(world, kind)])
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)


def test_sharded_crls(authorizer: Authorizer, world: World, fmt: Format) -> None:
    """Each certificate names its own shard; only the right shard is consulted."""
    shard_a, url_a = world.crl_url()
    shard_b, url_b = world.crl_url()
    leaf_a = world.leaf("shard a client", crl_urls=[url_a])
    leaf_b = world.leaf("shard b client", crl_urls=[url_b])
    world.http.set(shard_a, world.pki.crl(world.ica, [leaf_a.serial + 7]))
    world.http.set(shard_b, world.pki.crl(world.ica, [leaf_b]))
    authorizer.check(fmt, leaf_a).expect(True, "good", cert=leaf_a, source="crl")
    assert (world.http.requests(shard_a), world.http.requests(shard_b)) == (1, 0)
    authorizer.check(fmt, leaf_b).expect(False, "revoked", cert=leaf_b, source="crl")
    assert world.http.requests(shard_b) == 1


@pytest.mark.parametrize("revoked", [False, True])
def test_partitioned_crl_with_matching_idp(
    authorizer: Authorizer, world: World, fmt: Format, revoked: bool
) -> None:
    path, url = world.crl_url()
    leaf = world.leaf("partition client", crl_urls=[url])
    world.http.set(path, world.pki.crl(world.ica, [leaf] if revoked else [], idp=world.pki.idp(url)))
    expected = (False, "revoked") if revoked else (True, "good")
    authorizer.check(fmt, leaf).expect(*expected, cert=leaf, source="crl")


def test_idp_only_user_certs_does_not_cover_intermediate(
    configure: Configure, world: World, fmt: Format
) -> None:
    path, url = world.crl_url()
    ica = world.pki.intermediate("Partitioned-CRL Issuing CA", world.root, crl_urls=[url])
    world.http.set(path, world.pki.crl(world.root, idp=world.pki.idp(url, only_user_certs=True)))
    leaf = world.leaf("client", issuer=ica, crl=True)
    authorizer = configure([*world.trusted, ica])
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)


# ============================================================================ both sources
def test_ocsp_good_is_enough_when_crl_unreachable(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("both", ocsp="issuer", crl_urls=[broken_url(world, "http500")])
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="ocsp")


def test_crl_good_is_enough_when_ocsp_unreachable(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("both", ocsp_url=broken_url(world, "refused"), crl=True)
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="crl")


@pytest.mark.parametrize("revoked_in", ["ocsp", "crl"])
def test_revoked_in_either_source_denies(
    authorizer: Authorizer, world: World, fmt: Format, revoked_in: str
) -> None:
    leaf = world.leaf(
        "both",
        ocsp="delegated",
        ocsp_status="revoked" if revoked_in == "ocsp" else "good",
        crl=True,
        crl_revoked=revoked_in == "crl",
    )
    authorizer.check(fmt, leaf).expect(False, "revoked", cert=leaf)


def test_both_sources_unreachable_is_unavailable(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("both", ocsp_url=broken_url(world, "http500"), crl_urls=[broken_url(world, "garbage")])
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)


# ============================================================================ intermediates (chain / leaf)
def test_chain_checks_intermediate_crl(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("client", ocsp="issuer")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)
    assert world.http.requests("/crl/root.crl") >= 1


@pytest.mark.parametrize("intermediate", ["revoked_ica", "ica_ocsp_revoked"])
def test_revoked_intermediate_denies_in_chain_mode(
    configure: Configure, world: World, fmt: Format, intermediate: str
) -> None:
    issuer: Credential = getattr(world, intermediate)
    leaf = world.leaf("client under revoked ca", issuer=issuer, crl=True)
    configure().check(fmt, leaf).expect(False, "revoked", cert=leaf)
    configure(REVOCATION_CHECK="leaf").check(fmt, leaf).expect(True, "good", cert=leaf, source="crl")


def test_intermediate_checked_by_ocsp(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("client", issuer=world.ica_ocsp_good, crl=True)
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)
    assert world.http.requests("/ocsp/root") >= 1


def test_intermediate_unavailable(configure: Configure, world: World, fmt: Format) -> None:
    leaf = world.leaf("client", issuer=world.ica_crl_down, crl=True)
    configure().check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.requests("/crl/down.crl") >= 1
    world.http.reset_counts()
    configure(REVOCATION_CHECK="leaf").check(fmt, leaf).expect(True, "good", cert=leaf, source="crl")
    assert world.http.requests("/crl/down.crl") == 0


# ============================================================================ rule 4: no revocation info
def test_no_revocation_info_allows_by_default(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf("private client", issuer=world.private_ica)
    authorizer.check(fmt, leaf).expect(True, "no_revocation_info", cert=leaf, source="none")
    assert world.http.total_requests() == 0


def test_no_revocation_info_denied_by_setting(configure: Configure, world: World, fmt: Format) -> None:
    leaf = world.leaf("private client", issuer=world.private_ica)
    authorizer = configure(REVOCATION_NO_INFO="deny")
    authorizer.check(fmt, leaf).expect(False, "no_revocation_info", cert=leaf, source="none")


# ============================================================================ rule 5: unavailable=allow
def test_unavailable_allowed_by_setting(configure: Configure, world: World, fmt: Format) -> None:
    authorizer = configure(REVOCATION_UNAVAILABLE="allow")
    leaf = world.leaf("client", ocsp_url=broken_url(world, "refused"))
    authorizer.check(fmt, leaf).expect(True, "revocation_unavailable", cert=leaf)


def test_lenient_settings_still_deny_revoked_and_untrusted(
    configure: Configure, world: World, fmt: Format
) -> None:
    authorizer = configure(REVOCATION_UNAVAILABLE="allow", REVOCATION_NO_INFO="allow")
    revoked = world.leaf("revoked", ocsp="issuer", ocsp_status="revoked")
    authorizer.check(fmt, revoked).expect(False, "revoked", cert=revoked)
    stranger = world.leaf("stranger", issuer=world.unknown_ica)
    authorizer.check(fmt, stranger).expect(False, "untrusted", cert=stranger)


# ============================================================================ fetch limits
@pytest.mark.parametrize("declared", ["ocsp", "crl"])
def test_hanging_server_times_out(configure: Configure, world: World, fmt: Format, declared: str) -> None:
    url = broken_url(world, "hang")
    leaf = world.leaf("client", ocsp_url=url) if declared == "ocsp" else world.leaf("client", crl_urls=[url])
    authorizer = configure(FETCH_TIMEOUT_SECONDS="1")
    started = time.monotonic()
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert time.monotonic() - started < 6


def test_default_blocked_networks_include_loopback(configure: Configure, world: World, fmt: Format) -> None:
    leaf = world.leaf("client", ocsp="issuer", crl=True)
    authorizer = configure(FETCH_BLOCKED_NETWORKS=None)
    authorizer.check(fmt, leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.total_requests() == 0


@pytest.mark.parametrize(
    ("blocked", "allowed"), [("127.0.0.0/8", False), ("10.0.0.0/8,192.168.0.0/16", True)]
)
def test_blocked_networks_setting(
    configure: Configure, world: World, fmt: Format, blocked: str, allowed: bool
) -> None:
    leaf = world.leaf("client", ocsp="issuer")
    authorizer = configure(FETCH_BLOCKED_NETWORKS=blocked, REVOCATION_CHECK="leaf")
    decision = authorizer.check(fmt, leaf)
    decision.expect(allowed, "good" if allowed else "revocation_unavailable", cert=leaf)
    assert (world.http.total_requests() > 0) is allowed
