"""OpenAI's chat-completions wire format: pure functions, no I/O.

Everything that knows what goes over the wire to an OpenAI-compatible host and what
comes back, shared by :mod:`backends.openai_compatible` (and its vLLM profile,
:mod:`backends.vllm_server`), :mod:`backends.transport` and
:mod:`backends.chat_model`:

=================================  =====================================================
Name                               What it does
=================================  =====================================================
:func:`chat_body`                  the JSON body for a :class:`~backends.base.JudgeRequest`
:data:`dumps` / :data:`loads`      orjson (a request with a 45 KB image encodes in 5 us,
                                   against 200 us with the stdlib's ``json``)
:func:`loads_lenient`              the stdlib parser (takes ``NaN`` / ``Infinity``), or None
:func:`parse_completion`           a 200 body -> :class:`~backends.base.Completion`
                                   (raises :class:`NotACompletion` saying why not)
:func:`parse_logprobs`             ``{"content": [...]}`` -> ``TokenLogprob`` tuple
:func:`token_logprob`              one entry of it, alternatives best first
:func:`error_message`              the host's own message from a parsed error body
:func:`body_message`               the same from raw bytes (bounded), else the text
:func:`is_context_length`          whether a 4xx says the prompt does not fit
:func:`parse_retry_after`          ``retry-after-ms`` / ``Retry-After`` -> seconds
=================================  =====================================================

:func:`scrub`, :func:`request_fragments` and :func:`display_url` (messages and URLs
made safe) are :mod:`backends.scrubbing`'s, re-exported here.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import timezone
from typing import Any

import orjson

from backends.base import Completion, JudgeRequest, TokenLogprob
from backends.errors import says_context_length
from backends.scrubbing import MAX_MESSAGE_CHARS, display_url, request_fragments, scrub

logger = logging.getLogger(__name__)

dumps: Callable[[Any], bytes] = orjson.dumps
"""Encode a request body (orjson; raises ``TypeError`` for what JSON cannot hold)."""
loads: Callable[[bytes], Any] = orjson.loads
"""Decode a reply body (orjson; raises ``ValueError`` for what is not strict JSON)."""

MAX_ERROR_BODY_BYTES = 65536
"""The most of an error body read for its message."""

_MAX_REASON_CHARS = 64
_MAX_MODEL_CHARS = 256
_KNOWN_REASONS = frozenset({"stop", "length", "abort", "tool_calls", "content_filter", "eos"})


class NotACompletion(ValueError):
    """A 200 body that is not a usable chat completion; the message says why."""


# --------------------------------------------------------------------------- requests


def chat_body(
    request: JudgeRequest,
    *,
    model: str,
    extra_body: Mapping[str, Any] | None = None,
    repetition_penalty: bool = False,
) -> dict[str, Any]:
    """The ``/chat/completions`` JSON body for ``request``.

    Args:
        request: What to ask.
        model: The model name the host serves.
        extra_body: Fields merged into the body (the request's own ``extra`` wins).
        repetition_penalty: Whether the host takes ``repetition_penalty`` (sent only
            when the request sets it).

    Returns:
        The model, messages, ``max_tokens`` and ``temperature``; ``logprobs`` /
        ``top_logprobs`` when asked for; vLLM's ``continue_final_message`` /
        ``add_generation_prompt`` for a continuation; then ``extra_body``, then the
        request's ``extra``.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.repetition_penalty is not None and repetition_penalty:
        body["repetition_penalty"] = request.repetition_penalty
    if request.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if request.continue_final_message:
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    if extra_body:
        body.update(extra_body)
    if request.extra:
        body.update(request.extra)
    return body


# --------------------------------------------------------------------------- replies


def loads_lenient(body: bytes) -> Any:
    """Parse with the stdlib (which takes ``NaN`` / ``Infinity``), or None."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than it can go
        return None


def parse_completion(
    body: bytes,
    *,
    model: str,
    latency: float = 0.0,
    attempts: int = 1,
    safe: Callable[[str], str] | None = None,
) -> Completion:
    """A 200 body as a :class:`~backends.base.Completion`, read defensively.

    Every field is checked at the edge, so whatever the host sends, the result is a
    well-typed completion or :class:`NotACompletion`, never another exception:

    - the text (``choices[0].message.content``) must be a string or ``null`` (``""``,
      e.g. all of it went to a reasoning parser); anything else refuses the reply;
    - a body carrying an ``error`` is refused, even beside ``choices``;
    - ``finish_reason`` must be a string or ``null`` (passed through; one other than
      OpenAI's and vLLM's own is cut to 64 characters and made safe), else the reply
      is refused: a caller must be able to tell a truncated answer;
    - logprobs must be OpenAI's shape with string tokens and numeric logprobs (non-finite
      and positive values are passed through as floats, for the caller to judge), else
      the reply is refused;
    - a usage count that is not a non-negative integer below 2**53 and a model name that
      is not a non-empty string are dropped (None; the configured model), with a DEBUG
      log: they describe the reply, they are not the answer. Another model name than
      the configured one is cut to 256 characters and made safe.

    Args:
        body: The reply body.
        model: The model to report when the body names none.
        latency: Seconds the request took.
        attempts: How many times it was sent.
        safe: Makes a host's message safe for an error (default :func:`scrub`).

    Returns:
        The text, finish reason, usage, logprobs, model, latency, attempts.

    Raises:
        NotACompletion: The body is not JSON or not a usable chat completion; says why.
    """
    try:
        data = loads(body)
    except (ValueError, RecursionError):
        data = loads_lenient(body)
        if data is None:
            raise NotACompletion("the body is not valid JSON (truncated?)") from None
    if not isinstance(data, dict):
        raise NotACompletion(f"the body is a JSON {_kind(data)}, not an object")
    error = data.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise NotACompletion(f"the body is an error: {(safe or scrub)(str(message))}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise NotACompletion("the body has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise NotACompletion("choices[0] is not a chat message")
    text = message.get("content")
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise NotACompletion(f"the message content is a JSON {_kind(text)}, not a string")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise NotACompletion(f"finish_reason is a JSON {_kind(finish_reason)}, not a string")
    try:
        logprobs = parse_logprobs(choice.get("logprobs"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise NotACompletion(f"choices[0].logprobs is not usable: {exc}") from None
    usage = data.get("usage")
    if usage is not None and not isinstance(usage, dict):
        logger.debug("ignored usage: a JSON %s, not an object", _kind(usage))
        usage = None
    named = data.get("model")
    if named is not None and not (isinstance(named, str) and named):
        logger.debug("ignored the reply's model name: a JSON %s", _kind(named))
        named = None
    safe = safe or scrub
    if finish_reason is not None and finish_reason not in _KNOWN_REASONS:
        finish_reason = safe(finish_reason[:_MAX_REASON_CHARS])  # host text: no echoes
    if named is not None and named != model:
        named = safe(named[:_MAX_MODEL_CHARS]) or None
    return Completion(
        text=text,
        finish_reason=finish_reason,
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        logprobs=logprobs,
        model=named or model,
        latency_s=latency,
        attempts=attempts,
    )


def _kind(value: Any) -> str:
    """A JSON value's kind, as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def _count(usage: dict[str, Any] | None, name: str) -> int | None:
    """A usage count: a non-negative integer below 2**53, else None (logged)."""
    value = None if usage is None else usage.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    logger.debug("ignored usage.%s: not a count (a JSON %s)", name, _kind(value))
    return None


