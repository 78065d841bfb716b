"""Score a whole file of inputs: streamed, concurrent, resumable (``thinking-judge batch``).

::

    summary = run_batch(judge, "inputs.jsonl", "scores.jsonl", max_concurrency=64)
    summary.exit_status  # 0 all scored, 1 some failed, 3 the backend became unreachable

**Input.** JSON Lines (``.jsonl``, ``.ndjson``, ``.jsonlines``), CSV (``.csv``, read with
the standard library) or Parquet (``.parquet``, ``.pq``; needs ``pyarrow``), chosen by
the file extension unless ``input_format`` is given. Each record has ``question`` and
``response`` (strings), optionally ``id`` (a string or an integer; by default the record's
0-based line number in a JSON Lines file, its 0-based data row in CSV and Parquet) and
``image`` or ``images``: paths (relative to the input file's folder), http(s) URLs or
data URLs, or ``{"bytes": ..., "path": ...}`` as Hugging Face datasets store images (raw
bytes only from Parquet). In CSV every cell is a string (so ids are strings too), an empty
cell is a missing field and ``images`` is a JSON array. Blank lines are skipped (they
still count in line numbers). The input is read as a stream: memory stays bounded
whatever its length, apart from one set entry per id.

A record that cannot be judged (not JSON, not an object, ``question`` or ``response``
missing or not a string, a bad ``id``, both ``image`` and ``images``) becomes an error
record (``score`` null, ``error_type`` ``"InputError"``, ``metadata.input_line`` its
line or row), never a crash. An id that was already seen earlier in the same input is a
**duplicate**: only its first record is judged; the later ones are counted and named in
the :class:`BatchSummary` (and make the exit status 1) but not written, so that the output
keeps exactly one line per id. ``1`` and ``"1"`` are different ids.

**Output.** JSON Lines, one line per input id, in the order results complete (not the
input order): ``{"id": ..., **ThinkingScore.model_dump()}``. Each line is appended with a
single ``os.write`` as soon as its result is known (no buffering), so a killed run leaves
at most one torn last line; the results already written survive a crash of the process
(not a power cut: the file is synced to disk only at the end).

**Resume.** Before scoring, the output file is read: a torn last line (no newline, not
JSON) is cut off (a whole record lacking only its newline is kept); every other line must
be a result record, else the run refuses to touch the file (it is not this command's).
Ids with a result are skipped, so re-running the same command after any kill (SIGKILL
included) scores only what is missing and ends with exactly one result per input id. A
failure stays a failure on re-runs unless ``retry_failed`` is set: then failed ids are
scored again and the new result is appended. When a run that completes has appended such
a replacement (or found more than one line for an id), it rewrites the output keeping
the last line of each id, into a temporary file in the same folder that then replaces it
(``os.replace``): once a run has finished, the output never holds two lines for one id.
Results for ids that are not in the input are kept. The exit status describes the output
as a whole: 1 when any input id's result (new, or kept from an earlier run) is a failure
or an id was repeated. An exclusive lock on the output file (POSIX) stops two runs
writing it at once.

**Concurrency.** At most ``max_concurrency`` judgments are in flight. An HTTP backend
(:class:`~backends.base.AsyncBackend`) is fed one input per call, so a slow request never
holds up the others; a batch-native backend (the in-process engine) gets batches of
``max_concurrency`` inputs, the next one prepared while the engine runs the current one.

**Backend down.** A result whose failure kind ends a run (:data:`judge.failures.ENDS_RUN`:
the backend is unreachable or cannot run) says nothing about the input: it is not written, the run
stops (``BatchSummary.aborted``, exit status 3) and a re-run picks up from there.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import contextlib
import csv
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson

from backends.base import AsyncBackend
from backends.errors import ThinkingJudgeError
from judge.errors import InputError
from judge.failures import ExitStatus, ends_run
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

try:  # POSIX only: elsewhere two runs on one output file are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

InputFormat = Literal["jsonl", "csv", "parquet"]
ProgressMode = Literal["auto", "bar", "log", "off"]

EXTENSIONS: dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File extension -> input format."""

_URL_PREFIXES = ("http://", "https://", "data:")
_DUPLICATES_KEPT = 20  # duplicate ids named in the summary; the rest are only counted
_YIELD_EVERY = 256  # records read between two turns of the event loop


