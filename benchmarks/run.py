"""Benchmark: the authorizer against the proof of concept, on 10k/100k/1M-entry CRLs and on OCSP.

    PYTHONPATH=src .venv/bin/python benchmarks/run.py [--quick]      (or: make bench)

Everything is built at run time and torn down at the end: a root CA → issuing CAs → leaves PKI,
genuinely signed CRLs (crlgen.signed_crl) served by a counting loopback HTTP server (ETag → 304),
OpenSSL's OCSP responder behind that server's proxy path, and the truststore in moto's S3. The PKI
and the servers are the test suite's (tests/pki.py, tests/servers.py).
Each scenario group runs in its own child process (bench_child.py) so that peak RSS is its own.
The memory scenario feeds tens of thousands of distinct client certificates through the handler and
reports RSS against clients seen, under the byte budget and under the old entry-bound caches.
The index scenario (index_scenario.py) puts AWS Private CA-style CRLs in moto S3 (complete CRLs of 1M and
100k entries, 10M entries over partitions), runs the indexer once and measures a new container's first
request through the shared index (REVOCATION_INDEX_S3_URI) against fetching the CRLs themselves, each in a
fresh child process.
Results: a Markdown report on stdout and in benchmarks/results.md, and a chart of latency against CRL size
beside it (benchmarks/latency-vs-crl-size.svg, chart.py) from the same run's figures. Progress: stderr.
`--only memory` / `--only index` runs just that scenario and replaces only its section of the report;
`--only families` keeps the report's memory and index sections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

# The test suite's PKI and loopback servers, importable as pytest's pythonpath makes them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import index_scenario
from chart import CHART_NAME, INDEX_SCENARIO, TITLE, Point, Series, fmt_ms, series_from_rows, write_chart
from crlgen import signed_crl
from index_scenario import FULL_INDEX, QUICK_INDEX, IndexFixture, IndexPlan
from pki import PKI, Credential, key_usage, name, pem_bundle, utcnow
from servers import FixtureHTTPServer, MotoS3, OpenSSLOCSPResponder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "bench_child.py"
RESULTS = HERE / "results.md"
BUCKET, KEY = "bench-truststore", "truststore.pem"
STATS_PATH = "/__stats"

Json = dict[str, Any]
# What a run measures: the CRL/OCSP families, the memory scenario, the shared index at scale.
PARTS = frozenset({"families", "memory", "index"})

METHOD = (
    "Handler time is `time.perf_counter()` around `lambda_handler` in-process (REST event, "
    "Powertools logging at ERROR, EMF metrics serialised to a discarded stdout). Baseline: a fresh "
    'pyhanko-certvalidator `ValidationContext(allow_fetching=True, revocation_mode="hard-fail")` '
    "per request. Peak RSS is the high-water mark (`VmHWM`) of the child process running that "
    "scenario group (baseline and authorizer in separate processes; all authorizer scenarios of one "
    "family share one process; idle = RSS after importing the authorizer and boto3, before any "
    "request). `ru_maxrss` is not used: Linux carries the parent's high-water mark over fork+exec, so "
    "every child reported at least the parent's RSS. Requests are counted by the "
    "loopback HTTP server per path (`x200` full responses, `x304` not modified). Every leaf also "
    "chains to an issuing CA whose own CDP names a small root CRL (`root.crl`), as the default "
    "`REVOCATION_CHECK=chain` checks the intermediate too. p95 is nearest-rank: with n <= 20 it "
    "is the slowest sample or close to it."
)

MEMORY_HEADING = "## Memory against distinct clients"
MEMORY_METHOD = (
    "Each mode runs in its own child process: distinct client certificates (one shared P-256 key, "
    "distinct serials and names, the test PKI's leaf profile, issued by an RSA-2048 CA, checked against "
    "a small CRL and the root CRL) are fed once each through `lambda_handler` (REST events). At each "
    "checkpoint: RSS (`VmRSS` after `gc.collect()`), its growth since the warm-up request (truststore, "
    "CRL indexes and boto3 already loaded), that growth per client held, what the per-client byte "
    "budget accounts (`ByteBudget.used`, the authorizer's own estimate) against its size, and the "
    "high-water mark (`VmHWM`). *Held*: client summaries in the cache (byte-budget modes) or parsed "
    "certificates and paths in the re-created old caches (entry-bound mode: the authorizer's current "
    "code plus the two 20,000-entry caches of parsed `Cert`s and `CertPath`s the handler used to keep, "
    "filled as it filled them). The checker's own per-client caches (decisions, OCSP answers, failures) "
    "are on the same per-client byte budget in every mode: *accounted* includes them."
)

# Targets (milliseconds, megabytes, requests).
WARM_SEEN_MS = 0.3
WARM_NEW_MS = 3.0
FIRST_1M_MS = 2500.0
FIRST_1M_RSS_MB = 400.0
IMPORT_MS = 600.0


@dataclass(frozen=True)
class MemoryMode:
    """One run of the memory scenario: a memory size for the byte budget, or the old caches."""

    label: str
    memory_mb: int  # AWS_LAMBDA_FUNCTION_MEMORY_SIZE
    entry_bound: bool = False  # re-create the old per-client caches (parsed certs and paths, 20,000 each)


MEMORY_MODES = (
    MemoryMode("before: entry-bound caches (20,000 parsed certs and paths)", 1769, entry_bound=True),
    MemoryMode("byte budget, 1769 MB (template default)", 1769),
    MemoryMode("byte budget, 128 MB", 128),
)


@dataclass(frozen=True)
class Plan:
    sizes: tuple[tuple[str, int], ...]
    baseline: dict[str, int]
    first: dict[str, int]
    seen: int
    new: int
    ocsp_baseline: int
    ocsp_first: int
    clients: tuple[int, ...]  # memory scenario: checkpoints, in distinct clients seen
    memory_modes: tuple[MemoryMode, ...] = MEMORY_MODES
    imports: int = 5
    index: IndexPlan = FULL_INDEX


FULL = Plan(
    sizes=(("10k", 10_000), ("100k", 100_000), ("1M", 1_000_000)),
    baseline={"10k": 8, "100k": 4, "1M": 2},
    first={"10k": 10, "100k": 6, "1M": 3},
    seen=2000,
    new=200,
    ocsp_baseline=20,
    ocsp_first=10,
    clients=(1_000, 10_000, 30_000),
)
QUICK = Plan(
    sizes=(("10k", 10_000), ("100k", 100_000)),
    baseline={"10k": 3, "100k": 2},
    first={"10k": 4, "100k": 3},
    seen=500,
    new=100,
    ocsp_baseline=5,
    ocsp_first=4,
    clients=(300, 1_000),
    memory_modes=(MEMORY_MODES[0], MEMORY_MODES[2]),
    index=QUICK_INDEX,
)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- statistics
def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank


def quietest(values: Sequence[float], blocks: int = 4) -> float:
    """The lowest p50 of `blocks` consecutive blocks: less exposed to other load on the machine."""
    size = len(values) // blocks
    if size < 5:
        return p50(values)
    return min(p50(values[i * size : (i + 1) * size]) for i in range(blocks))


def fmt_requests(delta: Json) -> str:
    if not delta:
        return "0"
    parts = []
    for key, count in sorted(delta.items()):
        path, status = key.rsplit(" ", 1)
        parts.append(f"{path.rsplit('/', 1)[-1] or path} {count}x{status}")
    return ", ".join(parts)


def total(delta: Json, path_part: str = "") -> int:
    return sum(int(v) for k, v in delta.items() if path_part in k)


# ------------------------------------------------------------------------------------------------ fixture
@dataclass
class FamilySpec:
    label: str
    source: str  # "crl" or "ocsp"
    root_pem: str
    ca_pem: str
    good_pem: str
    revoked_pem: str
    new_pems: list[str]
    entries: int = 0
    crl_bytes: int = 0
    crl_path: str = ""
    crl_url: str = ""


@dataclass
class MemorySpec:
    """The memory scenario's CA: a good and a revoked leaf, and `count` distinct clients in a file."""

    root_pem: str
    ca_pem: str
    good_pem: str
    revoked_pem: str
    clients_file: str
    count: int


