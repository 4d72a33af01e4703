"""The operator's denylist (REVOCATION_DENYLIST_S3_URI, or `check --denylist FILE`).

It never makes a certificate "checked": it only overrides. A listed certificate is revoked with
source `denylist` whatever any other source says; a denylist that cannot be read (before its first
read, or past REVOCATION_CACHE_MAX_AGE_SECONDS without a successful check) makes every unrevoked
certificate unavailable, since it might list it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from .. import denylist
from ..freshness import StaleData
from ..model import Answer, Source, Status
from ..s3 import S3Error, S3Location, S3Reader
from ..settings import RevocationPolicy
from . import Held, Link, Need, SourceFailure

_KEY = ("denylist",)


class DenylistSource:
    kind = Source.DENYLIST

    def __init__(
        self,
        where: str,
        reader: S3Reader | None,
        refresh_seconds: float,
        policy: RevocationPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._where = where
        self._s3 = S3Location.parse(where) if where.startswith("s3://") else None
        self._reader = reader
        self._refresh = timedelta(seconds=refresh_seconds)
        self._max_age = timedelta(seconds=policy.max_age_seconds)
        self._now = now

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        return [Need(self, link, _KEY, declares=False)]

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        etag = held.validators.get("etag", "") if held is not None else ""
        try:
            if self._s3 is not None and self._reader is not None:
                obj = self._reader.get(self._s3.bucket, self._s3.key, etag)
                body, new_etag, changed = obj.body, obj.etag, obj.changed
            else:
                body = Path(self._where).read_bytes()
                new_etag = hashlib.sha256(body).hexdigest()
                changed = new_etag != etag
        except (S3Error, OSError) as exc:
            raise SourceFailure("denylist", f"denylist {self._where}: {exc}") from exc
        now = self._now()
        if held is not None and not changed:
            return held.renewed(now, now + self._refresh)
        try:
            parsed = denylist.parse(body.decode("utf-8"))
        except (denylist.DenylistError, UnicodeDecodeError) as exc:
            raise SourceFailure("invalid", f"denylist {self._where} refused: {exc}") from exc
        return Held(
            data=parsed,
            scope=("denylist", new_etag),  # edits may remove entries: no ordering to enforce
            this_update=now,
            next_update=None,
            fetched_at=now,
            refresh_at=now + self._refresh,
            validators={"etag": new_etag},
        )

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        if now > held.fetched_at + self._max_age:
            raise StaleData("denylist not confirmed within REVOCATION_CACHE_MAX_AGE_SECONDS")
        listed = held.data.lookup(need.link.cert, need.link.issuer)
        until = held.fetched_at + self._max_age
        if listed is None:
            return Answer(Status.GOOD, Source.DENYLIST, until, "not in the denylist")
        # Liftable (`hold`): `unrevoke` must work, so the container does not make it permanent.
        return Answer(Status.REVOKED, Source.DENYLIST, until, f"denylist: {listed.reason}", hold=True)
