"""The CRL distribution points a certificate names (RFC 5280 §4.2.1.13), fetched over http(s).

A URL that points into one of the configured buckets (CRL_S3_BUCKETS, or a bucket of
REVOCATION_CRL_S3_URI) is read through the S3 API with the function's role instead: an AWS Private
CA bucket behind Block Public Access answers 403 to anonymous clients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from .. import crl
from ..fetch import Fetcher, FetchError, Request
from ..model import Answer, Source
from ..s3 import S3Error, S3Reader, object_of_url
from ..settings import FetchPolicy, RevocationPolicy
from . import Held, Link, Need, SourceFailure


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
    ) -> None:
        self._s3 = s3
        self._s3_buckets = s3_buckets
        self._policy = policy
        self._fetch_policy = fetch_policy
        self._fetcher = fetcher
        self._now = now
        self._max_age = timedelta(seconds=policy.max_age_seconds)

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        points, unusable = crl.distribution_points(link.cert)
        needs = [Need(self, link, ("crl", link.issuer.fingerprint, *p.urls), p) for p in points]
        if unusable:
            needs.append(
                Need(self, link, ("crl-unusable",), None, unusable="crl: unsupported distribution point")
            )
        return needs

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        link = need.link
        point: crl.DistributionPoint = need.arg
        failure = SourceFailure("crl", "no distribution point")
        for url in point.urls:
            # Validators belong to the URL that served them.
            old = held if held is not None and held.validators.get("url") == url else None
            try:
                body, validators = self._get(url, old, deadline)
                now = self._now()
                if body is None and old is not None:
                    return old.renewed(now, self._refresh_at(old.data, now))
                index = crl.parse_and_verify(body or b"", link.issuer)
            except FetchError as exc:
                failure = SourceFailure(exc.kind, f"crl {url}: {exc}")
                continue
            except S3Error as exc:
                failure = SourceFailure("s3", f"crl {url}: {exc}")
                continue
            except crl.CRLError as exc:
                failure = SourceFailure("invalid", f"crl {url}: {exc}")
                continue
            return crl_held(index, link.issuer.fingerprint, now, self._refresh_at(index, now), validators)
        raise failure

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

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        return crl.lookup(held.data, need.link.cert, need.arg, now, self._policy)

    def _refresh_at(self, index: crl.CrlIndex, now: datetime) -> datetime:
        return min(index.next_update or index.this_update, now + self._max_age)


def crl_held(
    index: crl.CrlIndex,
    issuer_fingerprint: str,
    now: datetime,
    refresh_at: datetime,
    validators: dict[str, str],
) -> Held:
    """A verified CRL as held data: its scope is its issuer and its IDP (RFC 5280 §5.2.3, §5.2.5)."""
    idp = tuple(sorted(index.idp_urls)) if index.idp_urls is not None else None
    return Held(
        data=index,
        scope=("crl", issuer_fingerprint, idp, index.only_user_certs, index.only_ca_certs),
        this_update=index.this_update,
        next_update=index.next_update,
        fetched_at=now,
        refresh_at=refresh_at,
        number=index.crl_number,
        validators=validators,
    )