@dataclass
class Fixture:
    server: FixtureHTTPServer
    families: list[FamilySpec] = field(default_factory=list)
    memory: MemorySpec | None = None
    env: dict[str, str] = field(default_factory=dict)
    index: IndexFixture | None = None


def serve_crl(server: FixtureHTTPServer, path: str, der: bytes) -> str:
    """Serve a CRL with a strong ETag, so that a refresh past the maximum age is a conditional GET (304)."""
    etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'
    return server.set(path, der, content_type="application/pkix-crl", etag=etag)


def serve_stats(server: FixtureHTTPServer) -> None:
    """POST STATS_PATH: the server's answers so far as JSON {"<route> <status>": count}, for the children
    to take deltas around each scenario. Its own requests are left out."""

    def stats(_request: bytes) -> bytes:
        answers = server.statuses()
        return json.dumps({f"{p} {s}": n for (p, s), n in answers.items() if p != STATS_PATH}).encode()

    server.respond(STATS_PATH, stats, content_type="application/json")


def family_leaves(
    pki: PKI, ca: Credential, label: str, new: int, **revocation: Any
) -> tuple[Credential, Credential, list[Credential]]:
    """A family's good and revoked leaves and `new` more; all share one P-256 key (`revocation`: where
    to check, `crl_urls=` or `ocsp_url=`)."""

    def leaf(name: str) -> Credential:
        return pki.leaf(f"bench {label} {name}", ca, key_type="ec", **revocation)

    return leaf("good"), leaf("revoked"), [leaf(f"new {i}") for i in range(new)]


def mint_clients(pki: PKI, ca: Credential, crl_url: str, count: int, path: Path) -> None:
    """`count` client certificates as JSON lines of PEM, without the PKI's per-certificate files: the
    test PKI's leaf profile (CDP, clientAuth, a SAN), one shared P-256 key, distinct serials and names."""
    key = pki.leaf_key("ec")
    public = key.public_key()
    now = utcnow()
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectKeyIdentifier.from_public_key(public), False),
        (key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False),
        (
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            False,
        ),
    ]
    with path.open("w") as out:
        for i in range(count):
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(f"bench memory client {i:06d}", "Revocation Test Clients"))
                .issuer_name(ca.cert.subject)
                .public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
            )
            for extension, critical in extensions:
                builder = builder.add_extension(extension, critical=critical)
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"client-{i:06d}.clients.example.test")]),
                critical=False,
            )
            cert = builder.sign(ca.key, hashes.SHA256())
            out.write(json.dumps(cert.public_bytes(serialization.Encoding.PEM).decode()) + "\n")


