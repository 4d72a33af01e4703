"""The shared revocation index: its format, the indexer, and the authorizer deciding from it.

The indexer verifies each CRL with the authorizer's own code and writes one compact object per
CRL; containers search it in place. Every test drives real parts: a PKI made at test time, moto S3,
the loopback CRL server. The attacker's cases: a forged CRL never reaches an index, an older CRL
never replaces a newer index, a corrupt or stale index is never believed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import random
from collections.abc import Callable

import boto3
import pytest
from cryptography import x509

from authorizer import crl, crl_index
from authorizer.certs import cert_from_der
from authorizer.crl import serial_key
from authorizer.crl_index import source_name
from authorizer.indexer import Indexer
from authorizer.s3 import S3Reader
from authorizer.settings import Settings
from authorizer.truststore import parse_truststore
from conftest import World
from pki import Credential, pem_bundle, utcnow
from servers import MotoS3

_buckets = itertools.count(1)
HOUR = dt.timedelta(hours=1)


def fresh_crl(
    world: World, issuer: Credential, revoked: list[Credential | int], number: int, **kw: object
) -> bytes:
    now = utcnow()
    return world.pki.crl(
        issuer,
        revoked,
        this_update=kw.pop("this_update", now - dt.timedelta(minutes=1)),  # type: ignore[arg-type]
        next_update=kw.pop("next_update", now + 24 * HOUR),  # type: ignore[arg-type]
        crl_number=number,
        **kw,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------- the format
def test_index_round_trip_and_lookups() -> None:
    serials = {serial_key(random.getrandbits(random.choice((8, 64, 159)))) for _ in range(5_000)}
    serials |= {serial_key(-128), serial_key(0), serial_key(2**159 - 1)}
    holds = frozenset(list(serials)[:3])
    name = x509.Name.from_rfc4514_string("CN=Index Test CA,O=Revocation Test PKI")
    source = crl.CrlIndex(
        issuer=name,
        this_update=utcnow(),
        next_update=utcnow() + HOUR,
        idp_urls=frozenset({"http://crl.example.test/p1.crl"}),
        only_user_certs=True,
        only_ca_certs=False,
        revoked=serials,
        entries=len(serials),
        crl_number=42,
        holds=holds,
    )
    blob = crl_index.encode(
        source,
        source="s3://b/k",
        issuer_fingerprint="ab" * 32,
        issuer_name_der=name.public_bytes(),
        crl_sha256="00",
    )
    header, index = crl_index.decode(blob, name)
    assert (header.crl_number, header.entries, header.source) == (42, len(serials), "s3://b/k")
    assert (index.idp_urls, index.only_user_certs, index.holds) == (source.idp_urls, True, holds)
    assert all(s in index.revoked for s in serials)
    assert set(index.revoked) == serials
    misses = {serial_key(random.getrandbits(64)) for _ in range(2_000)} - serials
    assert not any(s in index.revoked for s in misses)
    assert b"\x00" * 40 not in index.revoked  # longer than any entry


@pytest.mark.parametrize("damage", ["flip-table-byte", "truncate", "bad-magic", "header-garbage"])
def test_corrupt_index_is_refused(damage: str) -> None:
    name = x509.Name.from_rfc4514_string("CN=Index Test CA")
    source = crl.CrlIndex(name, utcnow(), None, None, False, False, {b"\x01", b"\x02"}, 2)
    blob = bytearray(
        crl_index.encode(
            source, source="x", issuer_fingerprint="f", issuer_name_der=name.public_bytes(), crl_sha256=""
        )
    )
    if damage == "flip-table-byte":
        blob[-1] ^= 0x01
    elif damage == "truncate":
        del blob[-1]
    elif damage == "bad-magic":
        blob[0] ^= 0x01
    else:
        blob[14] = ord("{")
    with pytest.raises(crl_index.CorruptIndex):
        crl_index.decode(bytes(blob), name)


def test_index_for_another_issuer_name_is_refused() -> None:
    name = x509.Name.from_rfc4514_string("CN=Index Test CA")
    other = x509.Name.from_rfc4514_string("CN=Other CA")
    source = crl.CrlIndex(name, utcnow(), None, None, False, False, {b"\x01"}, 1)
    blob = crl_index.encode(
        source, source="x", issuer_fingerprint="f", issuer_name_der=name.public_bytes(), crl_sha256=""
    )
    with pytest.raises(crl_index.CorruptIndex):
        crl_index.decode(blob, other)


# ------------------------------------------------------------------------------- the indexer
class IndexWorld:
    def __init__(self, world: World, s3: MotoS3) -> None:
        self.world, self.s3 = world, s3
        self.crls = f"pca-crls-idx-{next(_buckets)}"
        self.index = f"revocation-index-{next(_buckets)}"
        for bucket in (self.crls, self.index):
            s3.client.create_bucket(Bucket=bucket)
        self.truststore = parse_truststore(pem_bundle(world.trusted))
        self.client: Callable[[], object] = lambda: boto3.client("s3")

    def settings(self, **sources: object) -> Settings:
        env = {
            "REVOCATION_INDEX_S3_URI": f"s3://{self.index}/index/",
            "REVOCATION_CRL_S3_URI": f"s3://{self.crls}/crl/",
            "FETCH_BLOCKED_NETWORKS": "",
            "CLOCK_SKEW_SECONDS": "0",
        }
        env.update({k: str(v) for k, v in sources.items()})
        return Settings.from_env(env)

    def indexer(self, **sources: object) -> Indexer:
        return Indexer(self.settings(**sources), self.truststore, S3Reader(self.client, 64 * 1024 * 1024))

    def index_object(self, source: str) -> bytes:
        key = crl_index.object_key("index/", source)
        return bytes(self.s3.client.get_object(Bucket=self.index, Key=key)["Body"].read())


@pytest.fixture
def idx(world: World, s3: MotoS3) -> IndexWorld:
    return IndexWorld(world, s3)


def test_indexer_indexes_the_s3_crl_set_once(idx: IndexWorld) -> None:
    world = idx.world
    leaf = world.leaf("indexed", issuer=world.private_ica)
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/ca.crl", Body=fresh_crl(world, world.private_ica, [leaf], 3)
    )
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/acm-pca-permission-test-key", Body=b"test")
    report = idx.indexer().run()
    statuses = {o.source: o.status for o in report.outcomes}
    source = f"s3://{idx.crls}/crl/ca.crl"
    assert statuses[source] == "indexed"
    assert statuses[f"s3://{idx.crls}/crl/acm-pca-permission-test-key"] == "skipped"
    header, index = crl_index.decode(idx.index_object(source), world.private_ica.cert.subject)
    issuer = cert_from_der(world.private_ica.der)
    assert header.issuer_fingerprint == issuer.fingerprint and header.crl_number == 3
    assert serial_key(leaf.serial) in index.revoked
    assert {o.source: o.status for o in idx.indexer().run().outcomes}[source] == "unchanged"


def test_forged_crl_never_reaches_an_index(idx: IndexWorld) -> None:
    world = idx.world
    impostor = world.pki.root("impostor", subject=world.private_ica.cert.subject)
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/forged.crl", Body=fresh_crl(world, impostor, [], 9))
    (outcome,) = [o for o in idx.indexer().run().outcomes if o.source.endswith("forged.crl")]
    assert outcome.status == "failed" and "signature" in outcome.detail
    with pytest.raises(Exception, match="NoSuchKey"):
        idx.index_object(outcome.source)


def test_foreign_and_stale_crls_are_not_indexed(idx: IndexWorld) -> None:
    world = idx.world
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/foreign.crl", Body=fresh_crl(world, world.unknown_root, [], 1)
    )
    stale = fresh_crl(
        world, world.private_ica, [], 1, this_update=utcnow() - 48 * HOUR, next_update=utcnow() - 24 * HOUR
    )
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/stale.crl", Body=stale)
    outcomes = {
        o.source.rsplit("/", 1)[1]: o for o in idx.indexer().run().outcomes if o.source.startswith("s3://")
    }
    assert outcomes["foreign.crl"].status == "failed"
    assert outcomes["stale.crl"].status == "failed" and "nextUpdate" in outcomes["stale.crl"].detail


def test_older_crl_never_replaces_a_newer_index(idx: IndexWorld) -> None:
    """RFC 5280 §5.2.3: a restored or replayed older CRL in the bucket does not roll the index back."""
    world = idx.world
    leaf = world.leaf("index-rollback", issuer=world.private_ica)
    source = f"s3://{idx.crls}/crl/ca.crl"
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/ca.crl", Body=fresh_crl(world, world.private_ica, [leaf], 8)
    )
    idx.indexer().run()
    older = fresh_crl(world, world.private_ica, [], 7, this_update=utcnow() - 2 * HOUR)
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/ca.crl", Body=older)
    (outcome,) = [o for o in idx.indexer().run().outcomes if o.source == source]
    assert outcome.status == "failed" and "older" in outcome.detail
    header, index = crl_index.decode(idx.index_object(source), world.private_ica.cert.subject)
    assert header.crl_number == 8 and serial_key(leaf.serial) in index.revoked


def test_truststore_cdps_configured_urls_and_requests_are_indexed(idx: IndexWorld) -> None:
    """The root's CRL (the CDP of the truststore's intermediates), a configured URL, and a URL a
    container asked for through the write-only requests/ prefix."""
    world = idx.world
    configured_path, configured_url = world.crl_url()
    world.http.set(configured_path, fresh_crl(world, world.ica, [], 1))
    asked_path, asked_url = world.crl_url()
    world.http.set(asked_path, fresh_crl(world, world.ica, [], 2))
    name = hashlib.sha256(asked_url.encode()).hexdigest()
    body = json.dumps({"source": asked_url, "issuerFingerprint": "x"}).encode()
    idx.s3.client.put_object(Bucket=idx.index, Key=f"index/requests/{name}.json", Body=body)

    report = idx.indexer(REVOCATION_INDEX_URLS=configured_url).run()
    statuses = {o.source: o.status for o in report.outcomes}
    assert statuses[world.http.url("/crl/root.crl")] == "indexed"
    assert statuses[configured_url] == "indexed"
    assert statuses[asked_url] == "indexed"
    listing = idx.s3.client.list_objects_v2(Bucket=idx.index, Prefix="index/requests/")
    assert listing.get("KeyCount", 0) == 0  # requests are consumed...
    sources = json.loads(idx.s3.client.get_object(Bucket=idx.index, Key="index/sources.json")["Body"].read())
    assert asked_url in sources  # ...and remembered for the scheduled runs


def test_partitioned_crls_are_indexed_with_their_scope(idx: IndexWorld) -> None:
    world = idx.world
    url = f"http://{idx.crls}.s3.us-east-1.amazonaws.com/crl/part-1.crl"
    body = fresh_crl(world, world.private_ica, [], 1, idp=world.pki.idp(url))
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/part-1.crl", Body=body)
    idx.indexer().run()
    _, index = crl_index.decode(idx.index_object(source_name(url)), world.private_ica.cert.subject)
    assert index.idp_urls == frozenset({url})
    assert source_name(url) == f"s3://{idx.crls}/crl/part-1.crl"


# ------------------------------------------------------------------------------- the authorizer reads it
from conftest import Authorizer, Configure  # noqa: E402
from test_cache_rules import Clock, clock  # noqa: E402, F401  (fixture)


@pytest.fixture
def s3_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every object the authorizer reads from S3 (s3://bucket/key), in order."""
    from authorizer import s3 as s3_module

    seen: list[str] = []
    real = s3_module.S3Reader.get

    def get(self: s3_module.S3Reader, bucket: str, key: str, etag: str = "") -> s3_module.S3Object:
        seen.append(f"s3://{bucket}/{key}")
        return real(self, bucket, key, etag)

    monkeypatch.setattr(s3_module.S3Reader, "get", get)
    return seen


