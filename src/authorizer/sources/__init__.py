"""Revocation sources behind one small protocol.

A source says what it needs for a (certificate, issuer) link (`needs`), fetches and verifies that
data (`refresh`, in a worker thread, the only I/O), and answers for one certificate from data it
verified earlier (`answer`, pure). Everything else, caching, single flight, background refreshes,
fallback to held data, anti-rollback and the merging of answers, is written once, in
`revocation.RevocationChecker`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..certs import Cert
from ..model import Answer, Source

if TYPE_CHECKING:
    from ..truststore import Truststore


@dataclass(frozen=True, eq=False, slots=True)
class Link:
    """A certificate and the issuer that signed it, on a validated path.

    `anchor` and `truststore` (when the checker was given them) let a source find and path-validate
    another signer of the issuer's CRLs: a separate CRL-signing certificate or the other key of a
    rollover, or an indirect CRL's issuer (RFC 5280 §6.3.3 (f)).
    """

    cert: Cert
    issuer: Cert
    anchor: Cert | None = None
    truststore: Truststore | None = None


@dataclass(frozen=True, eq=False, slots=True)
class Need:
    """One piece of data a source needs to answer for a link.

    `key` names the data in the checker's caches: links that need the same data (every leaf under
    one CRL) share it. `unusable` marks a declared pointer this checker cannot use: it answers
    revocation_unavailable and is never fetched. A need that does not `declare` (a denylist) never
    makes a certificate "checked": it only overrides, with revoked, or unavailable when it cannot
    be read.
    """

    source: RevocationSource
    link: Link
    key: Hashable
    arg: Any = None  # source-specific: the distribution point, the URLs, ...
    unusable: str = ""
    declares: bool = True
    # Needs whose verified data this need's answer also rests on (a delta CRL for its base, RFC 5280
    # §5.2.4; the other reason partitions, §6.3.3 (d)). Gathered, cached and anti-rollback-checked like
    # any need; their data is handed to the source's `answer_with` (CombiningSource), in this order.
    with_data: tuple[Need, ...] = ()


@dataclass(frozen=True, eq=False, slots=True)
class Held:
    """Verified data as held by the checker, with what anti-rollback and refreshes need.

    `scope` groups data that must only move forward in time (RFC 5280 §5.2.3: the CRLs of one issuer
    and scope; RFC 6960: the answers about one certificate); `number` (cRLNumber) and `this_update`
    order them. `refresh_at` is when the data should be fetched again, `validators` what a
    conditional refresh sends back (ETag, Last-Modified), `hold_serials`/`revoked` whatever the
    source's `answer` needs.
    """

    data: Any
    scope: Hashable
    this_update: datetime
    next_update: datetime | None
    fetched_at: datetime
    refresh_at: datetime
    number: int | None = None
    validators: dict[str, str] = field(default_factory=dict)
    generation: int = 0  # set by the checker when it accepts the data; 0 before

    def is_older_than(self, other: Held) -> bool:
        """Whether this data predates `other`: by cRLNumber where both have one, else thisUpdate."""
        if self.number is not None and other.number is not None:
            return self.number < other.number
        return self.this_update < other.this_update

    def renewed(self, fetched_at: datetime, refresh_at: datetime) -> Held:
        """The same data, confirmed unchanged (HTTP 304, same ETag)."""
        return Held(
            self.data,
            self.scope,
            self.this_update,
            self.next_update,
            fetched_at,
            refresh_at,
            self.number,
            self.validators,
            self.generation,
        )


class SourceFailure(Exception):
    """A refresh that gave no verified data; `kind` names it for logs and metrics."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


# How a source asks the checker for another link's verdict (a delegated OCSP responder's own
# revocation, RFC 6960 §4.2.2.2.1): (link, deadline) -> the worst answer of that link's CRLs.
LinkCheck = Callable[[Link, float], Answer]


class RevocationSource(Protocol):
    kind: Source

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        """What this source needs for `link`; empty when it has nothing for this certificate. No
        network I/O; a source that must first learn what it holds (an S3 listing) may wait for
        that until `deadline`."""
        ...

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        """Fetch and fully verify the data `need` names (`held`: the copy in hand, for conditional
        requests); raises SourceFailure only. Runs in a worker thread, finishes by `deadline`."""
        ...

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        """The held data's answer for `need.link.cert` at `now`; pure, raises ValueError subclasses."""
        ...


@runtime_checkable
class CombiningSource(Protocol):
    """A source whose needs may carry `with_data`: it answers from several pieces of data at once."""

    def answer_with(self, need: Need, held: Held, extra: Sequence[Held | None], now: datetime) -> Answer:
        """As `answer`, with the data in hand for each of `need.with_data` (None: none could be had)."""
        ...
