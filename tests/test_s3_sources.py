"""Revocation from where the CA publishes it: CRLs read from S3 (AWS Private CA's bucket layout,
complete and partitioned, certificates without a CDP), CDP URLs into a private bucket read through
the S3 API, and the operator's denylist. Through the handler, with moto S3 on loopback and the fake
clock; nothing is fetched from anywhere but loopback.
"""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509

from authorizer.certs import load_client_cert
from authorizer.denylist import entry_for
from authorizer.denylist_store import DenylistStore
from authorizer.s3 import object_of_url
from conftest import Authorizer, Configure, World
from pki import Credential
from servers import MotoS3
from test_cache_rules import Clock, clock  # noqa: F401  (fixture)

HOUR = dt.timedelta(hours=1)
REFRESH = 60
_buckets = itertools.count(1)


@pytest.fixture
def bucket(s3: MotoS3) -> str:
    """A fresh private CRL bucket (Block Public Access is what AWS recommends; moto has no anonymous path)."""
    name = f"pca-crls-{next(_buckets)}"
    s3.client.create_bucket(Bucket=name)
    s3.client.put_object(Bucket=name, Key="acm-pca-permission-test-key", Body=b"permission test")
    return name


def put(s3: MotoS3, bucket: str, key: str, body: bytes) -> None:
    s3.client.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
def s3_authorizer(
    configure: Configure, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Authorizer]:
    """The authorizer on the fake clock with the given S3 source settings."""

    def make(**settings: str) -> Authorizer:
        authz = configure(CLOCK_SKEW_SECONDS="0", REVOCATION_S3_REFRESH_SECONDS=str(REFRESH), **settings)
        authz.app.reset(clock=clock)
        return authz

    return make


def crl(
    world: World, issuer: Credential, clock: Clock, revoked: list[Credential], number: int, **kw: Any
) -> bytes:
    return world.pki.crl(
        issuer,
        revoked,
        this_update=clock.now - dt.timedelta(minutes=1),
        next_update=clock.now + 24 * HOUR,
        crl_number=number,
        **kw,
    )