class BatchError(ThinkingJudgeError):
    """A batch cannot run: the input or output file is unusable, or a reader is missing."""


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One input record, read and checked.

    Attributes:
        index: Its 0-based line (JSON Lines) or data row (CSV, Parquet).
        id: Its id: the record's ``id`` field, or ``index`` when it has none.
        item: What the judge gets, image paths resolved; None when ``error`` is set.
        error: Why the record cannot be judged, or None.
    """

    index: int
    id: str | int
    item: JudgeInput | None = None
    error: str | None = None


@dataclass(slots=True)
class BatchSummary:
    """What a batch run did.

    Attributes:
        output: The result file.
        records: Input records read (blank lines not counted).
        scored: Records judged in this run with a score.
        failed: Records judged (or found unusable) in this run without a score.
        skipped: Records whose id already had a result in the output (not judged again).
        skipped_failed: Of ``skipped``, those whose result is a failure (kept because
            ``retry_failed`` was off).
        duplicates: Records whose id appeared earlier in the input (not judged).
        duplicate_examples: ``(id, index)`` of the first few duplicates.
        compacted: Whether the output was rewritten with one line per id.
        aborted: Why the run stopped early (the backend became unreachable), or None.
        elapsed_s: Wall time of the run.
        cache_hits: Judgments of this run answered from the judge's cache.
        cache_misses: Judgments of this run looked up in the cache and not found.
    """

    output: Path
    records: int = 0
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    duplicates: int = 0
    duplicate_examples: list[tuple[str | int, int]] = field(default_factory=list)
    compacted: bool = False
    aborted: str | None = None
    elapsed_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    @property
    def rate(self) -> float:
        """Records judged per second in this run."""
        return (self.scored + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0: every input id has a score; 1: some failed or were duplicates; 3: aborted."""
        if self.aborted is not None:
            return ExitStatus.UNAVAILABLE
        if self.failed or self.skipped_failed or self.duplicates:
            return ExitStatus.FAILED
        return ExitStatus.OK

    def describe(self) -> str:
        """One human-readable line."""
        skipped = f"{self.skipped} skipped as done"
        if self.skipped_failed:
            skipped += f" ({self.skipped_failed} of them failures; --retry-failed retries them)"
        parts = [f"{self.scored} scored", f"{self.failed} failed", skipped]
        if self.duplicates:
            shown = ", ".join(f"{i!r} (line {n})" for i, n in self.duplicate_examples[:5])
            parts.append(f"{self.duplicates} duplicate ids not judged: {shown}")
        if self.cache_hits or self.cache_misses:
            parts.append(f"cache: {self.cache_hits} hits, {self.cache_misses} misses")
        text = (
            f"{', '.join(parts)} in {self.elapsed_s:.1f} s ({self.rate:.1f}/s); "
            f"results in {self.output}"
        )
        if self.aborted is not None:
            text += f"; STOPPED: {self.aborted}; run the same command again to resume"
        return text


# ---------------------------------------------------------------------------- input


