"""The input files of ``thinking-judge batch``: formats, streaming readers, checked records.

JSON Lines (``.jsonl``, ``.ndjson``, ``.jsonlines``), CSV (``.csv``, read with the
standard library) or Parquet (``.parquet``, ``.pq``; needs ``pyarrow``), chosen by the file
extension unless a format is named. Each record has ``question`` and ``response``
(strings), optionally ``id`` (a string or an integer; by default the record's 0-based line
number in a JSON Lines file, its 0-based data row in CSV and Parquet) and ``image`` or
``images``: paths (relative to the input file's folder), http(s) URLs or data URLs, or
``{"bytes": ..., "path": ...}`` as Hugging Face datasets store images (raw bytes only from
Parquet). In CSV every cell is a string (so ids are strings too), an empty cell is a
missing field and ``images`` is a JSON array. Blank lines are skipped (they still count in
line numbers). The input is read as a stream: one line, CSV row or Parquet record batch
in memory at a time, whatever the file's length.

A record that cannot be judged (not JSON, not an object, ``question`` or ``response``
missing or not a string, a bad ``id``, both ``image`` and ``images``) is read as an
:class:`InputRecord` with ``error`` set, never an exception. This module reads rows and
their ids; turning a row into a judge input (image paths resolved against the input's
folder) is :func:`judge.core.inputs.record_input`, the one input extractor.
"""

from __future__ import annotations

import codecs
import csv
import os
import sys
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


def _records(path: Path, fmt: InputFormat) -> Iterator[InputRecord]:
    rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](path)
    base = path.parent
    for index, row in rows:
        yield _record(index, row, base)


@overload
def _open(path: Path, mode: Literal["r"]) -> TextIO: ...
@overload
def _open(path: Path, mode: Literal["rb"]) -> BinaryIO: ...
def _open(path: Path, mode: Literal["r", "rb"]) -> TextIO | BinaryIO:
    try:
        if mode == "r":  # undecodable bytes reach the judge, which rejects them per record
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
    for batch in _parquet_file(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _record(index: int, row: Any, base: Path) -> InputRecord:
    """Check one parsed row's id and turn the row into a judge input (judge.core.inputs)."""
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
    images = row.get("images")
    unreadable = images if isinstance(images, _Unreadable) else None
    try:  # an unreadable CSV 'images' cell is reported after the row's other faults
        item = record_input(row if unreadable is None else {**row, "images": []}, base)
    except InputError as exc:
        return InputRecord(index, rid, error=f"record {index}: {exc}")
    if unreadable is not None:
        return InputRecord(index, rid, error=f"record {index}: {unreadable.message}")
    return InputRecord(index, rid, item=item)


__all__ = [
    "EXTENSIONS",
    "BatchError",
    "InputFormat",
    "InputRecord",
    "count_records",
    "input_format_of",
    "read_records",
]