# --------------------------------------------------------------------- AWS Private CA, complete CRL
def test_private_ca_complete_crl_applies_to_certificates_without_a_cdp(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    ca_id = uuid.uuid4()
    leaf = world.leaf("pca-client", issuer=world.private_ica)  # OmitExtension: no CDP, no AIA
    other = world.leaf("pca-other", issuer=world.private_ica)
    put(s3, bucket, f"crl/{ca_id}.crl", crl(world, world.private_ica, clock, [], 1))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")  # checked, not no_revocation_info

    # The CA revokes; Private CA rewrites the object. In force within the refresh interval.
    put(s3, bucket, f"crl/{ca_id}.crl", crl(world, world.private_ica, clock, [leaf], 2))
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")  # the interval has not passed
    clock.advance(REFRESH + 1)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    authz.check("v2", other).expect(True, "good", other, "crl")


def test_whole_bucket_prefix_skips_objects_that_are_not_crls(
    world: World,
    s3: MotoS3,
    bucket: str,
    clock: Clock,
    s3_authorizer: Callable[..., Authorizer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaf = world.leaf("pca-prefix", issuer=world.private_ica)
    put(s3, bucket, "crl/ca.crl", crl(world, world.private_ica, clock, [leaf], 1))
    put(s3, bucket, "README.txt", b"not a CRL")
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    problems = [str(getattr(r, "problem", "")) for r in caplog.records]
    assert any("acm-pca-permission-test-key: not a CRL" in p for p in problems), problems
    assert any("README.txt: not a CRL" in p for p in problems), problems


def test_pem_crl_under_any_name_is_read(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = world.leaf("pem-crl", issuer=world.private_ica)
    der = crl(world, world.private_ica, clock, [leaf], 1)
    pem = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
    put(s3, bucket, "handed-over/latest", pem)
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/handed-over/")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")


def test_crl_by_the_root_for_an_intermediate(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """The root's CRL in the bucket revokes the issuing CA: every leaf under it is denied (chain)."""
    leaf = world.leaf("under-private-ica", issuer=world.private_ica)
    put(s3, bucket, "crl/root.crl", crl(world, world.private_root, clock, [world.private_ica], 1))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    decision = authz.check("rest", leaf)
    decision.expect(False, "revoked", leaf, "crl")


def test_forged_crl_in_the_bucket_is_ignored(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """A CRL with the CA's name but another key's signature never counts, beside the genuine one."""
    leaf = world.leaf("forged-neighbour", issuer=world.private_ica)
    impostor = world.pki.root("impostor", subject=world.private_ica.cert.subject)
    put(s3, bucket, "crl/genuine.crl", crl(world, world.private_ica, clock, [], 5))
    put(s3, bucket, "crl/forged.crl", crl(world, impostor, clock, [], 9))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")


def test_forged_crl_alone_is_never_good(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    leaf = world.leaf("forged-alone", issuer=world.private_ica)
    impostor = world.pki.root("impostor", subject=world.private_ica.cert.subject)
    put(s3, bucket, "crl/forged.crl", crl(world, impostor, clock, [], 9))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")


def test_older_crl_rewritten_into_the_bucket_is_refused(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """RFC 5280 §5.2.3 for S3 too: an older copy put back (a restore, a replay) does not unrevoke."""
    leaf = world.leaf("s3-rollback", issuer=world.private_ica)
    sibling = world.leaf("s3-rollback-sibling", issuer=world.private_ica)
    older = crl(world, world.private_ica, clock, [], 1)
    put(s3, bucket, "crl/ca.crl", crl(world, world.private_ica, clock, [leaf, sibling], 2))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    put(s3, bucket, "crl/ca.crl", older)
    clock.advance(REFRESH + 1)
    authz.check("rest", sibling).expect(False, "revoked", sibling, "crl")


# --------------------------------------------------------------------- partitioned CRLs
def test_private_ca_partitioned_crls_match_through_their_idp(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """Each partition's critical IDP names its own URL; a certificate's CDP names its partition. The
    CDP URLs are S3 URLs of the private bucket, so nothing is fetched over HTTP."""
    parts = [f"crl/{uuid.uuid4()}/{uuid.uuid4()}.crl" for _ in range(2)]
    urls = [f"http://{bucket}.s3.us-east-1.amazonaws.com/{p}" for p in parts]
    in_first = world.leaf("partition-a", issuer=world.private_ica, crl_urls=[urls[0]])
    in_second = world.leaf("partition-b", issuer=world.private_ica, crl_urls=[urls[1]])
    for part, url, revoked in ((parts[0], urls[0], [in_first]), (parts[1], urls[1], [])):
        put(s3, bucket, part, crl(world, world.private_ica, clock, revoked, 1, idp=world.pki.idp(url)))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", in_first).expect(False, "revoked", in_first, "crl")
    authz.check("rest", in_second).expect(True, "good", in_second, "crl")
    assert world.http.total_requests() == 0


def test_partition_for_another_cdp_does_not_cover_a_certificate(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """RFC 5280 §6.3.3 (b): a CRL set holding only another partition of the CA answers unavailable for
    a certificate no partition covers, never as if the set knew nothing of the CA."""
    other_url = f"http://{bucket}.s3.amazonaws.com/crl/other.crl"
    leaf = world.leaf("no-partition", issuer=world.private_ica)  # no CDP at all
    idp = world.pki.idp(other_url)
    put(s3, bucket, "crl/other.crl", crl(world, world.private_ica, clock, [], 1, idp=idp))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")


# --------------------------------------------------------------------- CDP URLs into a private bucket
@pytest.mark.parametrize(
    "form",
    [
        "http://{b}.s3.us-east-1.amazonaws.com/{k}",
        "https://{b}.s3.amazonaws.com/{k}",
        "http://s3.us-east-1.amazonaws.com/{b}/{k}",
        "https://{b}.s3.dualstack.eu-west-1.amazonaws.com/{k}",
        "http://s3-eu-west-1.amazonaws.com/{b}/{k}",
    ],
)
def test_cdp_into_a_private_bucket_is_read_through_s3(
    world: World,
    s3: MotoS3,
    bucket: str,
    clock: Clock,
    s3_authorizer: Callable[..., Authorizer],
    form: str,
) -> None:
    """The certificate as issued names the bucket's URL (anonymous HTTP would get 403): with the
    bucket in CRL_S3_BUCKETS it is read with the function's role, and never over HTTP."""
    key = f"crl/{uuid.uuid4()}.crl"
    leaf = world.leaf("cdp-in-s3", issuer=world.private_ica, crl_urls=[form.format(b=bucket, k=key)])
    put(s3, bucket, key, crl(world, world.private_ica, clock, [leaf], 1))
    authz = s3_authorizer(CRL_S3_BUCKETS=f"other-bucket,{bucket}")
    authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
    assert world.http.total_requests() == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://b-1.s3.us-east-1.amazonaws.com/crl/a.crl", ("b-1", "crl/a.crl")),
        ("https://my.dotted.bucket.s3.amazonaws.com/x", ("my.dotted.bucket", "x")),
        ("http://s3.amazonaws.com/bkt/k/x.crl", ("bkt", "k/x.crl")),
        ("http://s3.dualstack.ap-southeast-2.amazonaws.com/bkt/k", ("bkt", "k")),
        ("http://bkt.s3-us-west-2.amazonaws.com/k", ("bkt", "k")),
        ("http://bkt.s3.cn-north-1.amazonaws.com.cn/k", ("bkt", "k")),
        ("http://crl.example.com/bkt/k", None),
        ("http://bkt.s3.amazonaws.com.evil.example/k", None),
        ("ldap://bkt.s3.amazonaws.com/k", None),
        ("http://bkt.s3.amazonaws.com/", None),
    ],
)
def test_s3_url_forms(url: str, expected: tuple[str, str] | None) -> None:
    assert object_of_url(url) == expected


@pytest.fixture
def s3_host_on_loopback(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make a bucket's virtual-hosted name resolve to loopback; any other name fails to resolve, so
    nothing here can reach a real network."""
    names: set[str] = set()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in names:
            return real("127.0.0.1", port, *args, **kwargs)
        if str(host).endswith(".amazonaws.com"):
            raise socket.gaierror(socket.EAI_NONAME, "not resolved in tests")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names.add


@pytest.mark.parametrize("configured", [False, True])
def test_private_bucket_cdp_refused_anonymously_is_read_through_s3(
    world: World,
    s3: MotoS3,
    bucket: str,
    clock: Clock,
    s3_authorizer: Callable[..., Authorizer],
    s3_host_on_loopback: Callable[[str], None],
    configured: bool,
) -> None:
    """The certificate as issued names http://<bucket>.s3.<region>.amazonaws.com/crl/<CA-ID>.crl;
    Block Public Access makes that 403 to an anonymous client (here: the loopback server under that
    name). Listed in CRL_S3_BUCKETS, the same URL is read with the function's role instead."""
    host = f"{bucket}.s3.us-east-1.amazonaws.com"
    s3_host_on_loopback(host)
    key = f"crl/{uuid.uuid4()}.crl"
    world.http.set(f"/{key}", b"<Error><Code>AccessDenied</Code></Error>", status=403)
    leaf = world.leaf("bpa", issuer=world.private_ica, crl_urls=[f"http://{host}:{world.http.port}/{key}"])
    put(s3, bucket, key, crl(world, world.private_ica, clock, [leaf], 1))
    if configured:
        authz = s3_authorizer(CRL_S3_BUCKETS=bucket)
        authz.check("rest", leaf).expect(False, "revoked", leaf, "crl")
        assert world.http.requests(f"/{key}") == 0
    else:
        authz = s3_authorizer()
        authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")
        assert world.http.requests(f"/{key}") == 1  # asked anonymously, and refused


# --------------------------------------------------------------------- S3 down after warm-up
@pytest.fixture
def own_s3(monkeypatch: pytest.MonkeyPatch, s3: MotoS3) -> Iterator[MotoS3]:
    """A second moto S3 the test may stop; the authorizer's client points at it."""
    server = MotoS3(bucket=f"own-truststore-{next(_buckets)}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
    yield server
    server.close()


def test_s3_down_after_warm_up_keeps_the_last_good_copy(
    world: World, own_s3: MotoS3, clock: Clock, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pki import pem_bundle

    crls = f"crls-{next(_buckets)}"
    own_s3.client.create_bucket(Bucket=crls)
    leaf = world.leaf("s3-down", issuer=world.private_ica)
    revoked = world.leaf("s3-down-revoked", issuer=world.private_ica)
    own_s3.client.put_object(
        Bucket=crls, Key="crl/ca.crl", Body=crl(world, world.private_ica, clock, [revoked], 1)
    )
    own_s3.put("truststore.pem", pem_bundle(world.trusted))
    authz = configure(
        upload=False,
        key="truststore.pem",
        CLOCK_SKEW_SECONDS="0",
        REVOCATION_S3_REFRESH_SECONDS=str(REFRESH),
        REVOCATION_CACHE_MAX_AGE_SECONDS="600",
    )
    monkeypatch.setenv("TRUSTSTORE_BUCKET", own_s3.bucket)
    monkeypatch.setenv("REVOCATION_CRL_S3_URI", f"s3://{crls}/crl/")
    authz.app.reset(clock=clock)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    authz.check("rest", revoked).expect(False, "revoked", revoked, "crl")

    own_s3.close()
    clock.advance(REFRESH + 1)
    authz.check("v2", leaf).expect(True, "good", leaf, "crl")  # the last good copy is still valid
    authz.check("v2", revoked).expect(False, "revoked", revoked, "crl")
    clock.advance(25 * 3600)  # past the CRL's nextUpdate: nothing valid is left
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")


def test_unreadable_crl_set_at_cold_start_denies_unavailable(
    world: World, s3: MotoS3, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    """Until the set is read, the CRL that revokes a certificate may be in it: fail closed."""
    leaf = world.leaf("unread-set", issuer=world.private_ica)
    authz = s3_authorizer(REVOCATION_CRL_S3_URI="s3://no-such-bucket-here/crl/")
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "crl")


# --------------------------------------------------------------------- the denylist
def denylist_store(uri: str) -> DenylistStore:
    return DenylistStore(uri, lambda: boto3.client("s3"))


def test_denylist_revokes_a_private_ca_client_and_unrevoke_lifts_it(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    uri = f"s3://{bucket}/denylist.txt"
    store = denylist_store(uri)
    leaf = world.leaf("denied-client", issuer=world.private_ica)
    bystander = world.leaf("bystander", issuer=world.private_ica)
    store.edit(lambda d: d)  # an empty denylist
    authz = s3_authorizer(REVOCATION_DENYLIST_S3_URI=uri)
    authz.check("rest", leaf).expect(True, "no_revocation_info", leaf, "none")

    cert = load_client_cert(leaf.pem)
    store.edit(lambda d: d.with_entry(entry_for(cert, "keyCompromise")))
    clock.advance(REFRESH + 1)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "denylist")
    authz.check("v2", bystander).expect(True, "no_revocation_info", bystander, "none")

    store.edit(lambda d: d.without(cert))
    clock.advance(REFRESH + 1)
    authz.check("rest", leaf).expect(True, "no_revocation_info", leaf, "none")


def test_denylist_wins_over_a_good_crl_and_by_serial_and_issuer(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    uri = f"s3://{bucket}/denylist.txt"
    leaf = world.leaf("denied-despite-crl", crl=True)
    cert, issuer = load_client_cert(leaf.pem), load_client_cert(world.ica.pem)
    denylist_store(uri).edit(lambda d: d.with_entry(entry_for(cert, "superseded", issuer)))
    authz = s3_authorizer(REVOCATION_DENYLIST_S3_URI=uri)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "denylist")


def test_missing_denylist_fails_closed(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    leaf = world.leaf("no-denylist", issuer=world.private_ica)
    authz = s3_authorizer(REVOCATION_DENYLIST_S3_URI=f"s3://{bucket}/missing.txt")
    authz.check("rest", leaf).expect(False, "revocation_unavailable", leaf, "denylist")


def test_denylist_with_a_bad_line_is_refused_and_the_last_good_copy_kept(
    world: World, s3: MotoS3, bucket: str, clock: Clock, s3_authorizer: Callable[..., Authorizer]
) -> None:
    uri = f"s3://{bucket}/denylist.txt"
    leaf = world.leaf("bad-line", issuer=world.private_ica)
    cert = load_client_cert(leaf.pem)
    denylist_store(uri).edit(lambda d: d.with_entry(entry_for(cert)))
    authz = s3_authorizer(REVOCATION_DENYLIST_S3_URI=uri)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "denylist")
    put(s3, bucket, "denylist.txt", b"this line is not an entry\n")  # the entry is gone, and a typo
    clock.advance(REFRESH + 1)
    authz.check("rest", leaf).expect(False, "revoked", leaf, "denylist")


def test_same_crl_through_the_set_and_the_cdp_keeps_warm_decisions_cached(
    world: World,
    s3: MotoS3,
    bucket: str,
    clock: Clock,
    s3_authorizer: Callable[..., Authorizer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Private CA's usual setup: the CRL set and the certificate's CDP name the same object. One
    version of one scope's data is one generation, so the warm path answers from the decision cache."""
    from authorizer import revocation

    key = "crl/ca.crl"
    url = f"http://{bucket}.s3.us-east-1.amazonaws.com/{key}"
    leaf = world.leaf("set-and-cdp", issuer=world.private_ica, crl_urls=[url])
    put(s3, bucket, key, crl(world, world.private_ica, clock, [], 1))
    authz = s3_authorizer(REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    gathered: list[int] = []
    real = revocation.RevocationChecker._gather

    def gather(self: revocation.RevocationChecker, *args: Any, **kwargs: Any) -> Any:
        gathered.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(revocation.RevocationChecker, "_gather", gather)
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    first = len(gathered)
    for _ in range(3):
        authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    assert len(gathered) == first  # every later decision came from the cache
