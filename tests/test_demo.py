"""`make demo` and `make events`: the demo runs the real authorizer end to end and leaves nothing behind."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from authorizer.certs import load_client_cert
from authorizer.events import EventFormat, parse_event
from demo.make_events import CASES, generate
from demo.pki import OpenSSLError, Shape, build_issuer, openssl_binary

ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, str(ROOT / "demo" / "run.py")]

try:
    openssl_binary()
except OpenSSLError:  # pragma: no cover - the project's machines have it
    pytest.skip("the openssl CLI is needed", allow_module_level=True)

ALLOW_NO_INFO = ("Allow", "no_revocation_info", "none")
ALLOW_OCSP, ALLOW_CRL = ("Allow", "good", "ocsp"), ("Allow", "good", "crl")
INVALID = ("Deny", "invalid_request", "-")
REVOKED_CRL, REVOKED_DENYLIST = ("Deny", "revoked", "crl"), ("Deny", "revoked", "denylist")
# (phase, certificate) -> (decision, reason, source), the same for REST and HTTP API 2.0 events.
# pca-*: AWS Private CA style, no CDP in the certificates, CRLs only in a private bucket (crl/<CA-ID>.crl).
# private-ecdsa*: declares nothing; revoked through the denylist.
EXPECTED = {
    ("before", "private-rsa"): ALLOW_NO_INFO,
    ("before", "private-ecdsa*"): ALLOW_NO_INFO,
    ("before", "ocsp-rsa"): ALLOW_OCSP,
    ("before", "ocsp-ecdsa*"): ALLOW_OCSP,
    ("before", "crl-rsa*"): ALLOW_CRL,
    ("before", "crl-ecdsa"): ALLOW_CRL,
    ("before", "pca-rsa*"): ALLOW_CRL,  # checked against the S3 CRL although it names no CDP
    ("before", "pca-ecdsa"): ALLOW_CRL,
    ("before", "no-certificate"): INVALID,
    ("before", "garbage-pem"): INVALID,
    ("warm", "private-ecdsa*"): REVOKED_DENYLIST,  # S3 sources are re-read within the refresh interval
    ("warm", "ocsp-ecdsa*"): ALLOW_OCSP,  # cached good answers hold until they expire
    ("warm", "crl-rsa*"): ALLOW_CRL,
    ("warm", "pca-rsa*"): REVOKED_CRL,
    ("after", "private-rsa"): ALLOW_NO_INFO,
    ("after", "private-ecdsa*"): REVOKED_DENYLIST,
    ("after", "ocsp-rsa"): ALLOW_OCSP,
    ("after", "ocsp-ecdsa*"): ("Deny", "revoked", "ocsp"),
    ("after", "crl-rsa*"): REVOKED_CRL,
    ("after", "crl-ecdsa"): ALLOW_CRL,
    ("after", "pca-rsa*"): REVOKED_CRL,
    ("after", "pca-ecdsa"): ALLOW_CRL,
}
# What the client saw through the mutual-TLS gateway: API Gateway's status for the decision; no client
# certificate fails the TLS handshake; a PEM that does not parse cannot be sent at all.
CURL = {"Allow": "200", "Deny": "403"}
CURL_OF = {"no-certificate": "TLS-fail", "garbage-pem": "-"}
ROW = re.compile(
    r"^(?P<phase>before|warm|after)\s+(?P<cert>\S+)\s+(?P<format>REST|HTTP-2\.0)\s+(?P<decision>Allow|Deny)\s+"
    r"(?P<reason>\S+)\s+(?P<source>\S+)\s+(?P<curl>\d{3}|TLS-fail|-)\s+(?P<ms>\d+\.\d)\s+(?P<check>.+)$"
)


def table(output: str) -> dict[tuple[str, str, str], tuple[str, str, str, str]]:
    rows: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            key = (match["phase"], match["cert"], match["format"])
            assert key not in rows, f"row printed twice: {line}"
            rows[key] = (match["decision"], match["reason"], match["source"], match["curl"])
            assert match["check"] == "ok", line
    return rows


def workdir_of(output: str) -> Path:
    found = re.search(r"^workdir: (\S+)$", output, re.MULTILINE)
    assert found, output
    return Path(found.group(1))


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (the demo's openssl ocsp name files in it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in args)
        if str(path) in text and "pytest" not in text:
            found.append(text)
    return found


def assert_cleaned_up(workdir: Path) -> None:
    assert not workdir.exists(), f"{workdir} survived the demo"
    deadline = time.monotonic() + 5
    while processes_using(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_using(workdir) == []


def test_demo_decides_every_certificate_and_cleans_up() -> None:
    started = time.monotonic()
    done = subprocess.run(DEMO, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    rows = table(done.stdout)
    expected = {
        (phase, cert, fmt): (*outcome, CURL_OF.get(cert, CURL[outcome[0]]))
        for (phase, cert), outcome in EXPECTED.items()
        for fmt in ("REST", "HTTP-2.0")
    }
    assert rows == expected
    assert f"{len(expected)}/{len(expected)} decisions as expected" in done.stdout
    assert "new container (caches empty)" in done.stdout
    assert "FETCH_BLOCKED_NETWORKS=''" in done.stdout
    assert re.search(r"TRUSTSTORE_VERSION=\S+ \(the uploaded VersionId, pinned\)", done.stdout)
    assert "now answers 'revoked'" in done.stdout  # the live OCSP responder saw the revocation
    # The Private CA-style CRLs and the denylist come from S3 (moto), configured as in production.
    assert "REVOCATION_CRL_S3_URI=s3://mtls-demo-pca-crls/crl/" in done.stdout
    assert "REVOCATION_DENYLIST_S3_URI=s3://mtls-demo-ops/denylist.txt" in done.stdout
    assert re.search(r"^\s+root crl/[0-9a-f-]{36}\.crl, issuing crl/[0-9a-f-]{36}\.crl$", done.stdout, re.M)
    assert "acm-pca-permission-test-key (not a CRL: skipped)" in done.stdout
    assert "mtls-authorizer revoke --cert client-private-ecdsa.pem --reason keyCompromise" in done.stdout
    # Every client went through the mutual-TLS gateways with a real TLS client.
    assert re.search(
        r"https://localhost:\d+ \(REST API\), https://localhost:\d+ \(HTTP API, payload 2\.0\)", done.stdout
    )
    if shutil.which("curl"):
        assert re.search(
            r"^    curl --cert clients/\S+\.pem --key clients/\S+\.key --cacert gateway/server-ca\.pem ",
            done.stdout,
            re.M,
        )
    else:  # pragma: no cover - curl is on the project's machines
        assert "curl not found" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert_cleaned_up(workdir_of(done.stdout))
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_stopped_midway_still_cleans_up(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [*DEMO, "--hold", "60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if "holding" in line:
                break
        output = "".join(lines)
        assert "holding" in output, output
        workdir = workdir_of(output)
        assert len(processes_using(workdir)) == 2, "both openssl ocsp responders should be running"
        process.send_signal(signum)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output += rest
    assert process.returncode == 128 + signum, output + errors
    assert "cleanup: removed" in output
    assert_cleaned_up(workdir)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def _check_events(folder: Path) -> None:
    names = {f"{fmt}-{case.name}.json" for case in CASES for fmt in ("rest", "http")}
    assert len(names) == 12
    assert names <= {p.name for p in folder.glob("*.json")}
    readme = (folder / "README.md").read_text()
    assert "make events" in readme and "sam local invoke" in readme
    trust = (folder / "truststore.pem").read_text()
    assert trust.count("BEGIN CERTIFICATE") == 6
    for case in CASES:
        for fmt in ("rest", "http"):
            name = f"{fmt}-{case.name}.json"
            assert f"`{name}`" in readme
            request = parse_event(json.loads((folder / name).read_text()))
            assert request.format is (EventFormat.REST if fmt == "rest" else EventFormat.HTTP_V2), name
            if case.shape is None:
                assert request.cert_pem is None, name
                continue
            assert request.cert_pem is not None, name
            cert = load_client_cert(request.cert_pem).crypto
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku, name
            assert _extension(cert, x509.AuthorityInformationAccess) == (case.shape is Shape.OCSP), name
            assert _extension(cert, x509.CRLDistributionPoints) == (case.shape is Shape.CRL), name


def test_pca_style_issuer_is_like_private_ca_with_omit_extension(tmp_path: Path) -> None:
    """No CDP and no AIA anywhere (OmitExtension); its CRLs are DER and name their CA, for crl/<CA-ID>.crl."""
    issuer = build_issuer(tmp_path, Shape.PCA)
    for issued in (*issuer.clients, issuer.issuing_cert):
        cert = load_client_cert(issued.pem).crypto
        assert not _extension(cert, x509.CRLDistributionPoints), issued.name
        assert not _extension(cert, x509.AuthorityInformationAccess), issued.name
    for ca in (issuer.root, issuer.issuing):
        crl = x509.load_der_x509_crl(ca.crl_der())
        ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
        assert crl.issuer == ca_cert.subject
        assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]  # X25519 etc. cannot sign


def test_make_events_writes_every_case(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert len(written) == 14  # 12 events, truststore.pem, README.md
    _check_events(tmp_path)


def test_committed_events_are_current() -> None:
    _check_events(ROOT / "events")
