"""Value types shared by the decision core: reasons, sources, answers and decisions."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Reason(enum.StrEnum):
    """Why the authorizer decided what it did; returned to API Gateway as `context.reason`."""

    GOOD = "good"
    NO_REVOCATION_INFO = "no_revocation_info"
    REVOKED = "revoked"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    UNTRUSTED = "untrusted"
    INVALID_REQUEST = "invalid_request"


class Source(enum.StrEnum):
    """Which kind of revocation source gave the answer a decision rests on."""

    OCSP = "ocsp"
    CRL = "crl"
    DENYLIST = "denylist"
    NONE = "none"


class Status(enum.Enum):
    """What one revocation source said about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # OCSP "unknown": an answer, but not a good one
    UNAVAILABLE = "unavailable"  # no verified answer at all


@dataclass(frozen=True, slots=True)
class Answer:
    """A verified (or failed) answer from one source about one certificate.

    `fresh_until` bounds how long the answer may be reused; failures carry a short back-off.
    `stale` marks an answer used past its nextUpdate under the configured grace.
    """

    status: Status
    source: Source
    fresh_until: datetime
    detail: str = ""
    stale: bool = False
    this_update: datetime | None = None  # of the data the answer rests on (OCSP), for later reuse
    next_update: datetime | None = None
    hold: bool = False  # a revocation that may be lifted (certificateHold, a denylist entry): not remembered


@dataclass(frozen=True, slots=True)
class CertVerdict:
    """The revocation outcome for one certificate on the path."""

    subject: str
    reason: Reason
    source: Source
    detail: str = ""