@pytest.fixture
def indexed_authorizer(idx: IndexWorld, configure: Configure, clock: Clock) -> Callable[..., Authorizer]:
    def make(**settings: str) -> Authorizer:
        authz = configure(
            CLOCK_SKEW_SECONDS="0",
            REVOCATION_S3_REFRESH_SECONDS="60",
            REVOCATION_INDEX_S3_URI=f"s3://{idx.index}/index/",
            **settings,
        )
        authz.app.reset(clock=clock)
        return authz

    return make


def test_new_container_decides_from_the_index_without_reading_the_crl(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], s3_reads: list[str]
) -> None:
    world = idx.world
    leaf = world.leaf("from-index", issuer=world.private_ica)
    other = world.leaf("from-index-good", issuer=world.private_ica)
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/big.crl", Body=fresh_crl(world, world.private_ica, [leaf], 4)
    )
    idx.indexer().run()
    s3_reads.clear()  # what the indexer read
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    authz.check("rest", other).expect(True, "good", other, "crl")
    assert f"s3://{idx.crls}/crl/big.crl" not in s3_reads  # the index answered, not the CRL


def test_cdp_crl_is_read_from_the_index(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer]
) -> None:
    world = idx.world
    path, url = world.crl_url()
    leaf = world.leaf("cdp-index", crl_urls=[url])
    world.http.set(path, fresh_crl(world, world.ica, [leaf], 3))
    idx.indexer(REVOCATION_INDEX_URLS=url).run()
    world.http.reset_counts()
    authz = indexed_authorizer()
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 0


