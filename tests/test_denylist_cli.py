"""`mtls-authorizer revoke | unrevoke | list`: the denylist, edited in a local file or in S3 (moto).

The certificates are minted at test time; S3 is moto on loopback, reached through boto3 with
AWS_ENDPOINT_URL_S3 as the CLI would reach real S3. Concurrent edits are forced to collide, so the
retry and the lock are what is tested, not the scheduler's luck.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authorizer import denylist_store
from authorizer.cli import main
from authorizer.denylist import parse
from authorizer.denylist_store import DenylistStore
from pki import PKI, Credential
from servers import MotoS3

_buckets = itertools.count(1)


@dataclass(frozen=True)
class Hierarchy:
    root: Credential
    ica: Credential
    other_ica: Credential


@pytest.fixture(scope="module")
def ca(pki: PKI) -> Hierarchy:
    root = pki.root("Denylist Test Root CA")
    return Hierarchy(
        root,
        pki.intermediate("Denylist Test Issuing CA", root),
        pki.intermediate("Denylist Other Issuing CA", root),
    )


@dataclass(frozen=True)
class Bucket:
    s3: MotoS3
    name: str

    def uri(self, key: str = "denylist.txt") -> str:
        return f"s3://{self.name}/{key}"

    def body(self, key: str = "denylist.txt", version: str = "") -> str:
        extra = {"VersionId": version} if version else {}
        body: bytes = self.s3.client.get_object(Bucket=self.name, Key=key, **extra)["Body"].read()
        return body.decode()

    def versions(self, key: str = "denylist.txt") -> list[dict[str, Any]]:
        listing = self.s3.client.list_object_versions(Bucket=self.name, Prefix=key)
        return [v for v in listing.get("Versions", []) if v["Key"] == key]


@pytest.fixture
def bucket(s3: MotoS3) -> Bucket:
    """A bucket of this test's own, versioned as the deployed denylist bucket is."""
    name = f"denylist-test-{next(_buckets)}"
    s3.client.create_bucket(Bucket=name)
    s3.client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return Bucket(s3, name)


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def cert_file(directory: Path, cert: Credential) -> str:
    path = directory / f"{cert.serial_hex}.pem"
    path.write_text(cert.pem)
    return str(path)