def parse_logprobs(value: Any) -> tuple[TokenLogprob, ...] | None:
    """OpenAI-shaped ``{"content": [...]}`` logprobs, or None when there are none.

    Raises:
        TypeError, ValueError: Logprobs in another shape, a token that is not a string,
            a logprob that is not a number (non-finite numbers are kept).
    """
    if value is None or value == {} or value == []:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"logprobs is a JSON {_kind(value)}, not an object")
    content = value.get("content")
    if content is None:
        return None
    if not isinstance(content, list):
        raise TypeError(f"logprobs.content is a JSON {_kind(content)}, not a list")
    return tuple(token_logprob(item) for item in content)


def token_logprob(item: Any) -> TokenLogprob:
    """One entry of ``choices[0].logprobs.content``; alternatives best first.

    Raises:
        TypeError: Not an object with a string ``token`` and a numeric ``logprob``, or
            ``top_logprobs`` not a list of such objects.
    """
    token, logprob = _token_and_logprob(item)
    top = item.get("top_logprobs")
    if top is None:
        top = ()
    elif not isinstance(top, list):
        raise TypeError(f"top_logprobs is a JSON {_kind(top)}, not a list")
    alternatives = sorted((_token_and_logprob(alt) for alt in top), key=lambda pair: -pair[1])
    return TokenLogprob(token, logprob, tuple(alternatives))


def _token_and_logprob(item: Any) -> tuple[str, float]:
    if not isinstance(item, Mapping):
        raise TypeError(f"a logprob entry is a JSON {_kind(item)}, not an object")
    token, logprob = item.get("token"), item.get("logprob")
    if not isinstance(token, str):
        raise TypeError(f"a token is a JSON {_kind(token)}, not a string")
    if not isinstance(logprob, (int, float)) or isinstance(logprob, bool):
        raise TypeError(f"a logprob is a JSON {_kind(logprob)}, not a number")
    return token, float(logprob)  # OverflowError for an integer beyond a float


def error_message(data: Any) -> str | None:
    """The host's own message from a parsed error body, or None.

    Looks in ``error.message``, ``error`` (a string), ``message`` and ``detail``, in
    that order (OpenAI's shape, vLLM's flat one, FastAPI's).
    """
    if not isinstance(data, Mapping):
        return None
    message: Any = None
    error = data.get("error")
    if isinstance(error, Mapping):
        message = error.get("message")
    elif isinstance(error, str):
        message = error
    message = message or data.get("message") or data.get("detail")
    if message is None:
        return None
    return message if isinstance(message, str) else str(message)


def body_message(body: bytes) -> str:
    """The host's message from an error body (JSON or not), unscrubbed, bounded."""
    data: Any = None
    if len(body) <= MAX_ERROR_BODY_BYTES:
        try:
            data = loads(body)
        except ValueError:
            data = None
    message = error_message(data)
    if message is None:
        message = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace")
    return message


def is_context_length(status: int, message: str, body: bytes = b"") -> bool:
    """Whether an HTTP error says the prompt exceeds the model's context.

    Args:
        status: The HTTP status (only a 4xx other than 429 can say so).
        message: The host's message (judged once scrubbed).
        body: The raw body, for OpenAI's ``context_length_exceeded`` code.
    """
    if not 400 <= status < 500 or status == 429:
        return False
    return says_context_length(message) or b"context_length_exceeded" in body


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a host asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    Args:
        headers: The response headers (case-insensitive mapping).
        now: The current Unix time (for tests); defaults to :func:`time.time`.

    Returns:
        A non-negative number of seconds, or None when no usable header was given.
        ``Retry-After`` may be a number of seconds or an HTTP date.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_MESSAGE_CHARS",
    "NotACompletion",
    "body_message",
    "chat_body",
    "display_url",
    "dumps",
    "error_message",
    "is_context_length",
    "loads",
    "loads_lenient",
    "parse_completion",
    "parse_logprobs",
    "parse_retry_after",
    "request_fragments",
    "scrub",
    "token_logprob",
]
