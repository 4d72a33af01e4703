"""The shared revocation index at scale (issue 12): a new container's first request against AWS Private
CA's CRLs, through the index (REVOCATION_INDEX_S3_URI) and fetching the CRLs themselves.

    PYTHONPATH=src .venv/bin/python benchmarks/run.py --only index [--quick]

S3 is moto on loopback (the parent's MotoS3). The PKI is laid out as AWS Private CA lays it out: a root
CA and issuing CAs (RSA-2048), each CA's CRL in an S3 bucket at `crl/<CA-ID>.crl`, the issuing CAs'
CDP naming the root's CRL by its S3 URL:

- *complete*: one CA's complete CRL (1,000,000 entries in the full run), certificates without a CDP,
  found through the CRL set (REVOCATION_CRL_S3_URI); likewise a smaller complete CRL (100,000 entries),
  another CA's, in a bucket of its own (*complete-100k*);
- *partitioned*: another CA's 10,000,000 entries over partitions of at most 1 MB as Private CA writes
  them (400 x 25,000), each at `crl/<CA-ID>/<GUID>.crl` with a critical IssuingDistributionPoint naming
  its own `http://<bucket>.s3.<region>.amazonaws.com/...` URL, certificates whose CDP names their
  partition; read two ways: from the CDP through S3 (CRL_S3_BUCKETS, no listing) and through the CRL set.

The CRLs (crlgen's fast path) and the CA keys are generated once into `.venv/bench-cache/`, keyed by the
parameters, and reused while the CRLs have more than two days left before nextUpdate; the root's small CRL,
the leaves and everything in S3 are made at run time. One indexer run (its own child process) indexes
every source; then every measurement is a fresh child process (a new container), index and CRL modes
interleaved.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from chart import INDEX_SCENARIO
from chart import fmt_ms as _ms
from crlgen import signed_crl
from pki import PKI, Credential, key_usage, name, pem_bundle, utcnow

Json = dict[str, Any]

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".venv" / "bench-cache"
GENERATOR = 1  # bump when what is generated changes: the cache key includes it
SEED = 20_251_201
REGION = "us-east-1"
ROOT_BUCKET = "bench-pca-root"
COMPLETE_BUCKET = "bench-pca-complete"
PARTITIONED_BUCKET = "bench-pca-partitioned"
INDEX_BUCKET = "bench-revocation-index"
INDEX_PREFIX = "index/"
TRUSTSTORE_KEY = "index-truststore.pem"
CRL_DAYS = 30  # nextUpdate of the cached CRLs
MIN_LEFT = dt.timedelta(days=2)  # regenerate when less than this is left before nextUpdate

HEADING = "## Shared revocation index: a new container's first request"

# Targets on this machine (issue 12), reported against, not asserted.
FIRST_MS = 250.0
FIRST_RSS_MB = 150.0
WARM_NEW_MS = 1.0
MEMORY_SIZES_MB = (128, 256, 512, 1024, 1769)  # Lambda settings the report picks from


@dataclass(frozen=True)
class IndexPlan:
    complete_entries: int  # the complete CRL (the chart's point and the targets)
    smaller_complete: tuple[int, ...]  # more complete CRLs, one CA and bucket each
    partitions: int  # the partitioned CA: partition CRLs ...
    partition_entries: int  # ... of this many entries each
    runs: int  # fresh child processes ("new containers") per case and mode
    seen: int  # warm samples, same certificate, per child
    new: int  # warm samples, new certificates of the CA, per child
    other_partitions: int  # warm container, certificates of partitions it has not read yet


FULL_INDEX = IndexPlan(1_000_000, (100_000,), 400, 25_000, runs=3, seen=2000, new=200, other_partitions=10)
QUICK_INDEX = IndexPlan(100_000, (10_000,), 8, 12_500, runs=1, seen=300, new=50, other_partitions=3)


def s3_url(bucket: str, key: str) -> str:
    """The URL AWS Private CA names for a CRL in its bucket (no CNAME)."""
    return f"http://{bucket}.s3.{REGION}.amazonaws.com/{key}"


def count_label(n: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return f"{n:,}"


def smaller_bucket(entries: int) -> str:
    """The bucket of a smaller complete CRL (each its own, so no CRL set lists another's CRL)."""
    return f"{COMPLETE_BUCKET}-{count_label(entries).lower()}"


# --------------------------------------------------------------------------------------- cached material
@dataclass
class Material:
    """The cached PKI and CRLs (meta.json in `directory` describes them)."""

    directory: Path
    meta: Json
    generated_s: float = 0.0  # 0 when read from the cache

    def credential(self, role: str | Json) -> Credential:
        entry = self.meta[role] if isinstance(role, str) else role
        cert = x509.load_pem_x509_certificate(entry["cert"].encode())
        key = serialization.load_pem_private_key(entry["key"].encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return Credential(cert, key, self.directory / f"{role}.pem", self.directory / f"{role}.key")

    def crl_path(self, entry: Json) -> Path:
        return self.directory / str(entry["file"])


def _params(plan: IndexPlan) -> Json:
    return {
        "generator": GENERATOR,
        "seed": SEED,
        "complete": plan.complete_entries,
        "smaller_complete": list(plan.smaller_complete),
        "partitions": plan.partitions,
        "partition_entries": plan.partition_entries,
        "buckets": [ROOT_BUCKET, COMPLETE_BUCKET, PARTITIONED_BUCKET, REGION],
    }


def material(plan: IndexPlan, progress: Callable[[str], None]) -> Material:
    """The cached material for `plan`, generated when missing or close to its CRLs' nextUpdate."""
    params = _params(plan)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    directory = CACHE / f"index-{key}"
    meta_path = directory / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        left = dt.datetime.fromisoformat(meta["next_update"]) - utcnow()
        files = [meta["complete"]["file"], *(c["file"] for c in meta["smaller_complete"])]
        files += [p["file"] for p in meta["partitions"]]
        if meta.get("params") == params and left > MIN_LEFT and all((directory / f).exists() for f in files):
            progress(f"index: cached PKI and CRLs in {directory} (nextUpdate in {left.days} days)")
            return Material(directory, meta)
    progress(
        f"index: generating the PKI and "
        f"{plan.complete_entries + sum(plan.smaller_complete) + plan.partitions * plan.partition_entries:,} "
        f"CRL entries into {directory} (once)"
    )
    started = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    scratch = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    meta = _generate(plan, scratch, params, progress)
    (scratch / "meta.json").write_text(json.dumps(meta))
    scratch.rename(directory)
    return Material(directory, meta, time.perf_counter() - started)


def _generate(plan: IndexPlan, out: Path, params: Json, progress: Callable[[str], None]) -> Json:
    ids = random.Random(SEED)

    def ca_id() -> str:
        return str(uuid.UUID(int=ids.getrandbits(128), version=4))

    filler = random.Random(SEED + 1)

    def serials(count: int) -> list[int]:
        return [filler.getrandbits(159) | 1 for _ in range(count)]

    pki = PKI(out / "pki")
    root = pki.root("Bench Private CA Root")
    root_id, complete_id, partitioned_id = ca_id(), ca_id(), ca_id()
    root_key = f"crl/{root_id}.crl"
    root_crl_url = s3_url(ROOT_BUCKET, root_key)
    complete_ca = pki.intermediate("Bench Private CA, complete CRL", root, crl_urls=[root_crl_url])
    partitioned_ca = pki.intermediate("Bench Private CA, partitioned CRLs", root, crl_urls=[root_crl_url])
    now = utcnow()
    this_update, next_update = now - dt.timedelta(minutes=5), now + dt.timedelta(days=CRL_DAYS)
    number = int(now.timestamp() * 1000)  # Private CA's cRLNumbers are timestamps too

    def pem(credential: Credential) -> Json:
        key = credential.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"cert": credential.pem, "key": key.decode()}

    def write(file: str, ca: Credential, entries: list[int], idp: Sequence[str] = ()) -> int:
        der = signed_crl(
            ca.cert,
            ca.key,
            entries,
            this_update,
            next_update,
            number,
            idp_urls=idp,
            authority_key_identifier=True,
        )
        (out / file).write_bytes(der)
        return len(der)

    started = time.perf_counter()
    entries = serials(plan.complete_entries)
    complete: Json = {
        "key": f"crl/{complete_id}.crl",
        "file": "complete.crl",
        "entries": len(entries),
        "revoked": entries[len(entries) // 2],  # mid-list: no lucky early hit
        "bytes": write("complete.crl", complete_ca, entries),
    }
    progress(f"  complete CRL: {complete['bytes'] / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    smaller: list[Json] = []
    for count in plan.smaller_complete:
        label = count_label(count)
        ca_of = pki.intermediate(f"Bench Private CA, complete CRL {label}", root, crl_urls=[root_crl_url])
        id_of = ca_id()
        entries = serials(count)
        file = f"complete-{label.lower()}.crl"
        smaller.append(
            {
                "label": label,
                "bucket": smaller_bucket(count),
                "key": f"crl/{id_of}.crl",
                "file": file,
                "entries": count,
                "revoked": entries[count // 2],
                "bytes": write(file, ca_of, entries),
                "ca": {**pem(ca_of), "id": id_of},
            }
        )
    started = time.perf_counter()
    partitions: list[Json] = []
    for i in range(plan.partitions):
        key = f"crl/{partitioned_id}/{ca_id()}.crl"
        url = s3_url(PARTITIONED_BUCKET, key)
        entries = serials(plan.partition_entries)
        file = f"partition-{i:04d}.crl"
        size = write(file, partitioned_ca, entries, [url])
        partitions.append(
            {"key": key, "url": url, "file": file, "revoked": entries[len(entries) // 2], "bytes": size}
        )
    total = sum(p["bytes"] for p in partitions)
    progress(f"  {plan.partitions} partitions: {total / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s")
    return {
        "params": params,
        "generated_at": now.isoformat(),
        "this_update": this_update.isoformat(),
        "next_update": next_update.isoformat(),
        "crl_number": number,
        "root": {**pem(root), "id": root_id, "crl_key": root_key, "crl_url": root_crl_url},
        "complete_ca": {**pem(complete_ca), "id": complete_id},
        "partitioned_ca": {**pem(partitioned_ca), "id": partitioned_id},
        "complete": complete,
        "smaller_complete": smaller,
        "partitions": partitions,
    }


# --------------------------------------------------------------------------------------------- fixture
@dataclass(frozen=True)
class Case:
    """One way a container meets the CRLs: its certificates and the settings that differ."""

    key: str
    title: str
    good_pem: str
    revoked_pem: str
    new_pems: list[str]
    other_pems: list[str]
    env: dict[str, str]


@dataclass
class IndexFixture:
    plan: IndexPlan
    material: Material
    truststore_pem: str
    env: dict[str, str]  # shared by the indexer and every container
    cases: list[Case]
    upload_s: float
    indexer_env: dict[str, str] = field(default_factory=dict)


def _leaf(pki: PKI, ca: Credential, label: str, serial: int | None = None, cdp: str | None = None) -> str:
    """A client certificate of the test PKI's leaf profile (one shared P-256 key), with `serial` when
    given (a revoked one) and a CDP naming `cdp` when given (a partition)."""
    slug = label.lower().replace(" ", "-")
    credential = pki.issue(
        name(f"bench index {label}", "Revocation Test Clients"),
        issuer=ca,
        ca=False,
        key=pki.leaf_key("ec"),
        crl_urls=[cdp] if cdp else (),
        usage=key_usage(digital_signature=True),
        ekus=[ExtendedKeyUsageOID.CLIENT_AUTH],
        serial=serial,
        extra_extensions=[x509.SubjectAlternativeName([x509.DNSName(f"{slug}.clients.example.test")])],
    )
    return str(credential.pem)


def build(plan: IndexPlan, moto: Any, workdir: Path, progress: Callable[[str], None]) -> IndexFixture:
    """Material from the cache, leaves minted now, everything uploaded to moto S3."""
    cached = material(plan, progress)
    meta = cached.meta
    root, complete_ca = cached.credential("root"), cached.credential("complete_ca")
    partitioned_ca = cached.credential("partitioned_ca")
    smaller = [(c, cached.credential(c["ca"])) for c in meta["smaller_complete"]]
    pki = PKI(workdir / "index-pki")

    started = time.perf_counter()
    client = moto.client
    buckets = (ROOT_BUCKET, COMPLETE_BUCKET, PARTITIONED_BUCKET, INDEX_BUCKET)
    for bucket in (*buckets, *(c["bucket"] for c, _ in smaller)):
        client.create_bucket(Bucket=bucket)
    now = utcnow()
    root_crl = signed_crl(
        root.cert,
        root.key,
        [random.getrandbits(159) | 1 for _ in range(10)],
        now - dt.timedelta(minutes=5),
        now + dt.timedelta(days=1),
        authority_key_identifier=True,
    )
    client.put_object(Bucket=ROOT_BUCKET, Key=meta["root"]["crl_key"], Body=root_crl)
    client.put_object(
        Bucket=COMPLETE_BUCKET,
        Key=meta["complete"]["key"],
        Body=cached.crl_path(meta["complete"]).read_bytes(),
    )
    for c, _ in smaller:
        client.put_object(Bucket=c["bucket"], Key=c["key"], Body=cached.crl_path(c).read_bytes())
    for partition in meta["partitions"]:
        client.put_object(
            Bucket=PARTITIONED_BUCKET, Key=partition["key"], Body=cached.crl_path(partition).read_bytes()
        )
    truststore_pem = pem_bundle([root, complete_ca, *(ca for _, ca in smaller), partitioned_ca]).decode()
    version = str(
        client.put_object(Bucket=moto.bucket, Key=TRUSTSTORE_KEY, Body=truststore_pem.encode())["VersionId"]
    )
    upload_s = time.perf_counter() - started
    progress(f"index: uploaded to moto S3 in {upload_s:.1f} s")

    env = {
        "TRUSTSTORE_KEY": TRUSTSTORE_KEY,
        "TRUSTSTORE_VERSION": version,
        "CRL_S3_BUCKETS": ROOT_BUCKET,  # the issuing CAs' CDP: the root's CRL, read through S3
    }
    index_uri = f"s3://{INDEX_BUCKET}/{INDEX_PREFIX}"
    complete_set = f"s3://{COMPLETE_BUCKET}/crl/"
    partitioned_set = f"s3://{PARTITIONED_BUCKET}/crl/"
    smaller_sets = [f"s3://{c['bucket']}/crl/" for c, _ in smaller]
    indexer_env = {
        **env,
        "REVOCATION_INDEX_S3_URI": index_uri,
        "REVOCATION_CRL_S3_URI": ",".join([complete_set, *smaller_sets, partitioned_set]),
    }

    n = plan.new

    def complete_case(key: str, entry: Json, ca: Credential, crl_set: str, prefix: str) -> Case:
        return Case(
            key,
            f"CRL {count_label(entry['entries'])} ({entry['entries']:,} entries, "
            f"{entry['bytes'] / 1e6:.1f} MB): Private CA complete CRL, certificates without a CDP, CRL set",
            _leaf(pki, ca, f"{prefix} good"),
            _leaf(pki, ca, f"{prefix} revoked", serial=entry["revoked"]),
            [_leaf(pki, ca, f"{prefix} new {i}") for i in range(n)],
            [],
            {"REVOCATION_CRL_S3_URI": crl_set},
        )

    completes = [
        complete_case(f"complete-{c['label'].lower()}", c, ca, crl_set, f"complete {c['label']}")
        for (c, ca), crl_set in zip(smaller, smaller_sets, strict=True)
    ]
    completes.append(complete_case("complete", meta["complete"], complete_ca, complete_set, "complete"))
    partitions = meta["partitions"]
    home = partitions[len(partitions) // 2]
    others = [p for p in partitions if p is not home][: plan.other_partitions]

    def part_leaves(prefix: str) -> tuple[str, str, list[str], list[str]]:
        return (
            _leaf(pki, partitioned_ca, f"{prefix} good", cdp=home["url"]),
            _leaf(pki, partitioned_ca, f"{prefix} revoked", serial=home["revoked"], cdp=home["url"]),
            [_leaf(pki, partitioned_ca, f"{prefix} new {i}", cdp=home["url"]) for i in range(n)],
            [_leaf(pki, partitioned_ca, f"{prefix} other {i}", cdp=p["url"]) for i, p in enumerate(others)],
        )

    total = plan.partitions * plan.partition_entries
    sizes = [p["bytes"] for p in partitions]
    shape = (
        f"{count_label(total)} entries over {plan.partitions} partitions of {plan.partition_entries:,} "
        f"({statistics.mean(sizes) / 1e6:.2f} MB each, {sum(sizes) / 1e6:.0f} MB in all)"
    )
    good, revoked, fresh, other = part_leaves("partition")
    cdp = Case(
        "partitioned-cdp",
        f"{shape}: each certificate's partition read from its CDP through S3 (CRL_S3_BUCKETS, no listing)",
        good,
        revoked,
        fresh,
        other,
        {"CRL_S3_BUCKETS": f"{ROOT_BUCKET},{PARTITIONED_BUCKET}"},
    )
    good, revoked, fresh, other = part_leaves("partition set")
    listed = Case(
        "partitioned-set",
        f"{shape}: the CRL set lists the prefix (REVOCATION_CRL_S3_URI={partitioned_set})",
        good,
        revoked,
        fresh,
        other,
        {"REVOCATION_CRL_S3_URI": partitioned_set},
    )
    return IndexFixture(plan, cached, truststore_pem, env, [*completes, cdp, listed], upload_s, indexer_env)


# ------------------------------------------------------------------------------------------------ runs
MODES = (("index", "through the index"), ("crl", "fetching the CRLs themselves (no index)"))


def run(
    fixture: IndexFixture,
    run_child: Callable[..., Json],
    progress: Callable[[str], None],
) -> Json:
    """The indexer once, then `runs` new containers per case and mode; returns every child's result."""
    plan = fixture.plan
    progress("index: one indexer run over every source (its own process)")
    indexer = run_child(
        {"kind": "indexer", "truststore_pem": fixture.truststore_pem},
        "index-indexer",
        3600,
        fixture.indexer_env,
    )
    statuses: dict[str, int] = {}
    for source in indexer["sources"]:
        statuses[source["status"]] = statuses.get(source["status"], 0) + 1
    progress(f"  {indexer['run_s']:.1f} s, peak RSS {indexer['peak_rss_mb']:.0f} MB: {statuses}")
    results: dict[str, list[Json]] = {}
    index_env = {"REVOCATION_INDEX_S3_URI": f"s3://{INDEX_BUCKET}/{INDEX_PREFIX}"}
    for case in fixture.cases:
        for number in range(plan.runs):
            for mode, _ in MODES:
                env = {**fixture.env, **case.env, **(index_env if mode == "index" else {})}
                spec = {
                    "kind": "index-first",
                    "label": f"{case.key}/{mode}",
                    "index_bucket": INDEX_BUCKET,
                    "good_pem": case.good_pem,
                    "revoked_pem": case.revoked_pem,
                    "new_pems": case.new_pems,
                    "other_pems": case.other_pems,
                    "seen_samples": plan.seen,
                }
                result = run_child(spec, f"index-{case.key}-{mode}-{number}", 900, env)
                results.setdefault(f"{case.key}/{mode}", []).append(result)
                io = result["first_io"]
                progress(
                    f"index {case.key}/{mode} #{number + 1}: first {result['first_ms']:.0f} ms "
                    f"({result['first_verdict']}), "
                    f"read {(io['index_bytes'] + io['crl_bytes']) / 1e6:.1f} MB, "
                    f"peak RSS {result['first_hwm_mb']:.0f} MB"
                )
    return {"indexer": indexer, "results": results}


# ---------------------------------------------------------------------------------------------- report
def _p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _mb(n: float) -> str:
    if n >= 10e6:
        return f"{n / 1e6:,.0f} MB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:,.0f} kB"


def _joined(values: Sequence[str]) -> str:
    return ", ".join(sorted(set(values)))


@dataclass
class Summary:
    """One case and mode over its child processes."""

    runs: list[Json]

    def first(self) -> list[float]:
        return [r["first_ms"] for r in self.runs]

    def cold(self) -> list[float]:
        return [r["cold_ms"] for r in self.runs if "cold_ms" in r]

    def io(self, field_name: str) -> float:
        return _p50([r["first_io"][field_name] for r in self.runs])

    def read_bytes(self) -> float:
        return _p50([r["first_io"]["index_bytes"] + r["first_io"]["crl_bytes"] for r in self.runs])

    def hwm(self) -> float:
        return max(float(r["first_hwm_mb"]) for r in self.runs)

    def peak(self) -> float:
        return max(float(r["peak_rss_mb"]) for r in self.runs)

    def pooled(self, part: str, key: str = "ms") -> list[float]:
        return [v for r in self.runs for v in r[part][key]]

    def verdicts(self) -> str:
        first = _joined([r["first_verdict"] for r in self.runs] + [r["cold_verdict"] for r in self.runs])
        revoked = _joined([r["revoked_verdict"] for r in self.runs])
        warm = _joined([v for r in self.runs for part in ("seen", "new") for v in r[part]["verdicts"]])
        return f"{first}; revoked → {revoked}; warm {warm}"

    def stage(self, name: str) -> float:
        return _p50([r["first_stages_ms"].get(name, 0.0) for r in self.runs])


def summaries(outcome: Json) -> dict[str, Summary]:
    return {key: Summary(runs) for key, runs in outcome["results"].items()}


def section(
    fixture: IndexFixture,
    outcome: Json,
    kind: str,
    runtime_s: float,
    foreign_cores: float,
    cores: int | None,
    code: str = "",
) -> list[str]:
    plan, meta = fixture.plan, fixture.material.meta
    done = summaries(outcome)
    indexer = outcome["indexer"]
    generated = (
        f"generated in {fixture.material.generated_s:.0f} s for this run"
        if fixture.material.generated_s
        else f"generated {meta['generated_at'][:16].replace('T', ' ')} UTC and read from the cache"
    )
    out = [
        "",
        HEADING,
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} ({kind}), {runtime_s:.0f} s with everything else "
        f"it ran; CPU used meanwhile by other processes: {foreign_cores:.2f} of {cores} cores. Code: {code}. "
        f"All figures below are from this one run, on this machine ({_cpu()}).",
        "",
        "AWS Private CA's layout in moto S3 on loopback (`ThreadedMotoServer`): a root CA and issuing CAs "
        "(RSA-2048), each CRL at `crl/<CA-ID>.crl` in its bucket, the issuing CAs' CDP naming the root's "
        "CRL by its S3 URL (read through S3: `CRL_S3_BUCKETS`). The CRLs (crlgen, genuinely signed, AKI, "
        f"random serials up to 159 bits; {generated}) are uploaded to moto in "
        f"{fixture.upload_s:.1f} s; one indexer run indexes them all. Each row below is "
        f"{plan.runs} fresh process(es) per mode, each a new container: its very first `lambda_handler` "
        "call, "
        "nothing warmed up (settings, boto3 clients, truststore from S3, the CRL set's listing when "
        "configured, then the index objects or the CRLs; import time excluded, see the families' table), "
        "then warm requests in the same process. Modes alternate (index, CRL, index, ...). *Read from S3*: "
        "the bodies `S3Reader.get` returned during that first request (index objects and CRLs; the "
        "truststore comes on top). *Peak RSS*: `VmHWM` right after the first decision, and at the end of "
        "the process in brackets. *Cold caches*: the same process once more after `app.reset()` (the "
        "runtime dropped, boto3 and its service models already loaded), the families' definition of a "
        "first request. "
        "*Revocation check*: `RevocationChecker.check` alone, timed per call; the rest of a new "
        "certificate's time is mostly path validation (a known CA's new client: cryptography's verifier up "
        "to the CA path pyhanko-certvalidator accepted), the same in both modes.",
        "",
        "| case | mode | n | first request p50 ms | max ms | read from S3 (first request) | S3 GETs / listed "
        "| peak RSS MB | cold caches p50 ms | warm, same cert p50 ms | warm, new cert p50 ms "
        "| revocation check p50 ms (new cert) | verdicts |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in fixture.cases:
        for mode, words in MODES:
            s = done.get(f"{case.key}/{mode}")
            if s is None:
                continue
            first = s.first()
            gets = s.io("index_gets") + s.io("crl_gets")
            read = s.read_bytes()
            detail = (
                f"{_mb(read)} ({_mb(s.io('index_bytes'))} index, {_mb(s.io('crl_bytes'))} CRL)"
                if mode == "index"
                else _mb(read)
            )
            out.append(
                f"| {case.title} | {words} | {len(first)} | {_ms(_p50(first))} | {_ms(max(first))} "
                f"| {detail} | {gets:.0f} / {s.io('listed'):.0f} | {s.hwm():.0f} ({s.peak():.0f}) "
                f"| {_ms(_p50(s.cold()))} "
                f"| {_ms(_p50(s.pooled('seen')))} | {_ms(_p50(s.pooled('new')))} "
                f"| {_ms(_p50(s.pooled('new', 'check_ms')))} | {s.verdicts()} |"
            )
    out += _chart_rows(fixture, done)
    out += _others(fixture, done)
    out += _stages(fixture, done)
    out += _indexer(fixture, indexer)
    out += _targets(fixture, done)
    return out


def chart_samples(outcome: Json) -> list[float]:
    """What the chart draws: the complete CRL's first request with cold caches, through the index (the
    families' "first request" is measured the same way)."""
    return Summary(outcome["results"].get("complete/index", [])).cold()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def _chart_rows(fixture: IndexFixture, done: dict[str, Summary]) -> list[str]:
    """That figure in the Results-table form chart.py reads (family, scenario, n, p50, p95)."""
    s = done.get("complete/index")
    if s is None or not s.cold():
        return []
    entries = fixture.plan.complete_entries
    meta = fixture.material.meta
    cold = s.cold()
    return [
        "",
        "For the chart (the Results table's columns; cold caches, as the families' first request):",
        "",
        "| family | scenario | n | p50 ms | p95 ms |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| CRL {count_label(entries)} ({entries:,} entries, "
        f"{meta['complete']['bytes'] / 1e6:.1f} MB, in S3) "
        f"| {INDEX_SCENARIO} | {len(cold)} | {_ms(_p50(cold))} | {_ms(_p95(cold))} |",
    ]


def _others(fixture: IndexFixture, done: dict[str, Summary]) -> list[str]:
    rows = []
    for case in fixture.cases:
        for mode, words in MODES:
            s = done.get(f"{case.key}/{mode}")
            if s is None or not s.pooled("other"):
                continue
            samples = s.pooled("other")
            runs = s.runs
            read = _p50([r["other"]["io"]["index_bytes"] + r["other"]["io"]["crl_bytes"] for r in runs])
            per = read / max(1, len(runs[0]["other"]["ms"]))
            verdicts = _joined([v for r in runs for v in r["other"]["verdicts"]])
            rows.append(
                f"| {case.key} | {words} | {len(samples)} | {_ms(_p50(samples))} | {_ms(_p95(samples))} "
                f"| {_mb(per)} | {verdicts} |"
            )
    if not rows:
        return []
    return [
        "",
        "### A warm container meets a partition it has not read yet",
        "",
        "After the rows above, in the same processes: one new certificate in each of "
        f"{fixture.plan.other_partitions} other partitions (a container's first certificate of a partition).",
        "",
        "| case | mode | n | p50 ms | p95 ms | read from S3 per certificate | verdicts |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        *rows,
    ]


STAGES = (
    "boto3 S3 clients (created on first use)",
    "truststore (S3)",
    "path validation",
    "S3 GETs (sum)",
    "CRL set: parse each listed object",
    "CRL parse+verify+index",
    "index: SHA-256 of the tables",
)


def _stages(fixture: IndexFixture, done: dict[str, Summary]) -> list[str]:
    out = [
        "",
        "### Where the first request spends its time (p50 over the processes, ms)",
        "",
        "Module functions wrapped in the child; the CRL set's listing and the CRL/index reads run in worker "
        "threads, concurrently, so stages overlap and sums can exceed the total.",
        "",
        "| case | mode | total | " + " | ".join(STAGES) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in STAGES) + " |",
    ]
    for case in fixture.cases:
        for mode, _ in MODES:
            s = done.get(f"{case.key}/{mode}")
            if s is None:
                continue
            cells = " | ".join(_ms(s.stage(name)) for name in STAGES)
            out.append(f"| {case.key} | {mode} | {_ms(_p50(s.first()))} | {cells} |")
    return out


def _indexer(fixture: IndexFixture, indexer: Json) -> list[str]:
    sources = indexer["sources"]
    meta = fixture.material.meta
    crls = [(c, f"s3://{c['bucket']}/{c['key']}") for c in meta["smaller_complete"]]
    crls.append((meta["complete"], f"s3://{COMPLETE_BUCKET}/{meta['complete']['key']}"))
    parts = [s for s in sources if s["source"].startswith(f"s3://{PARTITIONED_BUCKET}/")]
    statuses: dict[str, int] = {}
    for s in sources:
        statuses[s["status"]] = statuses.get(s["status"], 0) + 1
    out = [
        "",
        "### The indexer (one run, its own process)",
        "",
        "`Indexer(settings, truststore, S3Reader(...)).run()` as the indexer function runs it, over every "
        "source it finds: every CRL set (`REVOCATION_CRL_S3_URI`) and the truststore CAs' distribution "
        "points (the root's CRL). Each CRL is read from S3, verified with the authorizer's code "
        "(`crl.parse_and_verify`) and written as one index object.",
        "",
        "| what | sources | time | index objects written |",
        "| --- | ---: | ---: | ---: |",
        f"| the whole run ({', '.join(f'{n} {k}' for k, n in sorted(statuses.items()))}) | {len(sources)} "
        f"| {indexer['run_s']:.1f} s | {_mb(sum(s['index_bytes'] for s in sources))} |",
    ]
    for entry, source in crls:
        whole = next((s for s in sources if s["source"] == source), None)
        if whole is not None:
            out.append(
                f"| the complete CRL ({whole['entries']:,} entries, "
                f"{entry['bytes'] / 1e6:.1f} MB) | 1 "
                f"| {whole['seconds']:.2f} s | {_mb(whole['index_bytes'])} |"
            )
    if parts:
        seconds = [s["seconds"] for s in parts]
        out.append(
            f"| the partitions ({sum(s['entries'] for s in parts):,} entries) | {len(parts)} "
            f"| {sum(seconds):.1f} s ({_ms(1000 * statistics.median(seconds))} ms each, p50) "
            f"| {_mb(sum(s['index_bytes'] for s in parts))} "
            f"({_mb(statistics.median([s['index_bytes'] for s in parts]))} each) |"
        )
    out += ["", f"Indexer peak RSS: {indexer['peak_rss_mb']:.0f} MB (idle {indexer['idle_rss_mb']:.0f} MB)."]
    failed = [s for s in sources if s["status"] not in ("indexed", "unchanged")]
    for s in failed[:5]:
        out.append(f"- {s['source']}: {s['status']}: {s['detail']}")
    return out


def _fits(mb: float) -> int:
    """The smallest Lambda memory setting of MEMORY_SIZES_MB with a quarter of headroom over `mb`."""
    return next((size for size in MEMORY_SIZES_MB if size >= mb * 1.25), MEMORY_SIZES_MB[-1])


def _targets(fixture: IndexFixture, done: dict[str, Summary]) -> list[str]:
    index, crl = done.get("complete/index"), done.get("complete/crl")
    if index is None or crl is None:
        return []
    label = count_label(fixture.plan.complete_entries)
    first = _p50(index.first())
    boto = index.stage("boto3 S3 clients (created on first use)")
    rss = index.hwm()
    new, new_crl = _p50(index.pooled("new")), _p50(crl.pooled("new"))
    check, check_crl = _p50(index.pooled("new", "check_ms")), _p50(crl.pooled("new", "check_ms"))
    path = _p50(index.pooled("new", "path_ms"))

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = [
        "",
        "### Targets (issue 12, on this machine)",
        "",
        "| target | measured | status |",
        "| --- | --- | --- |",
        f"| {label}: a new container's first request through the index ≤ {FIRST_MS:.0f} ms (p50) "
        f"| {_ms(first)} ms, of which {_ms(boto)} ms creating the process's first boto3 clients (fetching "
        f"the CRL itself: {_ms(_p50(crl.first()))} ms) | {met(first <= FIRST_MS)} |",
        f"| {label}: peak RSS of that container ≤ {FIRST_RSS_MB:.0f} MB | {rss:.0f} MB (fetching the CRL "
        f"itself: {crl.hwm():.0f} MB) | {met(rss <= FIRST_RSS_MB)} |",
        f"| warm new-certificate decision p50 ≤ {WARM_NEW_MS:g} ms in-process | whole handler {_ms(new)} ms "
        f"(fetching the CRL itself: {_ms(new_crl)} ms), of which path validation {_ms(path)} ms and the "
        f"revocation check {_ms(check)} ms (fetching the CRL itself: {_ms(check_crl)} ms) "
        f"| whole handler: {met(new <= WARM_NEW_MS)}; revocation check: {met(check <= WARM_NEW_MS)} |",
        "",
        "Memory: peak RSS (`VmHWM`, whole process) through the index / fetching the CRLs themselves, and the "
        "smallest Lambda memory setting with a quarter of headroom over it:",
        "",
    ]
    for case in fixture.cases:
        a, b = done.get(f"{case.key}/index"), done.get(f"{case.key}/crl")
        if a is None or b is None:
            continue
        out.append(
            f"- {case.key}: {a.peak():.0f} MB → {_fits(a.peak())} MB through the index; "
            f"{b.peak():.0f} MB → {_fits(b.peak())} MB fetching the CRLs themselves"
        )
    out += [
        "",
        "Lambda gives CPU in proportion to memory (one vCPU at 1,769 MB): a smaller setting fits in memory "
        "but stretches every CPU-bound millisecond above.",
    ]
    return out
