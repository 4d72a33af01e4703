"""Freshness of revocation data (thisUpdate/nextUpdate), shared by OCSP and CRL checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from .settings import RevocationPolicy

# RFC 5019: without nextUpdate newer information is always available; reuse such data only briefly.
NO_NEXT_UPDATE_REUSE = timedelta(minutes=5)


class StaleData(ValueError):
    """Revocation data that is not (or no longer) usable at this moment."""


def usable_until(
    this_update: datetime, next_update: datetime | None, now: datetime, policy: RevocationPolicy
) -> tuple[datetime, bool]:
    """Until when data may be reused, and whether it is being used stale (past nextUpdate, in grace).

    Raises StaleData when the data is from the future or past nextUpdate plus the grace.
    """
    skew = timedelta(seconds=policy.clock_skew_seconds)
    if this_update > now + skew:
        raise StaleData(f"thisUpdate {this_update:%Y-%m-%dT%H:%M:%SZ} is in the future")
    if next_update is None:
        expiry = this_update + NO_NEXT_UPDATE_REUSE
        if expiry < now - skew:
            raise StaleData("no nextUpdate and thisUpdate is not recent")
        return expiry, False
    if next_update >= now - skew:
        return next_update, False
    grace_end = next_update + timedelta(seconds=policy.stale_grace_seconds)
    if policy.stale_grace_seconds > 0 and grace_end >= now:
        return grace_end, True
    raise StaleData(f"nextUpdate {next_update:%Y-%m-%dT%H:%M:%SZ} has passed")
