"""The result file of ``thinking-judge batch``: resumable, locked, append-only, compacted.

**Lines.** JSON Lines, one line per input id, in the order results complete (not the input
order): ``{"id": ..., "input_sha256": ..., **ThinkingScore.model_dump()}``, where
``input_sha256`` is the fingerprint of the record judged
(:attr:`judge.batch.formats.InputRecord.fingerprint`; null when unknown). Each line is
appended with a single ``os.write`` as soon as its result is known (no buffering), so a
killed run leaves at most one torn last line; the results already written survive a
crash of the process (not a power cut: the file is synced to disk only when it is
closed).

**Resume.** On open, the file is read: a torn last line (no newline, not JSON) is cut off
(a whole record lacking only its newline is kept); every other line must be a result
record, else the file is refused (it is not a batch's). :attr:`ResultFile.last_line` then
says which ids have a result, whether it is a success and the fingerprint of what was
judged (None for lines written before fingerprints were kept: they still resume).

**Compaction.** When a later line for an id replaces an earlier one (a failure judged
again), :meth:`ResultFile.compact` rewrites the file keeping the last line of each id, into
a temporary file in the same folder that then replaces it (``os.replace``). Results for
ids that are not in the input are kept.

**Lock.** An exclusive lock on the file (POSIX) stops two runs writing it at once.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson

from judge.batch.formats import BatchError
from judge.types import ThinkingScore

try:  # POSIX only: elsewhere two runs on one output file are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class ResultFile:
    """The output file: scanned and repaired on open, appended one line per result.

    Attributes:
        path: The file.
        last_line: For each id with a result, ``(the number of its last line, ok, its
            input_sha256 or None)``; ``1`` and ``"1"`` are different keys, as they are
            different ids.
        lines: Result lines in the file.
        superseded: Lines that a later line for the same id replaces (0 after
            :meth:`compact`).
    """

    def __init__(self, path: Path) -> None:
        """Open (creating it if need be), lock and scan ``path``.

        Raises:
            BatchError: The file cannot be opened, another run holds it, or one of its
                lines is not a result record (the file is then left as it was).
        """
        self.path = path
        self.last_line: dict[str | int, tuple[int, bool, str | None]] = {}
        self.lines = 0
        self.superseded = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise BatchError(f"cannot open {os.fspath(path)!r}: {exc.strerror}") from exc
        self._temporary = path.with_name(f".{path.name}.compacting")
        try:
            self._lock()
            self._temporary.unlink(missing_ok=True)  # left by a run killed while compacting
            self._scan()
        except BaseException:
            os.close(self._fd)
            raise

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BatchError(
                f"another batch run is writing {os.fspath(self.path)!r}; wait for it to end"
            ) from exc

    def _scan(self) -> None:
        """Read the results already there; cut a torn last line off."""
        offset = 0
        with self.path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if not line.endswith(b"\n"):  # the last line, torn by a kill mid-write
                    if self._remember(line) is None:
                        os.ftruncate(self._fd, offset)
                    else:  # complete JSON that lacks only its newline
                        os.write(self._fd, b"\n")
                    return
                if line.strip() and self._remember(line) is None:
                    raise BatchError(
                        f"{os.fspath(self.path)!r} line {number} is not a batch result "
                        "(one JSON object with 'id' and 'score' per line); "
                        "is this the right output file?"
                    )
                offset += len(line)

    def _remember(self, line: bytes) -> str | int | None:
        """Record a result line's id; None when the line is not a result record."""
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict) or "score" not in value:
            return None
        rid = value.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return None
        fingerprint = value.get("input_sha256")
        self._note(
            rid, value["score"] is not None, fingerprint if isinstance(fingerprint, str) else None
        )
        return rid

    def _note(self, key: str | int, ok: bool, fingerprint: str | None) -> None:
        if key in self.last_line:
            self.superseded += 1
        self.last_line[key] = (self.lines, ok, fingerprint)
        self.lines += 1

    def done(self, *, retry_failed: bool) -> int:
        """How many ids a run skips: those with a result (a success, with ``retry_failed``)."""
        return sum(ok or not retry_failed for _, ok, _ in self.last_line.values())

    def append(self, rid: str | int, score: ThinkingScore, fingerprint: str | None = None) -> None:
        """Write one result as one whole line, at once.

        Args:
            rid: The record's id.
            score: Its result.
            fingerprint: What was judged (:attr:`~judge.batch.formats.InputRecord.fingerprint`).

        Raises:
            OSError: The write failed (e.g. the disk is full).
        """
        line = orjson.dumps(
            {"id": rid, "input_sha256": fingerprint, **score.model_dump(mode="json")},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        view = memoryview(line)
        while view:  # one write; more only if the OS took part of it (disk full, signal)
            view = view[os.write(self._fd, view) :]
        self._note(rid, score.ok, fingerprint)

    def compact(self) -> None:
        """Rewrite the file with the last line of each id, atomically."""
        temporary = self._temporary
        number = 0
        with self.path.open("rb") as src, temporary.open("wb") as dst:
            for line in src:
                if not line.strip():
                    continue
                if self.last_line[orjson.loads(line)["id"]][0] == number:
                    dst.write(line)
                number += 1
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temporary, self.path)
        _fsync_folder(self.path.parent)
        self.superseded = 0

    def close(self) -> None:
        """Sync the file to disk, release the lock and close it."""
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["ResultFile"]
