"""Where trust is decided: the client certificate's path to a truststore anchor.

API Gateway already did this; it is repeated as defence in depth, and because the revocation check
needs the path (each certificate with its issuer). pyhanko-certvalidator does the RFC 5280 path
validation; revocation is left to revocation.py, so the validator never fetches anything.

A new client certificate of a CA already seen takes a shorter road. pyhanko validated that CA's path
(every intermediate as a CA: signatures, CA constraints, path length, critical extensions) when the
CA's first client came; what is new is the leaf's own link. cryptography's `x509.verification`
(RFC 5280, in Rust, ~0.1 ms against pyhanko's ~1 ms) checks the whole path for the leaf, and its
answer is taken only when it lands on a CA path pyhanko accepted and nothing on the path is judged
by rules the two validators could weigh differently (name constraints, policy constraints and
mappings, a critical extension pyhanko does not support). Anything else, including every refusal,
goes to pyhanko, so the fast road can only agree with the slow one: tests/test_trust_fast_path.py
checks that on generated leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asn1crypto.x509 import ExtensionId
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import CertificateRegistry, SimpleTrustManager
from pyhanko_certvalidator.validate import SUPPORTED_EXTENSIONS

from .certs import Cert
from .truststore import Truststore

# pyhanko never checks revocation here: that is revocation.py's, with its own sources and rules.
NO_REVOCATION = CertRevTrustPolicy(
    RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.NO_CHECK,
        intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK,
    )
)

# What sends a path to pyhanko even when its CA path is known (see the module docstring).
# Name constraints and policy constraints change what is valid below them; mappings and
# inhibitAnyPolicy reshape the policy graph. Without them, certificate policies cannot make a path
# invalid (RFC 5280 §6.1.5 (g): explicit_policy stays above 0) as long as pyhanko's policy graph stays
# under its 1,000-node bound (RFC 9618 §3), which short policy lists guarantee.
_PATH_RULES = frozenset(
    {
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    }
)
_MAX_POLICIES = 64  # per certificate; 8 certificates (cryptography's depth bound) x 65 < 1,000 nodes

# cryptography's checks with its web-PKI extension profile off: RFC 5280 alone, as pyhanko applies it
# (a CA must carry basicConstraints; cryptography insists on saying so).
_CA_EXTENSIONS = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, None
)
_LEAF_EXTENSIONS = ExtensionPolicy.permit_all()


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


def _judged_alike(cert: Cert) -> bool:
    """Whether both validators apply the same rules to this certificate (see _PATH_RULES)."""
    for extension in cert.crypto.extensions:
        if extension.oid in _PATH_RULES:
            return False
        if extension.critical and ExtensionId.map(extension.oid.dotted_string) not in SUPPORTED_EXTENSIONS:
            return False  # pyhanko refuses it; cryptography might know it (TLS feature, say)
        value = extension.value
        if isinstance(value, x509.CertificatePolicies) and len(value) > _MAX_POLICIES:
            return False
    return True


def _names_as_pyhanko(cert: Cert, issuer: Cert) -> bool:
    """Whether pyhanko's path building would take `issuer` for `cert`: it skips an issuer whose key
    identifier the authorityKeyIdentifier contradicts (RFC 5280 §4.2.1.1), where cryptography only
    checks the signature. An AKI naming the issuer by name and serial goes to pyhanko as well."""
    try:
        aki = cert.crypto.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    if aki.authority_cert_issuer is not None or aki.authority_cert_serial_number is not None:
        return False
    if aki.key_identifier is None:
        return True
    try:
        ski = issuer.crypto.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    return aki.key_identifier == ski.key_identifier


_loops = threading.local()


def _run(coroutine: Coroutine[Any, Any, ValidationPath]) -> ValidationPath:
    """Run the validator's coroutine on a long-lived loop (asyncio.run costs ~1 ms per call), one per
    thread: Lambda calls one at a time, a local gateway or a library caller may not."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