def test_missing_index_falls_back_to_the_crl_and_asks_the_indexer(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer]
) -> None:
    world = idx.world
    path, url = world.crl_url()
    leaf = world.leaf("no-index-yet", crl_urls=[url])
    world.http.set(path, fresh_crl(world, world.ica, [leaf], 1))
    authz = indexed_authorizer()
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 1
    name = hashlib.sha256(url.encode()).hexdigest()
    request = idx.s3.client.get_object(Bucket=idx.index, Key=f"index/requests/{name}.json")
    assert json.loads(request["Body"].read())["source"] == url
    # The next indexer run picks it up; a new container then reads the index, not the CRL.
    statuses = {o.source: o.status for o in idx.indexer().run().outcomes}
    assert statuses[url] == "indexed"
    world.http.reset_counts()
    indexed_authorizer().check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 0


def test_corrupt_index_falls_back_to_the_crl(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer]
) -> None:
    world = idx.world
    path, url = world.crl_url()
    leaf = world.leaf("corrupt-index", crl_urls=[url])
    world.http.set(path, fresh_crl(world, world.ica, [], 2))
    idx.indexer(REVOCATION_INDEX_URLS=url).run()
    key = crl_index.object_key("index/", url)
    blob = bytearray(idx.index_object(url))
    blob[-1] ^= 0x01  # would drop (or invent) a serial
    idx.s3.client.put_object(Bucket=idx.index, Key=key, Body=bytes(blob))
    world.http.set(path, fresh_crl(world, world.ica, [leaf], 3))
    world.http.reset_counts()
    indexed_authorizer().check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 1


