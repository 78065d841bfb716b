"""What a LangChain chat model gives back, as a backend's results.

:class:`~backends.chat_model.ChatModelBackend` hands each output of ``llm.batch`` /
``llm.abatch`` (a message, or the exception raised for that input) to
:func:`reply_result`, and an exception raised for a whole call to
:func:`error_result`. A failed request gets a typed error in its place, never an
exception:

- an HTTP status (``openai.APIStatusError``, or any exception with an integer
  ``status_code``): :class:`~backends.errors.BackendHTTPError` with the status and any
  ``Retry-After``; a 4xx saying the prompt does not fit:
  :class:`~backends.errors.BackendContextLengthError`;
- ``openai.APITimeoutError``, LangChain's ``ModelTimeoutError``, ``TimeoutError``:
  :class:`~backends.errors.BackendTimeoutError`;
- ``openai.APIConnectionError``, LangChain's ``ModelConnectionError``,
  ``ConnectionError``: :class:`~backends.errors.BackendConnectionError`;
- LangChain's ``ModelRateLimitError`` without a status:
  ``BackendHTTPError(status=429)``;
- a reply that is not a message, whose logprobs are malformed or whose finish reason
  is not a string: :class:`~backends.errors.BackendResponseError` (a usage count that
  is not a non-negative integer, or a model name that is not a string, is dropped);
- anything else: :class:`~backends.errors.BackendError`.

Messages name the chat model class and the host's own message (:func:`host_message`),
made safe by the caller's ``safe`` (:func:`safe_message`: scrubbed of the chat model's
secrets (:func:`chat_model_secrets`: its API key, default headers, default query and
base URL query) and their echoes, of base64 and of any echo of the request's texts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai
from langchain_core import exceptions as lc_exceptions
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import SecretStr
from yarl import URL

from backends.base import Completion, JudgeRequest, Result, content_text
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
)
from backends.openai_wire import (
    error_message,
    is_context_length,
    parse_logprobs,
    parse_retry_after,
    request_fragments,
    scrub,
)
from backends.scrubbing import MIN_SECRET_CHARS, secret_values


def _lc_errors(*names: str) -> tuple[type[BaseException], ...]:
    """LangChain's provider-neutral model errors that this langchain-core defines."""
    found = (getattr(lc_exceptions, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


_TIMEOUT_ERRORS = (openai.APITimeoutError, TimeoutError, *_lc_errors("ModelTimeoutError"))
_CONNECTION_ERRORS = (
    openai.APIConnectionError,
    ConnectionError,
    *_lc_errors("ModelConnectionError"),
)
_RATE_LIMIT_ERRORS: tuple[type[BaseException], ...] = (
    openai.RateLimitError,
    *_lc_errors("ModelRateLimitError"),
)


def reply_result(
    output: Any,
    *,
    chat_model: str,
    backend: str,
    model: str,
    latency: float,
    safe: Callable[[BaseException], str],
) -> Result:
    """A completion from the chat model's message, or the typed error.

    Args:
        output: What ``batch`` returned for one input: a message or an exception.
        chat_model: The chat model's class name, for messages.
        backend: The backend's registry name.
        model: The model to report when the message names none.
        latency: Seconds the run took.
        safe: An exception's message, made safe.
    """
    if isinstance(output, Exception):
        return error_result(output, chat_model=chat_model, backend=backend, safe=safe)
    if not isinstance(output, BaseMessage):
        return BackendResponseError(
            f"{chat_model} returned a {type(output).__name__}, not a message", backend=backend
        )
    try:
        return _message_result(output, chat_model, backend, model, latency)
    except Exception as exc:  # a message no check foresaw: its request fails alone
        return BackendResponseError(
            f"{chat_model} returned a message that cannot be read ({type(exc).__name__})",
            backend=backend,
        )


def _message_result(
    output: BaseMessage, chat_model: str, backend: str, model: str, latency: float
) -> Result:
    metadata = output.response_metadata
    metadata = metadata if isinstance(metadata, Mapping) else {}
    value = metadata.get("logprobs")
    try:
        logprobs = parse_logprobs(value) if isinstance(value, Mapping) else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError):
        return BackendResponseError(
            f"{chat_model} returned logprobs in an unknown shape", backend=backend
        )
    reason = next(
        (
            metadata[key]
            for key in ("finish_reason", "stop_reason", "done_reason")
            if metadata.get(key)
        ),
        None,
    )
    if reason is not None and not isinstance(reason, str):
        return BackendResponseError(
            f"{chat_model} returned a finish reason that is not a string", backend=backend
        )
    named = metadata.get("model_name") or metadata.get("model")
    prompt_tokens, completion_tokens = _usage(output)
    return Completion(
        text=content_text(output.content),
        finish_reason=None if reason is None else reason[:64],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        logprobs=logprobs,
        model=named[:256] if isinstance(named, str) and named else model,
        latency_s=latency,
    )


def error_result(
    exc: BaseException,
    *,
    chat_model: str,
    backend: str,
    safe: Callable[[BaseException], str],
) -> BackendError:
    """The typed error for an exception a chat model raised (see the module doc)."""
    what = chat_model
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.APIResponseValidationError):
        return BackendResponseError(f"{what} got an unusable reply: {safe(exc)}", backend=backend)
    status = http_status(exc)
    if status is None and isinstance(exc, _RATE_LIMIT_ERRORS):
        status = 429
    if status is not None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        message = safe(exc)
        if is_context_length(status, message):
            return BackendContextLengthError(
                f"HTTP {status} from {what}: {message}", status=status, backend=backend
            )
        return BackendHTTPError(
            f"HTTP {status} from {what}: {message}",
            status=status,
            retry_after=parse_retry_after(headers) if isinstance(headers, Mapping) else None,
            backend=backend,
        )
    if isinstance(exc, _TIMEOUT_ERRORS):
        return BackendTimeoutError(
            f"{what} got no complete reply in time ({type(exc).__name__})", backend=backend
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return BackendConnectionError(
            f"{what} could not reach its host: {type(exc).__name__}: {safe(exc)}",
            backend=backend,
        )
    return BackendError(f"{what} failed: {type(exc).__name__}: {safe(exc)}", backend=backend)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (``status_code``, or its response's)."""
    for holder in (exc, getattr(exc, "response", None)):
        status = getattr(holder, "status_code", None)
        # 400-599 only: langchain_openai attaches a 200 response to errors raised after it.
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
            return status
    return None


def host_message(exc: BaseException) -> str:
    """The host's message from an SDK error's parsed ``body``, else the exception's text."""
    body = getattr(exc, "body", None)
    message = error_message(body) if isinstance(body, Mapping) else None
    return str(exc) if message is None else message


def safe_message(exc: BaseException, secrets: Sequence[SecretStr], request: JudgeRequest) -> str:
    """An exception's message (the host's own, when it sent one), made safe.

    Scrubbed of ``secrets``, of base64 and of any echo of the request's texts.
    """
    text = scrub(
        host_message(exc),
        [secret.get_secret_value() for secret in secrets],
        cut_at=request_fragments(request),
    )
    return text or "(no message)"


def chat_model_secrets(llm: BaseChatModel) -> tuple[SecretStr, ...]:
    """What no message may show of a chat model's configuration.

    Its ``SecretStr`` fields (the API key), every value of its default headers and
    default query, and the query values and password of its base URL.
    """
    found: list[str] = []
    for name in type(llm).model_fields:
        value = getattr(llm, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif name in ("default_headers", "headers", "default_query") and isinstance(value, Mapping):
            found += secret_values({str(k): str(v) for k, v in value.items()})
        elif isinstance(value, str) and "://" in value and ("?" in value or "@" in value):
            url = URL(value)
            found += [*secret_values(urls=[url]), url.password or ""]
    unique = dict.fromkeys(s for s in found if len(s) >= MIN_SECRET_CHARS)
    return tuple(SecretStr(secret) for secret in unique)


def _count(value: Any) -> int | None:
    """A token count: a non-negative integer below 2**53, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    return value if ok else None


def _usage(message: BaseMessage) -> tuple[int | None, int | None]:
    """Prompt and completion tokens from ``usage_metadata`` or the provider's usage."""
    usage = getattr(message, "usage_metadata", None)
    if isinstance(usage, Mapping) and usage:
        return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    metadata = message.response_metadata
    metadata = metadata if isinstance(metadata, Mapping) else {}
    token_usage = metadata.get("token_usage") or metadata.get("usage")
    if isinstance(token_usage, Mapping):
        prompt, completion = token_usage.get("prompt_tokens"), token_usage.get("completion_tokens")
        return _count(prompt), _count(completion)
    return None, None


__all__ = [
    "chat_model_secrets",
    "error_result",
    "host_message",
    "http_status",
    "reply_result",
    "safe_message",
]
