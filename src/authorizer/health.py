"""Truststore and revocation health: the metrics that warn before clients start getting 403s.

Three signals, all from state the function already has (nothing is fetched for them):

- **TruststoreDaysToExpiry**: days until the earliest CA certificate of the truststore (anchors and
  intermediates) expires; negative once one has. Emitted when a truststore loads and then at most once
  per `HEALTH_INTERVAL_SECONDS` per container, on a decision.
- **Revocation data that could not be refreshed.** Per decision, `StaleRevocationUse` counts answers served
  from data past its nextUpdate within the stale grace (`Stats.stale_uses`). With the same interval as the
  truststore, when the checker offers `held_summary()` (`RevocationStateView`): `RevocationDataUnrefreshed`,
  how many pieces of held data are past or within `NEAR_NEXT_UPDATE_SECONDS` of their nextUpdate and whose
  latest refresh failed, with the worst one's `RevocationDataOverdueSeconds` (now - nextUpdate: negative
  while still before it) and `RevocationDataAgeSeconds` (now - thisUpdate).
- **SourceFailureByCa**, per decision, with a `ca` dimension: the certificates of this request whose
  revocation data could not be had or refreshed (verdict `revocation_unavailable`, a fallback after a failed
  refresh, a stale use), counted once per request under the label of the CA that issued them.

The `ca` dimension is bounded: the issuer of every checked certificate is a CA certificate of the
truststore (only the leaf comes from the client), so there are at most as many values as the truststore has
CAs that issue certificates, plus `denylist` (an unreadable denylist) and `other`; and never more than
`MAX_CA_LABELS` per container (the rest count as `other`). A label is the CA's common name cut to
`SHORT_NAME_CHARS` safe ASCII characters, a dash, and the first 8 hex digits of the SHA-256 of its RFC 4514
subject, so that two CAs with the same name stay apart: e.g. `Example Issuing CA 1-3f2a9c1b`.

Everything here is pure or holds only small per-container state; it never raises into a decision (the
caller guards it too).
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .freshness import NO_NEXT_UPDATE_REUSE
from .model import CertVerdict, Reason, Source

if TYPE_CHECKING:
    from .revocation import Stats
    from .trust import CertPath
    from .truststore import Truststore

HEALTH_INTERVAL_SECONDS = 300.0  # gauges (truststore, held data) at most this often per container
NEAR_NEXT_UPDATE_SECONDS = 3600.0  # data this close to its nextUpdate whose refresh failed counts
MAX_CA_LABELS = 50  # distinct `ca` dimension values one container emits; the rest are `other`
SHORT_NAME_CHARS = 40
OTHER_CA = "other"
DENYLIST_CA = "denylist"
_SECONDS_PER_DAY = 86400.0
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()-]+")
_CN = re.compile(r"(?:^|,)CN=((?:[^,\\]|\\.)*)")
_ESCAPE = re.compile(r"\\(?:([0-9A-Fa-f]{2})|(.))")


# ---- what the revocation checker can tell about the data it holds ------------------------------------


class HeldDataView(Protocol):
    """One piece of revocation data a checker holds (or failed to get), as `held_summary()` reports it."""

    @property
    def source(self) -> str: ...  # Source value: "crl", "ocsp", "denylist"

    @property
    def issuer(self) -> str: ...  # RFC 4514 subject of the CA it is about ("" for a denylist)

    @property
    def this_update(self) -> datetime | None: ...  # None: nothing verified is held (only a failure)

    @property
    def next_update(self) -> datetime | None: ...

    @property
    def fetched_at(self) -> datetime | None: ...

    @property
    def last_failure(self) -> datetime | None: ...  # the latest failed refresh, if newer than fetched_at

    @property
    def failure_kind(self) -> str: ...  # SourceFailure.kind of it ("" if none)


@runtime_checkable
class RevocationStateView(Protocol):
    """What a revocation checker may offer for health metrics (read-only, cheap, never raises)."""

    def held_summary(self) -> Sequence[HeldDataView]: ...


@dataclass(frozen=True, slots=True)
class HeldRevocationData:
    """A plain `HeldDataView` (what `held_summary()` may return)."""

    source: str
    issuer: str
    this_update: datetime | None
    next_update: datetime | None
    fetched_at: datetime | None
    last_failure: datetime | None = None
    failure_kind: str = ""


# ---- pure computations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TruststoreExpiry:
    days: float  # until the earliest CA expires; negative once it has
    subject: str
    not_after: datetime


def truststore_expiry(truststore: Truststore, now: datetime) -> TruststoreExpiry | None:
    """The CA certificate of `truststore` that expires first, and in how many days."""
    certs = (*truststore.anchors, *truststore.intermediates)
    if not certs:
        return None
    first = min(certs, key=lambda cert: cert.crypto.not_valid_after_utc)
    not_after = first.crypto.not_valid_after_utc
    return TruststoreExpiry((not_after - now).total_seconds() / _SECONDS_PER_DAY, first.subject, not_after)


@dataclass(frozen=True, slots=True)
class RevocationHealth:
    unrefreshed: int  # pieces of data past or near nextUpdate whose latest refresh failed
    overdue_seconds: float | None  # of the worst of them: now - nextUpdate (negative: before it)
    age_seconds: float | None  # of the same one: now - thisUpdate
    worst: HeldDataView | None


def revocation_health(
    held: Iterable[HeldDataView], now: datetime, near_seconds: float = NEAR_NEXT_UPDATE_SECONDS
) -> RevocationHealth:
    """Held data past (or within `near_seconds` of) its nextUpdate that its latest refresh failed to
    replace. Data without a nextUpdate is due `NO_NEXT_UPDATE_REUSE` after its thisUpdate (freshness.py)."""
    count = 0
    worst: HeldDataView | None = None
    worst_due: datetime | None = None
    for item in held:
        if item.this_update is None or item.last_failure is None:
            continue  # nothing held (a plain source failure), or nothing failed
        if item.fetched_at is not None and item.last_failure < item.fetched_at:
            continue  # a later refresh succeeded
        due = item.next_update or item.this_update + NO_NEXT_UPDATE_REUSE
        if (due - now).total_seconds() > near_seconds:
            continue  # a failed refresh long before nextUpdate: the data is still good for a while
        count += 1
        if worst_due is None or due < worst_due:
            worst, worst_due = item, due
    if worst is None or worst_due is None or worst.this_update is None:
        return RevocationHealth(0, None, None, None)
    return RevocationHealth(
        count,
        (now - worst_due).total_seconds(),
        (now - worst.this_update).total_seconds(),
        worst,
    )


def ca_label(subject: str) -> str:
    """The `ca` dimension value of a CA subject (RFC 4514): `<short name>-<8 hex of SHA-256(subject)>`."""
    match = _CN.search(subject)
    name = _unescape(match.group(1)) if match else subject
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # Ü -> U
    short = _UNSAFE.sub("_", ascii_name).strip(" _")[:SHORT_NAME_CHARS].strip() or "ca"
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{short}-{digest}"


def _unescape(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        return chr(int(match.group(1), 16)) if match.group(1) else match.group(2)

    return _ESCAPE.sub(one, value)


def affected_issuers(
    path: CertPath | None, verdicts: Sequence[CertVerdict], stats: Stats | None
) -> list[str]:
    """Per checked certificate of this request whose revocation data could not be had or refreshed: the
    subject of its issuer ("" where the denylist could not be read). Empty when the path was not
    validated in this request (a decision held from earlier counts where it was made)."""
    if path is None or not verdicts:
        return []
    stale = stats.stale_uses if stats is not None else []
    found: list[str] = []
    for (cert, issuer), verdict in zip(path.links(), verdicts, strict=False):
        failed = (
            verdict.reason is Reason.REVOCATION_UNAVAILABLE
            or "refresh failed" in verdict.detail  # an answer from held data after a failed refresh
            or any(use.startswith(f"{cert.subject}: ") for use in stale)
        )
        if failed:
            unreadable_denylist = (
                verdict.reason is Reason.REVOCATION_UNAVAILABLE and verdict.source is Source.DENYLIST
            )
            found.append("" if unreadable_denylist else issuer.subject)
    return found


# ---- per-container state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthReport:
    """What one decision adds to its metrics document."""

    gauges: dict[str, float] = field(default_factory=dict)  # metric name -> value (service dimension)
    per_ca: dict[str, int] = field(default_factory=dict)  # `ca` label -> SourceFailureByCa
    truststore: TruststoreExpiry | None = None  # when TruststoreDaysToExpiry is in `gauges`
    revocation: RevocationHealth | None = None  # when the RevocationData* gauges are in `gauges`
    error: str = ""  # why health could not be computed (a bug): logged, never raised


class HealthMonitor:
    """One per container (the app's Runtime): remembers the truststore, when gauges were last emitted and
    which `ca` labels it has used."""

    def __init__(
        self,
        interval_seconds: float = HEALTH_INTERVAL_SECONDS,
        near_seconds: float = NEAR_NEXT_UPDATE_SECONDS,
        max_labels: int = MAX_CA_LABELS,
    ) -> None:
        self._interval = timedelta(seconds=interval_seconds)
        self._near = near_seconds
        self._max_labels = max_labels
        self._lock = threading.Lock()
        self._truststore: Truststore | None = None
        self._truststore_is_new = False
        self._known: dict[str, str] = {}  # CA subject -> label, for the loaded truststore's CAs
        self._used: set[str] = set()
        self._last: datetime | None = None

    def truststore_loaded(self, truststore: Truststore) -> None:
        """A (new) truststore is in use: its expiry is emitted with the next decision. Any thread."""
        cas = (*truststore.anchors, *truststore.intermediates)
        known = {cert.subject: ca_label(cert.subject) for cert in cas}
        with self._lock:
            self._truststore, self._known, self._truststore_is_new = truststore, known, True

    def observe(
        self,
        now: datetime,
        checker: object,
        path: CertPath | None = None,
        verdicts: Sequence[CertVerdict] = (),
        stats: Stats | None = None,
    ) -> HealthReport:
        """The health metrics this decision carries: the per-CA failures of this request, and the gauges
        when a truststore was loaded since the last decision or the interval has passed. Never raises."""
        try:
            return self._observe(now, checker, path, verdicts, stats)
        except Exception as exc:
            return HealthReport(error=f"{type(exc).__name__}: {exc}")

    def _observe(
        self,
        now: datetime,
        checker: object,
        path: CertPath | None,
        verdicts: Sequence[CertVerdict],
        stats: Stats | None,
    ) -> HealthReport:
        per_ca: dict[str, int] = {}
        for subject in dict.fromkeys(affected_issuers(path, verdicts, stats)):
            label = self._label(subject)
            per_ca[label] = per_ca.get(label, 0) + 1
        with self._lock:
            due = self._truststore_is_new or self._last is None or now - self._last >= self._interval
            if not due:
                return HealthReport(per_ca=per_ca)
            self._last, self._truststore_is_new = now, False
            truststore = self._truststore
        gauges: dict[str, float] = {}
        expiry = truststore_expiry(truststore, now) if truststore is not None else None
        if expiry is not None:
            gauges["TruststoreDaysToExpiry"] = round(expiry.days, 3)
        revocation: RevocationHealth | None = None
        if isinstance(checker, RevocationStateView):
            revocation = revocation_health(checker.held_summary(), now, self._near)
            gauges["RevocationDataUnrefreshed"] = revocation.unrefreshed
            if revocation.overdue_seconds is not None and revocation.age_seconds is not None:
                gauges["RevocationDataOverdueSeconds"] = round(revocation.overdue_seconds, 1)
                gauges["RevocationDataAgeSeconds"] = round(revocation.age_seconds, 1)
        return HealthReport(gauges, per_ca, expiry, revocation)

    def _label(self, subject: str) -> str:
        if not subject:
            return DENYLIST_CA
        with self._lock:
            label = self._known.get(subject) if self._known else ca_label(subject)
            if label is None:  # not a CA of the loaded truststore (it cannot be: bounded anyway)
                return OTHER_CA
            if label not in self._used:
                if len(self._used) >= self._max_labels:
                    return OTHER_CA
                self._used.add(label)
            return label