def test_stale_index_falls_back_to_the_crl(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], clock: Clock
) -> None:
    """The indexer stopped: its index is past nextUpdate; the CA's newer CRL lists the leaf."""
    world = idx.world
    path, url = world.crl_url()
    leaf = world.leaf("stale-index", crl_urls=[url])
    world.http.set(path, fresh_crl(world, world.ica, [], 1, next_update=utcnow() + HOUR))
    idx.indexer(REVOCATION_INDEX_URLS=url).run()
    clock.advance(2 * 3600)
    world.http.set(
        path, fresh_crl(world, world.ica, [leaf], 2, this_update=clock.now, next_update=clock.now + HOUR)
    )
    world.http.reset_counts()
    indexed_authorizer().check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.requests(path) == 1


def test_index_older_than_the_held_crl_is_not_used(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], clock: Clock
) -> None:
    """The container fetched CRL #5 itself; an index of #4 (the indexer lagging) never replaces it."""
    world = idx.world
    path, url = world.crl_url()
    leaf = world.leaf("older-index", crl_urls=[url])
    sibling = world.leaf("older-index-sibling", crl_urls=[url])
    older = fresh_crl(world, world.ica, [], 4)
    world.http.set(path, older)
    idx.indexer(REVOCATION_INDEX_URLS=url).run()  # index of #4
    world.http.set(path, fresh_crl(world, world.ica, [leaf, sibling], 5))
    idx.s3.client.delete_object(Bucket=idx.index, Key=crl_index.object_key("index/", url))
    authz = indexed_authorizer(REVOCATION_CACHE_MAX_AGE_SECONDS="600")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")  # no index: #5 fetched
    world.http.set(path, older)
    idx.indexer(REVOCATION_INDEX_URLS=url).run()  # the index is #4 again
    clock.advance(601)
    authz.check("rest", sibling).expect(False, "revoked", sibling, "crl")


