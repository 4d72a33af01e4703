"""Hypothesis strategies for the fuzz tests: JSON values, authorizer-event fields and byte mutations."""

from __future__ import annotations

import base64
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# ================================================================================================ JSON
json_scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

# ================================================================================================ ARNs
_ARN_PIECE = st.text(alphabet=string.ascii_letters + string.digits + "-_*./:{}+ ", max_size=16)
arn_strings: st.SearchStrategy[str] = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda partition, service, region, account, api, stage, rest: (
            f"arn:{partition}:{service}:{region}:{account}:{api}/{stage}/{rest}"
        ),
        st.sampled_from(["aws", "aws-cn", "aws-us-gov", ""]) | _ARN_PIECE,
        st.sampled_from(["execute-api", ""]) | _ARN_PIECE,
        st.sampled_from(["us-east-1", "*", ""]) | _ARN_PIECE,
        st.sampled_from(["123456789012", "*", ""]) | _ARN_PIECE,
        st.sampled_from(["a1b2c3d4e5", "*", ""]) | _ARN_PIECE,
        st.sampled_from(["prod", "$default", "*", ""]) | _ARN_PIECE,
        st.sampled_from(["GET/pets/42", "*/*", "", "GET", "$default"]) | st.text(max_size=30),
    ),
    # Around API Gateway's 1600-byte limit and the 512-character policy Resource limit.
    st.builds(
        lambda stage, n: f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/{stage * n}/GET/x",
        st.sampled_from(["s", "stage-"]),
        st.integers(min_value=400, max_value=1700),
    ),
)
versions: st.SearchStrategy[Any] = st.sampled_from(["1.0", "2.0", "2", "3.0", "", " 2.0"]) | json_scalars


# ========================================================================================== PEM-ish text
def armor(label: str, body: bytes) -> str:
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


pem_labels = st.sampled_from(["CERTIFICATE", "X509 CRL", "PRIVATE KEY", "CERTIFICATE REQUEST", "A", "1 2"])
armored_garbage: st.SearchStrategy[str] = st.builds(armor, pem_labels, st.binary(max_size=600))
pem_text: st.SearchStrategy[str] = st.one_of(
    st.text(max_size=200),
    armored_garbage,
    st.builds(
        lambda t: f"-----BEGIN CERTIFICATE-----\n{t}\n-----END CERTIFICATE-----\n", st.text(max_size=200)
    ),
    st.builds(
        lambda b: f"-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----\n",
        st.text(alphabet=string.ascii_letters + string.digits + "+/=\n\r ", max_size=400),
    ),
)


# ============================================================================================ mutations
@dataclass(frozen=True)
class Mutation:
    """A change to some bytes; ``describe`` is for the failure report."""

    kind: str
    data: bytes
    describe: str


@st.composite
def bit_flips(draw: st.DrawFn, original: bytes, max_flips: int = 4) -> Mutation:
    data = bytearray(original)
    flips = draw(
        st.lists(
            st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)), min_size=1, max_size=max_flips
        )
    )
    for position, mask in flips:
        data[position] ^= mask
    return Mutation("flip", bytes(data), f"xor {flips}")


@st.composite
def truncations(draw: st.DrawFn, original: bytes) -> Mutation:
    length = draw(st.integers(0, len(original) - 1))
    return Mutation("truncate", original[:length], f"truncated to {length} of {len(original)}")


@st.composite
def splices(draw: st.DrawFn, original: bytes) -> Mutation:
    """Delete a run of bytes and insert others in its place (the length usually changes)."""
    start = draw(st.integers(0, len(original)))
    removed = draw(st.integers(0, min(8, len(original) - start)))
    inserted = draw(st.binary(min_size=0 if removed else 1, max_size=8))
    data = original[:start] + inserted + original[start + removed :]
    return Mutation("splice", data, f"at {start}: -{removed} +{inserted.hex()}")


