"""The revocation check of a validated path: the rules every source shares, written once.

This is the imperative shell around the sources (sources/), which fetch and verify, and policy.py,
which decides. For each certificate on the path it asks every source what it needs, then:

- **Caching.** Verified data is held per container until the source's refresh time (its nextUpdate
  or REVOCATION_CACHE_MAX_AGE_SECONDS after the fetch, whichever is sooner); a failure is held for
  the back-off only. Decisions are cached while the data under them is fresh and unchanged.
- **Single flight, in the background.** One refresh per piece of data at a time, shared by every
  concurrent request, in its own thread, bounded by its own deadline: a request waits for it only
  until the request's deadline, and a slow download that outlives the request still lands for the
  next one. No pool is shared, so stuck refreshes of one source never hold up another's.
- **Fallback.** When a refresh fails, data already held serves while it is valid (to nextUpdate, or
  within the stale grace), and a decision resting on it is cached no longer than the back-off.
- **Anti-rollback.** Data older than the newest seen for its scope is refused (RFC 5280 §5.2.3
  cRLNumber; an OCSP answer's thisUpdate), and a verified revocation other than certificateHold is
  remembered for the container's life (RFC 5280 §5.3.1), whatever later answers say.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .cache import Budgets, ExpiringCache, approx_bytes
from .certs import Cert
from .fetch import Fetcher
from .model import Answer, CertVerdict, Reason, Source, Status
from .policy import cert_verdict, overridden, path_verdict
from .s3 import ClientFactory, S3Location, S3Reader
from .settings import Depth, FetchPolicy, RevocationPolicy, SourcesConfig
from .sources import CombiningSource, Held, Link, Need, RevocationSource, SourceFailure
from .sources.crl_distribution_point import CrlDistributionPointSource
from .sources.crl_set import CrlSet, CrlSetSource, Lister, Snapshot, file_lister, s3_lister
from .sources.denylist import DenylistSource
from .sources.index import MAX_INDEX_BYTES, IndexStore
from .sources.ocsp_responder import OcspResponderSource
from .trust import CertPath
from .truststore import Truststore

MAX_HELD = 1_000_000  # pieces of verified data (CRL indexes, OCSP answers): the byte budgets bound them
MAX_DECISIONS = 1_000_000
DEFAULT_CLIENT_BYTES = 256 * 1024 * 1024  # when no budgets are given (a library caller)
DEFAULT_CRL_BYTES = 384 * 1024 * 1024
MAX_SCOPES = 50_000  # anti-rollback high-water marks
MAX_REVOCATIONS = 200_000  # remembered revocations: (issuer fingerprint, serial)
MAX_TRACKED = 5_000  # pieces of data whose health is reported
MAX_SUMMARY = 1_000
MAX_REFRESHES = 64  # refreshes in flight at once; more are refused at once (never queued)
BACKGROUND_SECONDS = 30.0  # a refresh outlives the request that started it by at most this long


@dataclass
class Stats:
    """What one check cost: for the decision log and metrics."""

    cache_hits: int = 0
    cache_misses: int = 0
    fetches: int = 0
    fetch_failures: list[str] = field(default_factory=list)
    fetch_ms: list[float] = field(default_factory=list)
    stale_uses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PathResult:
    verdict: CertVerdict  # the path's: the worst of `verdicts`
    verdicts: tuple[CertVerdict, ...]  # one per checked certificate, leaf first
    fresh_until: datetime
    stats: Stats


@dataclass(frozen=True, eq=False)
class _Decision:
    verdicts: tuple[CertVerdict, ...]
    until: datetime
    rests_on: tuple[tuple[Hashable, int], ...]  # (scope, generation) of the data it was computed from


@dataclass(eq=False)
class _Refresh:
    """One refresh in flight: its result lands in the checker's state when the worker ends."""

    done: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    failure: SourceFailure | None = None
    accepted: Held | None = None  # what it brought, answered from even if the cache evicts it