def test_revocation_written_to_s3_reaches_warm_containers_within_one_interval_plus_one_run(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], clock: Clock
) -> None:
    world = idx.world
    leaf = world.leaf("index-latency", issuer=world.private_ica)
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/ca.crl", Body=fresh_crl(world, world.private_ica, [], 1)
    )
    idx.indexer().run()
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    idx.s3.client.put_object(
        Bucket=idx.crls, Key="crl/ca.crl", Body=fresh_crl(world, world.private_ica, [leaf], 2)
    )
    idx.indexer().run()  # the S3 event's run
    clock.advance(61)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


def test_partitioned_crls_are_decided_from_their_indexes(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], s3_reads: list[str]
) -> None:
    world = idx.world
    keys = [f"crl/part-{i}.crl" for i in range(3)]
    urls = [f"http://{idx.crls}.s3.us-east-1.amazonaws.com/{k}" for k in keys]
    leaves = [world.leaf(f"part-{i}", issuer=world.private_ica, crl_urls=[urls[i]]) for i in range(3)]
    for i, (key, url) in enumerate(zip(keys, urls, strict=True)):
        revoked = [leaves[i]] if i == 1 else []
        idx.s3.client.put_object(
            Bucket=idx.crls,
            Key=key,
            Body=fresh_crl(world, world.private_ica, revoked, 1, idp=world.pki.idp(url)),
        )
    idx.indexer().run()
    s3_reads.clear()  # what the indexer read
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    for i, leaf in enumerate(leaves):
        if i == 1:
            authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
        else:
            authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    assert not any(read.startswith(f"s3://{idx.crls}/crl/") for read in s3_reads)


# ------------------------------------------------------------------------------- the CLI, events
def test_cli_index_runs_the_indexer_once(
    idx: IndexWorld, tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    from authorizer import cli

    monkeypatch.setenv("FETCH_BLOCKED_NETWORKS", "")  # the CRLs are on loopback

    world = idx.world
    path, url = world.crl_url()
    world.http.set(path, fresh_crl(world, world.ica, [], 1))
    impostor = world.pki.root("impostor", subject=world.ica.cert.subject)
    forged_path, forged_url = world.crl_url()
    world.http.set(forged_path, fresh_crl(world, impostor, [], 1))
    truststore = Path(str(tmp_path)) / "truststore.pem"
    truststore.write_bytes(pem_bundle(world.trusted))
    index = f"s3://{idx.index}/index/"
    assert cli.main(["index", "--truststore", str(truststore), "--index", index, "--source", url]) == 0
    assert "indexed" in capsys.readouterr().out
    crl_index.decode(idx.index_object(url), world.ica.cert.subject)
    code = cli.main(
        ["index", "--truststore", str(truststore), "--index", index, "--source", forged_url, "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["failed"] == 1 and report["sources"][0]["status"] == "failed"


def test_indexer_reads_the_objects_an_event_names() -> None:
    from authorizer.indexer import _objects_named

    s3_event = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "crl/a+b.crl"}}}]}
    bridge = {
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "crl/x.crl"}},
    }
    assert _objects_named(s3_event) == ["s3://b/crl/a b.crl"]
    assert _objects_named(bridge) == ["s3://b/crl/x.crl"]
    assert _objects_named({"source": "aws.scheduler"}) == []


