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

DEFAULT_BLOCKED_NETWORKS = "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10"


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


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits every network fetch obeys."""

    timeout_seconds: float = 2.0
    blocked_networks: tuple[IPNetwork, ...] = ()
    max_crl_bytes: int = 64 * 1024 * 1024
    max_ocsp_bytes: int = 64 * 1024
    max_redirects: int = 3


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
        )
        fetch = FetchPolicy(
            timeout_seconds=reader.number("FETCH_TIMEOUT_SECONDS", 2.0, minimum=0.05),
            blocked_networks=reader.networks("FETCH_BLOCKED_NETWORKS", DEFAULT_BLOCKED_NETWORKS),
            max_crl_bytes=int(reader.number("MAX_CRL_BYTES", 64 * 1024 * 1024, minimum=1)),
            max_ocsp_bytes=int(reader.number("MAX_OCSP_BYTES", 64 * 1024, minimum=1)),
        )
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
            problems=tuple(reader.problems),
        )


class _Reader:
    """Reads typed values and records, rather than raises on, bad ones."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, default).strip()

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
