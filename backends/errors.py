"""Transport errors: what can go wrong between a rendered request and a model.

These are the roots of the project's one error hierarchy; ``judge.errors`` adds the
input and parsing errors beneath the same root and draws the whole tree. They live
here because ``backends`` never imports ``judge``.

Every error carries ``retryable``: True where sending the same request again may
succeed (connection reset, timeout, 429, 5xx, a truncated reply), False otherwise.

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
    └── CacheError                      the judgment cache file is unusable (backends.caching)
"""

from __future__ import annotations

import re


class ThinkingJudgeError(Exception):
    """Root of every error this project raises."""

    retryable: bool = False


class BackendError(ThinkingJudgeError):
    """A request did not produce a usable completion from the backend.

    Args:
        message: What happened, without secrets, prompts or images.
        backend: The backend's registry name, e.g. ``"vllm-server"``.
        attempts: How many times the request was sent before giving up.
    """

    def __init__(self, message: str, *, backend: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.backend = backend
        self.attempts = attempts

    def __str__(self) -> str:
        text = super().__str__()
        if self.attempts > 1:
            text = f"{text} (after {self.attempts} attempts)"
        return text


class BackendConnectionError(BackendError):
    """The host could not be reached, or the connection broke mid-request."""

    retryable = True


class BackendTimeoutError(BackendError):
    """The request did not finish within its timeout."""

    retryable = True


class BackendHTTPError(BackendError):
    """The host answered with an HTTP error status.

    Args:
        message: What happened.
        status: The HTTP status code.
        retry_after: Seconds the host asked us to wait (``Retry-After``), if any.
        **kwargs: Passed to :class:`BackendError`.
    """

    def __init__(
        self, message: str, *, status: int, retry_after: float | None = None, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """429 and 5xx may pass; other statuses are the request's own fault."""
        return self.status == 429 or self.status >= 500


class BackendContextLengthError(BackendHTTPError):
    """The host refused the request because the prompt does not fit the model's context.

    vLLM answers 400 with "This model's maximum context length is N tokens. However,
    your prompt contains M input tokens..." or "The decoder prompt (length M) is longer
    than the maximum model length of N"; OpenAI adds the code
    ``context_length_exceeded``. Sending it again cannot help: shorten the input (or
    its image) or serve the model with a larger ``--max-model-len``.
    """

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Never: the same prompt will not fit next time either."""
        return False


# How hosts and engines word "the prompt does not fit": vLLM 0.32 ("This model's maximum
# context length is N tokens...", "... longer than the maximum model length of N",
# "max_tokens=N cannot be greater than max_model_len=M", "... exceeds the max_model_len
# N"), OpenAI ("context_length_exceeded"), SGLang ("... longer than the model's context
# length").
_CONTEXT_LENGTH = re.compile(
    r"maximum context length|maximum model length|context[_ ]length[_ ]exceeded"
    r"|than (?:the )?max_model_len|exceeds the max_model_len|the model's context length",
    re.IGNORECASE,
)


def says_context_length(message: str) -> bool:
    """Whether an error message says the prompt does not fit the model's context."""
    return _CONTEXT_LENGTH.search(message) is not None


class BackendResponseError(BackendError):
    """The host answered 200 but the body was not a usable chat completion."""

    retryable = True


class BackendUnavailableError(BackendError):
    """The backend cannot run here: a missing package, model or resource."""


class CacheError(ThinkingJudgeError):
    """The judgment cache file cannot be used (not a cache, another schema, unwritable)."""


__all__ = [
    "BackendConnectionError",
    "BackendContextLengthError",
    "BackendError",
    "BackendHTTPError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheError",
    "ThinkingJudgeError",
]
