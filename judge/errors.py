"""The project's one error hierarchy.

::

    ThinkingJudgeError                  root of everything raised here
    ├── BackendError                    no usable completion came back  (attempts, backend)
    │   ├── BackendConnectionError      unreachable host, reset connection      retryable
    │   ├── BackendTimeoutError         the request ran out of time             retryable
    │   ├── BackendHTTPError            an HTTP error status (status, retry_after)
    │   │   │                           retryable for 429 and 5xx only
    │   │   └── BackendContextLengthError  the prompt exceeds the model's context
    │   ├── BackendResponseError        200, but not a usable chat completion   retryable
    │   └── BackendUnavailableError     the backend cannot run here (package, model, memory)
    ├── InputError                      the judge input is unusable
    │   └── ImageError                  an image could not be read or encoded  (source)
    ├── BatchError                      a batch file cannot be read or written (judge.batch)
    ├── CacheError                      the judgment cache file is unusable (backends.caching)
    └── JudgmentError                   the model answered, but not with a score
        ├── ScoreParseError             also langchain-core's OutputParserException
        ├── ConstraintError             an answer the constraint does not allow
        └── TruncatedAnswerError        the answer was cut off or aborted (finish_reason)

The transport errors are defined in :mod:`backends.errors` (``backends`` never imports
``judge``) and re-exported here. A failed judgment is a ``ThinkingScore`` with
``score=None``, ``error`` set and ``error_kind`` naming its kind
(:mod:`judge.failures`); these exceptions are raised only where the caller asked for
that (``raise_on_error=True``) or where no judgment was attempted.
"""

from __future__ import annotations

from langchain_core.exceptions import OutputParserException

from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    CacheError,
    ThinkingJudgeError,
)


class InputError(ThinkingJudgeError, ValueError):
    """The judge input is unusable (missing field, wrong type)."""


class ImageError(InputError):
    """An image could not be read, decoded or encoded.

    Args:
        message: What is wrong with it.
        source: A short, safe description of the input (a path, a URL, a type name);
            never image bytes or base64.
    """

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(f"{message}: {source}")
        self.source = source


class JudgmentError(ThinkingJudgeError):
    """The model answered, but the answer is not a score."""


class ConstraintError(JudgmentError):
    """The answer is not one the constraint allows: the backend ignored structured outputs."""


class TruncatedAnswerError(JudgmentError):
    """The answer reads as a score, but the model did not finish it: its ``finish_reason``
    is ``"length"``, ``"abort"``, ``"content_filter"`` or another that is not a natural end.

    A cut-off answer is never a score ("0" cut off before ".7" would read as 0.0). An
    answer that is no score at all is a :class:`ScoreParseError`, cut off or not.

    Args:
        message: What happened.
        finish_reason: The reason the backend gave, as text.
    """  # noqa: D205

    def __init__(self, message: str, *, finish_reason: str) -> None:
        super().__init__(message)
        self.finish_reason = finish_reason


class ScoreParseError(JudgmentError, OutputParserException):
    """The model's output is not one of the accepted score shapes.

    Args:
        message: Why it was rejected.
        llm_output: The text that was rejected.
    """

    def __init__(self, message: str, *, llm_output: str) -> None:
        OutputParserException.__init__(self, message, llm_output=llm_output)
        # LangChain appends a "For troubleshooting, visit ... OUTPUT_PARSING_FAILURE" link
        # to the message; it says nothing about a score, so the message stays as given.
        self.args = (message,)


__all__ = [
    "BackendConnectionError",
    "BackendContextLengthError",
    "BackendError",
    "BackendHTTPError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheError",
    "ConstraintError",
    "ImageError",
    "InputError",
    "JudgmentError",
    "ScoreParseError",
    "ThinkingJudgeError",
    "TruncatedAnswerError",
]
