"""The input files of ``thinking-judge batch``: formats, streaming readers, checked records.

JSON Lines (``.jsonl``, ``.ndjson``, ``.jsonlines``), CSV (``.csv``, read with the
standard library) or Parquet (``.parquet``, ``.pq``; needs ``pyarrow``), chosen by the file
extension unless a format is named. Each record has ``question`` and ``response``
(strings), optionally ``id`` (a string or an integer) and ``image`` or ``images``: paths
(relative to the input file's folder), http(s) URLs or data URLs, or
``{"bytes": ..., "path": ...}`` as Hugging Face datasets store images (raw bytes only from
Parquet). In CSV every cell is a string (so ids are strings too), an empty cell is a
missing field and ``images`` is a JSON array. Blank lines are skipped (they still count in
line numbers). The input is read as a stream: one line, CSV row or Parquet record batch
in memory at a time, whatever the file's length.

**Line numbers** are 1-based, as an editor shows them: the line a JSON Lines record is
on, the line a CSV record starts on (the header is line 1; a quoted cell may span lines),
the row of a Parquet file (the first row is row 1).

**Default ids.** A record without an ``id`` gets ``"line:N"`` (JSON Lines, CSV) or
``"row:N"`` (Parquet), ``N`` its line or row number. They are strings, so they never equal
an integer id, and an explicit ``id`` of that form (``"line:7"``) is refused as an input
error: a default id never collides with an explicit one.

**Every record is accounted for.** A record that cannot be judged (not JSON or not UTF-8,
not an object, ``question`` or ``response`` missing or not a string, a bad ``id``, both
``image`` and ``images``) is read as an :class:`InputRecord` with ``error`` set, never an
exception. CSV is read strictly: a quote opened and never closed, text after a closing
quote, a cell above the field limit, a NUL byte or more cells than the header make an
error record that names the lines it covers, and reading goes on at the next line (a
quote never closed covers every line to the end of the file); a record that is not UTF-8
is an error record too. A header that cannot be read (or names a column twice) is one
error record and nothing after it is read. A file that cannot be read
to its end (a read error, a Parquet file cut short or corrupt) ends with an error record
saying where reading stopped, never a short success.

**Fingerprints.** Each record carries ``fingerprint``: the SHA-256 of its question,
response and image references (paths, URLs, the bytes of inline images; not the content
of image files), or of its error message when it cannot be judged, so that a resumed run
can tell a changed record from the one it judged (see :mod:`judge.batch.runner`).

This module reads rows and their ids; turning a row into a judge input (image paths
resolved against the input's folder) is :func:`judge.core.inputs.record_input`, the one
input extractor.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, overload

import orjson

from backends.errors import ThinkingJudgeError
from judge.core.inputs import record_input
from judge.errors import InputError
from judge.types import JudgeInput

InputFormat = Literal["jsonl", "csv", "parquet"]

EXTENSIONS: dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File extension -> input format."""

_PARQUET_BATCH_ROWS = 256  # Parquet rows decoded at a time
_CSV_FIELD_LIMIT = 2**31 - 1  # data URLs make large cells
_DEFAULT_ID = re.compile(r"(?:line|row):[0-9]+")


class BatchError(ThinkingJudgeError):
    """A batch cannot run: the input or output file is unusable, or a reader is missing."""


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One input record, read and checked.

    Attributes:
        line: Its 1-based line (JSON Lines; CSV: the line it starts on) or row (Parquet).
        id: Its id: the record's ``id`` field, or ``"line:N"`` / ``"row:N"`` without one.
        item: What the judge gets, image paths resolved; None when ``error`` is set.
        error: Why the record cannot be judged, or None.
        fingerprint: SHA-256 (hex) of its question, response and image references (of an
            error record: of its error message).
    """

    line: int
    id: str | int
    item: JudgeInput | None = None
    error: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.fingerprint is None and self.error is not None:
            digest = hashlib.sha256(f"error:{self.error}".encode(errors="replace")).hexdigest()
            object.__setattr__(self, "fingerprint", digest)


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
    path: str | os.PathLike[str],
    input_format: InputFormat | None = None,
    *,
    image_root: str | os.PathLike[str] | None = None,
) -> Iterator[InputRecord]:
    """Read an input file as a stream of checked records.

    The file is opened (and, for Parquet, ``pyarrow`` imported) now, so that an unusable
    input fails here rather than at the first record.

    Args:
        path: The input file.
        input_format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; None: from the extension.
        image_root: The folder relative image paths in the data are read from; None:
            the input file's folder.

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
    base = Path(image_root) if image_root is not None else path.parent
    return _records(path, fmt, base)


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


def _records(path: Path, fmt: InputFormat, base: Path) -> Iterator[InputRecord]:
    rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](path)
    unit = "row" if fmt == "parquet" else "line"
    for line, row in rows:
        yield _record(line, unit, row, base)


@overload
def _open(path: Path, mode: Literal["r"]) -> TextIO: ...
@overload
def _open(path: Path, mode: Literal["rb"]) -> BinaryIO: ...
def _open(path: Path, mode: Literal["r", "rb"]) -> TextIO | BinaryIO:
    try:
        if mode == "r":  # undecodable bytes make that CSV record unreadable, not the file
            return path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
        return path.open("rb")
    except OSError as exc:
        raise BatchError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A line or row (or one of its cells) that could not be parsed at all."""

    message: str


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value or _Unreadable)`` for each non-blank line."""
    number = 0
    with _open(path, "rb") as file:
        try:
            for number, line in enumerate(file, start=1):
                if number == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                if not line.strip():
                    continue
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, _Unreadable(f"line {number} is not valid JSON: {exc}")
        except OSError as exc:
            yield number + 1, _stopped(path, f"line {number + 1}", exc)