def build_fixture(plan: Plan, stack: ExitStack, workdir: Path, parts: frozenset[str] = PARTS) -> Fixture:
    server = FixtureHTTPServer()
    stack.callback(server.close)
    serve_stats(server)
    fixture = Fixture(server)
    # RSA-2048 CAs (what AWS Private CA and most private PKIs use); all leaves share one P-256 key.
    pki = PKI(workdir / "pki")
    filler = random.Random(2024)  # the revoked serials padding each CRL: random, up to 159 bits

    def serials(count: int) -> list[int]:
        return [filler.getrandbits(159) | 1 for _ in range(count)]

    now = utcnow()
    this_update, next_update = now - dt.timedelta(minutes=5), now + dt.timedelta(days=1)
    root = pki.root("Bench Root CA")
    root_crl_url = serve_crl(
        server, "/crl/root.crl", signed_crl(root.cert, root.key, serials(10), this_update, next_update)
    )
    cas = []

    for label, entries in plan.sizes if "families" in parts else ():
        progress(f"PKI and a signed {entries:,}-entry CRL for family {label}")
        ca = pki.intermediate(f"Bench Issuing CA CRL {label}", root, crl_urls=[root_crl_url])
        cas.append(ca)
        path = f"/crl/{label}.crl"
        url = server.url(path)
        good, revoked, fresh = family_leaves(pki, ca, label, plan.new, crl_urls=[url])
        filler_serials = serials(entries - 1)
        filler_serials.insert(len(filler_serials) // 2, revoked.serial)  # mid-list: no lucky early hit
        started = time.perf_counter()
        der = signed_crl(ca.cert, ca.key, filler_serials, this_update, next_update)
        del filler_serials
        progress(f"  CRL {label}: {len(der) / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
        serve_crl(server, path, der)
        fixture.families.append(
            FamilySpec(
                label,
                "crl",
                root.pem,
                ca.pem,
                good.pem,
                revoked.pem,
                [c.pem for c in fresh],
                entries,
                len(der),
                path,
                url,
            )
        )

    if "families" in parts:
        progress("PKI and OpenSSL OCSP responder for the OCSP family")
        ca = pki.intermediate("Bench Issuing CA OCSP", root, crl_urls=[root_crl_url])
        cas.append(ca)
        ocsp_url = server.url("/ocsp")
        good, revoked, fresh = family_leaves(pki, ca, "ocsp", plan.new, ocsp_url=ocsp_url)
        responder = OpenSSLOCSPResponder(workdir, "bench", ca, ca, nmin=60)
        stack.callback(responder.close)
        responder.set_statuses([good, *fresh], "good")
        responder.set_status(revoked, "revoked")
        server.proxy("/ocsp", responder.url)
        fixture.families.append(
            FamilySpec("OCSP", "ocsp", root.pem, ca.pem, good.pem, revoked.pem, [c.pem for c in fresh])
        )

    if "memory" in parts:
        count = max(plan.clients)
        progress(f"PKI, a small CRL and {count:,} distinct clients for the memory scenario")
        ca = pki.intermediate("Bench Issuing CA memory", root, crl_urls=[root_crl_url])
        cas.append(ca)
        url = server.url("/crl/memory.crl")
        good, revoked, _ = family_leaves(pki, ca, "memory", 0, crl_urls=[url])
        der = signed_crl(ca.cert, ca.key, [revoked.serial, *serials(9)], this_update, next_update)
        serve_crl(server, "/crl/memory.crl", der)
        started = time.perf_counter()
        clients_file = workdir / "memory-clients.jsonl"
        mint_clients(pki, ca, url, count, clients_file)
        progress(f"  {count:,} clients minted in {time.perf_counter() - started:.1f} s")
        fixture.memory = MemorySpec(root.pem, ca.pem, good.pem, revoked.pem, str(clients_file), count)

    progress("moto S3 with a versioned truststore bucket")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    moto = MotoS3(BUCKET)
    stack.callback(moto.close)
    version = moto.put(KEY, pem_bundle([root, *cas]))
    fixture.env = child_env(workdir, moto.endpoint, version)
    if "index" in parts:
        fixture.index = index_scenario.build(plan.index, moto, workdir, progress)
    return fixture


def child_env(workdir: Path, s3_endpoint: str, version: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.pop("LOG_LEVEL", None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]),
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        TRUSTSTORE_BUCKET=BUCKET,
        TRUSTSTORE_KEY=KEY,
        TRUSTSTORE_VERSION=version,  # pinned, as the custom domain's TruststoreVersion would be
        FETCH_BLOCKED_NETWORKS="",  # the CRL/OCSP servers are on loopback
        AUTHORIZER_BUDGET_SECONDS="30",
        POWERTOOLS_METRICS_NAMESPACE="Bench",
        POWERTOOLS_SERVICE_NAME="bench",
        LOG_LEVEL="ERROR",
        POWERTOOLS_LOG_LEVEL="ERROR",
        PYTHONWARNINGS="ignore",
    )
    return env


# ------------------------------------------------------------------------------------------------ children
def run_child(
    spec: Json,
    fixture: Fixture,
    workdir: Path,
    name: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> Json:
    spec_path, out_path = workdir / f"{name}.spec.json", workdir / f"{name}.out.json"
    spec = {**spec, "stats_url": fixture.server.url(STATS_PATH), "out": str(out_path)}
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(CHILD), str(spec_path)],
        env={**fixture.env, **(env or {})},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # Powertools' EMF lines: produced, not shown
        check=True,
        timeout=timeout,
    )
    result: Json = json.loads(out_path.read_text())
    result["wall_s"] = time.perf_counter() - started
    spec_path.unlink()
    out_path.unlink()
    return result


