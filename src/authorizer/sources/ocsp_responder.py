"""The OCSP responders a certificate's Authority Information Access names (RFC 6960)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from .. import ocsp
from ..fetch import Fetcher, FetchError, Request
from ..freshness import StaleData, usable_until
from ..model import Answer, Source, Status
from ..settings import FetchPolicy, RevocationPolicy
from . import Held, Link, LinkCheck, Need, SourceFailure


class OcspResponderSource:
    kind = Source.OCSP

    def __init__(
        self,
        policy: RevocationPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Fetcher,
        now: Callable[[], datetime],
        check_responder: LinkCheck,
        unknown_backoff: timedelta,
    ) -> None:
        self._policy = policy
        self._fetch_policy = fetch_policy
        self._fetcher = fetcher
        self._now = now
        self._check_responder = check_responder
        self._unknown_backoff = unknown_backoff

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        urls, unusable = ocsp.responders(link.cert)
        key = ("ocsp", link.issuer.fingerprint, link.cert.crypto.serial_number)
        if urls:
            return [Need(self, link, key, urls)]
        if unusable:
            return [Need(self, link, key, (), unusable="ocsp: no http(s) responder URL")]
        return []

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        link = need.link
        failure = SourceFailure("ocsp", "no responder")
        for url in need.arg:
            try:
                request, nonce = ocsp.build_request(link.cert, link.issuer)
                response = self._fetcher.fetch(
                    Request(
                        url,
                        body=request,
                        content_type="application/ocsp-request",
                        accept="application/ocsp-response",
                        max_bytes=self._fetch_policy.max_ocsp_bytes,
                    ),
                    deadline,
                )
                now = self._now()
                answer, responder = ocsp.verify_response(
                    response.body, link.cert, link.issuer, now, self._policy, nonce
                )
            except FetchError as exc:
                failure = SourceFailure(exc.kind, f"ocsp {url}: {exc}")
                continue
            except (ocsp.OCSPError, StaleData) as exc:
                failure = SourceFailure("invalid", f"ocsp {url}: {exc}")
                continue
            if responder is not None:
                # RFC 6960 §4.2.2.2.1 leaves this to local policy. Ours: a delegated responder without
                # id-pkix-ocsp-nocheck is checked through the CRLs it declares; one that declares
                # none is trusted as issued; a revoked or uncheckable one makes the answer unusable.
                verdict = self._check_responder(Link(responder, link.issuer), deadline)
                if verdict.status is not Status.GOOD:
                    failure = SourceFailure(
                        "responder",
                        f"ocsp {url}: delegated responder certificate is {verdict.status.value}"
                        + (f" ({verdict.detail})" if verdict.detail else ""),
                    )
                    continue
            assert answer.this_update is not None
            refresh_at = answer.fresh_until
            if answer.status is Status.UNKNOWN:
                refresh_at = min(refresh_at, now + self._unknown_backoff)
            return Held(
                data=answer,
                scope=need.key,
                this_update=answer.this_update,
                next_update=answer.next_update,
                fetched_at=now,
                refresh_at=refresh_at,
            )
        raise failure

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        verified: Answer = held.data
        until, stale = usable_until(held.this_update, held.next_update, now, self._policy)
        return Answer(
            verified.status,
            Source.OCSP,
            until,
            verified.detail,
            stale,
            held.this_update,
            held.next_update,
            verified.hold,
        )
