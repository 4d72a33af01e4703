"""Where a denylist lives: an S3 object (`s3://bucket/key`) or a local file, read and edited.

Edits to S3 are conditional writes on the ETag (If-Match, or If-None-Match: * for a new object),
retried on a conflict, so two people revoking at once never lose an entry; with versioning on the
bucket every write is a new version and the history stays. Edits to a local file hold an exclusive
lock (flock on `<file>.lock` beside it) from the read to the atomic replace, for the same reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .denylist import Denylist, DenylistError, parse
from .s3 import ClientFactory, S3Error, S3Location, S3Reader, error_code

MAX_DENYLIST_BYTES = 4 * 1024 * 1024
_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Stored:
    denylist: Denylist
    etag: str  # "" when the object does not exist yet


class DenylistStore:
    """A denylist at `where`: s3://bucket/key (with `client_factory`) or a file path."""

    def __init__(self, where: str, client_factory: ClientFactory | None = None) -> None:
        self.where = where
        self._s3: S3Location | None = S3Location.parse(where) if where.startswith("s3://") else None
        if self._s3 is not None and client_factory is None:
            raise DenylistError("an s3:// denylist needs an S3 client")
        self._reader = S3Reader(client_factory, MAX_DENYLIST_BYTES) if client_factory else None

    def read(self) -> Stored:
        if self._s3 is None:
            path = Path(self.where)
            if not path.exists():
                return Stored(Denylist(), "")
            return Stored(parse(path.read_text()), "file")
        assert self._reader is not None
        try:
            obj = self._reader.get(self._s3.bucket, self._s3.key)
        except S3Error as exc:
            if "NoSuchKey" in str(exc):
                return Stored(Denylist(), "")
            raise
        return Stored(parse(obj.body.decode("utf-8")), obj.etag)

    def edit(self, change: Callable[[Denylist], Denylist]) -> Denylist:
        """Apply `change` to the stored denylist and write it back without losing a concurrent edit."""
        if self._s3 is None:
            path = Path(self.where)
            with _locked(path):
                edited = change(self.read().denylist)
                _write_file(path, edited.render())
            return edited
        assert self._reader is not None
        for attempt in range(_ATTEMPTS):
            if attempt:
                # Jittered back-off: writers that collided should not all come back at once.
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
            stored = self.read()
            edited = change(stored.denylist)
            condition = {"IfMatch": stored.etag} if stored.etag else {"IfNoneMatch": "*"}
            try:
                self._reader.client().put_object(
                    Bucket=self._s3.bucket,
                    Key=self._s3.key,
                    Body=edited.render().encode(),
                    ContentType="text/plain; charset=utf-8",
                    **condition,
                )
                return edited
            except Exception as exc:
                if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    continue  # someone else wrote first: read their version and apply ours on top
                raise S3Error(f"cannot write {self.where}: {error_code(exc) or type(exc).__name__}") from exc
        raise S3Error(f"cannot write {self.where}: still conflicting after {_ATTEMPTS} attempts")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for editing `path`, held on a sidecar file: the denylist itself is replaced
    (a new inode) by every write, so a lock on it would not be seen by the next writer."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _write_file(path: Path, text: str) -> None:
    # Atomic replace: a reader never sees half a file.
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # a new denylist: readable by whoever runs `check` against it
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)  # mkstemp's 0600 would otherwise replace the file's own mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
