"""Truststore and revocation health metrics (health.py): through the handler, read from its EMF output.

- the truststore's earliest CA expiry (TruststoreDaysToExpiry), when it loads and then once per interval;
- revocation data past nextUpdate that could not be refreshed: StaleRevocationUse per decision, and, from
  the checker's `held_summary()` accessor when it has one, RevocationDataUnrefreshed / ...OverdueSeconds /
  ...AgeSeconds;
- source failures per CA (SourceFailureByCa, `ca` dimension: a bounded label per truststore CA).

The clock is a fake one (app.reset(clock=...)): nothing here depends on how long anything takes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from authorizer import health
from authorizer.health import (
    DENYLIST_CA,
    HEALTH_INTERVAL_SECONDS,
    OTHER_CA,
    HealthMonitor,
    HeldRevocationData,
    ca_label,
    revocation_health,
)
from authorizer.truststore import parse_truststore
from conftest import Authorizer, Configure, World
from pki import Credential, pem_bundle, utcnow
from test_cache_rules import Clock, clock  # noqa: F401  (fixture used below)

GRACE = 600.0


@dataclass
class Document:
    """One EMF document: metric values (summed when several), dimension sets per metric, the raw JSON."""

    values: dict[str, float]
    dimensions: dict[str, list[list[str]]]
    raw: dict[str, Any]


def documents(capsys: pytest.CaptureFixture[str]) -> list[Document]:
    found = []
    for line in capsys.readouterr().out.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        raw = json.loads(line)
        values: dict[str, float] = {}
        dimensions: dict[str, list[list[str]]] = {}
        for directive in raw["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = raw[metric["Name"]]
                values[metric["Name"]] = sum(value) if isinstance(value, list) else value
                dimensions[metric["Name"]] = directive["Dimensions"]
                for dimension_set in directive["Dimensions"]:  # valid EMF: every dimension has a value
                    assert all(isinstance(raw.get(d), str) and raw[d] for d in dimension_set), raw
        found.append(Document(values, dimensions, raw))
    return found


@pytest.fixture
def authorizer(configure: Configure, clock: Clock) -> Callable[..., Authorizer]:
    """An authorizer on the fake clock, with exact freshness (no skew) and a stale grace."""

    def make(truststore: Sequence[Credential] | None = None, grace: float = GRACE) -> Authorizer:
        authz = configure(
            truststore,
            CLOCK_SKEW_SECONDS="0",
            REVOCATION_STALE_GRACE_SECONDS=str(grace),
            REVOCATION_FAILURE_BACKOFF_SECONDS="10",
        )
        authz.app.reset(clock=clock)
        return authz

    return make


def publish_crl(world: World, clock: Clock, path: str, hours: float = 1) -> tuple[dt.datetime, dt.datetime]:
    this_update, next_update = clock.now - dt.timedelta(minutes=1), clock.now + dt.timedelta(hours=hours)
    world.http.set(path, world.pki.crl(world.ica, [], this_update=this_update, next_update=next_update))
    return this_update, next_update


# ---- the truststore's earliest expiry -----------------------------------------------------------------


def test_truststore_ca_expiring_in_ten_days(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    expiring = world.pki.issue(
        "Expiring Issuing CA",
        issuer=world.root,
        ca=True,
        path_length=0,
        not_after=clock.now + dt.timedelta(days=10),
    )
    authz = authorizer([*world.trusted, expiring])
    leaf = world.leaf("health-expiry", crl=True)
    capsys.readouterr()
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (first,) = documents(capsys)
    assert first.values["TruststoreDaysToExpiry"] == pytest.approx(10, abs=0.01)
    assert first.dimensions["TruststoreDaysToExpiry"] == [["service"]]

    # At most once per interval per container: not with the next decision, again once it has passed.
    authz.check("v2", leaf).expect(True, "good", leaf, "crl")
    clock.advance(HEALTH_INTERVAL_SECONDS)
    authz.check("v2", leaf).expect(True, "good", leaf, "crl")
    second, third = documents(capsys)
    assert "TruststoreDaysToExpiry" not in second.values
    assert third.values["TruststoreDaysToExpiry"] == pytest.approx(
        10 - HEALTH_INTERVAL_SECONDS / 86400, abs=0.01
    )


def test_a_new_truststore_is_reported_when_it_loads(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    authz = authorizer()
    leaf = world.leaf("health-reload", crl=True)
    authz.check("rest", leaf)
    capsys.readouterr()
    # The shortest-lived CA of the standard truststore is valid for a year (tests/pki.py).
    app = authz.app
    assert app._runtime is not None
    expiring = world.pki.issue(
        "Soon-expired CA", issuer=None, ca=True, not_after=clock.now + dt.timedelta(days=2)
    )
    app._runtime.health.truststore_loaded(parse_truststore(pem_bundle([*world.trusted, expiring]), "v2"))
    authz.check("rest", leaf)  # within the interval, but the truststore is new
    (document,) = documents(capsys)
    assert document.values["TruststoreDaysToExpiry"] == pytest.approx(2, abs=0.01)


# ---- revocation data past nextUpdate --------------------------------------------------------------------


def test_stale_crl_within_the_grace_is_reported_with_its_age(
    world: World,
    clock: Clock,
    authorizer: Callable[..., Authorizer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authz = authorizer()
    path, url = world.crl_url()
    leaf = world.leaf("health-stale", crl_urls=[url])
    this_update, next_update = publish_crl(world, clock, path)
    fetched_at = clock.now
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (fresh,) = documents(capsys)
    assert "StaleRevocationUse" not in fresh.values and "SourceFailureByCa" not in fresh.values

    # The CDP goes down; past nextUpdate, within the grace, the held CRL still answers.
    world.http.set(path, b"down", status=503)
    clock.advance(3600 + 300)

    # What the checker's accessor would report for that CRL (see health.RevocationStateView). The
    # RevocationChecker does not offer one yet: this stands in for it, with the CRL's real dates.
    def held_summary() -> list[HeldRevocationData]:
        return [
            HeldRevocationData(
                "crl", world.ica.subject, this_update, next_update, fetched_at, clock.now, "http"
            )
        ]

    checker = authz.app._runtime.checker
    monkeypatch.setattr(checker, "held_summary", held_summary, raising=False)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (stale,) = documents(capsys)
    assert stale.values["StaleRevocationUse"] == 1
    assert stale.values["RevocationDataUnrefreshed"] == 1
    assert stale.values["RevocationDataOverdueSeconds"] == pytest.approx(300)
    assert stale.values["RevocationDataAgeSeconds"] == pytest.approx(3600 + 300 + 60)
    assert stale.raw["_aws"]["CloudWatchMetrics"][0]["Metrics"]  # units: seconds for the ages
    units = {m["Name"]: m["Unit"] for d in stale.raw["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert units["RevocationDataOverdueSeconds"] == units["RevocationDataAgeSeconds"] == "Seconds"
    # The CA whose data it is counts a source failure.
    assert stale.values["SourceFailureByCa"] == 1
    assert [sorted(d) for d in stale.dimensions["SourceFailureByCa"]] == [["ca", "service"]]
    assert stale.raw["ca"] == ca_label(world.ica.subject)


def test_stale_use_reports_its_age_from_the_checkers_own_summary(
    world: World, clock: Clock, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The real RevocationChecker.held_summary(): a CRL 300 s past its nextUpdate whose refresh fails."""
    authz = authorizer()
    path, url = world.crl_url()
    leaf = world.leaf("health-stale-plain", crl_urls=[url])
    publish_crl(world, clock, path)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    world.http.set(path, b"down", status=503)
    clock.advance(3600 + 300)
    capsys.readouterr()
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (stale,) = documents(capsys)
    assert stale.values["StaleRevocationUse"] == 1
    assert stale.values["SourceFailureByCa"] == 1
    assert stale.values["RevocationDataUnrefreshed"] == 1
    assert stale.values["RevocationDataOverdueSeconds"] == 300
    assert stale.values["RevocationDataAgeSeconds"] == 3960


