"""The truststore: read from S3 (moto server, standard boto3 configuration), parsed, pinned, loaded once."""

from __future__ import annotations

import pytest

from conftest import Configure, Format, World
from pki import pem_bundle
from servers import MotoS3


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("blank_lines", [0, 2])
@pytest.mark.parametrize("trailing_newline", [True, False], ids=["trailing", "no-trailing"])
def test_truststore_formats(
    configure: Configure, world: World, fmt: Format, newline: str, blank_lines: int, trailing_newline: bool
) -> None:
    body = pem_bundle(
        world.trusted, newline=newline, blank_lines=blank_lines, trailing_newline=trailing_newline
    )
    authorizer = configure(body)
    leaf = world.leaf("client", ocsp="issuer")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf, source="ocsp")
    # The last certificate in the file counts too (no trailing newline must not drop it).
    private = world.leaf("private client", issuer=world.private_ica)
    assert world.trusted[-1] == world.private_ica
    authorizer.check(fmt, private).expect(True, "no_revocation_info", cert=private, source="none")


def test_truststore_with_text_around_certificates(configure: Configure, world: World, fmt: Format) -> None:
    """openssl-style bundles carry 'subject=' lines and comments between the PEM blocks."""
    body = b"".join(
        f"# {cred.subject}\nsubject={cred.subject}\n".encode() + cred.pem.encode() + b"\n"
        for cred in world.trusted
    )
    leaf = world.leaf("client", ocsp="issuer")
    configure(body).check(fmt, leaf).expect(True, "good", cert=leaf)


def test_default_key_is_truststore_pem(configure: Configure, world: World, fmt: Format) -> None:
    leaf = world.leaf("client", ocsp="issuer")
    configure(key=None).check(fmt, leaf).expect(True, "good", cert=leaf)


def test_version_pinning(configure: Configure, s3: MotoS3, world: World, fmt: Format) -> None:
    """Two versions: the first trusts the test root, the second only the private hierarchy."""
    key = "pinned/truststore.pem"
    first = s3.put(key, pem_bundle(world.trusted))
    second = s3.put(key, pem_bundle([world.private_root, world.private_ica]))
    leaf = world.leaf("client", ocsp="issuer")
    private = world.leaf("private client", issuer=world.private_ica)

    pinned = configure(key=key, upload=False, TRUSTSTORE_VERSION=first)
    pinned.check(fmt, leaf).expect(True, "good", cert=leaf)

    latest = configure(key=key, upload=False)
    latest.check(fmt, leaf).expect(False, "untrusted", cert=leaf)
    latest.check(fmt, private).expect(True, "no_revocation_info", cert=private)

    pinned_second = configure(key=key, upload=False, TRUSTSTORE_VERSION=second)
    pinned_second.check(fmt, leaf).expect(False, "untrusted", cert=leaf)


def test_loaded_once_per_container(configure: Configure, s3: MotoS3, world: World, fmt: Format) -> None:
    key = "once/truststore.pem"
    s3.put(key, pem_bundle(world.trusted))
    authorizer = configure(key=key, upload=False)
    leaf = world.leaf("client", ocsp="issuer")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)
    s3.delete_all_versions(key)
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)  # still in memory
    authorizer.reset()  # a new container has to read it again, and cannot
    authorizer.check(fmt, leaf).expect(False, "untrusted", cert=leaf)


@pytest.mark.parametrize("problem", ["missing_bucket", "missing_key", "missing_version", "no_bucket_setting"])
def test_s3_failure_denies_untrusted(configure: Configure, world: World, fmt: Format, problem: str) -> None:
    settings: dict[str, str | None] = {}
    key: str | None = "does/not/exist.pem"
    if problem == "missing_bucket":
        settings["TRUSTSTORE_BUCKET"] = "no-such-bucket-for-tests"
    elif problem == "missing_version":
        key = "versioned/truststore.pem"
        settings["TRUSTSTORE_VERSION"] = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    elif problem == "no_bucket_setting":
        settings["TRUSTSTORE_BUCKET"] = None
    authorizer = configure(key=key, upload=problem == "missing_version", **settings)
    leaf = world.leaf("client", ocsp="issuer", crl=True)
    decision = authorizer.check(fmt, leaf)
    decision.expect(False, "untrusted", cert=leaf)
    assert world.http.total_requests() == 0


@pytest.mark.parametrize("content", [b"", b"not a pem file\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_unusable_truststore_denies(configure: Configure, world: World, fmt: Format, content: bytes) -> None:
    leaf = world.leaf("client", ocsp="issuer")
    configure(content).check(fmt, leaf).expect(False, "untrusted", cert=leaf)
    assert world.http.total_requests() == 0


def test_intermediates_from_truststore_complete_the_path(
    configure: Configure, world: World, fmt: Format
) -> None:
    """Only the leaf arrives: without its intermediate in the truststore there is no path."""
    leaf = world.leaf("client", ocsp="issuer")
    without_ica = [c for c in world.trusted if c != world.ica]
    configure(without_ica).check(fmt, leaf).expect(False, "untrusted", cert=leaf)
    configure().check(fmt, leaf).expect(True, "good", cert=leaf)


def test_intermediate_in_truststore_is_not_an_anchor(configure: Configure, world: World, fmt: Format) -> None:
    """A revoked intermediate in the truststore is still revocation-checked (it is not self-signed)."""
    leaf = world.leaf("client", issuer=world.revoked_ica, crl=True)
    configure([world.revoked_ica, world.root]).check(fmt, leaf).expect(False, "revoked", cert=leaf)


def test_new_upload_is_not_read_per_request(
    configure: Configure, s3: MotoS3, world: World, fmt: Format
) -> None:
    """A new object version does not change a warm container's truststore from one request to the next."""
    key = "warm/truststore.pem"
    s3.put(key, pem_bundle(world.trusted))
    authorizer = configure(key=key, upload=False)
    leaf = world.leaf("client", ocsp="issuer")
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)
    s3.put(key, pem_bundle([world.private_root, world.private_ica]))
    authorizer.check(fmt, leaf).expect(True, "good", cert=leaf)
    authorizer.reset()
    authorizer.check(fmt, leaf).expect(False, "untrusted", cert=leaf)
