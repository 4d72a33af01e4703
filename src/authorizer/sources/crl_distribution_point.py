"""The CRL distribution points a certificate names (RFC 5280 §4.2.1.13), fetched over http(s).

A URL that points into one of the configured buckets (CRL_S3_BUCKETS, or a bucket of
REVOCATION_CRL_S3_URI) is read through the S3 API with the function's role instead: an AWS Private
CA bucket behind Block Public Access answers 403 to anonymous clients.

Beyond one complete CRL per point (see docs/crl-features.md):
- **Delta CRLs** (§5.2.4, §6.3.3 (c)): a FreshestCRL in the certificate (§4.2.1.15) or in the base
  CRL (§5.2.6) names where the delta is; the base's answer then rests on the delta too (its own
  need, cached and anti-rollback-checked in its own scope). A declared delta that cannot be had
  makes the answer unavailable unless REVOCATION_DELTA_CRL=ignore.
- **Other signers** (§6.3.3 (f)): a CRL not signed by the issuer's key is accepted when a
  certificate of the same name with cRLSign and a path to the same anchor signed it (crl_issuer),
  and that certificate's own revocation checks out through the CRLs it declares (`signer_failure`).
- **Indirect CRLs** (§5.2.5): a point with a cRLIssuer is fetched when a certificate of that name
  is in reach; its entries are those under a certificateIssuer naming the certificate's issuer.
- **Reason partitions** (§6.3.3 (d)): points limited to some reasons answer together, good only
  when their CRLs cover every reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from .. import crl, crl_index
from ..certs import Cert
from ..crl_issuer import find_signers, known_by_name
from ..fetch import Fetcher, FetchError, Request
from ..model import Answer, Source, Status
from ..s3 import S3Error, S3Reader, object_of_url
from ..settings import FetchPolicy, RevocationPolicy
from . import Held, Link, LinkCheck, Need, SourceFailure
from .index import IndexStore

MAX_LEARNED = 10_000  # base CRLs whose FreshestCRL is remembered (what their deltas are)


@dataclass(frozen=True, slots=True)
class PointArg:
    """What a CRL need fetches and how its data answers: `role` is "base" (a complete CRL),
    "delta" (a delta CRL, §5.2.4) or "part" (one reason partition, answered with the others)."""

    point: crl.DistributionPoint
    role: str = "base"


class CrlDistributionPointSource:
    kind = Source.CRL

    def __init__(
        self,
        policy: RevocationPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Fetcher,
        now: Callable[[], datetime],
        s3: S3Reader | None = None,
        s3_buckets: frozenset[str] = frozenset(),
        index: IndexStore | None = None,
    ) -> None:
        self._index = index
        self._s3 = s3
        self._s3_buckets = s3_buckets
        self._policy = policy
        self._fetch_policy = fetch_policy
        self._fetcher = fetcher
        self._now = now
        self._max_age = timedelta(seconds=policy.max_age_seconds)
        # Base need key -> the http(s) URLs of its CRL's FreshestCRL (§5.2.6), learned when it is verified.
        self._learned: OrderedDict[Hashable, tuple[str, ...]] = OrderedDict()
        # Certificates the configured sources provide (a CRL set's), for finding CRL signers.
        self.extra_certs: Callable[[], Sequence[Cert]] = lambda: ()
        # How the checker answers for a separate CRL signer's own revocation (set by the checker).
        self.check_signer: LinkCheck | None = None

    # --- planning ------------------------------------------------------------------------------

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        points, malformed = crl.all_points(link.cert)
        needs: list[Need] = []
        if malformed:
            needs.append(self._unusable(link, "crl: malformed distribution point (RFC 5280 §4.2.1.13)"))
        partitioned: list[crl.DistributionPoint] = []
        for point in points:
            problem = self._problem(link, point)
            if problem:
                needs.append(self._unusable(link, problem))
            elif point.reasons is not None:
                partitioned.append(point)
            else:
                needs.append(self.base_need(link, point))
        if partitioned:
            needs.append(self._partitions(link, partitioned))
        return needs

    def _problem(self, link: Link, point: crl.DistributionPoint) -> str:
        if not point.urls:
            return "crl: distribution point names no http(s) URL (only a CRL set can serve it)"
        if point.crl_issuer is not None and not known_by_name(link, point.crl_issuer, self.extra_certs()):
            return f"crl: indirect CRL issuer {point.crl_issuer.rfc4514_string()} is not in the truststore"
        return ""

    def _unusable(self, link: Link, detail: str) -> Need:
        return Need(self, link, ("crl-unusable", detail), None, unusable=detail)

    def base_need(self, link: Link, point: crl.DistributionPoint) -> Need:
        key = ("crl", link.issuer.fingerprint, *point.urls)
        delta = self.delta_need(link, key, (), point.crl_issuer) if point.reasons is None else None
        return Need(self, link, key, PointArg(point), with_data=(delta,) if delta else ())

    def delta_need(
        self,
        link: Link,
        base_key: Hashable,
        base_urls: Sequence[str] = (),
        crl_issuer: x509.Name | None = None,
    ) -> Need | None:
        """The need for the delta CRL of a base (§5.2.4): at the base CRL's FreshestCRL when it is
        known, else at the certificate's (§4.2.1.15); None when neither declares one."""
        if not self._policy.use_delta_crls:
            return None
        learned = self._learned.get(base_key)
        points, declared = crl.freshest_points(link.cert)
        urls = tuple(base_urls) or learned or tuple(u for p in points for u in p.urls)
        if not urls:
            if declared or learned is not None:
                detail = "crl: delta CRL declared (FreshestCRL) at no http(s) URL"
                return Need(self, link, ("crl-unusable", detail), None, unusable=detail)
            return None
        point = crl.DistributionPoint(urls, crl_issuer=crl_issuer)
        return Need(self, link, ("crl-delta", link.issuer.fingerprint, *urls), PointArg(point, "delta"))

    def _partitions(self, link: Link, points: list[crl.DistributionPoint]) -> Need:
        """One need for every point limited to some reasons (§6.3.3 (d)): good only together."""
        covered = frozenset().union(*(p.reasons or crl.ALL_REASONS for p in points))
        if not covered >= crl.ALL_REASONS:
            missing = ", ".join(sorted(r.value for r in crl.ALL_REASONS - covered))
            detail = f"crl: distribution points cover only some reasons (missing {missing})"
            return self._unusable(link, detail)
        if self._policy.use_delta_crls and crl.freshest_points(link.cert)[1]:
            return self._unusable(link, "crl: delta CRLs of reason-partitioned points are not supported")
        needs = [
            Need(self, link, ("crl", link.issuer.fingerprint, *p.urls), PointArg(p, "part")) for p in points
        ]
        first, *rest = needs
        return Need(self, link, first.key, first.arg, with_data=tuple(rest))

    # --- fetching -------------------------------------------------------------------------------

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        link = need.link
        arg: PointArg = need.arg
        point = arg.point
        failure = SourceFailure("crl", "no distribution point")
        for url in point.urls:
            # Validators belong to the URL that served them.
            old = held if held is not None and held.validators.get("url") == url else None
            if self._index is not None and arg.role != "delta" and point.crl_issuer is None:
                indexed = self._index.held(
                    crl_index.source_name(url),
                    link.issuer,
                    old,
                    lambda index, now, refresh_at, v, url=url: crl_held(  # type: ignore[misc]
                        index, link.issuer.fingerprint, now, refresh_at, {**v, "url": url}
                    ),
                )
                if indexed is not None:
                    unusable = self.signer_failure(need, indexed.data, url, deadline, self.extra_certs())
                    if unusable is None:
                        return indexed
                    failure = unusable
                    continue
            try:
                body, validators = self._get(url, old, deadline)
                now = self._now()
                if body is None and old is not None:
                    unusable = self.signer_failure(need, old.data, url, deadline, self.extra_certs())
                    if unusable is not None:
                        failure = unusable
                        continue
                    return old.renewed(now, self._refresh_at(old.data, now))
                index = verify(
                    body or b"", link, point, arg.role == "delta", self._policy, now, self.extra_certs()
                )
                unusable = self.signer_failure(need, index, url, deadline, self.extra_certs())
                if unusable is not None:
                    failure = unusable
                    continue
            except FetchError as exc:
                failure = SourceFailure(exc.kind, f"crl {url}: {exc}")
                continue
            except S3Error as exc:
                failure = SourceFailure("s3", f"crl {url}: {exc}")
                continue
            except crl.CRLError as exc:
                failure = SourceFailure("invalid", f"crl {url}: {exc}")
                continue
            if arg.role != "delta":
                self.learn(need.key, index)
            return crl_held(index, link.issuer.fingerprint, now, self._refresh_at(index, now), validators)
        raise failure

    def signer_failure(
        self, need: Need, index: crl.CrlIndex, where: str, deadline: float, extra: Sequence[Cert] = ()
    ) -> SourceFailure | None:
        """Why a CRL verified under a certificate other than the link's issuer (a separate CRL-signing
        certificate, the other key of a rollover) must not be used; None when it may be.

        RFC 5280 §6.3.3 (f) requires validating the CRL issuer's certification path, its revocation
        included, before the CRL is used (PKITS 4.4.20, 4.4.21). Local policy, as for a delegated OCSP
        responder (RFC 6960 §4.2.2.2.1): the signer is checked through the CRLs it declares, with
        the distribution point source only; revoked or unavailable: this CRL is not used; declaring
        no CRL: trusted as issued; a trust anchor: trusted by inclusion (§6.1.1). A signer whose own
        CRL would be this very CRL (same need or same URL) is not checked by itself: not used, unless
        it is a CA certificate of the truststore (a rollover key), trusted by inclusion there.
        Bounded by `deadline` (the refresh's); never raises."""
        link = need.link
        if not index.signer or index.signer == link.issuer.fingerprint:
            return None
        try:
            return self._signer_failure(link, need, index.signer, where, deadline, extra)
        except Exception as exc:  # a bug here makes the CRL unusable, never a crash
            return SourceFailure("signer", f"crl {where}: CRL signer check failed ({type(exc).__name__})")

    def _signer_failure(
        self, link: Link, need: Need, fingerprint: str, where: str, deadline: float, extra: Sequence[Cert]
    ) -> SourceFailure | None:
        pool = _in_reach(link, extra)
        signer = next((c for c in pool if c.fingerprint == fingerprint), None)
        if signer is None:
            return SourceFailure("signer", f"crl {where}: CRL signer certificate is no longer in reach")
        trusted = link.truststore.anchors if link.truststore is not None else ()
        anchors = {c.fingerprint for c in (*trusted, *((link.anchor,) if link.anchor else ()))}
        if signer.fingerprint in anchors:
            return None
        issuer = next((c for c in pool if c.fingerprint != signer.fingerprint and _issued(signer, c)), None)
        if issuer is None:
            return SourceFailure("signer", f"crl {where}: CRL signer certificate's issuer is not in reach")
        signer_link = Link(signer, issuer, link.anchor, link.truststore)
        if self._covers_itself(self.needs(signer_link, deadline), need, where):
            in_truststore = link.truststore is not None and any(
                c.fingerprint == signer.fingerprint for c in link.truststore.intermediates
            )
            if signer.is_ca and in_truststore:
                return None
            return SourceFailure(
                "signer", f"crl {where}: CRL signer certificate's revocation rests on this very CRL"
            )
        if self.check_signer is None:
            detail = "CRL signer certificate's revocation cannot be checked"
            return SourceFailure("signer", f"crl {where}: {detail}")
        verdict = self.check_signer(signer_link, deadline)
        if verdict.status is Status.GOOD:
            return None
        detail = f" ({verdict.detail})" if verdict.detail else ""
        if verdict.status is Status.REVOKED:
            return SourceFailure("invalid", f"crl {where}: CRL signer certificate is revoked{detail}")
        unavailable = f"CRL signer certificate's revocation is unavailable{detail}"
        return SourceFailure("signer", f"crl {where}: {unavailable}")

    @staticmethod
    def _covers_itself(planned: Sequence[Need], need: Need, where: str) -> bool:
        """Whether the signer's own CRL would be the CRL being verified: the same need, or a point at
        the same URL (or the same S3 object)."""
        for other in (n for p in planned for n in (p, *p.with_data)):
            if other.key == need.key:
                return True
            urls = other.arg.point.urls if isinstance(other.arg, PointArg) else ()
            for url in urls:
                in_s3 = object_of_url(url)
                if url == where or (in_s3 is not None and f"s3://{in_s3[0]}/{in_s3[1]}" == where):
                    return True
        return False

    def learn(self, key: Hashable, index: crl.CrlIndex) -> None:
        """Remember where a verified base CRL says its deltas are (§5.2.6), for the next plan."""
        if not index.freshest_declared:
            self._learned.pop(key, None)
            return
        self._learned[key] = index.freshest_urls
        self._learned.move_to_end(key)
        while len(self._learned) > MAX_LEARNED:
            self._learned.popitem(last=False)

    def _get(self, url: str, old: Held | None, deadline: float) -> tuple[bytes | None, dict[str, str]]:
        """The CRL at `url` and its validators; None when unchanged since `old` (conditional)."""
        validators = old.validators if old is not None else {}
        in_s3 = object_of_url(url) if self._s3 is not None else None
        if self._s3 is not None and in_s3 is not None and in_s3[0] in self._s3_buckets:
            obj = self._s3.get(*in_s3, etag=validators.get("etag", ""))
            return (None if not obj.changed else obj.body), {"url": url, "etag": obj.etag}
        headers: dict[str, str] = {}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("last-modified"):
            headers["If-Modified-Since"] = validators["last-modified"]
        response = self._fetcher.fetch(
            Request(url, max_bytes=self._fetch_policy.max_crl_bytes, headers=headers), deadline
        )
        fresh = {
            "url": url,
            "etag": response.headers.get("etag", ""),
            "last-modified": response.headers.get("last-modified", ""),
        }
        return (None if response.status == 304 and old is not None else response.body), fresh

    # --- answering ------------------------------------------------------------------------------

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        arg: PointArg = need.arg
        self._check_no_undeclared_delta(need, held.data)
        return crl.lookup(held.data, need.link.cert, arg.point, now, self._policy)

    def answer_with(self, need: Need, held: Held, extra: Sequence[Held | None], now: datetime) -> Answer:
        return answer_with(need, held, extra, now, self._policy)

    def _check_no_undeclared_delta(self, need: Need, index: crl.CrlIndex) -> None:
        """A base CRL that announces deltas answers only with one (§5.2.6); the need planned without it
        (planned before the base was seen, or the learned URLs were evicted) learns them for next time."""
        if self._policy.use_delta_crls and index.freshest_declared:
            self.learn(need.key, index)
            raise crl.CRLError("the base CRL announces a delta CRL (FreshestCRL) that is not in hand yet")

    def _refresh_at(self, index: crl.CrlIndex, now: datetime) -> datetime:
        return min(index.next_update or index.this_update, now + self._max_age)


