"""Scoring a file of inputs: streamed, concurrent, resumable (``thinking-judge batch``).

::

    from judge.batch import run_batch

    summary = run_batch(judge, "inputs.jsonl", "scores.jsonl", max_concurrency=64)
    summary.exit_status  # 0 all scored, 1 some failed, 3 the backend cannot be used
    summary.describe()  # "N records read: ... scored, ... failed, ... skipped as done ..."

Every record of the input is accounted for (scored, failed with a reason, skipped as done,
a duplicate, or refused as unreadable); a file that cannot be read to its end ends with an
error record, never a short success; a record changed since it was judged is judged again;
one record whose connection is dropped fails alone, while a backend that is down stops
the run (exit status 3) to be resumed.

One module per job:

- :mod:`judge.batch.formats`: the input formats (JSON Lines, CSV, Parquet), their
  streaming readers, and the checked :class:`InputRecord` each line or row becomes.
- :mod:`judge.batch.store`: the result file: one JSON line per id, appended as results
  complete, locked, repaired and resumed on open, compacted to one line per id.
- :mod:`judge.batch.progress`: tqdm's bar on a terminal, a log line every 10 s elsewhere.
- :mod:`judge.batch.runner`: the bounded pipeline (read, judge, write), resume by id and
  fingerprint, and telling one bad record from a dead backend.
- :mod:`judge.batch.summary`: the :class:`BatchSummary` whose exit status comes from
  :mod:`judge.failures`.
"""

from judge.batch.formats import (
    EXTENSIONS,
    BatchError,
    InputFormat,
    InputRecord,
    count_records,
    input_format_of,
    read_records,
)
from judge.batch.progress import Progress, ProgressMode, make_progress
from judge.batch.runner import ajudge_records, arun_batch, run_batch
from judge.batch.summary import BatchSummary

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
