"""`mtls-authorizer check --crl FILE --denylist FILE|s3://...`: revocation from what is handed over.

A hierarchy whose certificates name no distribution point and no OCSP responder: whatever is
decided about revocation comes from the CRL files and the denylist on the command line. Nothing
is fetched (the default blocklist stays on: loopback is refused too); S3 is moto on loopback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_crl

from authorizer.cli import main
from pki import PKI, Credential, new_key, pem_bundle, utcnow
from servers import MotoS3

_crl_names = itertools.count(1)


@dataclass(frozen=True)
class Offline:
    pki: PKI
    root: Credential
    ica: Credential
    directory: Path

    @property
    def truststore(self) -> str:
        return str(self.directory / "truststore.pem")

    def leaf(self, name: str) -> tuple[Credential, str]:
        leaf = self.pki.leaf(name, self.ica)  # no CDP, no AIA
        path = self.directory / f"{leaf.serial_hex}.pem"
        path.write_text(leaf.pem)
        return leaf, str(path)

    def crl(self, name: str, issuer: Credential, revoked: list[Credential], **options: Any) -> str:
        path = self.directory / name
        path.write_bytes(self.pki.crl(issuer, revoked, **options))
        return str(path)

    def crls(self, revoked: list[Credential], **options: Any) -> list[str]:
        """--crl arguments: the issuing CA's CRL (listing `revoked`) and the root's, listing nothing."""
        return [
            "--crl",
            self.crl(f"ica-{next(_crl_names)}.crl", self.ica, revoked, **options),
            "--crl",
            self.crl("root.crl", self.root, []),
        ]


@pytest.fixture(scope="module")
def hierarchy(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Offline:
    root = pki.root("Offline Root CA")
    ica = pki.intermediate("Offline Issuing CA", root)
    directory = tmp_path_factory.mktemp("offline")
    (directory / "truststore.pem").write_bytes(pem_bundle([root, ica]))
    return Offline(pki, root, ica, directory)


@pytest.fixture
def offline(hierarchy: Offline, monkeypatch: pytest.MonkeyPatch) -> Offline:
    for name in (
        "REVOCATION_CRL_S3_URI",
        "REVOCATION_DENYLIST_S3_URI",
        "CRL_S3_BUCKETS",
        "FETCH_BLOCKED_NETWORKS",
        "REVOCATION_NO_INFO",
        "REVOCATION_CHECK",
    ):
        monkeypatch.delenv(name, raising=False)
    return hierarchy


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def check(offline: Offline, cert: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run("check", "--cert", cert, "--truststore", offline.truststore, "--json", *extra)
    assert code in (0, 1), err
    report: dict[str, Any] = json.loads(out)
    return code, report


def by_role(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["role"]: entry for entry in report["path"]}


# --- --crl ---------------------------------------------------------------------------------------


def test_a_crl_file_listing_the_leaf_denies_it(offline: Offline) -> None:
    leaf, cert = offline.leaf("offline-revoked")
    code, report = check(offline, cert, *offline.crls([leaf]))
    assert code == 1
    assert (report["decision"], report["reason"], report["revocationSource"]) == ("Deny", "revoked", "crl")
    path = by_role(report)
    assert (path["leaf"]["revocationSource"], path["leaf"]["revocation"]) == ("crl", "revoked")
    assert (path["intermediate"]["revocationSource"], path["intermediate"]["revocation"]) == ("crl", "good")


def test_a_crl_file_not_listing_the_leaf_makes_it_good_without_a_distribution_point(offline: Offline) -> None:
    _, cert = offline.leaf("offline-good")
    other, _ = offline.leaf("offline-someone-else")
    # Without the files there is nothing to go on ...
    code, report = check(offline, cert)
    assert report["reason"] == "no_revocation_info"
    # ... with them, both certificates are checked, offline.
    code, report = check(offline, cert, *offline.crls([other]))
    assert code == 0
    assert (report["decision"], report["reason"], report["revocationSource"]) == ("Allow", "good", "crl")
    path = by_role(report)
    assert [path[role]["revocation"] for role in ("leaf", "intermediate")] == ["good", "good"]
    assert path["leaf"]["revocationSource"] == "crl"


def test_a_pem_crl_file_is_read_too(offline: Offline) -> None:
    leaf, cert = offline.leaf("offline-pem")
    der = offline.pki.crl(offline.ica, [leaf])
    pem_path = offline.directory / "ica.pem.crl"
    pem_path.write_bytes(load_der_x509_crl(der).public_bytes(Encoding.PEM))
    code, report = check(
        offline, cert, "--crl", str(pem_path), "--crl", offline.crl("root.crl", offline.root, [])
    )
    assert (code, report["reason"]) == (1, "revoked")


def test_a_forged_crl_file_is_not_believed(offline: Offline) -> None:
    _, cert = offline.leaf("offline-forged")
    # The issuing CA's name and key identifier, signed with another key.
    code, report = check(offline, cert, *offline.crls([], signing_key=new_key()))
    leaf_entry = by_role(report)["leaf"]
    # Not good, and not "no information" either (which REVOCATION_NO_INFO=allow would let in).
    assert (code, report["reason"]) == (1, "revocation_unavailable"), report
    assert (leaf_entry["revocationSource"], leaf_entry["revocation"]) == ("crl", "revocation_unavailable")
    assert "signature does not verify" in leaf_entry["detail"]


def test_an_expired_crl_file_is_not_believed(offline: Offline) -> None:
    _, cert = offline.leaf("offline-expired")
    old = utcnow() - dt.timedelta(days=3)
    code, report = check(
        offline, cert, *offline.crls([], this_update=old, next_update=old + dt.timedelta(days=1))
    )
    assert (code, report["reason"]) == (1, "revocation_unavailable"), report
    assert "nextUpdate" in by_role(report)["leaf"]["detail"]


def test_a_crl_file_of_another_ca_does_not_cover_the_leaf(offline: Offline) -> None:
    _, cert = offline.leaf("offline-other-ca")
    stranger = offline.pki.root("Offline Stranger CA")
    code, report = check(
        offline,
        cert,
        "--crl",
        offline.crl("stranger.crl", stranger, []),
        "--crl",
        offline.crl("root.crl", offline.root, []),
    )
    # Allowed as REVOCATION_NO_INFO=allow (the default) says: the stranger's CRL is not used.
    assert (code, report["reason"]) == (0, "no_revocation_info"), report
    assert by_role(report)["leaf"]["revocation"] == "no_revocation_info"


@pytest.mark.parametrize("content", [b"not a crl", None])
def test_a_crl_argument_that_is_not_a_crl_file_is_a_usage_error(
    offline: Offline, content: bytes | None
) -> None:
    _, cert = offline.leaf("offline-bad-crl")
    path = offline.directory / "bad.crl"
    if content is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(content)
    code, _, err = run("check", "--cert", cert, "--truststore", offline.truststore, "--crl", str(path))
    assert code == 2 and "bad.crl" in err


# --- --denylist ----------------------------------------------------------------------------------


def test_a_denylist_file_listing_the_leaf_denies_it(offline: Offline) -> None:
    leaf, cert = offline.leaf("offline-denylisted")
    denylist = offline.directory / "denylist.txt"
    denylist.write_text(f"{leaf.fingerprint_sha256}  keyCompromise\n")
    # The CRLs say good: the denylist overrides them.
    code, report = check(offline, cert, *offline.crls([]), "--denylist", str(denylist))
    assert code == 1
    assert (report["decision"], report["reason"], report["revocationSource"]) == (
        "Deny",
        "revoked",
        "denylist",
    )
    leaf_entry = by_role(report)["leaf"]
    assert (leaf_entry["revocationSource"], leaf_entry["revocation"]) == ("denylist", "revoked")
    assert "keyCompromise" in leaf_entry["detail"]
    code, out, _ = run(
        "check", "--cert", cert, "--truststore", offline.truststore, "--denylist", str(denylist)
    )
    assert code == 1 and "Source:   denylist" in out and "denylist: revoked" in out


def test_revoke_then_check_then_unrevoke_then_check(offline: Offline) -> None:
    _, cert = offline.leaf("offline-round-trip")
    denylist = str(offline.directory / "round-trip.txt")
    crls = offline.crls([])
    assert (
        run("revoke", "--cert", cert, "--issuer", str(offline.ica.cert_path), "--denylist", denylist)[0] == 0
    )
    assert check(offline, cert, *crls, "--denylist", denylist)[1]["revocationSource"] == "denylist"
    assert (
        run("unrevoke", "--cert", cert, "--issuer", str(offline.ica.cert_path), "--denylist", denylist)[0]
        == 0
    )
    code, report = check(offline, cert, *crls, "--denylist", denylist)
    assert (code, report["reason"]) == (0, "good")


def test_a_denylist_that_does_not_parse_denies(offline: Offline) -> None:
    """As the Lambda does: the line might be a revocation, so nothing is known."""
    _, cert = offline.leaf("offline-bad-denylist")
    denylist = offline.directory / "bad-denylist.txt"
    denylist.write_text("# fine\nserial:zz issuer:00\n")
    code, report = check(offline, cert, *offline.crls([]), "--denylist", str(denylist))
    assert (code, report["reason"]) == (1, "revocation_unavailable")
    assert "line 2" in by_role(report)["leaf"]["detail"]


def test_a_missing_denylist_file_is_a_usage_error(offline: Offline) -> None:
    _, cert = offline.leaf("offline-missing-denylist")
    missing = str(offline.directory / "no-such-denylist.txt")
    code, _, err = run("check", "--cert", cert, "--truststore", offline.truststore, "--denylist", missing)
    assert code == 2 and "no-such-denylist.txt" in err


@pytest.fixture
def denylist_bucket(s3: MotoS3) -> str:
    s3.client.create_bucket(Bucket="offline-denylist")
    return "offline-denylist"


@pytest.mark.parametrize("given", ["argument", "environment"])
def test_a_denylist_in_s3_denies_a_listed_leaf(
    offline: Offline, s3: MotoS3, denylist_bucket: str, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cert = offline.leaf(f"offline-s3-{given}")
    uri = f"s3://{denylist_bucket}/{given}.txt"
    assert run("revoke", "--cert", cert, "--reason", "privilegeWithdrawn", "--denylist", uri)[0] == 0
    extra = ["--denylist", uri]
    if given == "environment":
        monkeypatch.setenv("REVOCATION_DENYLIST_S3_URI", uri)
        extra = []
    code, report = check(offline, cert, *offline.crls([]), *extra)
    assert (code, report["reason"], report["revocationSource"]) == (1, "revoked", "denylist")
    assert "privilegeWithdrawn" in by_role(report)["leaf"]["detail"]
    _, other_cert = offline.leaf(f"offline-s3-{given}-other")
    code, report = check(offline, other_cert, *offline.crls([]), *extra)
    assert (code, report["reason"]) == (0, "good")
