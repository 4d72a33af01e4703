"""A throwaway PKI made with the ``openssl`` CLI, shaped like the original AWS blog article's issuers.

Four issuers, each a root plus an issuing CA, each issuing two client certificates (RSA and ECDSA):

- ``private``: client certificates carry no revocation information at all (no AIA, no CDP); the demo
               revokes one through the operator's denylist;
- ``ocsp``:    client certificates name an OCSP responder (AIA), answered by ``openssl ocsp`` from the issuing
               CA's ``index.txt`` with a delegated responder certificate; the issuing CA names its root's OCSP
               responder (which signs with the root itself);
- ``crl``:     client certificates and the issuing CA name a CRL (CDP), made with ``openssl ca -gencrl`` and
               published in DER over HTTP;
- ``pca``:     like AWS Private CA with ``OmitExtension``: certificates name no CDP and no AIA, and each CA's
               CRL (DER) is written to a private bucket at ``crl/<CA-ID>.crl``, read through S3.

Every CA is an ``openssl ca`` database in its own folder, so revoking is ``openssl ca -revoke`` and
publishing a CRL is ``openssl ca -gencrl``, exactly as an operator of such a CA would do it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

KeyType = Literal["rsa", "ecdsa"]
ORGANIZATION = "mTLS Revocation Demo"
CLIENT_DAYS = 30
CA_DAYS = 365
CRL_HOURS = 1  # nextUpdate of every CRL


class Shape(Enum):
    """How an issuer publishes revocation information."""

    PRIVATE = "private"
    OCSP = "ocsp"
    CRL = "crl"
    PCA = "pca"  # CRLs only in an S3 bucket, certificates without a CDP (AWS Private CA, OmitExtension)


class OpenSSLError(RuntimeError):
    pass


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise OpenSSLError("the demo needs the openssl command line tool (apt-get install openssl)")
    return found


def openssl(*args: str | Path, cwd: Path | None = None) -> str:
    """Run one ``openssl`` command; its stdout, or OpenSSLError with its stderr."""
    command = [openssl_binary(), *map(str, args)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise OpenSSLError(f"{' '.join(command[:3])} ... failed:\n{done.stderr.strip()}")
    return done.stdout


def generate_key(path: Path, key_type: KeyType) -> Path:
    if key_type == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    path.chmod(0o600)
    return path


def subject(common_name: str) -> str:
    return f"/C=US/O={ORGANIZATION}/CN={common_name}"


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    name: str
    key_type: KeyType
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> str:
        return self.cert_path.read_text()

    def serial_hex(self) -> str:
        out = openssl("x509", "-in", self.cert_path, "-noout", "-serial")
        return out.strip().split("=", 1)[1].lower()


_CONFIG = """\
# openssl ca configuration of {common_name} (written by demo/pki.py)
[ca]
default_ca = CA_default

