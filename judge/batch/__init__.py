"""Scoring a file of inputs: ``thinking-judge batch`` (see :mod:`judge.batch.runner`)."""

from judge.batch.runner import (
    BatchError,
    BatchSummary,
    InputRecord,
    arun_batch,
    read_records,
    run_batch,
)

__all__ = ["BatchError", "BatchSummary", "InputRecord", "arun_batch", "read_records", "run_batch"]
