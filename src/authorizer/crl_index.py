"""The shared revocation index: a verified CRL as one compact object a container searches in place.

Written by the indexer (indexer.py) after it verified the CRL exactly as the authorizer does, read
by every container instead of downloading and parsing the CRL itself. Layout (big-endian):

    b"MTLSIDX1"                     magic and format version
    u32 header length, header       UTF-8 JSON: issuer (fingerprint, name), scope (IDP), cRLNumber,
                                    thisUpdate/nextUpdate, source, SHA-256 of the CRL, a separate
                                    CRL signer's fingerprint, and the width, count and SHA-256 of
                                    the two tables below
    revoked table                   count x width bytes, sorted
    holds table                     the certificateHold entries, same form

Each entry is a serial's DER INTEGER contents, prefixed by its length and left-padded with zeros
to the fixed width: byte order then sorts by (length, contents), which is all a binary search
needs, so a look-up creates no Python object per entry. The tables' SHA-256 is checked on load: a
corrupt or truncated object is refused, and the authorizer falls back to the CRL itself.

Trust: the same as truststore.pem, an S3 object only the indexer's role may write.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Set
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from .crl import CrlIndex

MAGIC = b"MTLSIDX1"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
HEADER_SPAN = 12 + MAX_HEADER_BYTES  # bytes that always hold the magic, the length and the header


class CorruptIndex(ValueError):
    """An index object that cannot be used: the caller falls back to the CRL."""


@dataclass(frozen=True, slots=True)
class IndexHeader:
    source: str  # the URL or s3:// location the CRL was read from
    issuer_fingerprint: str
    issuer_name_der: bytes
    crl_sha256: str
    crl_number: int | None
    this_update: datetime
    next_update: datetime | None
    idp_urls: frozenset[str] | None
    only_user_certs: bool
    only_ca_certs: bool
    width: int
    entries: int
    holds: int
    tables_sha256: str
    source_etag: str = ""  # of the CRL object (S3), so a lister can tell it is current
    skeleton: bytes = b""  # the CRL without its entries: for matching a CRL set's candidates, never trusted
    signer: str = ""  # fingerprint of a separate CRL-signing certificate (§6.3.3 (f)), "" for the issuer


class SortedSerials(Set[bytes]):
    """A read-only set of serial keys over a sorted fixed-width table inside `data` (the object as
    read: no copy, no Python object per entry)."""

    def __init__(self, data: bytes, start: int, count: int, width: int) -> None:
        self._data, self._start, self._count, self._width = data, start, count, width

    def __contains__(self, item: object) -> bool:
        width = self._width
        if not isinstance(item, bytes) or len(item) >= width:
            return False
        probe = bytes([len(item)]) + item.rjust(width - 1, b"\0")
        data, start = self._data, self._start
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            at = start + middle * width
            entry = data[at : at + width]
            if entry < probe:
                low = middle + 1
            elif entry == probe:
                return True
            else:
                high = middle
        return False

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self._count):
            at = self._start + i * self._width
            entry = self._data[at : at + self._width]
            yield entry[len(entry) - entry[0] :] if entry[0] else b""

    def __len__(self) -> int:
        return self._count


def encode(
    index: CrlIndex,
    *,
    source: str,
    issuer_fingerprint: str,
    issuer_name_der: bytes,
    crl_sha256: str,
    source_etag: str = "",
    skeleton: bytes = b"",
) -> bytes:
    """The index object for a verified CRL (`skeleton`: see `skeleton_of`)."""
    serials = list(index.revoked)
    width = 1 + max((len(s) for s in serials), default=0)
    revoked = b"".join(sorted(_entry(s, width) for s in serials))
    holds = b"".join(sorted(_entry(s, width) for s in index.holds))
    header = {
        "format": FORMAT_VERSION,
        "source": source,
        "sourceEtag": source_etag,
        "issuerFingerprint": issuer_fingerprint,
        "issuerName": issuer_name_der.hex(),
        "crlSha256": crl_sha256,
        "crlNumber": index.crl_number,
        "thisUpdate": index.this_update.isoformat(),
        "nextUpdate": index.next_update.isoformat() if index.next_update else None,
        "idpUrls": sorted(index.idp_urls) if index.idp_urls is not None else None,
        "onlyUserCerts": index.only_user_certs,
        "onlyCaCerts": index.only_ca_certs,
        "width": width,
        "entries": len(serials),
        "holds": len(index.holds),
        "tablesSha256": hashlib.sha256(revoked + holds).hexdigest(),
        "skeleton": base64.b64encode(skeleton).decode(),
        "signer": index.signer if index.signer != issuer_fingerprint else "",
    }
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + len(encoded).to_bytes(4, "big") + encoded + revoked + holds


def skeleton_of(der: bytes) -> bytes:
    """The CRL with its revokedCertificates left out: what a CRL set matches a certificate with
    (issuer, IDP, numbers; crl_set.candidate parses it as it parses the CRL). Its signature no longer
    verifies, and it is never used for an answer."""
    from asn1crypto import crl as asn1_crl

    outer = asn1_crl.CertificateList.load(der)
    tbs = outer["tbs_cert_list"].copy()
    tbs["revoked_certificates"] = None
    return bytes(
        asn1_crl.CertificateList(
            {
                "tbs_cert_list": tbs,
                "signature_algorithm": outer["signature_algorithm"],
                "signature": outer["signature"],
            }
        ).dump()
    )


def _entry(serial: bytes, width: int) -> bytes:
    return bytes([len(serial)]) + serial.rjust(width - 1, b"\0")


def read_header(data: bytes | memoryview) -> tuple[IndexHeader, int]:
    """The header and where the tables start; raises CorruptIndex for anything but this format."""
    view = memoryview(data)
    if bytes(view[:8]) != MAGIC or len(view) < 12:
        raise CorruptIndex("not a revocation index (bad magic)")
    size = int.from_bytes(view[8:12], "big")
    if size > MAX_HEADER_BYTES or len(view) < 12 + size:
        raise CorruptIndex("index header is truncated")
    try:
        raw = json.loads(bytes(view[12 : 12 + size]))
        if raw["format"] != FORMAT_VERSION:
            raise CorruptIndex(f"index format {raw['format']} is not {FORMAT_VERSION}")
        header = IndexHeader(
            source=str(raw["source"]),
            issuer_fingerprint=str(raw["issuerFingerprint"]),
            issuer_name_der=bytes.fromhex(raw["issuerName"]),
            crl_sha256=str(raw["crlSha256"]),
            crl_number=None if raw["crlNumber"] is None else int(raw["crlNumber"]),
            this_update=_utc(raw["thisUpdate"]),
            next_update=_utc(raw["nextUpdate"]) if raw["nextUpdate"] else None,
            idp_urls=frozenset(raw["idpUrls"]) if raw["idpUrls"] is not None else None,
            only_user_certs=bool(raw["onlyUserCerts"]),
            only_ca_certs=bool(raw["onlyCaCerts"]),
            width=int(raw["width"]),
            entries=int(raw["entries"]),
            holds=int(raw["holds"]),
            tables_sha256=str(raw["tablesSha256"]),
            source_etag=str(raw.get("sourceEtag", "")),
            skeleton=base64.b64decode(raw.get("skeleton", "")),
            signer=str(raw.get("signer", "")),
        )
    except CorruptIndex:
        raise
    except Exception as exc:  # malformed JSON, missing or mistyped fields
        raise CorruptIndex(f"index header does not parse: {type(exc).__name__}") from exc
    if header.width < 1 or header.entries < 0 or header.holds < 0:
        raise CorruptIndex("index header is inconsistent")
    return header, 12 + size


def tables(data: bytes, header: IndexHeader) -> tuple[int, int]:
    """Where the revoked and holds tables start, once their length and SHA-256 are checked."""
    start = len(data) - (header.entries + header.holds) * header.width
    _, expected_start = read_header(data)
    if start != expected_start:
        raise CorruptIndex(
            f"index tables hold {len(data) - expected_start} bytes, the header says "
            f"{(header.entries + header.holds) * header.width}"
        )
    if hashlib.sha256(memoryview(data)[start:]).hexdigest() != header.tables_sha256:
        raise CorruptIndex("index tables do not match their SHA-256")
    return start, start + header.entries * header.width


def decode(data: bytes, issuer_name: x509.Name) -> tuple[IndexHeader, CrlIndex]:
    """The index as the CrlIndex crl.lookup answers from; raises CorruptIndex when it is corrupt."""
    header, _ = read_header(data)
    start, holds_start = tables(data, header)
    if header.issuer_name_der != issuer_name.public_bytes():
        raise CorruptIndex("index is for another issuer name")
    revoked = SortedSerials(data, start, header.entries, header.width)
    holds = frozenset(SortedSerials(data, holds_start, header.holds, header.width))
    return header, CrlIndex(
        issuer=issuer_name,
        this_update=header.this_update,
        next_update=header.next_update,
        idp_urls=header.idp_urls,
        only_user_certs=header.only_user_certs,
        only_ca_certs=header.only_ca_certs,
        revoked=revoked,
        entries=header.entries,
        crl_number=header.crl_number,
        holds=holds,
        # The container checks a separate signer's own revocation before using the index, as for the CRL.
        signer=header.signer or header.issuer_fingerprint,
    )


def source_name(url: str) -> str:
    """The name an index is kept under: an S3 URL is its s3:// object, whatever endpoint form the
    certificate used, so the CRL set and the distribution points find the same index."""
    from .s3 import object_of_url

    in_s3 = object_of_url(url)
    return f"s3://{in_s3[0]}/{in_s3[1]}" if in_s3 else url


def object_key(prefix: str, source: str) -> str:
    """Where the index of the CRL at `source` lives: derived from the source alone, so a container
    finds it without listing anything."""
    return f"{prefix}crl/{hashlib.sha256(source.encode()).hexdigest()}.idx"


# --- a CRL set's manifest ------------------------------------------------------------------------
# One object per CRL set location (REVOCATION_CRL_S3_URI) naming, for each CRL object the indexer
# indexed there, its ETag and its index's skeleton: a container lists the set with one read instead
# of one byte-range read per partition (400 for a 10M-certificate Private CA). Like the skeleton in
# each index, it is for matching only; the revocation data is the index itself (`decode`, checked
# against the source, its ETag and the issuer).

SET_MAGIC = "MTLSSET1"
MAX_SET_ENTRIES = 10_000


def set_key(prefix: str, location: str) -> str:
    """Where the manifest of the CRL set at `location` (s3://bucket/prefix/) lives."""
    return f"{prefix}sets/{hashlib.sha256(location.encode()).hexdigest()}.json"


def encode_set(location: str, entries: dict[str, tuple[str, bytes]]) -> bytes:
    """`entries`: s3:// object -> (its ETag, its index's skeleton)."""
    listed = [
        {"source": where, "etag": etag, "skeleton": base64.b64encode(skeleton).decode()}
        for where, (etag, skeleton) in sorted(entries.items())[:MAX_SET_ENTRIES]
    ]
    return json.dumps({"format": SET_MAGIC, "location": location, "entries": listed}).encode()


def decode_set(data: bytes, location: str) -> dict[str, tuple[str, bytes]]:
    """The manifest's entries; raises CorruptIndex for anything but a manifest of `location`."""
    try:
        parsed = json.loads(data)
        if parsed["format"] != SET_MAGIC or parsed["location"] != location:
            raise CorruptIndex("not the manifest of this CRL set")
        return {
            str(e["source"]): (str(e["etag"]), base64.b64decode(e["skeleton"], validate=True))
            for e in parsed["entries"][:MAX_SET_ENTRIES]
        }
    except CorruptIndex:
        raise
    except Exception as exc:
        raise CorruptIndex(f"CRL set manifest does not parse: {type(exc).__name__}") from exc


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