[CA_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = {client_days}
default_crl_hours = {crl_hours}
crl_extensions = crl_ext
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
countryName = optional
organizationName = optional
commonName = supplied

[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[crl_ext]
authorityKeyIdentifier = keyid:always

[root_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[issuing_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
{issuing_revocation}

[client_rsa]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
{client_revocation}

[client_ecdsa]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
{client_revocation}

[ocsp_responder]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,OCSPSigning
noCheck = ignored
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class CA:
    """One certificate authority: an ``openssl ca`` database in ``folder``."""

    def __init__(self, folder: Path, common_name: str, key_type: KeyType) -> None:
        self.folder = folder
        self.common_name = common_name
        self.key_type = key_type
        self.config = folder / "ca.cnf"
        self.cert_path = folder / "ca.pem"
        self.key_path = folder / "ca.key"
        self.index = folder / "index.txt"

    def write_config(self, issuing_revocation: str = "", client_revocation: str = "") -> None:
        """``*_revocation``: extension lines (AIA / CDP) for the certificates this CA issues."""
        (self.folder / "newcerts").mkdir(parents=True, exist_ok=True)
        self.index.touch()
        (self.folder / "index.txt.attr").write_text("unique_subject = no\n")
        (self.folder / "serial").write_text("1000\n")
        (self.folder / "crlnumber").write_text("1000\n")
        self.config.write_text(
            _CONFIG.format(
                common_name=self.common_name,
                dir=self.folder,
                client_days=CLIENT_DAYS,
                crl_hours=CRL_HOURS,
                issuing_revocation=issuing_revocation,
                client_revocation=client_revocation,
            )
        )

    def self_sign(self) -> None:
        generate_key(self.key_path, self.key_type)
        openssl(
            "req",
            "-x509",
            "-new",
            "-config",
            self.config,
            "-extensions",
            "root_ca",
            "-key",
            self.key_path,
            "-subj",
            subject(self.common_name),
            "-days",
            str(CA_DAYS * 2),
            "-sha256",
            "-out",
            self.cert_path,
        )

    def issue(
        self,
        folder: Path,
        stem: str,
        common_name: str,
        key_type: KeyType,
        extensions: str,
        days: int = CLIENT_DAYS,
    ) -> Issued:
        """A key, a CSR and a certificate signed by this CA with ``openssl ca`` (recorded in its index)."""
        folder.mkdir(parents=True, exist_ok=True)
        key = generate_key(folder / f"{stem}.key", key_type)
        csr = folder / f"{stem}.csr"
        cert = folder / f"{stem}.pem"
        openssl(
            "req",
            "-new",
            "-config",
            self.config,
            "-key",
            key,
            "-subj",
            subject(common_name),
            "-out",
            csr,
        )
        openssl(
            "ca",
            "-batch",
            "-config",
            self.config,
            "-extensions",
            extensions,
            "-days",
            str(days),
            "-rand_serial",
            "-notext",
            "-in",
            csr,
            "-out",
            cert,
        )
        return Issued(common_name, key_type, cert, key)

    def revoke(self, cert: Issued) -> None:
        openssl("ca", "-config", self.config, "-revoke", cert.cert_path, "-crl_reason", "keyCompromise")

    def crl_der(self) -> bytes:
        """A new CRL of everything this CA revoked (``openssl ca -gencrl``), in DER."""
        pem = self.folder / "crl.pem"
        der = self.folder / "crl.der"
        openssl("ca", "-config", self.config, "-gencrl", "-crlhours", str(CRL_HOURS), "-out", pem)
        openssl("crl", "-in", pem, "-outform", "DER", "-out", der)
        return der.read_bytes()


@dataclass
class Issuer:
    """A root and its issuing CA, and the client certificates the issuing CA issued."""

    shape: Shape
    root: CA
    issuing: CA
    issuing_cert: Issued
    clients: list[Issued]
    responder: Issued | None = None  # the delegated OCSP responder of the issuing CA (OCSP shape)

    @property
    def chain_pem(self) -> str:
        return self.root.cert_path.read_text() + self.issuing.cert_path.read_text()


@dataclass(frozen=True)
class Urls:
    """Where each issuer's revocation information will be served.

    The defaults are placeholders that never resolve (RFC 6761 ``.invalid``), for events/; the demo
    passes its loopback servers' URLs.
    """

    root_ocsp: str = "http://ocsp-root.demo.invalid/"
    issuing_ocsp: str = "http://ocsp-issuing.demo.invalid/"
    root_crl: str = "http://crl.demo.invalid/crl/root.crl"
    issuing_crl: str = "http://crl.demo.invalid/crl/issuing.crl"


# The key types of each issuer's two client certificates (the demo revokes one of each OCSP/CRL pair).
CLIENT_KEYS: Sequence[KeyType] = ("rsa", "ecdsa")
# Key types of (root, issuing CA) per issuer: RSA and ECDSA mixed along the chains too.
CA_KEYS: dict[Shape, tuple[KeyType, KeyType]] = {
    Shape.PRIVATE: ("rsa", "rsa"),
    Shape.OCSP: ("ecdsa", "ecdsa"),
    Shape.CRL: ("rsa", "ecdsa"),
    Shape.PCA: ("ecdsa", "rsa"),
}
TITLES = {
    Shape.PRIVATE: "Private",
    Shape.OCSP: "OCSP",
    Shape.CRL: "CRL",
    Shape.PCA: "PCA-style",
}


def build_issuer(workdir: Path, shape: Shape, urls: Urls | None = None) -> Issuer:
    """A root, an issuing CA and two client certificates whose extensions fit ``shape``."""
    urls = urls or Urls()
    title = TITLES[shape]
    root_key, issuing_key = CA_KEYS[shape]
    root = CA(workdir / f"{shape.value}-root", f"Demo {title} Root CA", root_key)
    issuing = CA(workdir / f"{shape.value}-issuing", f"Demo {title} Issuing CA", issuing_key)
    root_points = issuing_points = ""
    if shape is Shape.OCSP:
        root_points = f"authorityInfoAccess = OCSP;URI:{urls.root_ocsp}"
        issuing_points = f"authorityInfoAccess = OCSP;URI:{urls.issuing_ocsp}"
    elif shape is Shape.CRL:
        root_points = f"crlDistributionPoints = URI:{urls.root_crl}"
        issuing_points = f"crlDistributionPoints = URI:{urls.issuing_crl}"
    root.write_config(issuing_revocation=root_points)
    root.self_sign()
    # The issuing CA's certificate and key are its folder's ca.pem / ca.key, recorded in the root's index.
    issuing_cert = root.issue(issuing.folder, "ca", issuing.common_name, issuing_key, "issuing_ca", CA_DAYS)
    issuing.write_config(client_revocation=issuing_points)
    clients = [
        issuing.issue(workdir / "clients", name, name, key, f"client_{key}")
        for key in CLIENT_KEYS
        for name in [f"client-{shape.value}-{key}"]
    ]
    responder = None
    if shape is Shape.OCSP:
        name = "ocsp-responder"
        responder = issuing.issue(
            workdir / "responders", name, "Demo OCSP Responder", "ecdsa", "ocsp_responder"
        )
    return Issuer(shape, root, issuing, issuing_cert, clients, responder)


def build_pki(
    workdir: Path, urls: Urls | None = None, shapes: Sequence[Shape] = tuple(Shape)
) -> dict[Shape, Issuer]:
    """The issuers of ``shapes``, and ``truststore.pem`` (their roots and issuing CAs) in ``workdir``."""
    issuers = {shape: build_issuer(workdir, shape, urls) for shape in shapes}
    (workdir / "truststore.pem").write_text("".join(i.chain_pem for i in issuers.values()))
    return issuers
