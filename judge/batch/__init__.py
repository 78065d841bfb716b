"""Scoring a file of inputs: streamed, concurrent, resumable (``thinking-judge batch``).

::

    from judge.batch import run_batch

    summary = run_batch(judge, "inputs.jsonl", "scores.jsonl", max_concurrency=64)
    summary.exit_status  # 0 all scored, 1 some failed, 3 the backend cannot be used

One module per job:

- :mod:`judge.batch.formats`: the input formats (JSON Lines, CSV, Parquet), their
  streaming readers, and the checked :class:`InputRecord` each line or row becomes.
- :mod:`judge.batch.store`: the result file: one JSON line per id, appended as results
  complete, locked, repaired and resumed on open, compacted to one line per id.
- :mod:`judge.batch.progress`: tqdm's bar on a terminal, a log line every 10 s elsewhere.
- :mod:`judge.batch.runner`: the bounded pipeline (read, judge, write) and the
  :class:`BatchSummary` whose exit status comes from :mod:`judge.failures`.
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
from judge.batch.runner import BatchSummary, ajudge_records, arun_batch, run_batch

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
