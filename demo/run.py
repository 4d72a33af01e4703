"""`make demo`: the real authorizer end to end on this machine, with nothing but openssl and Python.

1. a throwaway PKI made with the openssl CLI: a private CA whose clients declare no revocation info, a CA
   whose clients name an OCSP responder, a CA whose clients name a CRL served over HTTP, and a CA shaped
   like AWS Private CA with OmitExtension (no CDP in its certificates, CRLs only in a private bucket at
   crl/<CA-ID>.crl);
2. loopback servers: `openssl ocsp`, a CRL HTTP server, S3 (moto) holding a versioned truststore.pem, the
   private CRL bucket (REVOCATION_CRL_S3_URI) and the denylist (REVOCATION_DENYLIST_S3_URI);
   and two local mutual-TLS gateways (authorizer.gateway: what an API Gateway custom domain with mTLS
   does), one for a REST API, one for an HTTP API with payload 2.0, in front of the real `lambda_handler`;
3. `curl --cert --key` through both gateways for every client certificate (the gateway builds the
   event from the TLS handshake and calls the handler), then live revocation (`openssl ca -revoke`,
   `openssl ca -gencrl`, a new CRL object in the bucket, a denylist entry) and again;
4. a table of decisions and of the HTTP status curl saw; everything started is stopped and removed on exit,
   Ctrl-C included.

Without curl, the requests go through Python's http.client with the same client certificates.

Exit status: 0 when every decision is the expected one, 1 otherwise, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
# Run as `python demo/run.py`: import demo.* as a package, not this folder's modules as top-level ones.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
for _path in (ROOT, ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from demo.client import TLS_FAIL, GatewayClient  # noqa: E402
from demo.pki import Issued, Issuer, Shape, Urls, build_pki  # noqa: E402
from demo.servers import CRLServer, OCSPResponder, S3Server  # noqa: E402

REGION = "eu-west-1"
BUCKET = "mtls-demo-truststore"
KEY = "truststore.pem"
PCA_BUCKET = "mtls-demo-pca-crls"  # where AWS Private CA would write each CA's CRL
CRL_SET_URI = f"s3://{PCA_BUCKET}/crl/"
DENYLIST_URI = "s3://mtls-demo-ops/denylist.txt"
# Small so the warm container picks up the S3 changes within the demo (production default: 60 s).
S3_REFRESH_SECONDS = 1
PICK_UP_SECONDS = 15.0  # how long the warm round waits for a container to see an S3 change
GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
FORMATS = ("REST", "HTTP-2.0")
COLUMNS = ("phase", "certificate", "format", "decision", "reason", "source", "curl", "ms", "check")
API_PATH = "/accounts"  # what the clients ask for (sample_events' METHOD_ARN names the same path)
REQUEST_HEADER = "X-Demo-Request"  # ties a gateway's handler call to the request that caused it
HTTP_STATUS = {"Allow": "200", "Deny": "403"}  # what API Gateway answers for each decision
NOT_SENT = "-"
# Which client of each issuer is revoked between the rounds (0 RSA, 1 ECDSA); the private CA's is revoked
# through the denylist, since that CA publishes nothing.
REVOKED_CLIENT = {Shape.PRIVATE: 1, Shape.OCSP: 1, Shape.CRL: 0, Shape.PCA: 0}
S3_SHAPES = (Shape.PCA, Shape.PRIVATE)  # revoked through S3: a warm container sees it within the refresh
PHASES = {
    "before": ("new container (caches empty), nothing revoked yet",),
    "warm": (
        "the same container right after the revocations: cached OCSP/CRL answers still hold, while the",
        f"S3 CRLs and the denylist are re-read every {S3_REFRESH_SECONDS} s (REVOCATION_S3_REFRESH_SECONDS)",
    ),
    "after": ("new container (caches empty) after the revocations",),
}


@dataclass(frozen=True)
class Client:
    """A client certificate of the demo and what the authorizer should say about it."""

    label: str
    issued: Issued
    issuer: Issuer
    revoke: bool  # revoked live between the rounds

    @property
    def expected_before(self) -> tuple[str, str]:
        return ("Allow", "no_revocation_info") if self.issuer.shape is Shape.PRIVATE else ("Allow", "good")

    @property
    def expected_after(self) -> tuple[str, str]:
        return ("Deny", "revoked") if self.revoke else self.expected_before

    @property
    def expected_warm(self) -> tuple[str, str]:
        """Cached OCSP/CRL answers hold in a warm container; S3 changes arrive within the refresh."""
        return self.expected_after if self.issuer.shape in S3_SHAPES else self.expected_before


@dataclass(frozen=True)
class Row:
    phase: str
    certificate: str
    format: str
    decision: str
    reason: str
    source: str
    ms: float
    expected: tuple[str, str]
    curl: str = NOT_SENT  # the HTTP status the client saw through the gateway, TLS-fail, or - (not sent)
    expected_curl: str = NOT_SENT

    @property
    def ok(self) -> bool:
        return (self.decision, self.reason) == self.expected and self.curl == self.expected_curl

    def cells(self) -> tuple[str, ...]:
        want = " ".join(self.expected) + ("" if self.curl == self.expected_curl else f" {self.expected_curl}")
        check = "ok" if self.ok else f"UNEXPECTED, want {want}"
        return (
            self.phase,
            self.certificate,
            self.format,
            self.decision,
            self.reason,
            self.source,
            self.curl,
            f"{self.ms:.1f}",
            check,
        )


class FakeLambdaContext:
    function_name = "mtls-authorizer-demo"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:mtls-authorizer-demo"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


class Recorder:
    """The app's lambda_handler as the gateways call it, remembering each result and its duration by the
    request's REQUEST_HEADER (the demo reads a Deny's reason here: the client only sees 403 Forbidden)."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[dict[str, Any], float]] = {}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        from authorizer import app

        headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        began = time.perf_counter()
        response = app.lambda_handler(event, context)  # looked up per call: app.reset() takes effect
        ms = (time.perf_counter() - began) * 1000
        if REQUEST_HEADER.lower() in headers:
            self.calls[headers[REQUEST_HEADER.lower()]] = (response, ms)
        return response