def _stopped(path: Path, where: str, exc: BaseException) -> _Unreadable:
    """The error record of a file that cannot be read to its end."""
    return _Unreadable(
        f"{os.fspath(path)!r} cannot be read to its end: reading stopped at {where} ({exc}); "
        "the records from there on are not read"
    )


def _lines(first: int, last: int) -> str:
    return f"line {first}" if last <= first else f"lines {first}-{last}"


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(start line, dict of non-empty cells or _Unreadable)`` for each CSV record."""
    # The limit is process-wide and is only ever raised.
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    header: list[str] | None = None
    with _open(path, "r") as file:
        reader = csv.reader(file, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except OSError as exc:
                yield start, _stopped(path, f"line {start}", exc)
                return
            except csv.Error as exc:
                first, start = start, reader.line_num + 1
                yield first, _csv_error(first, reader.line_num, exc, header is None)
                if header is None:  # without a header no row can be read
                    return
                continue
            first, start = start, reader.line_num + 1
            if not row:  # a blank line
                continue
            if header is None:
                named = [cell for cell in row if cell]
                if any("\x00" in cell for cell in row) or len(named) != len(set(named)):
                    fault = "a NUL byte" if any("\x00" in c for c in row) else "a column twice"
                    yield first, _csv_error(first, first, csv.Error(fault), True)
                    return
                header = row
                continue
            yield first, _csv_cells(first, reader.line_num, header, row)


def _csv_error(first: int, last: int, exc: csv.Error, header: bool) -> _Unreadable:
    where = _lines(first, last)
    if "unexpected end of data" in str(exc):
        return _Unreadable(
            f"{where}: a quote opened on line {first} is never closed, so the file cannot "
            "be read to its end; the records from there on are not read"
        )
    if header:
        return _Unreadable(
            f"the CSV header ({where}) is not valid CSV: {exc}; nothing of the file is read"
        )
    return _Unreadable(f"{where} not valid CSV: {exc}; the records there are not read")


def _csv_cells(first: int, last: int, header: list[str], row: list[str]) -> Any:
    """One CSV record's non-empty cells by column name, or why it is unreadable."""
    where = _lines(first, last)
    if any("\x00" in cell for cell in row):
        return _Unreadable(f"{where}: a NUL byte; is this a UTF-8 CSV file?")
    try:
        "".join(row).encode("utf-8")  # undecodable bytes were read as lone surrogates
    except UnicodeEncodeError:
        return _Unreadable(f"{where}: not valid UTF-8; the record is not read")
    if len(row) > len(header):
        return _Unreadable(
            f"{where}: {len(row)} cells, more than the header's {len(header)} "
            "(an unquoted comma?); the record is not read"
        )
    cells: dict[str, Any] = {k: v for k, v in zip(header, row, strict=False) if v != ""}
    if "images" in cells:
        try:
            cells["images"] = orjson.loads(cells["images"])
        except orjson.JSONDecodeError:
            cells["images"] = _Unreadable("'images' must be a JSON array of images")
    return cells


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
    import pyarrow

    number = 0
    try:
        for batch in _parquet_file(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (OSError, ValueError, pyarrow.ArrowException, BatchError) as exc:
        yield number + 1, _stopped(path, f"row {number + 1}", exc)


def _fingerprint(row: Mapping[str, Any]) -> str:
    """SHA-256 of a record's question, response and image references."""
    fields = [row.get(key) for key in ("question", "response", "image", "images")]
    data = orjson.dumps(fields, default=_bytes_digest, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def _bytes_digest(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    return repr(value)


def _record(line: int, unit: str, row: Any, base: Path) -> InputRecord:
    """Check one parsed row's id and turn the row into a judge input (judge.core.inputs)."""
    default, where = f"{unit}:{line}", f"{unit} {line}"
    if isinstance(row, _Unreadable):
        return InputRecord(line, default, error=row.message)
    if not isinstance(row, Mapping):
        kind = type(row).__name__
        return InputRecord(line, default, error=f"{where} is not a JSON object ({kind})")
    rid = row.get("id")
    if rid is None:
        rid = default
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return InputRecord(
            line, default, error=f"{where}: 'id' must be a string or an integer, got {rid!r}"
        )
    elif isinstance(rid, str) and _DEFAULT_ID.fullmatch(rid):
        return InputRecord(
            line,
            default,
            error=f"{where}: the id {rid!r} has the form of a default id "
            "('line:N', 'row:N'), which only records without an id get",
        )
    images = row.get("images")
    unreadable = images if isinstance(images, _Unreadable) else None
    try:  # an unreadable CSV 'images' cell is reported after the row's other faults
        item = record_input(row if unreadable is None else {**row, "images": []}, base)
    except InputError as exc:
        return InputRecord(line, rid, error=f"{where}: {exc}")
    if unreadable is not None:
        return InputRecord(line, rid, error=f"{where}: {unreadable.message}")
    return InputRecord(line, rid, item=item, fingerprint=_fingerprint(row))


__all__ = [
    "EXTENSIONS",
    "BatchError",
    "InputFormat",
    "InputRecord",
    "count_records",
    "input_format_of",
    "read_records",
]
