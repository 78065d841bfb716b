"""What kind of failure a failed judgment is, and what each kind means to a command.

A failed :class:`~judge.types.ThinkingScore` carries ``error_kind`` (a :class:`FailureKind`)
and ``retryable``; every consumer (the Runnable, ``thinking-judge score`` / ``batch`` /
``check``, the batch runner, the evaluators and RL rewards) reads those, never class
names. This module is the ONE place that maps an exception to its kind, and a kind to
an exit status and to the advice a command prints.

========================  ===================================================  =========
kind                      raised as                                            ends a run
========================  ===================================================  =========
``input``                 :class:`~judge.errors.InputError` (and ImageError)   no
``parse``                 :class:`~judge.errors.ScoreParseError`,              no
                          :class:`~judge.errors.TruncatedAnswerError`
``constraint``            :class:`~judge.errors.ConstraintError`               no
``context_length``        :class:`~backends.errors.BackendContextLengthError`  no
``connection``            :class:`~backends.errors.BackendConnectionError`     yes
``timeout``               :class:`~backends.errors.BackendTimeoutError`        no
``server``                an HTTP error status or an unusable reply            no
``unavailable``           :class:`~backends.errors.BackendUnavailableError`    yes
``internal``              anything else (a bug): reported, never a score       no
========================  ===================================================  =========

"Ends a run": the backend as a whole cannot be used, so ``thinking-judge batch`` writes
no record for it and stops (exit status 3) to be resumed later, instead of marking
every remaining input failed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from judge.errors import ConstraintError, InputError, JudgmentError


class FailureKind(str, enum.Enum):
    """The machine-readable kind of a failed judgment (see the module docstring)."""

    INPUT = "input"
    PARSE = "parse"
    CONSTRAINT = "constraint"
    CONTEXT_LENGTH = "context_length"
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    SERVER = "server"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    def __str__(self) -> str:
        return self.value


class ExitStatus(enum.IntEnum):
    """The exit statuses of every ``thinking-judge`` command."""

    OK = 0
    """Everything asked for was done."""
    FAILED = 1
    """Some judgment failed (each failure is reported)."""
    USAGE = 2
    """The command line, an input file or a cache file cannot be used as given."""
    UNAVAILABLE = 3
    """The backend cannot be used (unreachable, cannot start): run again when it is back."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C."""


ENDS_RUN: frozenset[FailureKind] = frozenset({FailureKind.CONNECTION, FailureKind.UNAVAILABLE})
"""Kinds that say the backend as a whole cannot be used, not that one input failed."""

_ADVICE: dict[FailureKind, str] = {
    FailureKind.INPUT: "fix the input named in the message (an --image path, the question or "
    "the response)",
    FailureKind.PARSE: "the model did not answer with a score; is this the thinking reward "
    "model? (a random-weight test model needs --constrained)",
    FailureKind.CONSTRAINT: "the backend ignored the answer constraint; serve with a vLLM that "
    "supports structured outputs, or drop --constrained",
    FailureKind.CONTEXT_LENGTH: "the prompt does not fit the model's context: serve it with a "
    "larger --max-model-len or shorten the input",
    FailureKind.CONNECTION: "the server cannot be reached: is it running at that URL? "
    "(start one with thinking-judge serve; test one with thinking-judge check --base-url URL)",
    FailureKind.TIMEOUT: "the server did not answer in time: raise --timeout or lower the load",
    FailureKind.SERVER: "the server refused the request or sent an unusable reply; "
    "thinking-judge check --base-url URL tests the URL, the API key and the model name",
    FailureKind.UNAVAILABLE: "the backend cannot run here (see the message)",
    FailureKind.INTERNAL: "an unexpected error: please report it",
}


def failure_kind(error: BaseException) -> FailureKind:
    """The kind of failure ``error`` is (subclasses count as their parents)."""
    if isinstance(error, InputError):
        return FailureKind.INPUT
    if isinstance(error, ConstraintError):
        return FailureKind.CONSTRAINT
    if isinstance(error, JudgmentError):
        return FailureKind.PARSE
    if isinstance(error, BackendContextLengthError):
        return FailureKind.CONTEXT_LENGTH
    if isinstance(error, BackendConnectionError):
        return FailureKind.CONNECTION
    if isinstance(error, BackendTimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(error, BackendUnavailableError):
        return FailureKind.UNAVAILABLE
    if isinstance(error, BackendError):
        return FailureKind.SERVER
    return FailureKind.INTERNAL


def is_retryable(error: BaseException) -> bool:
    """Whether sending the same request again may succeed (the error's own ``retryable``)."""
    return bool(getattr(error, "retryable", False))


def ends_run(kind: FailureKind | str | None) -> bool:
    """Whether a failure of this kind means the backend as a whole cannot be used."""
    return kind is not None and FailureKind(kind) in ENDS_RUN


def exit_status(kinds: Iterable[FailureKind | str]) -> ExitStatus:
    """The exit status of a command whose judgments failed with these kinds.

    Args:
        kinds: The failure kinds seen (an iterable of :class:`FailureKind` or their
            values; successes are not listed).

    Returns:
        ``UNAVAILABLE`` if any kind ends a run, else ``FAILED`` if there is any, else ``OK``.
    """
    seen = {FailureKind(kind) for kind in kinds}
    if seen & ENDS_RUN:
        return ExitStatus.UNAVAILABLE
    return ExitStatus.FAILED if seen else ExitStatus.OK


def advice(kind: FailureKind | str) -> str:
    """One line a command prints after a failure of this kind: what to do about it."""
    return _ADVICE[FailureKind(kind)]


__all__ = [
    "ENDS_RUN",
    "ExitStatus",
    "FailureKind",
    "advice",
    "ends_run",
    "exit_status",
    "failure_kind",
    "is_retryable",
]