def input_format_of(path: str | os.PathLike[str]) -> InputFormat:
    """The input format a file's extension names.

    Raises:
        BatchError: The extension is none of :data:`EXTENSIONS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        known = ", ".join(sorted(EXTENSIONS))
        raise BatchError(
            f"cannot tell the format of {os.fspath(path)!r} from its extension "
            f"(known: {known}); name the format explicitly"
        )
    return EXTENSIONS[suffix]


def read_records(
    path: str | os.PathLike[str], input_format: InputFormat | None = None
) -> Iterator[InputRecord]:
    """Read an input file as a stream of checked records.

    The file is opened (and, for Parquet, ``pyarrow`` imported) now, so that an unusable
    input fails here rather than at the first record.

    Args:
        path: The input file.
        input_format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; None: from the extension.

    Returns:
        An iterator of records, in file order.

    Raises:
        BatchError: The file cannot be opened, its format is unknown, or the reader it
            needs is not installed.
    """
    path = Path(path)
    fmt = input_format or input_format_of(path)
    if fmt not in ("jsonl", "csv", "parquet"):
        raise BatchError(f"unknown input format {fmt!r}; use one of jsonl, csv, parquet")
    if fmt == "parquet":
        _parquet_file(path)  # pyarrow is there and the file is Parquet
    else:
        _open(path, "rb").close()
    return _records(path, fmt)


def _records(path: Path, fmt: InputFormat) -> Iterator[InputRecord]:
    rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](path)
    base = path.parent
    for index, row in rows:
        yield _record(index, row, base)


def count_records(path: str | os.PathLike[str], input_format: InputFormat | None = None) -> int:
    """Estimate how many records an input file holds, cheaply (for progress and ETA).

    JSON Lines and CSV: newlines are counted (blank lines and quoted newlines count too);
    Parquet: the row count in the file's footer.
    """
    path = Path(path)
    fmt = input_format or input_format_of(path)
    if fmt == "parquet":
        return int(_parquet_file(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with _open(path, "rb") as file:
        while block := file.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(0, lines - 1) if fmt == "csv" else lines


def _open(path: Path, mode: Literal["r", "rb"]) -> Any:
    try:
        if mode == "r":  # undecodable bytes reach the judge, which rejects them per record
            return path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
        return path.open("rb")
    except OSError as exc:
        raise BatchError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from exc


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value or _Unreadable)`` for each non-blank line."""
    with _open(path, "rb") as file:
        for index, line in enumerate(file):
            if index == 0 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            if not line.strip():
                continue
            try:
                yield index, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield index, _Unreadable(f"line {index} is not valid JSON: {exc}")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(data row, dict of non-empty cells or _Unreadable)`` for each CSV row."""
    # Data URLs make large cells; the limit is process-wide and is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with _open(path, "r") as file:
        reader = csv.DictReader(file)
        for index in range(sys.maxsize):
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield index, _Unreadable(f"row {index} is not valid CSV: {exc}")
                continue
            cells: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v != ""}
            if "images" in cells:
                try:
                    cells["images"] = orjson.loads(cells["images"])
                except orjson.JSONDecodeError:
                    cells["images"] = _Unreadable("'images' must be a JSON array of images")
            yield index, cells


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise BatchError(
            f"reading Parquet needs pyarrow, which is not installed ({exc}): pip install pyarrow"
        ) from exc
    try:
        return pyarrow.parquet.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise BatchError(f"cannot read {os.fspath(path)!r} as Parquet: {exc}") from exc


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(row, dict)`` for each Parquet row, one record batch in memory at a time."""
    index = 0
    for batch in _parquet_file(path).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield index, row
            index += 1


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A line or row that could not be parsed at all."""

    message: str


def _record(index: int, row: Any, base: Path) -> InputRecord:
    """Check one parsed row and turn it into a judge input."""
    if isinstance(row, _Unreadable):
        return InputRecord(index, index, error=row.message)
    if not isinstance(row, Mapping):
        kind = type(row).__name__
        return InputRecord(index, index, error=f"record {index} is not a JSON object ({kind})")
    rid = row.get("id")
    if rid is None:
        rid = index
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return InputRecord(
            index, index, error=f"record {index}: 'id' must be a string or an integer, got {rid!r}"
        )
    for key in ("question", "response"):
        value = row.get(key)
        if not isinstance(value, str):
            got = "nothing" if value is None else type(value).__name__
            return InputRecord(
                index, rid, error=f"record {index}: {key!r} must be a string, got {got}"
            )
    item: JudgeInput = {"question": row["question"], "response": row["response"]}
    image, images = row.get("image"), row.get("images")
    if image is not None and images is not None:
        return InputRecord(index, rid, error=f"record {index}: give 'image' or 'images', not both")
    if image is not None:
        item["image"] = _image(image, base)
    elif images is not None:
        if isinstance(images, _Unreadable):
            return InputRecord(index, rid, error=f"record {index}: {images.message}")
        if not isinstance(images, list):
            return InputRecord(
                index,
                rid,
                error=f"record {index}: 'images' must be a list, got {type(images).__name__}",
            )
        item["images"] = [_image(one, base) for one in images]
    return InputRecord(index, rid, item=item)


def _image(value: Any, base: Path) -> Any:
    """Resolve a relative image path against the input's folder; URLs pass unchanged."""
    if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
        value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
    if isinstance(value, str) and not value.lower().startswith(_URL_PREFIXES):
        return os.fspath(base / value)  # an absolute value stays as it is
    return value


# --------------------------------------------------------------------------- output