@dataclass
class Gateways:
    """The two mutual-TLS gateways (REST, HTTP API 2.0), their client and what they called."""

    urls: dict[str, str]  # format -> https://localhost:port
    client: GatewayClient
    recorder: Recorder


class Demo:
    def __init__(self, stack: contextlib.ExitStack, out: TextIO, hold: float = 0.0) -> None:
        self.stack = stack
        self.out = out
        self.hold = hold
        self.rows: list[Row] = []
        self.gateways: Gateways | None = None
        self._requests = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # ----------------------------------------------------------------------------------------- setup
    def workdir(self) -> Path:
        workdir = Path(tempfile.mkdtemp(prefix="mtls-demo-"))
        self.stack.callback(self._remove, workdir)
        self.say(f"workdir: {workdir}")
        return workdir

    def _remove(self, workdir: Path) -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        self.say(f"cleanup: removed {workdir}")

    def start(self, name: str, server: Any) -> Any:
        """Start ``server`` and make sure it is stopped however the demo ends."""
        self.stack.callback(self._stop, name, server)
        server.start()
        return server

    def _stop(self, name: str, server: Any) -> None:
        server.stop()
        self.say(f"cleanup: stopped {name}")

    # ----------------------------------------------------------------------------------------- run
    def run(self) -> int:
        started = time.monotonic()
        self.say("mTLS revocation authorizer demo: the real lambda_handler on this machine, loopback only")
        workdir = self.workdir()
        # The CRL server and the OCSP ports come first: the certificates name them.
        crl_server = self.start("CRL HTTP server", CRLServer())
        ocsp_ports = OCSPPorts()
        crl_paths = {
            "root": f"/crl/{uuid.uuid4()}.crl",
            "issuing": f"/crl/{uuid.uuid4()}.crl",
        }
        urls = Urls(
            root_ocsp=ocsp_ports.url(ocsp_ports.root),
            issuing_ocsp=ocsp_ports.url(ocsp_ports.issuing),
            root_crl=crl_server.url(crl_paths["root"]),
            issuing_crl=crl_server.url(crl_paths["issuing"]),
        )
        # AWS Private CA names each CA by a UUID and writes its CRL to crl/<CA-ID>.crl.
        pca_keys = {"root": f"crl/{uuid.uuid4()}.crl", "issuing": f"crl/{uuid.uuid4()}.crl"}

        self.say("\n[1/4] throwaway PKI with the openssl CLI (openssl genpkey / req / ca)")
        issuers = build_pki(workdir, urls)
        clients = self.describe_pki(issuers, urls, pca_keys)
        ocsp_issuer, crl_issuer, pca_issuer = issuers[Shape.OCSP], issuers[Shape.CRL], issuers[Shape.PCA]

        self.say("\n[2/4] loopback servers")
        responders = [
            self.start(
                f"openssl ocsp ({ca.common_name})",
                OCSPResponder(ca, signer, workdir, nmin=1, port=port),
            )
            for ca, signer, port in (
                (ocsp_issuer.issuing, ocsp_issuer.responder, ocsp_ports.issuing),
                (ocsp_issuer.root, None, ocsp_ports.root),
            )
        ]
        for responder in responders:
            signer = "delegated responder" if responder.signer_cert != responder.ca.cert_path else "the CA"
            self.say(
                f"  openssl ocsp -index {responder.ca.index} -port {responder.port} -nmin 1 "
                f"(signed by {signer}; pid {responder.pid})"
            )
        crl_server.publish(crl_paths["root"], crl_issuer.root.crl_der())
        crl_server.publish(crl_paths["issuing"], crl_issuer.issuing.crl_der())
        self.say(f"  CRL HTTP server on 127.0.0.1:{crl_server.port}: 2 DER CRLs, nextUpdate in 1 h")
        s3 = self.start("S3 (moto)", S3Server(REGION))
        self.configure(s3.endpoint, workdir)
        truststore = (workdir / "truststore.pem").read_bytes()
        version = s3.upload_truststore(BUCKET, KEY, truststore)
        os.environ["TRUSTSTORE_VERSION"] = version  # pinned, as production should
        count = truststore.count(b"BEGIN CERTIFICATE")
        self.say(f"  S3 (moto) at {s3.endpoint}: versioned bucket {BUCKET}, {KEY} = the {count} CA certs")
        # The CRL bucket as Private CA leaves it: its permission probe object, then one DER CRL per CA.
        s3.create_bucket(PCA_BUCKET)
        s3.put(PCA_BUCKET, "acm-pca-permission-test-key", b"permission test")
        s3.put(PCA_BUCKET, pca_keys["root"], pca_issuer.root.crl_der(), "application/pkix-crl")
        s3.put(PCA_BUCKET, pca_keys["issuing"], pca_issuer.issuing.crl_der(), "application/pkix-crl")
        self.say(f"  private bucket {PCA_BUCKET} (Block Public Access on): {pca_keys['root']},")
        self.say(f"    {pca_keys['issuing']} and acm-pca-permission-test-key (not a CRL: skipped)")
        s3.create_bucket(DENYLIST_URI[5:].split("/", 1)[0], versioned=True)  # versions keep the history
        store = self.denylist_store(s3)
        store.edit(lambda denylist: denylist)  # an empty denylist: one that cannot be read denies everyone
        self.say(f"  denylist {DENYLIST_URI} in a versioned bucket: empty")
        self.say(f"  env: TRUSTSTORE_BUCKET={BUCKET} TRUSTSTORE_KEY={KEY}")
        self.say(f"       TRUSTSTORE_VERSION={version} (the uploaded VersionId, pinned)")
        self.say(f"       REVOCATION_CRL_S3_URI={CRL_SET_URI} REVOCATION_DENYLIST_S3_URI={DENYLIST_URI}")
        self.say(f"       REVOCATION_S3_REFRESH_SECONDS={S3_REFRESH_SECONDS} (production default 60)")
        self.say("       FETCH_BLOCKED_NETWORKS='' because the demo's OCSP responders and CRL server listen")
        self.say("       on 127.0.0.1, which the default blocklist refuses (keep the default in production)")
        from authorizer import app  # after the environment is set: Powertools reads it at import

        self.gateways = self.start_gateways(workdir, clients)
        if self.hold > 0:
            self.say(f"  holding {self.hold:g} s with the servers up (Ctrl-C stops and cleans up)")
            time.sleep(self.hold)

        self.say("\n[3/4] round 1: app.reset() -> new container (caches empty)")
        self.say(
            f"  {self.gateways.client.name} with each client's certificate and key, through both gateways"
        )
        app.reset()
        for client in clients:
            self.request("before", client, client.expected_before)
        invalid = ("Deny", "invalid_request")
        # No certificate: the gateway fails the handshake, as API Gateway does; the handler itself, given
        # such an event, denies. A PEM that does not parse cannot be presented in TLS at all.
        self.invoke(app.lambda_handler, "before", "no-certificate", None, invalid, curl=TLS_FAIL)
        self.invoke(app.lambda_handler, "before", "garbage-pem", GARBAGE_PEM, invalid)

        self.say("\n[4/4] revoking live")
        published: dict[str, float] = {}  # label -> when the revocation was out (monotonic)
        for client in clients:
            if client.revoke:
                self.revoke(client, responders[0], crl_server, crl_paths["issuing"], s3, pca_keys, store)
                published[client.label] = time.monotonic()
        self.say("  warm container (no reset) answers from its cached good data until that data expires:")
        self.say("    OCSP at nextUpdate (1 min here), CRL at nextUpdate (1 h here), both at most")
        self.say("    REVOCATION_CACHE_MAX_AGE_SECONDS (3600 by default); the S3 CRLs and the denylist are")
        self.say(f"    re-read every REVOCATION_S3_REFRESH_SECONDS ({S3_REFRESH_SECONDS} s here, default 60)")
        for client in clients:
            if client.revoke:
                if client.issuer.shape in S3_SHAPES:
                    self.wait_for(app.lambda_handler, client.issued.pem, client.expected_warm)
                    seen = time.monotonic() - published[client.label]
                    self.say(f"    {client.label}: the warm container applied it {seen:.1f} s after writing")
                self.request("warm", client, client.expected_warm)
        self.say("  round 2: app.reset() -> new container (caches empty)")
        app.reset()
        for client in clients:
            self.request("after", client, client.expected_after)

        self.say(
            f"\nResults. curl: the HTTP status {self.gateways.client.name} saw through the gateway of the"
        )
        self.say('row\'s format (403 is {"message":"Forbidden"}); TLS-fail: the handshake failed, so the')
        self.say(
            "authorizer was never asked, as on API Gateway; -: not sent. decision, reason, source, ms: the"
        )
        self.say("lambda_handler call the gateway made for that request (no-certificate, garbage-pem: the")
        self.say(
            "handler called directly with such an event). ms: the whole lambda_handler call; a container's"
        )
        self.say("first call also loads truststore.pem from S3, a source's first use fetches it, later calls")
        self.say("use the caches.")
        for name, lines in PHASES.items():
            for n, text in enumerate(lines):
                self.say(f"  {name if n == 0 else '':<6} {'=' if n == 0 else ' '} {text}")
        self.say("")
        self.say(format_table(self.rows))
        good = sum(row.ok for row in self.rows)
        elapsed = time.monotonic() - started
        self.say(f"\n{good}/{len(self.rows)} decisions as expected; demo ran in {elapsed:.1f} s")
        return 0 if good == len(self.rows) else 1

    def denylist_store(self, s3: S3Server) -> Any:
        """The denylist as the CLI edits it (conditional writes on the ETag), with the operator's client."""
        from authorizer.denylist_store import DenylistStore

        return DenylistStore(DENYLIST_URI, s3.client)

    def revoke(
        self,
        client: Client,
        responder: OCSPResponder,
        crl_server: CRLServer,
        crl_path: str,
        s3: S3Server,
        pca_keys: dict[str, str],
        store: Any,
    ) -> None:
        """Revoke ``client`` the way its issuer's operator would, and publish the news."""
        shape = client.issuer.shape
        name = client.issued.cert_path.name
        if shape is Shape.PRIVATE:
            from authorizer.certs import load_client_cert
            from authorizer.denylist import entry_for

            entry = entry_for(load_client_cert(client.issued.pem), "keyCompromise")
            store.edit(lambda denylist: denylist.with_entry(entry))
            self.say(f"  {client.issuer.issuing.common_name} publishes nothing: the operator's denylist")
            self.say(f"    mtls-authorizer revoke --cert {name} --reason keyCompromise \\")
            self.say(f"        --denylist {DENYLIST_URI}")
            self.say(f"    (a conditional write on the ETag) -> {entry.line()[:24]}...  keyCompromise")
            return
        client.issuer.issuing.revoke(client.issued)
        self.say(f"  {client.issuer.issuing.common_name}: openssl ca -revoke {name}")
        if shape is Shape.OCSP:
            status = responder.wait_for_status(client.issued, "revoked")
            self.say(f"    OCSP: the responder reloaded index.txt and now answers {status!r}")
        elif shape is Shape.CRL:
            crl_server.publish(crl_path, client.issuer.issuing.crl_der())
            self.say("    CRL: openssl ca -gencrl; the new CRL replaced the served file")
        else:
            crl_der = client.issuer.issuing.crl_der()
            s3.put(PCA_BUCKET, pca_keys["issuing"], crl_der, "application/pkix-crl")
            self.say(f"    CRL: openssl ca -gencrl, written to s3://{PCA_BUCKET}/{pca_keys['issuing']}")
            self.say("    (AWS Private CA does this about 30 minutes after a revocation)")

    def wait_for(
        self, handler: Callable[[Any, Any], dict[str, Any]], pem: str, expected: tuple[str, str]
    ) -> None:
        """Ask (unrecorded) until the decision is ``expected`` or PICK_UP_SECONDS pass (then the
        recorded call shows what it is instead)."""
        from authorizer.sample_events import rest_event

        began = time.monotonic()
        while time.monotonic() - began < PICK_UP_SECONDS:
            if outcome(handler(rest_event(pem), FakeLambdaContext()))[:2] == expected:
                return
            time.sleep(0.1)

    def describe_pki(
        self, issuers: dict[Shape, Issuer], urls: Urls, pca_keys: dict[str, str]
    ) -> list[Client]:
        """Print what was made; the clients the rounds ask about, two per issuer."""
        revocation = {
            Shape.PRIVATE: [
                "client certs carry no AIA and no CDP",
                f"  (revoked through the operator's denylist, {DENYLIST_URI})",
            ],
            Shape.OCSP: [
                f"client certs: AIA OCSP {urls.issuing_ocsp}",
                "  (openssl ocsp; delegated responder cert with OCSPSigning EKU)",
                f"issuing CA: AIA OCSP {urls.root_ocsp} (openssl ocsp, signed by the root)",
            ],
            Shape.CRL: [
                f"client certs: CDP {urls.issuing_crl}",
                f"issuing CA: CDP {urls.root_crl}",
                "  (openssl ca -gencrl, served in DER over HTTP)",
            ],
            Shape.PCA: [
                "like AWS Private CA with OmitExtension: certs carry no CDP and no AIA;",
                f"  each CA's DER CRL is only in the private bucket, s3://{PCA_BUCKET}/crl/<CA-ID>.crl:",
                f"  root {pca_keys['root']}, issuing {pca_keys['issuing']}",
            ],
        }
        clients: list[Client] = []
        for shape, issuer in issuers.items():
            self.say(
                f"  {issuer.root.common_name} ({issuer.root.key_type.upper()}) -> "
                f"{issuer.issuing.common_name} ({issuer.issuing.key_type.upper()})"
            )
            for line in revocation[shape]:
                self.say(f"      {line}")
            for issued in issuer.clients:
                # One client of each issuer is revoked between the rounds.
                revoke = issued is issuer.clients[REVOKED_CLIENT[shape]]
                label = f"{shape.value}-{issued.key_type}" + ("*" if revoke else "")
                clients.append(Client(label, issued, issuer, revoke))
                self.say(
                    f"    {label:<14} CN={issued.name}, {issued.key_type.upper()}, EKU clientAuth, "
                    f"serial {issued.serial_hex()}"
                )
        self.say("  * revoked live between the rounds")
        return clients

    def configure(self, endpoint: str, workdir: Path) -> None:
        """The Lambda's environment, pointed at the loopback servers (restored on exit)."""
        env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "TRUSTSTORE_BUCKET": BUCKET,
            "TRUSTSTORE_KEY": KEY,
            "TRUSTSTORE_VERSION": "",  # set once the truststore is uploaded
            "FETCH_BLOCKED_NETWORKS": "",
            "REVOCATION_CRL_S3_URI": CRL_SET_URI,
            "REVOCATION_DENYLIST_S3_URI": DENYLIST_URI,
            "REVOCATION_S3_REFRESH_SECONDS": str(S3_REFRESH_SECONDS),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "MtlsAuthorizerDemo",
        }
        self.stack.enter_context(patched_environ(env))

    def start_gateways(self, workdir: Path, clients: list[Client]) -> Gateways:
        """Two mutual-TLS gateways on loopback in front of the app's lambda_handler, sharing one throwaway
        server certificate; the truststore.pem they verify clients against is the one in S3."""
        from authorizer.gateway import GatewayFormat, MtlsGateway, throwaway_server_certificate

        server = throwaway_server_certificate(workdir / "gateway")
        recorder = Recorder()
        urls = {}
        kinds: dict[str, GatewayFormat] = {"REST": "rest", "HTTP-2.0": "http"}
        for fmt, kind in kinds.items():
            gateway = MtlsGateway(
                workdir / "truststore.pem", fmt=kind, port=0, server=server, handler=recorder, log=None
            )
            self.start(f"mutual-TLS gateway ({fmt})", gateway)
            urls[fmt] = gateway.url
        assert server.ca is not None
        client = GatewayClient(server.ca)
        self.say(
            "  mutual-TLS gateways (src/authorizer/gateway.py), what an API Gateway custom domain with mTLS"
        )
        self.say(f"    does: {urls['REST']} (REST API), {urls['HTTP-2.0']} (HTTP API, payload 2.0);")
        self.say(
            "    TLS 1.2+, client certificate required and verified against truststore.pem, the event built"
        )
        self.say(
            "    from the handshake, then lambda_handler; server certificate: a throwaway one for localhost"
        )
        if client.curl is None:
            self.say("  curl not found: the requests go through Python's http.client with the client")
            self.say("    certificate and key instead (install curl to see curl's answers)")
        example = clients[0].issued
        command = client.command(
            f"{urls['REST']}{API_PATH}", example.cert_path, example.key_path, shown=workdir
        )
        self.say(f"  each request, from {workdir}:")
        self.say(f"    {command}")
        return Gateways(urls, client, recorder)

    def request(self, phase: str, client: Client, expected: tuple[str, str]) -> None:
        """``client``'s request through each gateway: the status it saw, and the handler's decision."""
        assert self.gateways is not None
        issued = client.issued
        for fmt in FORMATS:
            self._requests += 1
            tag = f"{self._requests}"
            answer = self.gateways.client.get(
                f"{self.gateways.urls[fmt]}{API_PATH}",
                issued.cert_path,
                issued.key_path,
                {REQUEST_HEADER: tag},
            )
            called = self.gateways.recorder.calls.pop(tag, None)
            decision, reason, source = outcome(called[0]) if called else ("-", "-", "-")
            ms = called[1] if called else 0.0
            want = HTTP_STATUS[expected[0]]
            self.rows.append(
                Row(phase, client.label, fmt, decision, reason, source, ms, expected, answer.status, want)
            )

    def invoke(
        self,
        handler: Callable[[Any, Any], dict[str, Any]],
        phase: str,
        label: str,
        pem: str | None,
        expected: tuple[str, str],
        curl: str = NOT_SENT,
    ) -> None:
        """The handler called directly with an event for ``pem``; with ``curl`` (what the client should
        see), also a request without a client certificate through the gateway."""
        from authorizer.sample_events import http_event, rest_event

        for fmt in FORMATS:
            event = (rest_event if fmt == "REST" else http_event)(pem if pem != GARBAGE_PEM else None)
            if pem == GARBAGE_PEM:
                event = with_cert_pem(event, pem)
            began = time.perf_counter()
            response = handler(event, FakeLambdaContext())
            ms = (time.perf_counter() - began) * 1000
            decision, reason, source = outcome(response)
            seen = NOT_SENT
            if curl != NOT_SENT and self.gateways is not None:
                seen = self.gateways.client.get(f"{self.gateways.urls[fmt]}{API_PATH}", None, None).status
            self.rows.append(Row(phase, label, fmt, decision, reason, source, ms, expected, seen, curl))


