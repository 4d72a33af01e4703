"""S3 as a revocation store: `s3://` locations, S3 URLs in distribution points, bounded reads.

Everything the S3 CRL set, the denylist and distribution points that point into a private bucket
share. Reads go through the function's role (boto3); nothing here is fetched anonymously.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

ClientFactory = Callable[[], Any]

# Virtual-hosted (bucket.s3[.dualstack][.region|-region].amazonaws.com[.cn]) and path-style
# (s3[.dualstack][.region|-region].amazonaws.com[.cn]/bucket) endpoints, with or without a region.
_S3_HOST = re.compile(
    r"^(?:(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])\.)?"
    r"s3(?:\.dualstack)?(?:[.\-](?P<region>[a-z]{2}(?:-[a-z]+)+-\d))?\.amazonaws\.com(?:\.cn)?$"
)


class S3Error(Exception):
    """An S3 read or write that failed; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str  # an object key, or a prefix ("" for the whole bucket)

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """`s3://bucket/key-or-prefix`; raises ValueError for anything else."""
        parts = urlsplit(uri.strip())
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
        return cls(parts.netloc, parts.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def object_of_url(url: str) -> tuple[str, str] | None:
    """(bucket, key) when `url` is an http(s) URL of an S3 object, in any endpoint form."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    match = _S3_HOST.match(host)
    if parts.scheme.lower() not in ("http", "https") or match is None or parts.query:
        return None
    path = unquote(parts.path).lstrip("/")
    bucket = match.group("bucket")
    if bucket is None:  # path-style: the bucket is the first path segment
        bucket, _, path = path.partition("/")
    return (bucket, path) if bucket and path else None


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str
    etag: str
    body: bytes  # empty when unchanged (a conditional read answered 304)
    last_modified: datetime | None = None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    etag: str
    size: int


class S3Reader:
    """Bounded reads with the function's role; the client is made on first use."""

    def __init__(self, client_factory: ClientFactory, max_bytes: int) -> None:
        self._factory = client_factory
        self._client: Any = None
        self.max_bytes = max_bytes

    def client(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def get(self, bucket: str, key: str, etag: str = "") -> S3Object:
        """The object, or `changed=False` when its ETag is still `etag` (conditional GET)."""
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if etag:
            args["IfNoneMatch"] = etag
        try:
            response = self.client().get_object(**args)
        except Exception as exc:
            if error_code(exc) in ("304", "NotModified"):
                return S3Object(bucket, key, etag, b"", None, changed=False)
            raise S3Error(
                f"cannot read s3://{bucket}/{key}: {error_code(exc) or type(exc).__name__}"
            ) from exc
        size = int(response.get("ContentLength") or 0)
        if size > self.max_bytes:
            raise S3Error(f"s3://{bucket}/{key} is larger than {self.max_bytes} bytes")
        try:
            body = response["Body"].read(self.max_bytes + 1)
        except Exception as exc:
            raise S3Error(f"cannot read s3://{bucket}/{key}: {type(exc).__name__}") from exc
        if len(body) > self.max_bytes:
            raise S3Error(f"s3://{bucket}/{key} is larger than {self.max_bytes} bytes")
        return S3Object(bucket, key, str(response.get("ETag", "")), body, response.get("LastModified"))

    def list(self, location: S3Location, limit: int) -> Iterator[Listed]:
        """The objects under a prefix, at most `limit` of them (raises S3Error past it)."""
        try:
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=location.bucket, Prefix=location.key)
            )
            count = 0
            for page in pages:
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # a console "folder"
                    count += 1
                    if count > limit:
                        raise S3Error(f"{location} holds more than {limit} objects")
                    yield Listed(item["Key"], str(item.get("ETag", "")), int(item.get("Size") or 0))
        except S3Error:
            raise
        except Exception as exc:
            raise S3Error(f"cannot list {location}: {error_code(exc) or type(exc).__name__}") from exc


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return str(error.get("Code", "") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""