def listed(where: str) -> list[dict[str, str]]:
    code, out, err = run("list", "--denylist", where, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["denylist"] == where
    entries: list[dict[str, str]] = report["entries"]
    return entries


# --- revoke, list, unrevoke ----------------------------------------------------------------------


@pytest.fixture(params=["file", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "denylist.txt")
    target: Bucket = request.getfixturevalue("bucket")
    return target.uri()


def test_revoke_list_unrevoke(where: str, tmp_path: Path, pki: PKI, ca: Hierarchy) -> None:
    by_fingerprint = pki.leaf("deny-fingerprint", ca.ica)
    by_serial = pki.leaf("deny-serial", ca.ica)
    code, out, err = run(
        "revoke", "--cert", cert_file(tmp_path, by_fingerprint), "--reason", "keyCompromise",
        "--denylist", where,
    )  # fmt: skip
    assert code == 0, err
    assert by_fingerprint.fingerprint_sha256 in out and "keyCompromise" in out
    code, out, err = run(
        "revoke", "--cert", cert_file(tmp_path, by_serial), "--issuer", cert_file(tmp_path, ca.ica),
        "--reason", "superseded", "--denylist", where,
    )  # fmt: skip
    assert code == 0, err
    assert listed(where) == [
        {"fingerprintSha256": by_fingerprint.fingerprint_sha256, "reason": "keyCompromise"},
        {
            "serial": format(by_serial.serial, "x"),
            "issuerFingerprintSha256": ca.ica.fingerprint_sha256,
            "reason": "superseded",
        },
    ]
    code, out, err = run("list", "--denylist", where)
    assert code == 0
    assert out.splitlines() == [
        f"{by_fingerprint.fingerprint_sha256}  keyCompromise",
        f"serial:{by_serial.serial:x} issuer:{ca.ica.fingerprint_sha256}  superseded",
    ]
    assert "2 entries" in err

    # The entry by serial is found only with the issuer: without it, nothing matches.
    code, _, err = run("unrevoke", "--cert", cert_file(tmp_path, by_serial), "--denylist", where)
    assert code == 1 and "not in the denylist" in err and "--issuer" in err
    code, out, err = run(
        "unrevoke", "--cert", cert_file(tmp_path, by_serial), "--issuer", cert_file(tmp_path, ca.ica),
        "--denylist", where,
    )  # fmt: skip
    assert code == 0, err
    assert "unrevoked" in out and "was superseded" in out
    code, out, err = run("unrevoke", "--cert", cert_file(tmp_path, by_fingerprint), "--denylist", where)
    assert code == 0, err
    assert listed(where) == []


def test_revoke_against_s3_writes_a_version_per_edit(
    bucket: Bucket, tmp_path: Path, pki: PKI, ca: Hierarchy
) -> None:
    leaves = [pki.leaf(f"deny-version-{n}", ca.ica) for n in range(3)]
    for leaf in leaves:
        assert run("revoke", "--cert", cert_file(tmp_path, leaf), "--denylist", bucket.uri())[0] == 0
    assert run("unrevoke", "--cert", cert_file(tmp_path, leaves[0]), "--denylist", bucket.uri())[0] == 0
    fingerprints = [leaf.fingerprint_sha256 for leaf in leaves]
    history = {
        tuple(e.fingerprint for e in parse(bucket.body(version=v["VersionId"])).entries)
        for v in bucket.versions()
    }
    assert len(bucket.versions()) == 4  # three revokes and one unrevoke, each kept
    assert history == {
        tuple(fingerprints[:1]),
        tuple(fingerprints[:2]),
        tuple(fingerprints),
        tuple(fingerprints[1:]),
    }
    assert [e.fingerprint for e in parse(bucket.body()).entries] == fingerprints[1:]


def test_revoking_again_changes_the_reason_and_keeps_one_entry(
    where: str, tmp_path: Path, pki: PKI, ca: Hierarchy
) -> None:
    leaf = cert_file(tmp_path, pki.leaf("deny-again", ca.ica))
    assert run("revoke", "--cert", leaf, "--denylist", where)[0] == 0
    code, out, _ = run("revoke", "--cert", leaf, "--reason", "cessationOfOperation", "--denylist", where)
    assert code == 0 and "unspecified -> cessationOfOperation" in out
    assert [e["reason"] for e in listed(where)] == ["cessationOfOperation"]


def test_unrevoke_of_a_certificate_not_listed_exits_1(
    where: str, tmp_path: Path, pki: PKI, ca: Hierarchy
) -> None:
    listed_leaf, other = pki.leaf("deny-listed", ca.ica), pki.leaf("deny-never", ca.ica)
    # Against a denylist that does not exist yet, and against one that lists someone else.
    code, _, err = run("unrevoke", "--cert", cert_file(tmp_path, other), "--denylist", where)
    assert code == 1 and other.subject in err and "not in the denylist" in err
    assert run("revoke", "--cert", cert_file(tmp_path, listed_leaf), "--denylist", where)[0] == 0
    before = listed(where)
    code, _, err = run("unrevoke", "--cert", cert_file(tmp_path, other), "--denylist", where)
    assert code == 1 and "not in the denylist" in err
    assert listed(where) == before


def test_a_der_certificate_is_accepted(tmp_path: Path, pki: PKI, ca: Hierarchy) -> None:
    leaf = pki.leaf("deny-der", ca.ica)
    (tmp_path / "leaf.der").write_bytes(leaf.der)
    denylist = str(tmp_path / "denylist.txt")
    assert run("revoke", "--cert", str(tmp_path / "leaf.der"), "--denylist", denylist)[0] == 0
    assert listed(denylist) == [{"fingerprintSha256": leaf.fingerprint_sha256, "reason": "unspecified"}]


# --- refusals ------------------------------------------------------------------------------------

HAND_EDITED = "# by hand\n{good}  keyCompromise\n\nnot-a-fingerprint  superseded\n"


@pytest.mark.parametrize("command", ["revoke", "unrevoke", "list"])
def test_a_hand_edited_denylist_with_a_bad_line_is_refused(
    command: str, where: str, tmp_path: Path, pki: PKI, ca: Hierarchy, request: pytest.FixtureRequest
) -> None:
    leaf = pki.leaf("deny-bad-line", ca.ica)
    text = HAND_EDITED.format(good=leaf.fingerprint_sha256)
    if where.startswith("s3://"):
        target: Bucket = request.getfixturevalue("bucket")
        target.s3.client.put_object(Bucket=target.name, Key="denylist.txt", Body=text.encode())
    else:
        Path(where).write_text(text)
    args = (
        ["--denylist", where]
        if command == "list"
        else ["--cert", cert_file(tmp_path, leaf), "--denylist", where]
    )
    code, out, err = run(command, *args)
    assert code == 2, out + err
    assert "line 4" in err and out == ""
    # Nothing was written over it: the operator's file is left for them to fix.
    if where.startswith("s3://"):
        assert target.body() == text and len(target.versions()) == 1
    else:
        assert Path(where).read_text() == text


@pytest.mark.parametrize(
    "args",
    [
        ("revoke", "--cert", "{leaf}", "--reason", "keycompromise", "--denylist", "{denylist}"),
        ("revoke", "--cert", "{leaf}"),
        ("revoke", "--cert", "{missing}", "--denylist", "{denylist}"),
        ("revoke", "--cert", "{garbage}", "--denylist", "{denylist}"),
        ("revoke", "--cert", "{leaf}", "--denylist", "s3://"),
        ("list",),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(
    args: tuple[str, ...], tmp_path: Path, pki: PKI, ca: Hierarchy
) -> None:
    (tmp_path / "garbage.pem").write_text("hello")
    names = {
        "leaf": cert_file(tmp_path, pki.leaf("deny-usage", ca.ica)),
        "missing": str(tmp_path / "missing.pem"),
        "garbage": str(tmp_path / "garbage.pem"),
        "denylist": str(tmp_path / "denylist.txt"),
    }
    assert run(*(a.format(**names) for a in args))[0] == 2
    assert not (tmp_path / "denylist.txt").exists()


def test_revoke_by_serial_under_the_wrong_issuer_is_refused(tmp_path: Path, pki: PKI, ca: Hierarchy) -> None:
    leaf = pki.leaf("deny-wrong-issuer", ca.ica)
    denylist = tmp_path / "denylist.txt"
    code, _, err = run(
        "revoke", "--cert", cert_file(tmp_path, leaf), "--issuer", cert_file(tmp_path, ca.other_ica),
        "--denylist", str(denylist),
    )  # fmt: skip
    assert code == 2 and "is not issued by" in err
    assert not denylist.exists()


# --- concurrent edits ----------------------------------------------------------------------------

WRITERS = 6


def revoke_at_once(leaves: list[Credential], where: str, directory: Path) -> list[int]:
    """Every leaf revoked from its own thread, all started together; their exit codes."""
    files = [cert_file(directory, leaf) for leaf in leaves]
    start = threading.Barrier(len(leaves))
    codes: list[int] = [-1] * len(leaves)

    def revoke(position: int) -> None:
        start.wait(timeout=30)
        codes[position] = main(["revoke", "--cert", files[position], "--denylist", where])

    threads = [threading.Thread(target=revoke, args=(n,)) for n in range(len(leaves))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return codes


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """moto's conditional PUT checks, then writes, without a lock: real S3 decides atomically. Make
    the fake atomic too, and count the writes it refused (412)."""
    from moto.s3.exceptions import PreconditionFailed
    from moto.s3.responses import S3Response

    original = S3Response.put_object
    lock = threading.Lock()
    refused = [0]

    def put_object(self: S3Response) -> Any:
        with lock:
            try:
                return original(self)
            except PreconditionFailed:
                refused[0] += 1
                raise

    monkeypatch.setattr(S3Response, "put_object", put_object)
    yield refused


def test_concurrent_revokes_against_s3_lose_no_entry(
    bucket: Bucket,
    atomic_moto: list[int],
    tmp_path: Path,
    pki: PKI,
    ca: Hierarchy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leaves = [pki.leaf(f"deny-s3-race-{n}", ca.ica) for n in range(WRITERS)]
    # Every writer reads the denylist before any of them writes: all but one must lose the race
    # on their first write, and get it right on a retry.
    everyone_read = threading.Barrier(WRITERS)
    first_read = threading.local()
    read = DenylistStore.read

    def read_then_wait(self: DenylistStore) -> Any:
        stored = read(self)
        if not getattr(first_read, "done", False):
            first_read.done = True
            everyone_read.wait(timeout=30)
        return stored

    monkeypatch.setattr(DenylistStore, "read", read_then_wait)
    assert revoke_at_once(leaves, bucket.uri(), tmp_path) == [0] * WRITERS
    assert {e.fingerprint for e in parse(bucket.body()).entries} == {
        leaf.fingerprint_sha256 for leaf in leaves
    }
    assert atomic_moto[0] >= WRITERS - 1  # the collisions did happen, and were retried
    assert len(bucket.versions()) == WRITERS  # one version per successful write, none for a refused one


def test_concurrent_revokes_against_a_local_file_lose_no_entry(
    tmp_path: Path, pki: PKI, ca: Hierarchy, slow_writes: None
) -> None:
    leaves = [pki.leaf(f"deny-file-race-{n}", ca.ica) for n in range(WRITERS)]
    denylist = tmp_path / "denylist.txt"
    assert revoke_at_once(leaves, str(denylist), tmp_path) == [0] * WRITERS
    assert {e.fingerprint for e in parse(denylist.read_text()).entries} == {
        leaf.fingerprint_sha256 for leaf in leaves
    }


def test_without_the_lock_the_same_race_loses_entries(
    tmp_path: Path, pki: PKI, ca: Hierarchy, slow_writes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the test above: it would catch a lost update."""
    monkeypatch.setattr(denylist_store, "_locked", lambda path: contextlib.nullcontext())
    leaves = [pki.leaf(f"deny-unlocked-{n}", ca.ica) for n in range(WRITERS)]
    denylist = tmp_path / "denylist.txt"
    assert revoke_at_once(leaves, str(denylist), tmp_path) == [0] * WRITERS
    assert len(parse(denylist.read_text()).entries) < WRITERS


@pytest.fixture
def slow_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen each edit's read-to-write window, so unlocked edits would overlap."""
    write: Callable[[Path, str], None] = denylist_store._write_file

    def slow(path: Path, text: str) -> None:
        time.sleep(0.1)
        write(path, text)

    monkeypatch.setattr(denylist_store, "_write_file", slow)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_concurrent_revokes_from_separate_processes(
    kind: str, tmp_path: Path, pki: PKI, ca: Hierarchy, request: pytest.FixtureRequest
) -> None:
    """The installed console script, as several people would run it at once."""
    script = Path(sys.executable).parent / "mtls-authorizer"
    leaves = [pki.leaf(f"deny-process-{kind}-{n}", ca.ica) for n in range(4)]
    if kind == "s3":
        request.getfixturevalue("atomic_moto")
        target: Bucket = request.getfixturevalue("bucket")
        where = target.uri()
    else:
        where = str(tmp_path / "denylist.txt")
    processes = [
        subprocess.Popen(
            [str(script), "revoke", "--cert", cert_file(tmp_path, leaf), "--denylist", where],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ),  # the fixtures' fake credentials and AWS_ENDPOINT_URL_S3
        )
        for leaf in leaves
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    body = target.body() if kind == "s3" else Path(where).read_text()
    assert {e.fingerprint for e in parse(body).entries} == {leaf.fingerprint_sha256 for leaf in leaves}
    if kind == "s3":
        assert len(target.versions()) == len(leaves)