class RevocationChecker:
    def __init__(
        self,
        policy: RevocationPolicy,
        fetch_policy: FetchPolicy,
        backoff_seconds: float,
        now: Callable[[], datetime],
        fetcher: Fetcher | None = None,
        sources: SourcesConfig | None = None,
        s3_client: ClientFactory | None = None,
        log: Callable[[str], None] = lambda _: None,
        budgets: Budgets | None = None,
    ) -> None:
        self._policy = policy
        self._backoff = timedelta(seconds=backoff_seconds)
        self._max_age = timedelta(seconds=policy.max_age_seconds)
        self._now = now
        self._sources = self._build_sources(
            policy, fetch_policy, fetcher or Fetcher(fetch_policy), sources or SourcesConfig(), s3_client, log
        )
        self._lock = threading.Lock()
        budgets = budgets or Budgets.of(DEFAULT_CLIENT_BYTES, DEFAULT_CRL_BYTES)
        # CRL indexes on the CRL budget; everything kept per client (OCSP answers, failures,
        # decisions) on the budget the app's client summaries share.
        self._crl_held: ExpiringCache[Hashable, Held] = ExpiringCache(MAX_HELD, budget=budgets.crls)
        self._other_held: ExpiringCache[Hashable, Held] = ExpiringCache(MAX_HELD, budget=budgets.clients)
        # Failures with when they happened: a failure older than the data held no longer counts.
        self._failures: ExpiringCache[Hashable, tuple[SourceFailure, datetime]] = ExpiringCache(
            MAX_HELD, budget=budgets.clients
        )
        self._decisions: ExpiringCache[tuple[str, str], _Decision] = ExpiringCache(
            MAX_DECISIONS, budget=budgets.clients, weigh=_decision_bytes
        )
        self._generations = itertools.count(1)
        # Per scope, where its newest data is held and how new it is: the mark outlives the data
        # (no index is kept alive by it), so rollback stays refused after an eviction.
        self._newest: OrderedDict[Hashable, _Mark] = OrderedDict()
        # Security state, bounded by count only (client churn must not evict it): small entries.
        self._revoked: OrderedDict[tuple[str, int], tuple[Source, str]] = OrderedDict()
        self._inflight: dict[Hashable, _Refresh] = {}
        # For health metrics: what each piece of data is about, and its latest failed refresh
        # (kept until a refresh succeeds, unlike the back-off).
        self._tracked: OrderedDict[Hashable, HeldSummary] = OrderedDict()
        self._slots = threading.BoundedSemaphore(MAX_REFRESHES)

    def _build_sources(
        self,
        policy: RevocationPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Fetcher,
        config: SourcesConfig,
        s3_client: ClientFactory | None,
        log: Callable[[str], None],
    ) -> tuple[RevocationSource, ...]:
        """Every configured source, in the order their answers are reported."""
        now = self._now
        s3 = S3Reader(s3_client, fetch_policy.max_crl_bytes) if s3_client is not None else None
        index: IndexStore | None = None
        if config.index_uri and s3_client is not None:
            try:
                location = S3Location.parse(config.index_uri)
                reader = S3Reader(s3_client, MAX_INDEX_BYTES)
                index = IndexStore(reader, location, config.s3_refresh_seconds, policy, now, log)
            except ValueError as exc:  # without the index every CRL is fetched: slower, still correct
                log(f"REVOCATION_INDEX_S3_URI: {exc}")
        self._crl_source = CrlDistributionPointSource(
            policy, fetch_policy, fetcher, now, s3, config.s3_buckets if s3 else frozenset(), index
        )
        # A CRL signed by a certificate other than the issuer (RFC 5280 §6.3.3 (f)): that signer's own
        # revocation is checked like a delegated OCSP responder's, through the CRLs it declares.
        self._crl_source.check_signer = self._check_responder
        ocsp_source = OcspResponderSource(
            policy, fetch_policy, fetcher, now, self._check_responder, self._backoff
        )
        sources: list[RevocationSource] = [ocsp_source, self._crl_source]
        if config.crl_s3_uris:
            locations: list[S3Location] = []
            for uri in config.crl_s3_uris:
                try:
                    locations.append(S3Location.parse(uri))
                except ValueError as exc:
                    log(f"REVOCATION_CRL_S3_URI: {exc}")
            lister = (
                s3_lister(s3, locations, now, index)
                if s3 is not None and len(locations) == len(config.crl_s3_uris)
                else _unreadable("REVOCATION_CRL_S3_URI cannot be read")
            )
            crl_set = CrlSet(lister, config.s3_refresh_seconds, now, log)
            sources.append(CrlSetSource(crl_set, policy, now, deltas=self._crl_source, index=index))
        if config.crl_files:
            file_set = CrlSet(file_lister(config.crl_files, now), 1e9, now, log)
            sources.append(CrlSetSource(file_set, policy, now, deltas=self._crl_source))
        # Certificates a CRL set holds are candidate CRL signers for the distribution points too (§6.3.3 (f)).
        sets = [source for source in sources if isinstance(source, CrlSetSource)]
        self._crl_source.extra_certs = lambda: tuple(c for crl_set in sets for c in crl_set.certificates())
        if config.denylist_uri:
            sources.append(DenylistSource(config.denylist_uri, s3, config.s3_refresh_seconds, policy, now))
        return tuple(sources)

    # --- the public API ------------------------------------------------------------------------

    def cached_result(self, leaf_fingerprint: str, truststore_version: str) -> PathResult | None:
        """The decision held for this leaf while its data is fresh and unchanged (the warm path)."""
        now = self._now()
        decision = self._decisions.get((leaf_fingerprint, truststore_version), now)
        if decision is None:
            return None
        for scope, generation in decision.rests_on:
            mark = self._newest.get(scope)
            if mark is None or mark.generation != generation:  # newer data applies at once
                return None
        return PathResult(
            path_verdict(decision.verdicts), decision.verdicts, decision.until, Stats(cache_hits=1)
        )

    def check(
        self, path: CertPath, truststore_version: str, deadline: float, truststore: Truststore | None = None
    ) -> PathResult:
        """The path's revocation verdict. `truststore` (the one the path was validated against) lets
        the CRL sources find a CRL's signer other than the issuer (RFC 5280 §6.3.3 (f))."""
        held_result = self.cached_result(path.leaf.fingerprint, truststore_version)
        if held_result is not None:
            return held_result
        anchor = path.certs[-1]
        links = [Link(cert, issuer, anchor, truststore) for cert, issuer in path.links()]
        if self._policy.depth is Depth.LEAF:
            links = links[:1]
        stats = Stats()
        plan, known = self._gather(links, self._sources, deadline, stats)
        now = self._now()
        verdicts: list[CertVerdict] = []
        fresh_until = now + self._max_age
        rests_on: list[tuple[Hashable, int]] = []
        for link, needs in zip(links, plan, strict=True):
            answers = [self._answer(need, known.get(need.key), now, rests_on, known) for need in needs]
            remembered = self._remember_revocations(link, answers)
            pairs = list(zip(needs, answers, strict=True))
            declared = list(dict.fromkeys(need.source.kind for need in needs if need.declares))
            verdict = cert_verdict(link.cert.subject, declared, [a for n, a in pairs if n.declares])
            overrides = [a for n, a in pairs if not n.declares] + ([remembered] if remembered else [])
            verdicts.append(overridden(verdict, overrides))
            for answer in answers:
                fresh_until = min(fresh_until, answer.fresh_until)
                if answer.stale:
                    stats.stale_uses.append(f"{link.cert.subject}: {answer.detail}")
        result = tuple(verdicts)
        if fresh_until > now:
            decision = _Decision(result, fresh_until, tuple(rests_on))
            self._decisions.put((path.leaf.fingerprint, truststore_version), decision, fresh_until)
        return PathResult(path_verdict(result), result, fresh_until, stats)

    def held_summary(self) -> list[HeldSummary]:
        """The data held (or failed to be had), worst first: for health metrics. Shared data always;
        a certificate's own OCSP answer only when its latest refresh failed. No I/O, never raises."""
        with self._lock:
            tracked = list(self._tracked.items())
        summary: list[HeldSummary] = []
        for key, entry in tracked:
            item = self._held(key).peek(key)
            held = item[1] if item is not None else None
            if entry.source == Source.OCSP.value and entry.last_failure is None:
                continue
            summary.append(
                dataclasses.replace(
                    entry,
                    this_update=held.this_update if held else None,
                    next_update=held.next_update if held else None,
                    fetched_at=held.fetched_at if held else None,
                )
            )
        far = datetime.max.replace(tzinfo=UTC)
        summary.sort(key=lambda e: (e.last_failure is None, e.next_update or far))
        return summary[:MAX_SUMMARY]

    # --- gathering: plan, start refreshes, wait until the deadline -----------------------------

    def _gather(
        self, links: Sequence[Link], sources: Sequence[RevocationSource], deadline: float, stats: Stats
    ) -> tuple[list[list[Need]], dict[Hashable, Held]]:
        """What each link needs, and the data in hand for it: held at planning time, or brought by a
        refresh that ended by `deadline` (kept by reference: a later eviction cannot take it away
        from this request). Data that arrives may announce more (a base CRL's FreshestCRL, RFC 5280
        §5.2.6): then the links are planned once more, and what is new is fetched too."""

        def planned() -> list[list[Need]]:
            return [[need for source in sources for need in source.needs(link, deadline)] for link in links]

        plan = planned()
        known: dict[Hashable, Held] = {}
        seen: set[Hashable] = set()
        if self._fetch(plan, known, seen, deadline, stats):
            replanned = planned()
            if any(need.key not in seen for need in _flat(replanned)):
                self._fetch(replanned, known, seen, deadline, stats)
            plan = replanned
        return plan, known

    def _fetch(
        self,
        plan: list[list[Need]],
        known: dict[Hashable, Held],
        seen: set[Hashable],
        deadline: float,
        stats: Stats,
    ) -> bool:
        """Start the refreshes the plan's needs (not `seen` before) call for, wait for them until
        `deadline`; whether any brought data."""
        now = self._now()
        waiting: dict[Hashable, _Refresh] = {}
        for need in (n for n in _flat(plan) if not n.unusable):
            if need.key in seen:
                continue
            seen.add(need.key)
            held = self._held(need.key).peek(need.key, touch=True)
            if held is not None:
                known[need.key] = held[1]
                if now < held[1].refresh_at:
                    stats.cache_hits += 1
                    continue
            if self._failures.get(need.key, now) is not None:
                stats.cache_hits += 1  # backing off: answer from what is held, or the failure
                continue
            stats.cache_misses += 1
            waiting[need.key] = self._start_refresh(need, known.get(need.key))
        accepted = False
        for key, refresh in waiting.items():
            refresh.done.wait(max(0.0, deadline - time.monotonic()))
            if not refresh.done.is_set():
                stats.fetch_failures.append("timeout")
                continue
            stats.fetches += 1
            stats.fetch_ms.append(refresh.seconds * 1000)
            if refresh.failure is not None:
                stats.fetch_failures.append(refresh.failure.kind)
            if refresh.accepted is not None:
                known[key] = refresh.accepted
                accepted = True
        return accepted

    def _held(self, key: Hashable) -> ExpiringCache[Hashable, Held]:
        """CRL indexes are weighed against the CRL budget, everything else against the clients'."""
        is_crl = isinstance(key, tuple) and key and str(key[0]).startswith("crl")
        return self._crl_held if is_crl else self._other_held

    def _start_refresh(self, need: Need, held: Held | None) -> _Refresh:
        with self._lock:
            running = self._inflight.get(need.key)
            if running is not None:
                return running  # single flight: every request waits on the same refresh
            refresh = _Refresh()
            if not self._slots.acquire(blocking=False):
                refresh.failure = SourceFailure("busy", "too many refreshes in flight")
                refresh.done.set()
                return refresh
            self._inflight[need.key] = refresh
            if need.key not in self._tracked:
                issuer = "" if need.source.kind is Source.DENYLIST else need.link.issuer.subject
                self._tracked[need.key] = HeldSummary(need.source.kind.value, issuer)
                while len(self._tracked) > MAX_TRACKED:
                    self._tracked.popitem(last=False)
        worker = threading.Thread(
            target=self._refresh,
            args=(need, held, refresh, time.monotonic() + BACKGROUND_SECONDS),
            name="revocation-refresh",
            daemon=True,
        )
        try:
            worker.start()
        except RuntimeError:  # no thread to be had: a failure like any other
            self._finish(need.key, refresh, SourceFailure("busy", "could not start a refresh"))
        return refresh

    def _refresh(self, need: Need, held: Held | None, refresh: _Refresh, deadline: float) -> None:
        failure: SourceFailure | None = None
        try:
            fresh = need.source.refresh(need, held, deadline)
            refresh.accepted, failure = self._accept(need.key, fresh)
        except SourceFailure as exc:
            failure = exc
        except Exception as exc:  # a bug in a source is a failure of that source, never a crash
            failure = SourceFailure("bug", type(exc).__name__)
        self._finish(need.key, refresh, failure)

    def _finish(self, key: Hashable, refresh: _Refresh, failure: SourceFailure | None) -> None:
        if failure is not None:
            now = self._now()
            self._failures.put(key, (failure, now), now + self._backoff)
        refresh.failure = failure
        refresh.seconds = time.monotonic() - refresh.started
        with self._lock:
            self._inflight.pop(key, None)
            tracked = self._tracked.get(key)
            if tracked is not None:
                self._tracked[key] = dataclasses.replace(
                    tracked,
                    last_failure=self._now() if failure is not None else None,
                    failure_kind=failure.kind if failure is not None else "",
                )
        self._slots.release()
        refresh.done.set()

    def _accept(self, key: Hashable, fresh: Held) -> tuple[Held | None, SourceFailure | None]:
        """Keep `fresh` unless it is older than the newest data seen for its scope (anti-rollback).
        Data confirmed unchanged (a 304) keeps its generation, so decisions resting on it stand."""
        with self._lock:
            mark = self._newest.get(fresh.scope)
            if mark is not None and fresh.is_older_than(mark.held):
                newest = mark.held
                return None, SourceFailure(
                    "rollback",
                    f"refused data older than held (thisUpdate {fresh.this_update:%Y-%m-%dT%H:%M:%SZ}"
                    + (f", number {fresh.number}" if fresh.number is not None else "")
                    + f" < {newest.this_update:%Y-%m-%dT%H:%M:%SZ}"
                    + (f", number {newest.number}" if newest.number is not None else "")
                    + ")",
                )
            # Renewed data (a 304) keeps its generation, and so does the same version of a scope's
            # data reached through another need (the CRL set and a CDP into the same bucket): the
            # decisions resting on it stand.
            same = mark is not None and (fresh.number, fresh.this_update) == (
                mark.held.number,
                mark.held.this_update,
            )
            generation = mark.generation if same and mark else (fresh.generation or next(self._generations))
            fresh = dataclasses.replace(fresh, generation=generation)
            marker = dataclasses.replace(fresh, data=None, validators={})
            self._newest[fresh.scope] = _Mark(key, marker, generation)
            self._newest.move_to_end(fresh.scope)
            while len(self._newest) > MAX_SCOPES:
                self._newest.popitem(last=False)
            # Kept past its refresh time: it still serves as a fallback (to nextUpdate plus the
            # grace) and for conditional refreshes.
            self._held(key).put(key, fresh, max(fresh.refresh_at, self._usable_end(fresh)))
        return fresh, None

    def _usable_end(self, held: Held) -> datetime:
        end = held.next_update or held.refresh_at
        return end + timedelta(seconds=self._policy.stale_grace_seconds + self._policy.clock_skew_seconds)

    # --- answers (the calling thread) ---------------------------------------------------------

    def _answer(
        self,
        need: Need,
        held: Held | None,
        now: datetime,
        rests_on: list[tuple[Hashable, int]],
        known: dict[Hashable, Held] | None = None,
    ) -> Answer:
        kind = need.source.kind
        if need.unusable:
            return Answer(Status.UNAVAILABLE, kind, now + self._max_age, need.unusable)
        failed = self._failures.get(need.key, now)
        failure = failed[0] if failed and (held is None or failed[1] >= held.fetched_at) else None
        # The data each of `with_data` rests on: the newest verified for its scope (RFC 5280 §5.2.4).
        extra: list[Held | None] = []
        extra_failures: list[str] = []
        for other in need.with_data:
            other_held = None if other.unusable else (known or {}).get(other.key)
            newest = self._candidates(other_held)
            extra.append(newest[0] if newest else None)
            other_failed = None if other.unusable else self._failures.get(other.key, now)
            if other.unusable and not other_held:
                extra_failures.append(other.unusable)
            elif other_failed and (other_held is None or other_failed[1] >= other_held.fetched_at):
                extra_failures.append(other_failed[0].detail)
        unusable: Answer | None = None
        for data in self._candidates(held):
            try:
                if need.with_data and isinstance(need.source, CombiningSource):
                    answer = need.source.answer_with(need, data, extra, now)
                else:
                    answer = need.source.answer(need, data, now)
            except ValueError as exc:  # CRLError, StaleData: this data does not answer (any more)
                detail = f"{kind.value}: {exc}" + "".join(f"; {f}" for f in extra_failures)
                unusable = unusable or Answer(Status.UNAVAILABLE, kind, now + self._backoff, detail)
                continue
            assert held is not None
            rests_on.append((data.scope, data.generation))
            limit = data.refresh_at
            for other_data in extra:
                if other_data is not None:
                    rests_on.append((other_data.scope, other_data.generation))
                    limit = min(limit, max(other_data.refresh_at, now + self._backoff))
            if failure is not None or extra_failures or now >= held.refresh_at:  # a fallback: retry soon
                limit = min(limit, now + self._backoff)
            if failure is not None and answer.status is not Status.UNAVAILABLE:
                answer = dataclasses.replace(
                    answer, detail=f"{answer.detail}; refresh failed: {failure.detail}"
                )
            return answer if answer.fresh_until <= limit else dataclasses.replace(answer, fresh_until=limit)
        if failure is not None:
            return Answer(Status.UNAVAILABLE, kind, now + self._backoff, failure.detail)
        if unusable is not None:
            return unusable
        return Answer(Status.UNAVAILABLE, kind, now, f"{kind.value}: no answer within the time budget")

    def _candidates(self, held: Held | None) -> list[Held]:
        """The data to answer from: the newest verified for the held data's scope first (a newer CRL
        of the same issuer and scope, fetched for another certificate, applies at once), then the
        held data itself."""
        if held is None:
            return []
        mark = self._newest.get(held.scope)
        if mark is None or mark.generation == held.generation:
            return [held]
        item = self._held(mark.key).peek(mark.key)
        newest = item[1] if item is not None and item[1].generation == mark.generation else None
        if newest is None or not held.is_older_than(newest):
            return [held]
        return [newest, held]

    def _remember_revocations(self, link: Link, answers: list[Answer]) -> Answer | None:
        """A verified revocation other than certificateHold is permanent (RFC 5280 §5.3.1): remember
        it, and return it when this round's answers no longer say so (whatever later data says)."""
        key = (link.issuer.fingerprint, link.cert.crypto.serial_number)
        with self._lock:
            for answer in answers:
                if answer.status is Status.REVOKED and not answer.hold:
                    self._revoked[key] = (answer.source, answer.detail)
                    self._revoked.move_to_end(key)
                    while len(self._revoked) > MAX_REVOCATIONS:
                        self._revoked.popitem(last=False)
            remembered = self._revoked.get(key)
        if remembered is None or any(a.status is Status.REVOKED for a in answers):
            return None
        source, detail = remembered
        return Answer(Status.REVOKED, source, self._now() + self._max_age, f"revoked earlier: {detail}")

    # --- a delegated OCSP responder's own check (RFC 6960 §4.2.2.2.1) --------------------------

    def _check_responder(self, link: Link, deadline: float) -> Answer:
        """The responder certificate's status from the CRLs it declares: good when it declares none
        (trusted as issued), revoked or unavailable otherwise unless a CRL says good. Also a separate
        CRL signer's (RFC 5280 §6.3.3 (f), CrlDistributionPointSource.signer_failure)."""
        stats = Stats()
        (needs,), known = self._gather([link], (self._crl_source,), deadline, stats)
        if not needs:
            return Answer(Status.GOOD, Source.CRL, self._now() + self._max_age, "declares no CRL")
        now = self._now()
        answers = [self._answer(need, known.get(need.key), now, [], known) for need in needs]
        verdict = cert_verdict(link.cert.subject, [Source.CRL], answers)
        status = {Reason.GOOD: Status.GOOD, Reason.REVOKED: Status.REVOKED}.get(
            verdict.reason, Status.UNAVAILABLE
        )
        return Answer(status, Source.CRL, now, verdict.detail)


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """One piece of data the checker holds or failed to get (health.HeldDataView)."""

    source: str  # Source value
    issuer: str  # RFC 4514 subject of the CA it is about; "" for the denylist
    this_update: datetime | None = None
    next_update: datetime | None = None
    fetched_at: datetime | None = None
    last_failure: datetime | None = None
    failure_kind: str = ""


@dataclass(frozen=True, slots=True)
class _Mark:
    """Where a scope's newest data is held, how new it is (a data-free copy, so an index is never
    kept alive by it), and its generation: decisions compare generations, never hold data."""

    key: Hashable
    held: Held
    generation: int


def _flat(plan: list[list[Need]]) -> list[Need]:
    """Every need of a plan, each followed by the needs its answer also rests on."""
    return [n for needs in plan for need in needs for n in (need, *need.with_data)]


def _decision_bytes(decision: _Decision) -> int:
    # Weighed without following `rests_on` further than its tuples: it names data, never holds it.
    return approx_bytes(decision.verdicts) + 72 * len(decision.rests_on) + 120


def _unreadable(reason: str) -> Lister:
    def fail(_previous: Snapshot | None) -> Snapshot:
        raise ValueError(reason)

    return fail


__all__ = ["Cert", "PathResult", "RevocationChecker", "Stats"]
