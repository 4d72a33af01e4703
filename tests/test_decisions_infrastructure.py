"""Smoke tests of the test infrastructure itself (PKI, OpenSSL responder, HTTP server, moto S3).

These do not import the authorizer: they must pass before the implementation exists.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.verification import PolicyBuilder, Store

from conftest import World
from pki import PKI, Credential, flip_last_byte, utcnow
from servers import FixtureHTTPServer, MotoS3, refused_url


def openssl_ocsp_status(world: World, leaf: Credential, url: str, tmp_path: Path) -> str:
    """Ask ``url`` about ``leaf`` with the OpenSSL client, verifying against the test root."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(world.root.pem + world.ica.pem)
    result = subprocess.run(
        [
            shutil.which("openssl") or "openssl",
            "ocsp",
            "-issuer",
            str(world.ica.cert_path),
            "-cert",
            str(leaf.cert_path),
            "-url",
            url,
            "-CAfile",
            str(ca_file),
            "-timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith(str(leaf.cert_path))), "")
    assert "Response verify OK" in result.stderr + result.stdout, result.stderr
    return line.rsplit(":", 1)[-1].strip()


@pytest.mark.parametrize("responder", ["issuer", "delegated"])
def test_openssl_responder_answers_and_reloads_index(world: World, responder: str, tmp_path: Path) -> None:
    leaf = world.leaf("smoke", ocsp=responder)
    direct = world.responders[responder].url
    assert openssl_ocsp_status(world, leaf, direct, tmp_path) == "good"
    world.responders[responder].set_status(leaf, "revoked")
    assert openssl_ocsp_status(world, leaf, direct, tmp_path) == "revoked"
    world.responders[responder].set_status(leaf, "unknown")
    assert openssl_ocsp_status(world, leaf, direct, tmp_path) == "unknown"
    # Through the counting proxy.
    world.responders[responder].set_status(leaf, "good")
    assert openssl_ocsp_status(world, leaf, world.ocsp_url(responder), tmp_path) == "good"
    assert world.http.requests(f"/ocsp/{responder}") == 1


def test_http_server_routes_and_counts(http: FixtureHTTPServer) -> None:
    url = http.set("/smoke/a.crl", b"\x30\x03\x02\x01\x00")
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"\x30\x03\x02\x01\x00"
    http.set("/smoke/err", b"nope", status=500)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(http.url("/smoke/err"), timeout=5)
    assert error.value.code == 500
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(http.url("/smoke/missing"), timeout=5)
    assert missing.value.code == 404
    http.respond("/smoke/echo", lambda body: body[::-1])
    with urllib.request.urlopen(urllib.request.Request(http.url("/smoke/echo"), data=b"abc"), timeout=5) as r:
        assert r.read() == b"cba"
    assert http.requests("/smoke/a.crl") == 1
    assert http.requests("/smoke/err") == 1
    assert http.total_requests() == 4


def test_http_server_hang_and_refused(http: FixtureHTTPServer) -> None:
    url = http.hang("/smoke/hang")
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        urllib.request.urlopen(url, timeout=0.5)
    assert http.requests("/smoke/hang") == 1
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(refused_url("/x.crl"), timeout=2)


def test_pki_chains_verify(world: World) -> None:
    rsa_leaf = world.leaf("rsa client")
    ec_leaf = world.leaf("ec client", key_type="ec")
    store = Store([world.root.cert])
    verifier = PolicyBuilder().store(store).build_client_verifier()
    for leaf in (rsa_leaf, ec_leaf):
        verifier.verify(leaf.cert, [world.ica.cert])
    usage = ec_leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_agreement
    impostor_leaf = world.leaf("impostor client", issuer=world.impostor_ica)
    assert impostor_leaf.cert.issuer == world.ica.cert.subject
    with pytest.raises(Exception, match=r"(?i)(signature|issuer|candidates)"):
        verifier.verify(impostor_leaf.cert, [world.ica.cert])


def test_crl_and_ocsp_builders(pki: PKI, world: World) -> None:
    leaf = world.leaf("builder")
    crl = x509.load_der_x509_crl(pki.crl(world.ica, [leaf]))
    assert crl.is_signature_valid(world.ica.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial) is not None
    bad = x509.load_der_x509_crl(flip_last_byte(pki.crl(world.ica, [leaf])))
    assert not bad.is_signature_valid(world.ica.key.public_key())
    partitioned = x509.load_der_x509_crl(pki.crl(world.ica, idp=pki.idp("http://127.0.0.1/x.crl")))
    assert partitioned.extensions.get_extension_for_class(x509.IssuingDistributionPoint).critical
    stale = pki.ocsp_response(
        leaf,
        world.ica,
        next_update=utcnow() - dt.timedelta(hours=1),
        this_update=utcnow() - dt.timedelta(hours=2),
    )
    parsed = ocsp.load_der_ocsp_response(stale)
    assert parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.serial_number == leaf.serial
    assert parsed.next_update_utc is not None and parsed.next_update_utc < utcnow()


def test_moto_s3_through_standard_configuration(s3: MotoS3) -> None:
    first = s3.put("smoke/truststore.pem", b"one")
    s3.put("smoke/truststore.pem", b"two")
    client = boto3.client("s3")  # the standard configuration: AWS_ENDPOINT_URL_S3 from the environment
    assert client.get_object(Bucket=s3.bucket, Key="smoke/truststore.pem")["Body"].read() == b"two"
    pinned = client.get_object(Bucket=s3.bucket, Key="smoke/truststore.pem", VersionId=first)
    assert pinned["Body"].read() == b"one"
    assert client.meta.endpoint_url == s3.endpoint