class _ResultFile:
    """The output file: scanned and repaired on open, appended one line per result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # id -> (its last line, ok); 1 and "1" are different keys, as they are different ids
        self.last_line: dict[str | int, tuple[int, bool]] = {}
        self.lines = 0
        self.superseded = 0  # lines that a later line for the same id replaces
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
        self._note(rid, value["score"] is not None)
        return rid

    def _note(self, key: str | int, ok: bool) -> None:
        if key in self.last_line:
            self.superseded += 1
        self.last_line[key] = (self.lines, ok)
        self.lines += 1

    def append(self, rid: str | int, score: ThinkingScore) -> None:
        """Write one result as one whole line, at once."""
        line = orjson.dumps(
            {"id": rid, **score.model_dump(mode="json")}, option=orjson.OPT_APPEND_NEWLINE
        )
        view = memoryview(line)
        while view:  # one write; more only if the OS took part of it (disk full, signal)
            view = view[os.write(self._fd, view) :]
        self._note(rid, score.ok)

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


# ------------------------------------------------------------------------- progress


class Progress:
    """Progress display: the no-op base; see :func:`make_progress`."""

    shows = False
    """Whether anything is drawn (a display that draws wants the total, for its ETA)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def start(self, total: int | None) -> None:
        """Begin, with the number of records to judge if known."""
        self.total, self.started = total, time.monotonic()

    def update(self, *, failed: bool) -> None:
        """One more record finished."""
        self.done += 1
        self.failed += failed
        self._show(final=False)

    def close(self) -> None:
        """Show the final state."""
        self._show(final=True)

    def _show(self, *, final: bool) -> None:
        """Draw, if this display draws."""

    def _stats(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        text = f"{count} done, {rate:.1f}/s"
        if self.total is not None and rate > 0:
            text += f", ETA {_duration(max(0, self.total - self.done) / rate)}"
        return f"{text}, {self.failed} failed"


class _LogProgress(Progress):
    """A plain line every ``interval`` seconds, for logs and pipes."""

    shows = True

    def __init__(self, stream: TextIO, interval: float) -> None:
        super().__init__()
        self.stream, self.interval = stream, interval
        self._last = time.monotonic()

    def _show(self, *, final: bool) -> None:
        now = time.monotonic()
        if final or now - self._last >= self.interval:
            self._last = now
            print(f"thinking-judge batch: {self._stats()}", file=self.stream, flush=True)


class _BarProgress(Progress):
    """A one-line bar redrawn in place, for terminals without tqdm."""

    shows = True

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._last = 0.0

    def _show(self, *, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        bar = ""
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            bar = f"{100 * self.done // self.total:3d}% |{'#' * filled:<{self.WIDTH}}| "
        self.stream.write(f"\r{bar}{self._stats()}\x1b[K" + ("\n" if final else ""))
        self.stream.flush()


class _TqdmProgress(Progress):
    """tqdm's bar, with the failures as a postfix."""

    shows = True

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._bar: Any = None

    def start(self, total: int | None) -> None:
        """Open the bar."""
        super().start(total)
        from tqdm import tqdm

        self._bar = tqdm(total=total, file=self.stream, unit="rec", dynamic_ncols=True)
        self._bar.set_postfix(failed=0, refresh=False)

    def update(self, *, failed: bool) -> None:
        """Advance the bar by one."""
        super().update(failed=failed)
        if failed:
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def make_progress(
    mode: ProgressMode = "auto", stream: TextIO | None = None, *, interval: float = 10.0
) -> Progress:
    """A progress display.

    Args:
        mode: ``"bar"`` (tqdm if installed, else a built-in bar), ``"log"`` (a plain line
            every ``interval`` seconds), ``"off"``, or ``"auto"``: a bar when ``stream``
            is a terminal, log lines otherwise.
        stream: Where to draw; standard error by default.
        interval: Seconds between two log lines.

    Returns:
        The display.
    """
    stream = sys.stderr if stream is None else stream
    if mode == "auto":
        isatty = getattr(stream, "isatty", None)
        mode = "bar" if isatty is not None and isatty() else "log"
    if mode == "off":
        return Progress()
    if mode == "log":
        return _LogProgress(stream, interval)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return _BarProgress(stream)
    return _TqdmProgress(stream)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# ---------------------------------------------------------------------------- run


class _Unreachable(Exception):
    """A worker met a result saying the backend cannot be reached."""


_END = object()


class _Run:
    """One batch run's state; every method runs on the event loop's thread."""

    def __init__(
        self,
        judge: ThinkingRewardJudge,
        out: _ResultFile,
        summary: BatchSummary,
        progress: Progress,
        *,
        retry_failed: bool,
        chunk_size: int,
    ) -> None:
        self.judge, self.out, self.summary, self.progress = judge, out, summary, progress
        self.retry_failed, self.chunk_size = retry_failed, chunk_size

    async def produce(self, records: Iterable[InputRecord], queue: asyncio.Queue[Any]) -> None:
        """Read records; settle the skipped, duplicate and unusable ones; queue the rest."""
        seen: set[str | int] = set()
        summary = self.summary
        for count, record in enumerate(records, start=1):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let results be written while a long skip runs
            summary.records += 1
            key = record.id
            if key in seen:
                summary.duplicates += 1
                if len(summary.duplicate_examples) < _DUPLICATES_KEPT:
                    summary.duplicate_examples.append((record.id, record.index))
                self.progress.update(failed=True)
                continue
            seen.add(key)
            previous = self.out.last_line.get(key)
            if previous is not None and (previous[1] or not self.retry_failed):
                summary.skipped += 1
                summary.skipped_failed += not previous[1]
                continue
            if record.error is not None:
                failure = ThinkingScore.failure(
                    InputError(record.error), metadata={"input_line": record.index}
                )
                self.finish(record, failure)
                continue
            await queue.put(record)

    async def work(self, queue: asyncio.Queue[Any]) -> None:
        """Take up to ``chunk_size`` queued records at a time and judge them."""
        while True:
            first = await queue.get()
            if first is _END:
                return
            chunk: list[InputRecord] = [first]
            last = False
            while len(chunk) < self.chunk_size and not queue.empty():
                record = queue.get_nowait()
                if record is _END:
                    last = True
                    break
                chunk.append(record)
            results = await self.judge.abatch(
                [record.item for record in chunk],  # type: ignore[misc]  # checked records
                config={"max_concurrency": len(chunk)},
                return_exceptions=True,
            )
            unreachable: list[str] = []
            for record, result in zip(chunk, results, strict=True):
                score = _as_score(result)
                if ends_run(score.error_kind):
                    unreachable.append(score.error or "")
                else:
                    self.finish(record, score)
            if unreachable:
                raise _Unreachable(unreachable[0])
            if last:
                return

    def finish(self, record: InputRecord, score: ThinkingScore) -> None:
        """Write one result and count it."""
        self.out.append(record.id, score)
        if score.ok:
            self.summary.scored += 1
        else:
            self.summary.failed += 1
        cached = score.metadata.get("cache")
        if cached == "hit":
            self.summary.cache_hits += 1
        elif cached == "miss":
            self.summary.cache_misses += 1
        self.progress.update(failed=not score.ok)


def _as_score(result: ThinkingScore | BaseException) -> ThinkingScore:
    """A judge result; an exception (``raise_on_error`` judges) as a failed score."""
    if isinstance(result, ThinkingScore):
        return result
    return ThinkingScore.failure(result)


async def ajudge_records(
    judge: ThinkingRewardJudge,
    records: Iterable[InputRecord],
    output: str | os.PathLike[str],
    *,
    max_concurrency: int = 64,
    chunk_size: int | None = None,
    retry_failed: bool = False,
    progress: Progress | None = None,
    total: int | None = None,
) -> BatchSummary:
    """Judge a stream of records into a result file, resuming what is there.

    See the module docstring for the file formats and the resume rules.

    Args:
        judge: The judge to use.
        records: The input records (e.g. :func:`read_records`); consumed lazily, a few
            times ``max_concurrency`` of them held at once.
        output: The JSON Lines result file; created, or resumed when it exists.
        max_concurrency: Most judgments in flight at once.
        chunk_size: Inputs per judge call. Default: 1 for an HTTP backend
            (:class:`~backends.base.AsyncBackend`), ``max_concurrency`` otherwise.
        retry_failed: Judge again the ids whose existing result is a failure.
        progress: Where to show progress (see :func:`make_progress`); none by default.
        total: How many records ``records`` holds, if known (for the progress ETA).

    Returns:
        What the run did; :attr:`BatchSummary.exit_status` sums it up.

    Raises:
        BatchError: The output file is not a result file, or is being written by
            another run.
        ValueError: ``max_concurrency`` or ``chunk_size`` is less than 1.
        OSError: Writing the output failed (e.g. the disk is full); what was written
            stays, and a re-run resumes from it.
    """
    if max_concurrency < 1 or (chunk_size is not None and chunk_size < 1):
        raise ValueError("max_concurrency and chunk_size must be at least 1")
    streaming = isinstance(judge.backend, AsyncBackend)
    chunk = min(chunk_size or (1 if streaming else max_concurrency), max_concurrency)
    # A batch-native engine runs one batch at a time: a second worker prepares the next.
    workers = max(max_concurrency // chunk, 1 if streaming else 2)
    started = time.monotonic()
    out = _ResultFile(Path(output))
    summary = BatchSummary(output=Path(output))
    progress = progress or Progress()
    try:
        done = sum(ok or not retry_failed for _, ok in out.last_line.values())
        progress.start(None if total is None else max(0, total - done))
        run = _Run(judge, out, summary, progress, retry_failed=retry_failed, chunk_size=chunk)
        await _pipeline(run, records, workers, queue_size=max(max_concurrency, chunk))
        if summary.aborted is None and out.superseded:
            out.compact()
            summary.compacted = True
    except _Unreachable as exc:
        summary.aborted = f"the backend is unreachable: {exc}"
    finally:
        summary.elapsed_s = time.monotonic() - started
        progress.close()
        out.close()
    return summary


async def _pipeline(
    run: _Run, records: Iterable[InputRecord], workers: int, *, queue_size: int
) -> None:
    """Run the reader and the workers until all is judged, or one of them fails."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)

    async def produce() -> None:
        await run.produce(records, queue)
        for _ in range(workers):
            await queue.put(_END)

    tasks = [asyncio.ensure_future(produce())]
    tasks += [asyncio.ensure_future(run.work(queue)) for _ in range(workers)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]


async def arun_batch(
    judge: ThinkingRewardJudge,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    input_format: InputFormat | None = None,
    max_concurrency: int = 64,
    chunk_size: int | None = None,
    retry_failed: bool = False,
    progress: ProgressMode | Progress = "off",
) -> BatchSummary:
    """Judge every record of an input file into a JSON Lines result file (async).

    See the module docstring for the formats, resume rules and exit statuses.

    Args:
        judge: The judge to use.
        input_path: JSON Lines, CSV or Parquet input.
        output_path: The result file; created, or resumed when it exists.
        input_format: The input's format; None: from its extension.
        max_concurrency: Most judgments in flight at once.
        chunk_size: Inputs per judge call (see :func:`ajudge_records`).
        retry_failed: Judge again the ids whose existing result is a failure.
        progress: A display mode for :func:`make_progress` (on standard error), or a
            :class:`Progress`.

    Returns:
        What the run did.

    Raises:
        BatchError: The input or output file is unusable (see :func:`read_records` and
            :func:`ajudge_records`), or both are the same file.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.exists() and input_path.exists() and output_path.samefile(input_path):
        raise BatchError(f"the output {os.fspath(output_path)!r} is the input file")
    records = read_records(input_path, input_format)
    display = progress if isinstance(progress, Progress) else make_progress(progress)
    total = None
    if display.shows and stat.S_ISREG(input_path.stat().st_mode):
        total = count_records(input_path, input_format)
    return await ajudge_records(
        judge,
        records,
        output_path,
        max_concurrency=max_concurrency,
        chunk_size=chunk_size,
        retry_failed=retry_failed,
        progress=display,
        total=total,
    )


def run_batch(
    judge: ThinkingRewardJudge,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    **kwargs: Any,
) -> BatchSummary:
    """Judge every record of an input file into a result file (see :func:`arun_batch`).

    Runs on a fresh event loop: in this thread when none is running here, else in a
    worker thread (so it also works from a notebook).
    """
    coroutine = arun_batch(judge, input_path, output_path, **kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="thinking-judge") as pool:
        return pool.submit(asyncio.run, coroutine).result()


__all__ = [
    "EXTENSIONS",
    "BatchError",
    "BatchSummary",
    "InputFormat",
    "InputRecord",
    "Progress",
    "ProgressMode",
    "ajudge_records",
    "arun_batch",
    "count_records",
    "input_format_of",
    "make_progress",
    "read_records",
    "run_batch",
]
