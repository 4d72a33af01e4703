"""Who may sign a CRL besides the certificate's issuer (RFC 5280 §6.3.3 (f)).

A CA may sign its CRLs with a key other than the one that signed the certificate: a separate
CRL-signing certificate of the same name (PKITS 4.4.19, 4.5.6), the other key of a key rollover
(self-issued old-with-new and new-with-old certificates, §3.2 and PKITS 4.5.1-4.5.5), or, for an
indirect CRL (§5.2.5), another entity named by the distribution point's cRLIssuer. A candidate is a
certificate of the truststore (or one a configured source provides) with the CRL issuer's name, a
keyUsage that allows cRLSign when it has one (§4.2.1.3), and a path, validated by
pyhanko-certvalidator, to the same anchor as the certificate being checked. The CRL is accepted
only when its signature verifies under one of them (crl.parse_and_verify).

The signer's own revocation is checked by the CRL sources once the CRL verified under it, through
the CRLs the signer declares (sources/crl_distribution_point.py; docs/crl-features.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext

from .certs import Cert
from .crl import may_sign_crls
from .sources import Link
from .trust import NO_REVOCATION

MAX_CANDIDATES = 8  # certificates of one name tried per CRL: a truststore rarely holds more than two


def known_by_name(link: Link, name: x509.Name, extra: Sequence[Cert] = ()) -> list[Cert]:
    """Every certificate in reach with this subject name (not yet validated): the path's own first."""
    pool: list[Cert] = [link.issuer]
    if link.anchor is not None:
        pool.append(link.anchor)
    if link.truststore is not None:
        pool.extend(link.truststore.anchors)
        pool.extend(link.truststore.intermediates)
    pool.extend(extra)
    seen: set[str] = set()
    found: list[Cert] = []
    for cert in pool:
        if cert.fingerprint in seen or cert.fingerprint == link.cert.fingerprint:
            continue
        seen.add(cert.fingerprint)
        if cert.crypto.subject == name:
            found.append(cert)
    return found


def find_signers(
    link: Link, name: x509.Name, moment: datetime, skew_seconds: float, extra: Sequence[Cert] = ()
) -> list[Cert]:
    """The certificates other than the link's issuer that may have signed a CRL issued under `name`:
    same name, cRLSign allowed, and a validated path to the link's anchor. Never raises."""
    anchor = link.anchor
    if anchor is None:
        return []
    intermediates = [*(link.truststore.intermediates if link.truststore else ()), *extra, link.issuer]
    signers: list[Cert] = []
    for cert in known_by_name(link, name, extra):
        if cert.fingerprint == link.issuer.fingerprint or not may_sign_crls(cert):
            continue
        if len(signers) >= MAX_CANDIDATES:
            break
        if cert.fingerprint == anchor.fingerprint or _validates_to(
            cert, anchor, intermediates, moment, skew_seconds
        ):
            signers.append(cert)
    return signers


def _validates_to(
    cert: Cert, anchor: Cert, intermediates: Sequence[Cert], moment: datetime, skew_seconds: float
) -> bool:
    """Whether `cert` has a valid path to `anchor` (only), through the given intermediates, usable for
    signing CRLs (RFC 5280 §6.1 by pyhanko-certvalidator; revocation is the caller's)."""
    try:
        context = ValidationContext(
            trust_roots=[anchor.asn1],
            other_certs=[c.asn1 for c in intermediates if c.fingerprint != cert.fingerprint],
            moment=moment,
            allow_fetching=False,
            revinfo_policy=NO_REVOCATION,
            time_tolerance=timedelta(seconds=skew_seconds),
        )
        validator = CertificateValidator(cert.asn1, validation_context=context)
        # Runs in a refresh's worker thread (no loop of its own): a fresh loop, closed afterwards.
        asyncio.run(validator.async_validate_usage(key_usage={"crl_sign"}))  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return True
