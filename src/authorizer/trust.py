"""Where trust is decided: the client certificate's path to a truststore anchor.

API Gateway already did this; it is repeated as defence in depth, and because the revocation check
needs the path (each certificate with its issuer). pyhanko-certvalidator does the RFC 5280 path
validation; revocation is left to revocation.py, so the validator never fetches anything.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import CertificateRegistry, SimpleTrustManager

from .certs import Cert
from .truststore import Truststore

_NO_REVOCATION = CertRevTrustPolicy(
    RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.NO_CHECK,
        intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK,
    )
)


class Untrusted(Exception):
    """No valid path from the certificate to a truststore anchor."""


@dataclass(frozen=True, eq=False)
class CertPath:
    """A validated path, leaf first, anchor last."""

    certs: tuple[Cert, ...]

    @property
    def leaf(self) -> Cert:
        return self.certs[0]

    def links(self) -> list[tuple[Cert, Cert]]:
        """(certificate, issuer) for every certificate below the anchor, leaf first."""
        return list(zip(self.certs[:-1], self.certs[1:], strict=True))


@functools.lru_cache(maxsize=4)
def _pyhanko_trust(truststore: Truststore) -> tuple[SimpleTrustManager, CertificateRegistry]:
    """The validator's view of a truststore, built once per truststore (it only looks certificates up)."""
    return (
        SimpleTrustManager.build(trust_roots=[anchor.asn1 for anchor in truststore.anchors]),
        CertificateRegistry.build([cert.asn1 for cert in truststore.intermediates]),
    )


_loops = threading.local()
_validating = threading.Lock()


def _run(coroutine: Coroutine[Any, Any, ValidationPath]) -> ValidationPath:
    """Run the validator's coroutine on a long-lived loop (asyncio.run costs ~1 ms per call), one per
    thread: Lambda calls one at a time, a local gateway or a library caller may not."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


def validate_path(leaf: Cert, truststore: Truststore, moment: datetime, skew_seconds: float) -> CertPath:
    """Validate signatures, validity dates and CA constraints up to an anchor; raises Untrusted."""
    trust_manager, registry = _pyhanko_trust(truststore)
    # The validation moment is fixed when the context is built, so each validation gets its own.
    context = ValidationContext(
        trust_manager=trust_manager,
        certificate_registry=registry,
        moment=moment,
        allow_fetching=False,
        revinfo_policy=_NO_REVOCATION,
        time_tolerance=timedelta(seconds=skew_seconds),
    )
    validator = CertificateValidator(leaf.asn1, validation_context=context)
    try:
        # No key usage is demanded beyond what RFC 5280 path validation itself requires.
        # One validation at a time: the trust manager and registry are shared per truststore, and
        # pyhanko's caches are not documented as thread-safe (Lambda calls one at a time anyway).
        with _validating:
            path = _run(validator.async_validate_usage(key_usage=set()))  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise Untrusted(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
    # Back to our certificates by object identity: pyhanko returns the very asn1crypto objects it was
    # given, each parsed from the DER we hold. Never by re-serialising them (asn1crypto does not promise
    # to re-encode every byte as it was, e.g. a unique identifier's BIT STRING).
    given = {id(cert.asn1): cert for cert in (leaf, *truststore.anchors, *truststore.intermediates)}
    try:
        certs = [given[id(c)] for c in path.iter_certs(include_root=True)]
    except KeyError as exc:  # the validator can only use what we gave it; be strict anyway
        raise Untrusted("path holds a certificate outside the truststore") from exc
    return CertPath(tuple(reversed(certs)))