def test_requested_sources_that_cannot_be_indexed_are_forgotten(idx: IndexWorld) -> None:
    """Not a CRL, or a forged one: remembered, it would fail every run and keep the alarm on."""
    world = idx.world
    junk_path, junk_url = world.crl_url()
    world.http.set(junk_path, b"<html>not a CRL</html>")
    good_path, good_url = world.crl_url()
    world.http.set(good_path, fresh_crl(world, world.ica, [], 1))
    for url in (junk_url, good_url):
        name = hashlib.sha256(url.encode()).hexdigest()
        body = json.dumps({"source": url, "issuerFingerprint": "x"}).encode()
        idx.s3.client.put_object(Bucket=idx.index, Key=f"index/requests/{name}.json", Body=body)
    statuses = {o.source: o.status for o in idx.indexer().run().outcomes}
    assert (statuses[junk_url], statuses[good_url]) == ("skipped", "indexed")
    sources = json.loads(idx.s3.client.get_object(Bucket=idx.index, Key="index/sources.json")["Body"].read())
    assert good_url in sources and junk_url not in sources


def test_unreadable_sources_json_never_loses_requests(idx: IndexWorld) -> None:
    idx.s3.client.put_object(Bucket=idx.index, Key="index/sources.json", Body=b"{not json")
    name = hashlib.sha256(b"http://crl.example.test/x.crl").hexdigest()
    body = json.dumps({"source": "http://crl.example.test/x.crl", "issuerFingerprint": "x"}).encode()
    idx.s3.client.put_object(Bucket=idx.index, Key=f"index/requests/{name}.json", Body=body)
    idx.indexer().run()
    listing = idx.s3.client.list_objects_v2(Bucket=idx.index, Prefix="index/requests/")
    assert listing.get("KeyCount", 0) == 1  # left for a run that can merge it


