"""The revocation policy: pure functions, plus how the path's verdict reads through the handler."""

from __future__ import annotations

import datetime as dt

import pytest

from authorizer.model import Answer, CertVerdict, Reason, Source, Status
from authorizer.policy import allows, cert_verdict, path_verdict
from authorizer.settings import RevocationPolicy
from conftest import Configure, Format, World

LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def answer(status: Status, source: Source = Source.OCSP) -> Answer:
    return Answer(status, source, LATER, status.value)


@pytest.mark.parametrize(
    ("declared", "answers", "reason", "source"),
    [
        ([], [], Reason.NO_REVOCATION_INFO, Source.NONE),
        ([Source.OCSP], [answer(Status.GOOD)], Reason.GOOD, Source.OCSP),
        ([Source.OCSP], [answer(Status.UNKNOWN)], Reason.REVOCATION_UNAVAILABLE, Source.OCSP),
        (
            [Source.OCSP, Source.CRL],
            [answer(Status.GOOD), answer(Status.REVOKED, Source.CRL)],
            Reason.REVOKED,
            Source.CRL,
        ),
        (
            [Source.OCSP, Source.CRL],
            [answer(Status.UNAVAILABLE), answer(Status.GOOD, Source.CRL)],
            Reason.GOOD,
            Source.CRL,
        ),
        ([Source.CRL], [answer(Status.UNAVAILABLE, Source.CRL)], Reason.REVOCATION_UNAVAILABLE, Source.CRL),
    ],
)
def test_cert_verdict(declared: list[Source], answers: list[Answer], reason: Reason, source: Source) -> None:
    verdict = cert_verdict("CN=x", declared, answers)
    assert (verdict.reason, verdict.source) == (reason, source)


def v(reason: Reason) -> CertVerdict:
    return CertVerdict("CN=x", reason, Source.CRL)


@pytest.mark.parametrize(
    ("leaf", "intermediate", "expected"),
    [
        (Reason.GOOD, Reason.NO_REVOCATION_INFO, Reason.GOOD),
        (Reason.NO_REVOCATION_INFO, Reason.GOOD, Reason.NO_REVOCATION_INFO),
        (Reason.GOOD, Reason.REVOKED, Reason.REVOKED),
        (Reason.NO_REVOCATION_INFO, Reason.REVOCATION_UNAVAILABLE, Reason.REVOCATION_UNAVAILABLE),
        (Reason.REVOKED, Reason.REVOCATION_UNAVAILABLE, Reason.REVOKED),
    ],
)
def test_path_verdict(leaf: Reason, intermediate: Reason, expected: Reason) -> None:
    assert path_verdict([v(leaf), v(intermediate)]).reason is expected


def test_allows_fails_closed_except_where_loosened() -> None:
    strict = RevocationPolicy(allow_no_info=False, allow_unavailable=False)
    loose = RevocationPolicy(allow_no_info=True, allow_unavailable=True)
    for reason in (Reason.REVOKED, Reason.UNTRUSTED, Reason.INVALID_REQUEST):
        assert not allows(reason, loose)
    assert allows(Reason.GOOD, strict)
    assert not allows(Reason.NO_REVOCATION_INFO, strict) and allows(Reason.NO_REVOCATION_INFO, loose)
    assert not allows(Reason.REVOCATION_UNAVAILABLE, strict) and allows(Reason.REVOCATION_UNAVAILABLE, loose)


def test_checked_leaf_under_an_intermediate_without_info_is_good(
    configure: Configure, world: World, fmt: Format
) -> None:
    leaf = world.leaf("checked-under-private", issuer=world.private_ica, crl=True)
    configure(REVOCATION_NO_INFO="deny").check(fmt, leaf).expect(True, "good", leaf, "crl")


def test_leaf_without_info_under_a_checked_intermediate_has_no_info(
    configure: Configure, world: World, fmt: Format
) -> None:
    leaf = world.leaf("unchecked-under-checked")
    configure().check(fmt, leaf).expect(True, "no_revocation_info", leaf, "none")
    configure(REVOCATION_NO_INFO="deny").check(fmt, leaf).expect(False, "no_revocation_info", leaf, "none")
