"""The denylist: certificates revoked by the operator, for CAs with no revocation service at all.

A small text object, one entry a line, `#` starts a comment:

    # <SHA-256 of the certificate's DER>                      [reason]
    9f2c...64 hex digits...e1  keyCompromise
    # serial:<hex serial> issuer:<SHA-256 of the issuer certificate's DER>  [reason]
    serial:4a1f issuer:3b7d...64 hex digits...0c  superseded

Reasons are RFC 5280 §5.3.1 reason names (default unspecified). A listed certificate is revoked
whatever any other source says. A file with a line that does not parse is refused whole (the
line might be a revocation): the last good copy stays in force, and the problem is logged.

Parsing, rendering and editing here are pure; where the file lives (S3, a local path) is
denylist_store.py's business.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .certs import Cert

HEADER = "# mtls-authorizer denylist: <sha256> [reason] or serial:<hex> issuer:<sha256> [reason]\n"
REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^-?[0-9a-f]+$")


class DenylistError(ValueError):
    """A denylist that does not parse, or an edit that cannot be made."""


class NotListed(DenylistError):
    """The certificate to remove is not in the denylist (`unrevoke` exits 1, not 2, for this)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed certificate: by fingerprint, or by serial and issuer fingerprint."""

    fingerprint: str = ""  # SHA-256 of the certificate, lowercase hex
    serial: int | None = None
    issuer_fingerprint: str = ""
    reason: str = "unspecified"

    @property
    def key(self) -> tuple[str, ...]:
        if self.fingerprint:
            return ("sha256", self.fingerprint)
        return ("serial", format(self.serial, "x"), self.issuer_fingerprint)

    def line(self) -> str:
        what = self.fingerprint or f"serial:{format(self.serial, 'x')} issuer:{self.issuer_fingerprint}"
        return f"{what}  {self.reason}"

    def matches(self, cert: Cert, issuer: Cert | None) -> bool:
        if self.fingerprint:
            return self.fingerprint == cert.fingerprint
        return (
            issuer is not None
            and self.serial == cert.crypto.serial_number
            and self.issuer_fingerprint == issuer.fingerprint
        )


@dataclass(frozen=True, eq=False)
class Denylist:
    entries: tuple[Entry, ...] = ()

    @functools.cached_property
    def _by_fingerprint(self) -> dict[str, Entry]:
        return {e.fingerprint: e for e in self.entries if e.fingerprint}

    @functools.cached_property
    def _by_serial(self) -> dict[tuple[str, int | None], Entry]:
        return {(e.issuer_fingerprint, e.serial): e for e in self.entries if not e.fingerprint}

    def lookup(self, cert: Cert, issuer: Cert) -> Entry | None:
        return self._by_fingerprint.get(cert.fingerprint) or self._by_serial.get(
            (issuer.fingerprint, cert.crypto.serial_number)
        )

    def with_entry(self, entry: Entry) -> Denylist:
        """Add `entry` (replacing the same certificate's entry, so a reason can be changed)."""
        return Denylist((*(e for e in self.entries if e.key != entry.key), entry))

    def without(self, cert: Cert, issuer: Cert | None = None) -> Denylist:
        """Remove the entries naming `cert`: by fingerprint, and by serial when `issuer` is given."""
        kept = tuple(
            e
            for e in self.entries
            if not (e.matches(cert, issuer) if issuer else e.fingerprint == cert.fingerprint)
        )
        if len(kept) == len(self.entries):
            raise NotListed(f"{cert.subject} is not in the denylist")
        return Denylist(kept)

    def render(self) -> str:
        return HEADER + "".join(entry.line() + "\n" for entry in self.entries)


def parse(text: str) -> Denylist:
    """Parse a denylist; raises DenylistError naming the first line that does not parse."""
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            entries.append(_entry(line.split()))
        except DenylistError as exc:
            raise DenylistError(f"line {number}: {exc}") from None
    return Denylist(tuple(entries))


def _entry(tokens: list[str]) -> Entry:
    first = tokens[0].lower().removeprefix("sha256:").replace(":", "")
    if _SHA256.match(first):
        return Entry(fingerprint=first, reason=_reason(tokens[1:]))
    if tokens[0].lower().startswith("serial:") and len(tokens) >= 2:
        serial = tokens[0][len("serial:") :].lower().replace(":", "")
        issuer = tokens[1].lower().removeprefix("issuer:").replace(":", "")
        if not tokens[1].lower().startswith("issuer:") or not _SHA256.match(issuer) or not _HEX.match(serial):
            raise DenylistError("expected serial:<hex> issuer:<sha256 of the issuer certificate>")
        return Entry(serial=int(serial, 16), issuer_fingerprint=issuer, reason=_reason(tokens[2:]))
    raise DenylistError("expected a SHA-256 fingerprint or serial:<hex> issuer:<sha256>")


def _reason(rest: list[str]) -> str:
    if not rest:
        return "unspecified"
    if len(rest) > 1 or rest[0] not in REASONS:
        raise DenylistError(f"unknown reason {' '.join(rest)!r}; one of {', '.join(REASONS)}")
    return rest[0]


def entry_for(cert: Cert, reason: str = "unspecified", issuer: Cert | None = None) -> Entry:
    """An entry for `cert`: by fingerprint, or by serial and issuer when `issuer` is given (the
    form for a CA's records, which keep serials rather than whole certificates)."""
    if reason not in REASONS:
        raise DenylistError(f"unknown reason {reason!r}; one of {', '.join(REASONS)}")
    if issuer is not None:
        return Entry(serial=cert.crypto.serial_number, issuer_fingerprint=issuer.fingerprint, reason=reason)
    return Entry(fingerprint=cert.fingerprint, reason=reason)
