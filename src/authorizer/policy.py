"""Where revocation is decided: pure functions from verified answers to a reason, and from a reason to
Allow or Deny under the configured policy. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence

from .model import Answer, CertVerdict, Reason, Source, Status
from .settings import RevocationPolicy

# Worst first: the path's reason is the worst of its certificates' reasons.
_SEVERITY = (Reason.REVOKED, Reason.REVOCATION_UNAVAILABLE, Reason.NO_REVOCATION_INFO, Reason.GOOD)


def cert_verdict(subject: str, declared: Sequence[Source], answers: Sequence[Answer]) -> CertVerdict:
    """One certificate's outcome from the answers of the sources it declares.

    Revoked from any source wins; one verified good answer suffices when another source failed;
    OCSP "unknown" is not good; declaring nothing is "no revocation info".
    """
    if not declared:
        return CertVerdict(subject, Reason.NO_REVOCATION_INFO, Source.NONE)
    for wanted, reason in ((Status.REVOKED, Reason.REVOKED), (Status.GOOD, Reason.GOOD)):
        for answer in answers:
            if answer.status is wanted:
                return CertVerdict(subject, reason, answer.source, answer.detail)
    details = "; ".join(a.detail for a in answers if a.detail)
    return CertVerdict(subject, Reason.REVOCATION_UNAVAILABLE, declared[0], details)


def overridden(verdict: CertVerdict, overrides: Sequence[Answer]) -> CertVerdict:
    """Apply the answers of sources that only override (a denylist, a remembered revocation): revoked
    by any of them wins over everything; one that could not be read makes an unrevoked certificate
    unavailable, since it might have listed it."""
    for answer in overrides:
        if answer.status is Status.REVOKED:
            return CertVerdict(verdict.subject, Reason.REVOKED, answer.source, answer.detail)
    if verdict.reason is Reason.REVOKED:
        return verdict
    for answer in overrides:
        if answer.status is not Status.GOOD:
            return CertVerdict(verdict.subject, Reason.REVOCATION_UNAVAILABLE, answer.source, answer.detail)
    return verdict


def path_verdict(verdicts: Sequence[CertVerdict]) -> CertVerdict:
    """The path's verdict from its certificates' verdicts, leaf first.

    Revoked anywhere, then unavailable anywhere, win. Otherwise the leaf decides: a leaf that declares
    nothing is "no revocation info" whatever its issuers declare; a checked leaf is good, and an
    intermediate that declares nothing does not spoil that (CA certificates in private PKIs often
    carry no CRL or OCSP pointer; they are revoked by removing them from the truststore).
    """
    if not verdicts:
        return CertVerdict("", Reason.NO_REVOCATION_INFO, Source.NONE)
    worst = min(verdicts, key=lambda v: _SEVERITY.index(v.reason))
    if worst.reason in (Reason.REVOKED, Reason.REVOCATION_UNAVAILABLE):
        return worst
    return verdicts[0]


def allows(reason: Reason, policy: RevocationPolicy) -> bool:
    """Allow or Deny for a reason: fail closed except where the policy loosens it."""
    if reason is Reason.GOOD:
        return True
    if reason is Reason.NO_REVOCATION_INFO:
        return policy.allow_no_info
    if reason is Reason.REVOCATION_UNAVAILABLE:
        return policy.allow_unavailable
    return False