# ------------------------------------------------------------------------------- a CRL set's manifest
@pytest.fixture
def header_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each index header a container reads on its own while listing a CRL set (one range GET each)."""
    from authorizer.sources.index import IndexStore

    seen: list[str] = []
    real = IndexStore.indexed_header

    def counted(self: IndexStore, source: str, etag: str) -> bytes | None:
        seen.append(source)
        return real(self, source, etag)

    monkeypatch.setattr(IndexStore, "indexed_header", counted)
    return seen


def partitioned_set(idx: IndexWorld, count: int, revoked_in: int) -> tuple[list[str], list[Credential]]:
    """`count` Private CA-style partitions in the CRL set, one certificate in each; the one in
    partition `revoked_in` is revoked."""
    world = idx.world
    keys = [f"crl/manifest-part-{i}.crl" for i in range(count)]
    urls = [f"http://{idx.crls}.s3.us-east-1.amazonaws.com/{k}" for k in keys]
    leaves = [world.leaf(f"m-part-{i}", issuer=world.private_ica, crl_urls=[urls[i]]) for i in range(count)]
    for i, key in enumerate(keys):
        body = fresh_crl(
            world, world.private_ica, [leaves[i]] if i == revoked_in else [], 1, idp=world.pki.idp(urls[i])
        )
        idx.s3.client.put_object(Bucket=idx.crls, Key=key, Body=body)
    return keys, leaves


def manifest(idx: IndexWorld) -> dict[str, tuple[str, bytes]]:
    location = f"s3://{idx.crls}/crl/"
    body = idx.s3.client.get_object(Bucket=idx.index, Key=crl_index.set_key("index/", location))[
        "Body"
    ].read()
    return crl_index.decode_set(body, location)


def test_a_crl_set_is_listed_from_the_indexers_manifest_in_one_read(
    idx: IndexWorld,
    indexed_authorizer: Callable[..., Authorizer],
    s3_reads: list[str],
    header_reads: list[str],
) -> None:
    """One manifest per CRL set, instead of one index-header read per partition."""
    keys, leaves = partitioned_set(idx, 6, revoked_in=4)
    idx.indexer().run()
    assert set(manifest(idx)) == {f"s3://{idx.crls}/{k}" for k in keys}
    s3_reads.clear()
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    for i, leaf in enumerate(leaves):
        if i == 4:
            authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
        else:
            authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    assert header_reads == []
    assert not any(read.startswith(f"s3://{idx.crls}/crl/") for read in s3_reads)  # no CRL either


def test_a_partition_rewritten_since_the_manifest_is_read_itself(
    idx: IndexWorld, indexed_authorizer: Callable[..., Authorizer], s3_reads: list[str]
) -> None:
    """A lagging manifest (the indexer has not run since Private CA rewrote a partition) is never
    believed for that partition: its entry names the old ETag, so the new CRL itself is read and the
    revocation it adds is in force."""
    world = idx.world
    keys, leaves = partitioned_set(idx, 3, revoked_in=0)
    idx.indexer().run()
    url = f"http://{idx.crls}.s3.us-east-1.amazonaws.com/{keys[2]}"
    newer = fresh_crl(world, world.private_ica, [leaves[2]], 2, idp=world.pki.idp(url))
    idx.s3.client.put_object(Bucket=idx.crls, Key=keys[2], Body=newer)
    s3_reads.clear()
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    authz.check("rest", leaves[2]).expect(False, "revoked", leaves[2], "crl")
    authz.check("rest", leaves[1]).expect(True, "good", leaves[1], "crl")
    assert s3_reads.count(f"s3://{idx.crls}/{keys[2]}") == 1
    assert f"s3://{idx.crls}/{keys[1]}" not in s3_reads


def test_an_object_created_event_updates_the_manifest(
    idx: IndexWorld,
    indexed_authorizer: Callable[..., Authorizer],
    header_reads: list[str],
) -> None:
    world = idx.world
    keys, leaves = partitioned_set(idx, 3, revoked_in=0)
    idx.indexer().run()
    before = manifest(idx)
    url = f"http://{idx.crls}.s3.us-east-1.amazonaws.com/{keys[1]}"
    newer = fresh_crl(world, world.private_ica, [leaves[1]], 2, idp=world.pki.idp(url))
    idx.s3.client.put_object(Bucket=idx.crls, Key=keys[1], Body=newer)
    report = idx.indexer().run([f"s3://{idx.crls}/{keys[1]}"])
    assert [o.status for o in report.outcomes] == ["indexed"]
    after = manifest(idx)
    changed = f"s3://{idx.crls}/{keys[1]}"
    assert after[changed] != before[changed]
    assert {k: v for k, v in after.items() if k != changed} == {
        k: v for k, v in before.items() if k != changed
    }
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=f"s3://{idx.crls}/crl/")
    authz.check("rest", leaves[1]).expect(False, "revoked", leaves[1], "crl")
    assert header_reads == []


@pytest.mark.parametrize("damage", ["garbage", "another set's manifest"])
def test_a_damaged_manifest_is_not_used(
    idx: IndexWorld,
    indexed_authorizer: Callable[..., Authorizer],
    header_reads: list[str],
    damage: str,
) -> None:
    """A manifest that does not parse, or that is another CRL set's copied over, is ignored: the
    container reads each index header itself, and decides as it would have."""
    keys, leaves = partitioned_set(idx, 3, revoked_in=2)
    idx.indexer().run()
    location = f"s3://{idx.crls}/crl/"
    if damage == "garbage":
        body = b"{not json"
    else:
        entries = manifest(idx)
        body = crl_index.encode_set(f"s3://{idx.crls}/other/", entries)
    idx.s3.client.put_object(Bucket=idx.index, Key=crl_index.set_key("index/", location), Body=body)
    authz = indexed_authorizer(REVOCATION_CRL_S3_URI=location)
    authz.check("rest", leaves[2]).expect(False, "revoked", leaves[2], "crl")
    authz.check("rest", leaves[0]).expect(True, "good", leaves[0], "crl")
    assert sorted(header_reads) == sorted(f"s3://{idx.crls}/{k}" for k in keys)


# ------------------------------------------------------------------- a separate CRL-signing certificate
@pytest.mark.parametrize("signer_status", ["good", "revoked"])
@pytest.mark.parametrize("found", ["crl set", "cdp"])
def test_crl_signed_by_a_separate_crl_signing_certificate_is_indexed_rfc5280_6_3_3_f(
    idx: IndexWorld,
    configure: Configure,
    clock: Clock,
    s3_reads: list[str],
    signer_status: str,
    found: str,
) -> None:
    """The indexer verifies a CRL signed by the CA's separate CRL-signing certificate (in the
    truststore: same name, cRLSign, a path to the CA's anchor) and the index names that signer, so a
    container still checks the signer's own revocation (PKITS 4.4.19-21) before using the index."""
    from pki import key_usage

    world = idx.world
    signer_path, signer_url = world.crl_url()
    signer = world.pki.issue(
        world.private_ica.cert.subject,
        issuer=world.private_root,
        ca=False,
        key_type="ec",
        usage=key_usage(crl_sign=True),
        crl_urls=[signer_url],
    )
    listed = [signer] if signer_status == "revoked" else []
    world.http.set(signer_path, fresh_crl(world, world.private_root, listed, 1))
    crl_path, crl_url = world.crl_url()
    points = [crl_url] if found == "cdp" else []
    revoked = world.leaf(f"signed-apart-revoked-{found}", issuer=world.private_ica, crl_urls=points)
    good = world.leaf(f"signed-apart-good-{found}", issuer=world.private_ica, crl_urls=points)
    body = world.pki.crl(signer, [revoked], issuer_name=world.private_ica.cert.subject, crl_number=3)
    if found == "cdp":
        world.http.set(crl_path, body)
        source = crl_url
    else:
        idx.s3.client.put_object(Bucket=idx.crls, Key="crl/signed-apart.crl", Body=body)
        source = f"s3://{idx.crls}/crl/signed-apart.crl"
    trusted = [*world.trusted, signer]
    idx.truststore = parse_truststore(pem_bundle(trusted))
    outcomes = {o.source: o for o in idx.indexer(REVOCATION_INDEX_URLS=crl_url).run().outcomes}
    assert outcomes[source].status == "indexed", outcomes[source]
    header, _ = crl_index.read_header(idx.index_object(source))
    assert header.signer == hashlib.sha256(signer.der).hexdigest()
    assert header.issuer_fingerprint == hashlib.sha256(world.private_ica.der).hexdigest()

    s3_reads.clear()
    world.http.reset_counts()
    sources = {"REVOCATION_CRL_S3_URI": f"s3://{idx.crls}/crl/"} if found == "crl set" else {}
    authz = configure(
        truststore=trusted,
        CLOCK_SKEW_SECONDS="0",
        REVOCATION_INDEX_S3_URI=f"s3://{idx.index}/index/",
        **sources,
    )
    authz.app.reset(clock=clock)
    if signer_status == "good":
        authz.check("rest", revoked).expect(False, "revoked", revoked, "crl")
        authz.check("rest", good).expect(True, "good", good, "crl")
    else:  # the signer is revoked: its CRL, and so its index, vouches for nothing
        authz.check("rest", good).expect(False, "revocation_unavailable", good, "crl")
    # Decided from the index (with the signer's check), never from the CRL itself.
    assert source not in s3_reads
    # The signer's own CRL (its CDP, a truststore certificate's) was indexed too, and read from there.
    assert outcomes[signer_url].status == "indexed"
    assert world.http.requests(crl_path) == world.http.requests(signer_path) == 0


def test_crl_signed_by_a_key_outside_the_truststore_is_never_indexed(idx: IndexWorld) -> None:
    from pki import key_usage

    world = idx.world
    stranger = world.pki.issue(
        world.private_ica.cert.subject,
        issuer=world.private_root,
        ca=False,
        key_type="ec",
        usage=key_usage(crl_sign=True),
    )
    body = world.pki.crl(stranger, [], issuer_name=world.private_ica.cert.subject)
    idx.s3.client.put_object(Bucket=idx.crls, Key="crl/stranger.crl", Body=body)
    source = f"s3://{idx.crls}/crl/stranger.crl"
    outcomes = {o.source: o for o in idx.indexer().run().outcomes}
    assert outcomes[source].status == "failed"
    assert "signature" in outcomes[source].detail