# ---- source failures per CA -----------------------------------------------------------------------------


def test_a_failing_cdp_counts_a_failure_for_its_ca(
    world: World, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    authz = authorizer(grace=0)
    leaf = world.leaf("health-cdp-down", crl_urls=[world.http.set(world.path("down"), b"down", status=503)])
    capsys.readouterr()
    authz.check("v2", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    (document,) = documents(capsys)  # still one document per decision: a second directive in it
    assert document.values["Reason_revocation_unavailable"] == 1 and document.values["FetchFailure"] == 1
    assert document.values["SourceFailureByCa"] == 1
    assert [sorted(d) for d in document.dimensions["SourceFailureByCa"]] == [["ca", "service"]]
    assert document.dimensions["Denied"] == [["service"]]
    assert document.raw["ca"] == ca_label(world.ica.subject)
    assert document.raw["ca"].startswith("Revocation Test Issuing CA-")


def test_failures_of_several_cas_in_one_request(
    world: World, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The leaf's CDP and its issuing CA's CDP both down: one count for each issuer, each under its label."""
    authz = authorizer(grace=0)
    down = world.http.set(world.path("down"), b"down", status=503)
    leaf = world.leaf("health-two-cas", issuer=world.ica_crl_down, crl_urls=[down])
    capsys.readouterr()
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    by_ca = {d.raw["ca"]: d.values["SourceFailureByCa"] for d in documents(capsys)}
    assert by_ca == {ca_label(world.ica_crl_down.subject): 1, ca_label(world.root.subject): 1}


def test_good_decisions_count_no_failure(
    world: World, authorizer: Callable[..., Authorizer], capsys: pytest.CaptureFixture[str]
) -> None:
    authz = authorizer()
    leaf = world.leaf("health-good", crl=True)
    capsys.readouterr()
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (document,) = documents(capsys)
    assert "SourceFailureByCa" not in document.values and "ca" not in document.raw


def test_health_never_changes_a_decision(
    world: World,
    authorizer: Callable[..., Authorizer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authz = authorizer()
    leaf = world.leaf("health-broken", crl=True)

    def broken(*_args: object) -> list[str]:
        raise RuntimeError("bug")

    monkeypatch.setattr(health, "affected_issuers", broken)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    (document,) = documents(capsys)
    assert document.values["Allowed"] == 1


# ---- the pure parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("subject", "short"), [
    ("CN=Example Issuing CA 1,O=Example", "Example Issuing CA 1"),
    ("O=Example,CN=Example\\, Inc. CA", "Example_ Inc. CA"),
    ("CN=Ünïcode CA", "Unicode CA"),
    ("O=No Common Name", "O_No Common Name"),
    ("CN=" + "x" * 100, "x" * 40),
    ("CN=***", "ca"),
])  # fmt: skip
def test_ca_label(subject: str, short: str) -> None:
    label = ca_label(subject)
    name, _, digest = label.rpartition("-")
    assert name == short
    assert len(digest) == 8 and int(digest, 16) >= 0
    assert label.isascii() and len(label) <= 49
    assert ca_label(subject) == label  # stable


def test_same_name_other_subject_gets_another_label() -> None:
    assert ca_label("CN=Issuing CA,O=One") != ca_label("CN=Issuing CA,O=Two")


def test_labels_are_bounded_per_container(world: World) -> None:
    monitor = HealthMonitor(max_labels=2)
    monitor.truststore_loaded(parse_truststore(pem_bundle(world.trusted)))
    labels = [monitor._label(ca.subject) for ca in (world.ica, world.root, world.ica_crl_down, world.ica)]
    assert labels == [ca_label(world.ica.subject), ca_label(world.root.subject), OTHER_CA, labels[0]]
    assert monitor._label("CN=Not In The Truststore") == OTHER_CA
    assert monitor._label("") == DENYLIST_CA


def _held(
    now: dt.datetime, next_in: float, failed: bool = True, fetched_ago: float = 600
) -> HeldRevocationData:
    fetched = now - dt.timedelta(seconds=fetched_ago)
    return HeldRevocationData(
        "crl",
        "CN=CA",
        this_update=fetched - dt.timedelta(seconds=60),
        next_update=now + dt.timedelta(seconds=next_in),
        fetched_at=fetched,
        last_failure=now - dt.timedelta(seconds=5) if failed else None,
        failure_kind="timeout" if failed else "",
    )


def test_revocation_health_counts_only_late_data_that_failed_to_refresh() -> None:
    now = utcnow()
    held = [
        _held(now, next_in=-120),  # past nextUpdate, refresh failed: the worst
        _held(now, next_in=1800),  # near nextUpdate, refresh failed
        _held(now, next_in=86400),  # failed, but a day to go
        _held(now, next_in=-300, failed=False),  # late but nothing failed (no request needed it)
        _held(now, next_in=-300, fetched_ago=1),  # failed before the latest successful fetch
        HeldRevocationData("ocsp", "CN=CA", None, None, None, now, "connect"),  # nothing held
    ]
    result = revocation_health(held, now)
    assert result.unrefreshed == 2
    assert result.overdue_seconds == pytest.approx(120)
    assert result.age_seconds == pytest.approx(600 + 60)
    assert revocation_health([], now).unrefreshed == 0


def test_data_without_next_update_is_due_shortly_after_this_update() -> None:
    now = utcnow()
    item = HeldRevocationData("ocsp", "CN=CA", now - dt.timedelta(minutes=20), None, now, now, "timeout")
    result = revocation_health([item], now, near_seconds=0)
    assert result.unrefreshed == 1
    assert result.overdue_seconds == pytest.approx(15 * 60)  # freshness.NO_NEXT_UPDATE_REUSE: 5 minutes