def der_content_ranges(der: bytes) -> list[tuple[int, int]]:
    """The (start, end) of every primitive value's contents in a DER/BER structure (definite lengths).

    Flipping bits there keeps the framing intact, so the mutated bytes usually still parse and the
    change reaches the checks behind the parser (signatures, names, CertIDs, dates).
    """

    def walk(start: int, end: int) -> list[tuple[int, int]]:
        """Raises ValueError when [start, end) is not a sequence of whole TLVs."""
        found: list[tuple[int, int]] = []
        pos = start
        while pos < end:
            if pos + 2 > end:
                raise ValueError("truncated header")
            tag = der[pos]
            pos += 1
            if tag & 0x1F == 0x1F:  # high tag number form
                while pos < end and der[pos] & 0x80:
                    pos += 1
                pos += 1
            length = der[pos] if pos < end else 0
            pos += 1
            if length & 0x80:
                width = length & 0x7F
                if width == 0 or width > 4:
                    raise ValueError("unsupported length")
                length = int.from_bytes(der[pos : pos + width], "big")
                pos += width
            if pos + length > end:
                raise ValueError("overlong value")
            if tag & 0x20:
                found += walk(pos, pos + length)
            elif length:
                # OCTET STRINGs (and BIT STRINGs after the unused-bits byte) often wrap DER: go inside.
                inner = pos + 1 if tag == 0x03 else pos
                try:
                    if tag not in (0x03, 0x04) or inner >= pos + length:
                        raise ValueError("opaque")
                    found += walk(inner, pos + length)
                except ValueError:
                    found.append((pos, pos + length))
            pos += length
        return found

    return walk(0, len(der))


@st.composite
def content_flips(draw: st.DrawFn, original: bytes, ranges: list[tuple[int, int]]) -> Mutation:
    """One to three single-bit flips inside primitive contents."""
    data = bytearray(original)
    flips = []
    for _ in range(draw(st.integers(1, 3))):
        start, end = draw(st.sampled_from(ranges))
        position, bit = draw(st.integers(start, end - 1)), draw(st.integers(0, 7))
        data[position] ^= 1 << bit
        flips.append((position, bit))
    return Mutation("content-flip", bytes(data), f"bit flips (position, bit) {flips}")


def byte_mutations(original: bytes, der: bool = False) -> st.SearchStrategy[Mutation]:
    """Mutations of ``original`` that always differ from it; ``der``: it is DER, also flip inside values."""
    structured = [content_flips(original, der_content_ranges(original))] if der else []
    return st.one_of(
        *structured,
        bit_flips(original),
        truncations(original),
        splices(original),
        st.binary(max_size=2 * len(original)).map(lambda b: Mutation("random", b, f"random {len(b)} bytes")),
    ).filter(lambda m: m.data != original)


_B64 = string.ascii_letters + string.digits + "+/"


@st.composite
def pem_mutations(draw: st.DrawFn, pem: str) -> Mutation:
    """Text-level changes to a PEM: bit flips, truncation, splices and base64-character swaps.

    Swapping one base64 character for another keeps the text decodable, so the DER usually still parses
    with a few bits changed: the case that reaches signature verification.
    """
    raw = pem.encode("ascii")
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    header_end, footer_start = pem.index("\n") + 1, pem.rindex("-----END")
    body = [i for i in range(header_end, footer_start) if pem[i] in _B64]

    @st.composite
    def swaps(draw2: st.DrawFn) -> Mutation:
        data = bytearray(raw)
        changes = draw2(
            st.lists(st.tuples(st.sampled_from(body), st.sampled_from(_B64)), min_size=1, max_size=3)
        )
        for position, char in changes:
            data[position] = ord(char)
        return Mutation("b64swap", bytes(data), f"base64 swaps {changes}")

    inner = content_flips(der, der_content_ranges(der)).map(
        lambda m: Mutation("der-" + m.kind, armor("CERTIFICATE", m.data).encode(), m.describe)
    )
    return draw(st.one_of(swaps(), inner, byte_mutations(raw)).filter(lambda m: m.data != raw))