class PathValidator:
    """Path validation against one truststore: pyhanko's view of it, cryptography's, and the CA paths
    pyhanko has accepted (certificates above the leaf, by fingerprint)."""

    def __init__(self, truststore: Truststore) -> None:
        self.truststore = truststore
        self._trust_manager = SimpleTrustManager.build(trust_roots=[a.asn1 for a in truststore.anchors])
        self._registry = CertificateRegistry.build([c.asn1 for c in truststore.intermediates])
        self._store: Store | None = None
        with contextlib.suppress(Exception):  # an anchor cryptography will not hold: pyhanko for all
            self._store = Store([a.crypto for a in truststore.anchors])
        self._intermediates = [c.crypto for c in truststore.intermediates]
        self._held = {id(c.asn1): c for c in (*truststore.anchors, *truststore.intermediates)}
        self._held_crypto = {id(c.crypto): c for c in (*truststore.anchors, *truststore.intermediates)}
        self._ca_paths: set[tuple[str, ...]] = set()
        # One pyhanko validation at a time: the trust manager and registry are shared, and pyhanko's
        # caches are not documented as thread-safe (Lambda calls one at a time anyway).
        self._lock = threading.Lock()
        # Paths validated by each road (tests and benchmarks read them).
        self.fast = 0
        self.full = 0

    def validate(self, leaf: Cert, moment: datetime, skew_seconds: float) -> CertPath:
        """Validate signatures, validity dates and CA constraints up to an anchor; raises Untrusted."""
        path = self._known_ca_path(leaf, moment)
        if path is not None:
            self.fast += 1
            return path
        path = self._pyhanko(leaf, moment, skew_seconds)
        self.full += 1
        above = path.certs[1:]
        if above and all(_judged_alike(c) for c in above):
            self._ca_paths.add(tuple(c.fingerprint for c in above))
        return path

    def _known_ca_path(self, leaf: Cert, moment: datetime) -> CertPath | None:
        """The path cryptography finds for the leaf, if pyhanko accepted everything above the leaf."""
        if self._store is None or not self._ca_paths or not _judged_alike(leaf):
            return None
        # No clock-skew tolerance here: certificates at the edge of their validity go to pyhanko.
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(moment)
            .extension_policies(ca_policy=_CA_EXTENSIONS, ee_policy=_LEAF_EXTENSIONS)
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(leaf.crypto, self._intermediates).chain
        except Exception:  # any refusal is pyhanko's to confirm or overturn
            return None
        # cryptography returns the very objects it was given (tested); above the leaf, only ours.
        above = tuple(self._held_crypto.get(id(c)) for c in chain[1:])
        if chain[0] is not leaf.crypto or None in above:
            return None
        certs = (leaf, *(c for c in above if c is not None))
        if len(certs) < 2 or tuple(c.fingerprint for c in certs[1:]) not in self._ca_paths:
            return None  # a CA path pyhanko has not accepted (or the client is an anchor itself)
        if not _names_as_pyhanko(leaf, certs[1]):
            return None
        return CertPath(certs)

    def _pyhanko(self, leaf: Cert, moment: datetime, skew_seconds: float) -> CertPath:
        # The validation moment is fixed when the context is built, so each validation gets its own.
        context = ValidationContext(
            trust_manager=self._trust_manager,
            certificate_registry=self._registry,
            moment=moment,
            allow_fetching=False,
            revinfo_policy=NO_REVOCATION,
            time_tolerance=timedelta(seconds=skew_seconds),
        )
        validator = CertificateValidator(leaf.asn1, validation_context=context)
        try:
            # No key usage is demanded beyond what RFC 5280 path validation itself requires.
            with self._lock:
                path = _run(validator.async_validate_usage(key_usage=set()))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise Untrusted(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
        # Back to our certificates by object identity: pyhanko returns the very asn1crypto objects it
        # was given, each parsed from the DER we hold. Never by re-serialising them (asn1crypto does not
        # promise to re-encode every byte as it was, e.g. a unique identifier's BIT STRING).
        given = {**self._held, id(leaf.asn1): leaf}
        try:
            certs = [given[id(c)] for c in path.iter_certs(include_root=True)]
        except KeyError as exc:  # the validator can only use what we gave it; be strict anyway
            raise Untrusted("path holds a certificate outside the truststore") from exc
        return CertPath(tuple(reversed(certs)))


@functools.lru_cache(maxsize=4)
def validator_for(truststore: Truststore) -> PathValidator:
    """One validator per truststore, built on first use (a new truststore version starts afresh)."""
    return PathValidator(truststore)


def validate_path(leaf: Cert, truststore: Truststore, moment: datetime, skew_seconds: float) -> CertPath:
    """Validate signatures, validity dates and CA constraints up to an anchor; raises Untrusted."""
    return validator_for(truststore).validate(leaf, moment, skew_seconds)
