"""Configuration, read once from the environment into frozen objects.

Invalid values never crash the function: they fall back to the (fail-closed) default and are
reported in `Settings.problems` so the handler can log them once.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_BLOCKED_NETWORKS = "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128,fd00:ec2::254/128"


class Depth(enum.Enum):
    """Which certificates on the path are checked for revocation."""

    LEAF = "leaf"
    CHAIN = "chain"  # the leaf and every intermediate; never the anchor


@dataclass(frozen=True, slots=True)
class RevocationPolicy:
    """The few named switches that decide revocation (modelled on rustls' client verifier)."""

    depth: Depth = Depth.CHAIN
    allow_no_info: bool = True  # REVOCATION_NO_INFO=allow
    allow_unavailable: bool = False  # REVOCATION_UNAVAILABLE=allow
    stale_grace_seconds: float = 0.0  # how long past nextUpdate data may still be used
    max_age_seconds: float = 3600.0  # upper bound on reusing any answer
    clock_skew_seconds: float = 300.0
    # REVOCATION_DELTA_CRL=require: a delta CRL a certificate or its base CRL declares (FreshestCRL,
    # RFC 5280 §5.2.4) must be had, else revocation_unavailable; =ignore answers from the base alone.
    use_delta_crls: bool = True


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits every network fetch obeys."""

    timeout_seconds: float = 2.0
    blocked_networks: tuple[IPNetwork, ...] = ()
    max_crl_bytes: int = 64 * 1024 * 1024
    max_ocsp_bytes: int = 64 * 1024
    max_redirects: int = 3


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    """Revocation sources beyond the certificate's own URLs: CRLs read from S3, and a denylist."""

    crl_s3_uris: tuple[str, ...] = ()  # REVOCATION_CRL_S3_URI: s3://bucket/prefix/, comma-separated
    crl_s3_buckets: frozenset[str] = frozenset()  # CDP URLs into these buckets are read through S3
    denylist_uri: str = ""  # REVOCATION_DENYLIST_S3_URI: s3://bucket/key (the CLI also takes a path)
    s3_refresh_seconds: float = 60.0
    crl_files: tuple[str, ...] = ()  # `check --crl`: CRL files handed over on the command line
    index_uri: str = ""  # REVOCATION_INDEX_S3_URI: s3://bucket/prefix/ of the shared revocation index
    index_urls: tuple[str, ...] = ()  # REVOCATION_INDEX_URLS: more CRL URLs for the indexer to index

    @property
    def s3_buckets(self) -> frozenset[str]:
        """Every bucket a distribution point may be read from through the function's role."""
        return self.crl_s3_buckets | {uri[5:].split("/", 1)[0] for uri in self.crl_s3_uris}


DEFAULT_MEMORY_MB = 1024  # when AWS_LAMBDA_FUNCTION_MEMORY_SIZE is absent (the CLI, tests)
RUNTIME_RESERVE_MB = 64  # interpreter, libraries and boto3: idle RSS measured at 54 MB (benchmarks)
CLIENT_CACHE_SHARE = 0.25  # of the memory left after the reserve: everything cached per client
CRL_CACHE_SHARE = 0.35  # of the same: verified CRL indexes
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheBudget:
    """Byte budgets of the caches that outlive an invocation, derived from the function's memory.

    The rest (40% of what the reserve leaves) is headroom for what no cache holds: a CRL being
    parsed (about twice its index while it is built, plus its DER), and each request's own garbage.
    """

    memory_mb: int
    client_bytes: int  # shared by the per-client caches: certificate summaries, decisions, OCSP answers
    crl_bytes: int  # CRL indexes; one CRL bigger than this is still kept (see cache.ByteBudget)

    @classmethod
    def for_memory(cls, memory_mb: int) -> CacheBudget:
        usable = max(memory_mb - RUNTIME_RESERVE_MB, memory_mb / 2) * _MIB
        return cls(memory_mb, int(usable * CLIENT_CACHE_SHARE), int(usable * CRL_CACHE_SHARE))


@dataclass(frozen=True, slots=True)
class Settings:
    truststore_bucket: str = ""
    truststore_key: str = "truststore.pem"
    truststore_version: str = ""  # empty: the latest version
    truststore_refresh_seconds: float = 300.0
    http_api_simple_responses: bool = True
    budget_seconds: float = 5.0
    failure_backoff_seconds: float = 10.0
    revocation: RevocationPolicy = field(default_factory=RevocationPolicy)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    cache: CacheBudget = field(default_factory=lambda: CacheBudget.for_memory(DEFAULT_MEMORY_MB))
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    problems: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        reader = _Reader(os.environ if env is None else env)
        revocation = RevocationPolicy(
            depth=Depth(reader.choice("REVOCATION_CHECK", "chain", ("chain", "leaf"))),
            allow_no_info=reader.choice("REVOCATION_NO_INFO", "allow", ("allow", "deny")) == "allow",
            allow_unavailable=reader.choice("REVOCATION_UNAVAILABLE", "deny", ("deny", "allow")) == "allow",
            stale_grace_seconds=reader.number("REVOCATION_STALE_GRACE_SECONDS", 0.0),
            max_age_seconds=reader.number("REVOCATION_CACHE_MAX_AGE_SECONDS", 3600.0),
            clock_skew_seconds=reader.number("CLOCK_SKEW_SECONDS", 300.0),
            use_delta_crls=reader.choice("REVOCATION_DELTA_CRL", "require", ("require", "ignore"))
            == "require",
        )
        fetch = FetchPolicy(
            timeout_seconds=reader.number("FETCH_TIMEOUT_SECONDS", 2.0, minimum=0.05),
            blocked_networks=reader.networks("FETCH_BLOCKED_NETWORKS", DEFAULT_BLOCKED_NETWORKS),
            max_crl_bytes=int(reader.number("MAX_CRL_BYTES", 64 * 1024 * 1024, minimum=1)),
            max_ocsp_bytes=int(reader.number("MAX_OCSP_BYTES", 64 * 1024, minimum=1)),
        )
        # Set by Lambda (128-10240 MB); smaller values are accepted, for tests and local runs.
        memory_mb = reader.integer("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", DEFAULT_MEMORY_MB)
        return cls(
            truststore_bucket=reader.text("TRUSTSTORE_BUCKET", ""),
            truststore_key=reader.text("TRUSTSTORE_KEY", "truststore.pem"),
            truststore_version=reader.text("TRUSTSTORE_VERSION", ""),
            truststore_refresh_seconds=reader.number("TRUSTSTORE_REFRESH_SECONDS", 300.0),
            http_api_simple_responses=reader.choice("HTTP_API_SIMPLE_RESPONSES", "true", ("true", "false"))
            == "true",
            budget_seconds=reader.number("AUTHORIZER_BUDGET_SECONDS", 5.0, minimum=0.1),
            failure_backoff_seconds=reader.number("REVOCATION_FAILURE_BACKOFF_SECONDS", 10.0),
            revocation=revocation,
            fetch=fetch,
            cache=CacheBudget.for_memory(memory_mb),
            sources=SourcesConfig(
                crl_s3_uris=reader.s3_uris("REVOCATION_CRL_S3_URI", prefixes=True),
                crl_s3_buckets=frozenset(reader.words("CRL_S3_BUCKETS")),
                denylist_uri=next(iter(reader.s3_uris("REVOCATION_DENYLIST_S3_URI", prefixes=False)), ""),
                s3_refresh_seconds=reader.number("REVOCATION_S3_REFRESH_SECONDS", 60.0, minimum=1),
                index_uri=next(iter(reader.s3_uris("REVOCATION_INDEX_S3_URI", prefixes=True)), ""),
                index_urls=tuple(reader.words("REVOCATION_INDEX_URLS")),
            ),
            problems=tuple(reader.problems),
        )


class _Reader:
    """Reads typed values and records, rather than raises on, bad ones."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, default).strip()

    def words(self, name: str) -> list[str]:
        return [part for part in (p.strip() for p in self.env.get(name, "").split(",")) if part]

    def s3_uris(self, name: str, prefixes: bool) -> tuple[str, ...]:
        """s3://bucket/... URIs; a bad one is recorded and kept as given, so the source fails closed
        (unreadable) rather than silently disappearing."""
        uris = []
        for uri in self.words(name):
            bucket, _, rest = uri.removeprefix("s3://").partition("/")
            if not uri.startswith("s3://") or not bucket or not (prefixes or rest):
                self.problems.append(
                    f"{name}: {uri!r} is not an s3://bucket/{'prefix/' if prefixes else 'key'} URI"
                )
            uris.append(uri)
        return tuple(uris)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower() or default
        if value not in allowed:
            self.problems.append(f"{name}={value!r} is not one of {allowed}; using {default!r}")
            return default
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.text(name, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not value >= minimum or value == float("inf"):
            self.problems.append(f"{name}={raw!r} is not a number >= {minimum}; using {default}")
            return default
        return value

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.text(name, "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            self.problems.append(f"{name}={raw!r} is not an integer >= {minimum}; using {default}")
            return default
        return value

    def networks(self, name: str, default: str) -> tuple[IPNetwork, ...]:
        raw = self.env.get(name, default)
        networks: list[IPNetwork] = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                # Fail closed: an unreadable entry must not silently open the blocklist.
                self.problems.append(f"{name}: {part!r} is not a CIDR; using the default blocklist")
                return self.networks(name, DEFAULT_BLOCKED_NETWORKS) if raw != default else ()
        return tuple(networks)