def verify(
    data: bytes,
    link: Link,
    point: crl.DistributionPoint,
    delta: bool,
    policy: RevocationPolicy,
    now: datetime,
    extra: Sequence[Cert] = (),
) -> crl.CrlIndex:
    """crl.parse_and_verify for this link and point: signed by the issuer, or by a certificate of the
    CRL issuer's name with a path to the link's anchor (§6.3.3 (f))."""

    def signers(name: x509.Name) -> list[Cert]:
        return find_signers(link, name, now, policy.clock_skew_seconds, extra)

    return crl.parse_and_verify(data, link.issuer, signers=signers, crl_issuer=point.crl_issuer, delta=delta)


def _in_reach(link: Link, extra: Sequence[Cert]) -> list[Cert]:
    """The certificates a CRL's signer and that signer's issuer are looked for among."""
    pool = [link.issuer, *((link.anchor,) if link.anchor is not None else ())]
    if link.truststore is not None:
        pool.extend(link.truststore.anchors)
        pool.extend(link.truststore.intermediates)
    pool.extend(extra)
    return list({c.fingerprint: c for c in pool}.values())


def _issued(cert: Cert, issuer: Cert) -> bool:
    """Whether `issuer`'s name and key issued `cert` (its path was validated already: this only
    picks which certificate of the path the signer's revocation is checked under)."""
    try:
        cert.crypto.verify_directly_issued_by(issuer.crypto)
    except Exception:
        return False
    return True