def family_spec(family: FamilySpec) -> Json:
    return {
        "label": family.label,
        "source": family.source,
        "root_pem": family.root_pem,
        "ca_pem": family.ca_pem,
        "good_pem": family.good_pem,
        "revoked_pem": family.revoked_pem,
        "new_pems": family.new_pems,
        "crl_url": family.crl_url,
    }


def measure_import(fixture: Fixture, runs: int) -> list[float]:
    code = (
        "import time; t = time.perf_counter(); import authorizer.app; print((time.perf_counter() - t) * 1000)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=fixture.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


# ------------------------------------------------------------------------------------------------ report
def machine(code: str = "") -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cli = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        cli = "openssl CLI not found"
    from cryptography.hazmat.backends.openssl.backend import backend

    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores ({platform.machine()}, Linux {platform.release()})",
        f"- Code: {code}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- OpenSSL: CLI `{cli}`; Python ssl `{ssl.OPENSSL_VERSION}`; "
        f"cryptography's `{backend.openssl_version_text()}`",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
    ]


def src_fingerprint() -> str:
    """Every file under src/ by path, size and modification time: tells whether src/ changed mid-run."""
    files = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in (ROOT / "src").rglob("*.py"))
    return hashlib.sha256(repr(files).encode()).hexdigest()


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes when the run started (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"git {head}" + (", with uncommitted changes in src/" if dirty else "")


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


@dataclass
class Report:
    plan: Plan
    fixture: Fixture
    results: dict[str, Json] = field(default_factory=dict)  # "<label>/<kind>" → child result
    imports: list[float] = field(default_factory=list)
    profiles: list[tuple[str, Json]] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)
    memory: list[tuple[MemoryMode, Json]] = field(default_factory=list)
    index: Json = field(default_factory=dict)  # index_scenario.run's outcome
    runtime_s: float = 0.0
    foreign_cores: float = math.nan  # CPU used by processes outside this benchmark, in cores
    code: str = ""  # code_version() at the start, and whether src/ changed during the run
    chart: str = ""  # the chart's file name, beside the report, when one is written

    def chart_series(self) -> list[Series]:
        """The CRL families' p50/p95 per scenario, as the chart draws them (the report's own figures)."""
        rows: list[tuple[str, int, Point]] = []
        for family in self.fixture.families:
            if family.source != "crl":
                continue
            auth = self.results[f"{family.label}/authorizer"]
            for scenario, samples in (
                ("baseline: pyhanko per request", self.results[f"{family.label}/baseline"]["baseline"]["ms"]),
                ("authorizer: first request (cold caches)", auth["first"]["ms"]),
                ("authorizer: warm, new cert of the CA", auth["new"]["ms"]),
                ("authorizer: warm, same cert", auth["seen"]["ms"]),
            ):
                point = Point(family.entries, p50(samples), p95(samples), len(samples))
                rows.append((scenario, family.entries, point))
        if rows and self.index and self.fixture.index is not None:
            samples = index_scenario.chart_samples(self.index)
            entries = self.fixture.index.plan.complete_entries
            if samples:
                rows.append(
                    (INDEX_SCENARIO, entries, Point(entries, p50(samples), p95(samples), len(samples)))
                )
        return series_from_rows(rows)

    def chart_subtitle(self) -> str:
        kind = "quick" if self.plan is QUICK else "full"
        return (
            f"{kind} run, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}, {os.cpu_count()} cores "
            f"({platform.machine()}); in-process handler time"
        )

    def evaluate(self) -> list[tuple[str, str]]:
        """Fill `targets`; return the (family, scenario) pairs that missed a timing target, for profiling."""
        missed: list[tuple[str, str]] = []
        self.targets = []
        for family in self.fixture.families:
            auth = self.results[f"{family.label}/authorizer"]
            scenarios = [("seen", "seen", WARM_SEEN_MS)]
            if family.source == "crl":  # an OCSP new certificate must ask the responder: no such target
                scenarios.append(("new", "new", WARM_NEW_MS))
            for scenario, words, limit in scenarios:
                samples = auth[scenario]["ms"]
                ok = p50(samples) <= limit
                self.targets.append(
                    (
                        f"{family.label}: warm, {words} certificate p50 ≤ {limit:g} ms",
                        f"{fmt_ms(p50(samples))} (quietest quarter: {fmt_ms(quietest(samples))})",
                        ok,
                    )
                )
                if not ok:
                    missed.append((family.label, scenario))
            if family.label == "1M":
                first = p50(auth["first"]["ms"])
                ok = first <= FIRST_1M_MS
                self.targets.append((f"1M: first request p50 ≤ {FIRST_1M_MS:,.0f} ms", fmt_ms(first), ok))
                missed.append((family.label, "first"))  # profiled even when met: it is the costliest path
                rss = auth["peak_rss_mb"]
                self.targets.append(
                    (
                        f"1M: authorizer peak RSS ≤ {FIRST_1M_RSS_MB:.0f} MB",
                        f"{rss:.0f} MB",
                        rss <= FIRST_1M_RSS_MB,
                    )
                )
            if family.source == "ocsp":
                per_cert = self.ocsp_max_per_cert(auth)
                self.targets.append(
                    (
                        "OCSP: ≤ 1 responder request per certificate per freshness window",
                        f"max {per_cert:g} per cert per window",
                        per_cert <= 1,
                    )
                )
        imp = p50(self.imports)
        self.targets.append(
            (
                f"`import authorizer.app` median of {len(self.imports)} ≤ {IMPORT_MS:.0f} ms",
                fmt_ms(imp),
                imp <= IMPORT_MS,
            )
        )
        return missed

    @staticmethod
    def ocsp_max_per_cert(auth: Json) -> float:
        worst = 0.0
        new_certs = len(auth["new"]["ms"])
        observations = [
            (
                total(auth["first"]["requests"], "/ocsp"),
                len(auth["first"]["ms"]),
            ),  # one cert per cold runtime
            (total(auth["seen"]["requests"], "/ocsp"), 1),
            (total(auth["new"]["requests"], "/ocsp"), new_certs),
            (total(auth["new_again_requests"], "/ocsp"), new_certs),
        ]
        windows = auth["windows"]
        same = windows["same_window_plus_55min"]
        observations.append((total(same["requests"], "/ocsp"), same["certs"]))
        # Rounds 1-2 share window 1 and rounds 3-5 share window 2 (the clock moves +301 s, then +150 s).
        rounds = windows["max_age_300s"]
        for group in (rounds[:2], rounds[2:]):
            observations.append((sum(total(r["requests"], "/ocsp") for r in group), group[0]["certs"]))
        for requests, certs in observations:
            worst = max(worst, requests / max(1, certs))
        return worst

    def markdown(self) -> str:
        out = ["# Benchmark: revocation authorizer vs. the proof of concept", ""]
        out += machine(self.code)
        out.append(
            f"- Total benchmark runtime: {self.runtime_s:.0f} s "
            f"({'quick' if self.plan is QUICK else 'full'} run); CPU used meanwhile by processes outside "
            f"the benchmark: {self.foreign_cores:.2f} of {os.cpu_count()} cores on average "
            "(other work on the machine inflates and scatters timings)"
        )
        out += [
            "",
            METHOD,
            "",
            "## Results",
            "",
            "| family | scenario | n | p50 ms | p95 ms | server requests | peak RSS MB | verdicts |",
            "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |",
        ]
        for family in self.fixture.families:
            out += self.family_rows(family)
        if self.chart:
            out += ["", f"![p50 latency against CRL size, log scales]({self.chart})"]
        out += [
            "",
            "## Speed-up (baseline p50 / authorizer p50)",
            "",
            "| family | vs first request | vs warm, seen cert | vs warm, new cert |",
            "| --- | ---: | ---: | ---: |",
        ]
        for family in self.fixture.families:
            base = p50(self.results[f"{family.label}/baseline"]["baseline"]["ms"])
            auth = self.results[f"{family.label}/authorizer"]
            ratios = [base / p50(auth[k]["ms"]) for k in ("first", "seen", "new")]
            out.append(
                f"| {family.label} | "
                + " | ".join(f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x" for r in ratios)
                + " |"
            )
        out += [
            "",
            "## Targets",
            "",
            "Status follows the p50 of all samples. In brackets: the lowest p50 of four consecutive blocks "
            "of the same samples, to show how much other load on the machine moved the figure.",
            "",
            "| target | measured | status |",
            "| --- | --- | --- |",
        ]
        out += [f"| {name} | {value} | {met(ok)} |" for name, value, ok in self.targets]
        out += self.breakdown_section()
        out += self.ocsp_section()
        out += self.memory_section()
        out += self.index_section()
        out += self.profile_section()
        return "\n".join(out) + "\n"

    def memory_section(self) -> list[str]:
        if not self.memory or self.fixture.memory is None:
            return []
        kind = "quick" if self.plan is QUICK else "full"
        out = [
            "",
            MEMORY_HEADING,
            "",
            f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} ({kind}), "
            f"{self.runtime_s:.0f} s with everything else it ran; CPU used meanwhile by other processes: "
            f"{self.foreign_cores:.2f} of {os.cpu_count()} cores. Code: {self.code}.",
            "",
            MEMORY_METHOD,
            "",
            "| mode | clients seen | held | RSS MB | Δ RSS MB | Δ RSS per held client "
            "| accounted / budget MB | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for mode, result in self.memory:
            for row in result["rows"]:
                held = row["old_held"] if mode.entry_bound else row["held"]
                per_client = row["delta_mb"] * 1024 * 1024 / max(1, held)
                budget = result["budgets"]["clients"]
                # The old caches were never weighed: what the budget accounts there is only the summaries.
                accounted = f"{row['accounted_mb']:.1f} / {budget / 1024 / 1024:.0f}"
                out.append(
                    f"| {mode.label} | {row['clients']:,} | {held:,} | {row['rss_mb']:.0f} "
                    f"| {row['delta_mb']:.0f} | {per_client / 1024:.1f} KB "
                    f"| {'-' if mode.entry_bound else accounted} | {row['hwm_mb']:.0f} |"
                )
        out += [
            "",
            "Verdicts per mode (every client once, then the revoked certificate and the first client again):",
            "",
        ]
        for mode, result in self.memory:
            counts = ", ".join(f"{v} {n:,}" for v, n in sorted(result["verdicts"].items()))
            out.append(
                f"- {mode.label}: {counts}; revoked first → {result['revoked_before']}, "
                f"revoked again after all → {result['revoked_after']}; first client again → "
                f"{result['first_again']}; baseline RSS {result['base_rss_mb']:.0f} MB "
                f"({result['wall_s']:.0f} s)"
            )
        return out

    def index_section(self) -> list[str]:
        if not self.index or self.fixture.index is None:
            return []
        kind = "quick" if self.plan is QUICK else "full"
        return index_scenario.section(
            self.fixture.index,
            self.index,
            kind,
            self.runtime_s,
            self.foreign_cores,
            os.cpu_count(),
            self.code,
        )

    def family_rows(self, family: FamilySpec) -> list[str]:
        name = family.label
        if family.source == "crl":
            name = f"CRL {family.label} ({family.entries:,} entries, {family.crl_bytes / 1e6:.1f} MB)"
        else:
            name = "OCSP (openssl ocsp, -nmin 60)"
        base = self.results[f"{family.label}/baseline"]
        auth = self.results[f"{family.label}/authorizer"]
        b = base["baseline"]
        rows = []

        def row(scenario: str, ms: Sequence[float], requests: str, rss: str, verdicts: str) -> None:
            rows.append(
                f"| {name} | {scenario} | {len(ms)} | {fmt_ms(p50(ms))} | {fmt_ms(p95(ms))} | {requests} "
                f"| {rss} "
                f"| {verdicts} |"
            )

        outcomes = sorted(set(b["outcomes"]))
        revoked = base.get("baseline_revoked")
        verdict = ", ".join(outcomes) + (f"; revoked cert → {revoked['outcome']}" if revoked else "")
        row(
            "baseline: pyhanko per request",
            b["ms"],
            fmt_requests(b["requests"]),
            f"{base['peak_rss_mb']:.0f}",
            verdict,
        )
        first = auth["first"]
        row(
            "authorizer: first request (cold caches)",
            first["ms"],
            fmt_requests(first["requests"]),
            f"{auth['peak_rss_mb']:.0f} (idle {auth['idle_rss_mb']:.0f})",
            ", ".join(first["verdicts"]) + f"; revoked cert → {auth['revoked_verdict']}",
        )
        row(
            "authorizer: warm, same cert",
            auth["seen"]["ms"],
            fmt_requests(auth["seen"]["requests"]),
            "″",
            ", ".join(auth["seen"]["verdicts"]),
        )
        row(
            "authorizer: warm, new cert of the CA",
            auth["new"]["ms"],
            fmt_requests(auth["new"]["requests"]),
            "″",
            ", ".join(auth["new"]["verdicts"]),
        )
        if "revalidate" in auth:
            again = auth["revalidate"]
            row(
                "authorizer: past max age, conditional GET",
                again["ms"],
                fmt_requests(again["requests"]),
                "″",
                again["verdict"],
            )
        return rows

    def breakdown_section(self) -> list[str]:
        out = [
            "",
            "## Where a first request spends its time (mean ms per request)",
            "",
            "Stages are timed by wrapping module functions in the child; the HTTP fetches of the "
            "leaf's CRL/OCSP and the root CRL run concurrently in worker threads, so stages can overlap.",
            "",
            "| family | total p50 | truststore (S3) | path validation | HTTP fetch (sum) "
            "| CRL parse+verify+index (sum) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for family in self.fixture.families:
            auth = self.results[f"{family.label}/authorizer"]
            stages = auth["first"]["stages_ms"]
            cells = [
                fmt_ms(stages.get(k, math.nan))
                for k in ("truststore (S3)", "path validation", "HTTP fetch", "CRL parse+verify+index")
            ]
            out.append(f"| {family.label} | {fmt_ms(p50(auth['first']['ms']))} | " + " | ".join(cells) + " |")
        return out

    def ocsp_section(self) -> list[str]:
        family = next((f for f in self.fixture.families if f.source == "ocsp"), None)
        if family is None:
            return []
        auth = self.results[f"{family.label}/authorizer"]
        new = len(auth["new"]["ms"])
        out = [
            "",
            "## OCSP responder requests per certificate",
            "",
            "| step | certificates | responder requests |",
            "| --- | ---: | ---: |",
        ]
        out.append(
            f"| first request, each on a cold runtime | {len(auth['first']['ms'])} | "
            f"{total(auth['first']['requests'], '/ocsp')} |"
        )
        out.append(
            f"| warm, same certificate | 1 (x{len(auth['seen']['ms'])}) "
            f"| {total(auth['seen']['requests'], '/ocsp')} |"
        )
        out.append(f"| warm, new certificates | {new} | {total(auth['new']['requests'], '/ocsp')} |")
        out.append(
            f"| the same new certificates again | {new} | {total(auth['new_again_requests'], '/ocsp')} |"
        )
        same = auth["windows"]["same_window_plus_55min"]
        out.append(
            f"| all again, clock +55 min (same window: nextUpdate +60 min) | {same['certs']} | "
            f"{total(same['requests'], '/ocsp')} |"
        )
        for r in auth["windows"]["max_age_300s"]:
            out.append(
                f"| REVOCATION_CACHE_MAX_AGE_SECONDS=300, round {r['round']}, "
                f"clock +{r['clock_offset_s']:.0f} s "
                f"({', '.join(r['verdicts'])}) | {r['certs']} | {total(r['requests'], '/ocsp')} |"
            )
        return out

    def profile_section(self) -> list[str]:
        if not self.profiles:
            return []
        out = ["", "## Profiles of missed targets, and of the 1M first request (cProfile)", ""]
        for title, prof in self.profiles:
            out += [f"### {title}", ""]
            if "stages" in prof:
                if prof["scenario"] == "first":
                    intro = (
                        "`crl.parse_and_verify` on this CRL, called in the main thread (a first request runs "
                        "it in a worker thread, invisible to cProfile); its sub-steps timed by wrapping (ms):"
                    )
                else:
                    intro = (
                        "Stage breakdown, mean ms per call (module functions wrapped, in a separate process; "
                        "indented rows are inside the row above):"
                    )
                out += [intro, "", "| stage | ms |", "| --- | ---: |"]
                for name, value in prof["stages"].items():
                    cell = f"{value:,}" if name == "entries" else fmt_ms(value)
                    out.append(f"| {name} | {cell} |")
                out += ["", dominant(prof), ""]
            out += [
                f"cProfile over {prof['calls']} call(s), by own time:",
                "",
                "```",
                prof["tottime"],
                "```",
                "",
                "By cumulative time:",
                "",
                "```",
                prof["cumulative"],
                "```",
                "",
            ]
        return out


def dominant(prof: Json) -> str:
    """One line naming the stage that dominates (innermost rows; totals and cache wrappers excluded)."""
    stages: dict[str, float] = prof["stages"]
    if prof["scenario"] == "first":
        whole = stages["parse_and_verify total"]
        skip = ("parse_and_verify total", "entries")
    else:
        whole = stages["whole handler, wrapped (mean)"]
        skip = ("whole handler", "Runtime.")
    rows = {k.strip(): v for k, v in stages.items() if not k.startswith(skip)}
    if not rows or not whole:
        return ""
    name, ms = max(rows.items(), key=lambda item: item[1])
    return f"**Dominant: {name}, {fmt_ms(ms)} ms = {100 * ms / whole:.0f}% of {fmt_ms(whole)} ms.**"


# ------------------------------------------------------------------------------------------------ main
def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and every child it has waited for (children, responder, imports)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_memory(report: Report, workdir: Path) -> None:
    """The memory scenario: one child per mode, RSS at each checkpoint of distinct clients seen."""
    spec = report.fixture.memory
    assert spec is not None
    for number, mode in enumerate(report.plan.memory_modes):
        progress(f"memory: {mode.label}, up to {max(report.plan.clients):,} distinct clients")
        result = run_child(
            {
                "kind": "memory",
                "label": mode.label,
                "good_pem": spec.good_pem,
                "revoked_pem": spec.revoked_pem,
                "clients_file": spec.clients_file,
                "checkpoints": list(report.plan.clients),
                "entry_bound": mode.entry_bound,
            },
            report.fixture,
            workdir,
            f"memory-{number}",
            timeout=1800,
            env={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(mode.memory_mb)},
        )
        last = result["rows"][-1]
        progress(
            f"  {last['clients']:,} clients: RSS {last['rss_mb']:.0f} MB (+{last['delta_mb']:.0f}), "
            f"accounted {last['accounted_mb']:.1f} MB, peak {last['hwm_mb']:.0f} MB"
        )
        report.memory.append((mode, result))


def run(plan: Plan, parts: frozenset[str] = PARTS) -> Report:
    started = time.perf_counter()
    busy_before, own_before = busy_cpu_seconds(), own_cpu_seconds()
    code, source = code_version(), src_fingerprint()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="authorizer-bench-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        fixture = build_fixture(plan, stack, workdir, parts)
        report = Report(plan, fixture)
        report.code = code
        stack.callback(lambda: setattr(report, "code", _changed(report.code, source)))
        if "memory" in parts:
            run_memory(report, workdir)
        if fixture.index is not None:

            def child(spec: Json, name: str, timeout: float, env: dict[str, str]) -> Json:
                return run_child(spec, fixture, workdir, name, timeout=timeout, env=env)

            report.index = index_scenario.run(fixture.index, child, progress)
        for family in fixture.families:
            spec = family_spec(family)
            is_1m = family.label == "1M"
            label = family.label
            progress(f"{label}: baseline (pyhanko-certvalidator, fresh context per request)")
            report.results[f"{label}/baseline"] = run_child(
                {
                    **spec,
                    "kind": "baseline",
                    "baseline_samples": plan.baseline.get(label, plan.ocsp_baseline),
                    "baseline_revoked": not is_1m,
                },
                fixture,
                workdir,
                f"{label}-baseline",
                timeout=240,
            )
            progress(f"{label}: authorizer")
            report.results[f"{label}/authorizer"] = run_child(
                {
                    **spec,
                    "kind": "authorizer",
                    "first_samples": plan.first.get(label, plan.ocsp_first),
                    "seen_samples": plan.seen,
                },
                fixture,
                workdir,
                f"{label}-authorizer",
            )
            auth = report.results[f"{label}/authorizer"]
            progress(
                f"{label}: first p50 {fmt_ms(p50(auth['first']['ms']))} ms, "
                f"seen p50 {fmt_ms(p50(auth['seen']['ms']))} ms, "
                f"new p50 {fmt_ms(p50(auth['new']['ms']))} ms, peak RSS {auth['peak_rss_mb']:.0f} MB"
            )
        if "families" not in parts:
            return finish(report, started, busy_before, own_before)
        progress(f"import time of authorizer.app ({plan.imports} fresh interpreters)")
        report.imports = measure_import(fixture, plan.imports)
        missed = report.evaluate()
        profiled: set[tuple[str, str]] = set()
        for label, scenario in missed:
            key = (
                ("OCSP" if label == "OCSP" else "CRL", scenario) if scenario != "first" else (label, scenario)
            )
            if key in profiled:
                continue  # one profile per kind of miss is enough
            profiled.add(key)
            family = next(f for f in fixture.families if f.label == label)
            progress(f"profiling {label} / {scenario}")
            prof = run_child(
                {**family_spec(family), "kind": "profile", "scenario": scenario},
                fixture,
                workdir,
                f"{label}-profile-{scenario}",
            )
            names = {
                "seen": "warm, same certificate",
                "new": "warm, new certificate",
                "first": "first request",
            }
            report.profiles.append((f"{label}: {names[scenario]}", prof))
    return finish(report, started, busy_before, own_before)


def _changed(code: str, source: str) -> str:
    if src_fingerprint() == source:
        return code
    return code + "; **src/ changed during the run: figures may come from different versions of the code**"


def finish(report: Report, started: float, busy_before: float, own_before: float) -> Report:
    report.runtime_s = time.perf_counter() - started
    foreign = (busy_cpu_seconds() - busy_before) - (own_cpu_seconds() - own_before)
    report.foreign_cores = max(0.0, foreign) / report.runtime_s
    return report


def splice(previous: str, section: str, heading: str = MEMORY_HEADING) -> str:
    """`previous` with its section under `heading` replaced by `section` (appended when it has none)."""
    start = previous.find(heading)
    head = previous[: start if start >= 0 else len(previous)].rstrip("\n")
    end = previous.find("\n## ", start + len(heading)) if start >= 0 else -1
    rest = previous[end + 1 :] if end >= 0 else ""
    return (head + "\n\n" if head else "") + section + ("\n" + rest if rest else "")


def section_of(text: str, heading: str) -> str:
    """The section under `heading` in a report, up to the next `## ` heading ("" when it has none)."""
    start = text.find(heading)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start : end + 1 if end >= 0 else len(text)].rstrip("\n") + "\n"


SECTIONS = {"memory": MEMORY_HEADING, "index": index_scenario.HEADING}


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every server, responder and temp directory is cleaned up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k only, fewer samples")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"Markdown report (default {RESULTS})")
    parser.add_argument(
        "--chart",
        type=Path,
        help=f"SVG chart of latency against CRL size (default: {CHART_NAME} beside --output)",
    )
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        help="run one part: 'memory' or 'index' replaces only that section of the existing report; "
        "'families' rewrites the rest and keeps those two sections",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    parts = frozenset({args.only}) if args.only else PARTS
    with terminate_cleanly():
        report = run(plan, parts)
    previous = args.output.read_text() if args.output.exists() else ""
    if "families" in parts:
        chart = args.chart or args.output.with_name(CHART_NAME)
        series = report.chart_series()
        if series:
            write_chart(series, chart, TITLE, report.chart_subtitle())
            beside = chart.resolve().parent == args.output.resolve().parent
            report.chart = chart.name if beside else str(chart.resolve())
            progress(f"chart written to {chart}")
        text = report.markdown()
        sys.stdout.write(text)
        for part, heading in SECTIONS.items():  # a part not run keeps its section of the last report
            kept = section_of(previous, heading) if part not in parts else ""
            if kept:
                text = splice(text, kept, heading)
    else:
        text = previous
        for part, heading in SECTIONS.items():
            if part in parts:
                lines = report.memory_section() if part == "memory" else report.index_section()
                section = "\n".join(lines).lstrip("\n") + "\n"
                sys.stdout.write(section)
                text = splice(text, section, heading)
        if "index" in parts:
            progress("chart not redrawn: it shows one run's figures (`make bench` draws the index point too)")
    args.output.write_text(text)
    progress(f"done in {report.runtime_s:.0f} s; report written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