class OCSPPorts:
    """The responders' ports, chosen before the certificates that name them are made."""

    def __init__(self) -> None:
        from demo.servers import free_port

        self.root = free_port()
        self.issuing = free_port()
        while self.issuing == self.root:
            self.issuing = free_port()

    @staticmethod
    def url(port: int) -> str:
        return f"http://127.0.0.1:{port}/"


def with_cert_pem(event: dict[str, Any], pem: str) -> dict[str, Any]:
    """``event`` with a client certificate block whose PEM is ``pem`` (which need not parse)."""
    cert = {
        "clientCertPem": pem,
        "subjectDN": "CN=garbage",
        "issuerDN": "CN=garbage",
        "serialNumber": "00",
        "validity": {"notBefore": "Jan  1 00:00:00 2025 GMT", "notAfter": "Jan  1 00:00:00 2035 GMT"},
    }
    context = event["requestContext"]
    if event.get("version") == "2.0":
        context["authentication"] = {"clientCert": cert}
    else:
        context["identity"]["clientCert"] = cert
    return event


def outcome(response: dict[str, Any]) -> tuple[str, str, str]:
    """(Allow|Deny, context.reason, context.revocationSource) of an authorizer response."""
    if "isAuthorized" in response:
        allow = response["isAuthorized"] is True
    else:
        statements = response["policyDocument"]["Statement"]
        allow = bool(statements) and all(s["Effect"] == "Allow" for s in statements)
    context = response.get("context") or {}
    return (
        "Allow" if allow else "Deny",
        str(context.get("reason", "-")),
        str(context.get("revocationSource", "-")),
    )


def format_table(rows: list[Row]) -> str:
    cells = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    right = {COLUMNS.index("ms")}
    lines = []
    for n, line in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after starting the servers, wait this long before the first round (to query them by hand)",
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout
    stack = contextlib.ExitStack()
    atexit.register(stack.close)  # a second line of defence; closing twice is harmless
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return Demo(stack, out, args.hold).run()
    except KeyboardInterrupt:
        _cleanup(stack)
        print("interrupted: everything the demo started was stopped and removed", file=out, flush=True)
        return 130
    finally:
        _cleanup(stack)
        signal.signal(signal.SIGTERM, previous)
        atexit.unregister(stack.close)


def _cleanup(stack: contextlib.ExitStack) -> None:
    """Stop and remove everything; a second Ctrl-C or a SIGTERM meanwhile must not cut it short."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.close()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