def answer_with(
    need: Need, held: Held, extra: Sequence[Held | None], now: datetime, policy: RevocationPolicy
) -> Answer:
    """The answer of a base CRL with its delta (§6.3.3 (c), (i), (j)), or of reason partitions taken
    together (§6.3.3 (d)): every CRL source's `answer_with`."""
    arg = need.arg
    cert = need.link.cert
    pairs = list(zip(need.with_data, extra, strict=True))
    deltas = [e for o, e in pairs if _role(o) == "delta"]
    if deltas:
        delta = deltas[0]
        if delta is None:
            raise crl.CRLError("the delta CRL declared (FreshestCRL) could not be had")
        return crl.lookup(held.data, cert, arg.point, now, policy, delta=delta.data)
    parts: list[crl.Coverage | BaseException] = []
    for point, data in [(arg.point, held), *((o.arg.point, e) for o, e in pairs)]:
        if data is None:
            parts.append(crl.CRLError("a CRL of a reason partition could not be had"))
            continue
        try:
            parts.append(crl.evaluate(data.data, cert, point, now, policy))
        except ValueError as exc:
            parts.append(exc)
    return crl.combine(parts)


def _role(need: Need) -> str:
    return need.arg.role if need.arg is not None else "delta"  # an unusable companion is a delta's


def crl_held(
    index: crl.CrlIndex,
    issuer_fingerprint: str,
    now: datetime,
    refresh_at: datetime,
    validators: dict[str, str],
) -> Held:
    """A verified CRL as held data: its scope is its issuer and its IDP (RFC 5280 §5.2.3, §5.2.5), a
    delta CRL's its own (ordered by its cRLNumber like any CRL's)."""
    return Held(
        data=index,
        scope=("crl-delta" if index.is_delta else "crl", issuer_fingerprint, *index.scope()),
        this_update=index.this_update,
        next_update=index.next_update,
        fetched_at=now,
        refresh_at=refresh_at,
        number=index.crl_number,
        validators=validators,
    )
