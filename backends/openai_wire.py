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
:func:`scrub`                      a host's message made safe: no secrets, no base64,
                                   no echo of the request, bounded
:func:`request_fragments`          the starts of a request's texts, for ``scrub``
:func:`display_url`                a URL without user info, query or fragment
=================================  =====================================================
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timezone
from typing import Any

import orjson
from yarl import URL

from backends.base import Completion, JudgeRequest, TokenLogprob
from backends.errors import says_context_length

dumps: Callable[[Any], bytes] = orjson.dumps
"""Encode a request body (orjson; raises ``TypeError`` for what JSON cannot hold)."""
loads: Callable[[bytes], Any] = orjson.loads
"""Decode a reply body (orjson; raises ``ValueError`` for what is not strict JSON)."""

MAX_MESSAGE_CHARS = 300
"""The longest host message put in an error."""
MAX_ERROR_BODY_BYTES = 65536
"""The most of an error body read for its message."""

_DATA_URL = re.compile(r"data:[\w.+/-]*;base64,[A-Za-z0-9+/=_-]*", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{64,}")
_REQUEST_ECHO = re.compile(r"""['"](?:input|messages|content)['"]\s*:""")
_FRAGMENT_CHARS = 32


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


def request_fragments(request: JudgeRequest) -> list[str]:
    """The starts of a request's texts, to recognise a host echoing them (see :func:`scrub`)."""
    fragments: list[str] = []
    for message in request.messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        parts = [content] if isinstance(content, str) else content or ()
        for part in parts if isinstance(parts, (list, tuple)) else ():
            text = part.get("text") if isinstance(part, Mapping) else part
            if isinstance(text, str) and len(text.strip()) >= 12:
                fragments.append(text.strip()[:_FRAGMENT_CHARS])
    return fragments


# --------------------------------------------------------------------------- replies


def loads_lenient(body: bytes) -> Any:
    """Parse with the stdlib (which takes ``NaN`` / ``Infinity``), or None."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def parse_completion(
    body: bytes,
    *,
    model: str,
    latency: float = 0.0,
    attempts: int = 1,
    safe: Callable[[str], str] | None = None,
) -> Completion:
    """A 200 body as a :class:`~backends.base.Completion`.

    Args:
        body: The reply body.
        model: The model to report when the body names none.
        latency: Seconds the request took.
        attempts: How many times it was sent.
        safe: Makes a host's message safe for an error (default :func:`scrub`).

    Returns:
        The text (``""`` when the host sent ``null``, e.g. all of it went to a
        reasoning parser), finish reason, usage, logprobs, model, latency, attempts.

    Raises:
        NotACompletion: The body is not JSON or not a chat completion; says why.
    """
    try:
        data = loads(body)
    except ValueError:
        data = loads_lenient(body)
        if data is None:
            raise NotACompletion("the body is not valid JSON (truncated?)") from None
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content")
        if text is None:
            text = ""
        elif not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            logprobs=parse_logprobs(choice.get("logprobs")),
            model=data.get("model") or model,
            latency_s=latency,
            attempts=attempts,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise NotACompletion(_why_not_a_completion(data, safe or scrub)) from None


def _why_not_a_completion(data: Any, safe: Callable[[str], str]) -> str:
    if not isinstance(data, dict):
        return f"the body is a JSON {type(data).__name__}, not an object"
    if data.get("error"):
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return f"the body is an error: {safe(str(message))}"
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        return "the body has no choices"
    return "choices[0] is not a chat message"


def parse_logprobs(value: Any) -> tuple[TokenLogprob, ...] | None:
    """OpenAI-shaped ``{"content": [...]}`` logprobs, or None when there are none.

    Raises:
        KeyError, TypeError, ValueError: Logprobs in another shape.
    """
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"logprobs is a {type(value).__name__}, not an object")
    if value.get("content") is None:
        return None
    return tuple(token_logprob(item) for item in value["content"])


def token_logprob(item: Mapping[str, Any]) -> TokenLogprob:
    """One entry of ``choices[0].logprobs.content``; alternatives best first."""
    top = item.get("top_logprobs") or ()
    alternatives = sorted(
        ((alt["token"], float(alt["logprob"])) for alt in top), key=lambda pair: -pair[1]
    )
    return TokenLogprob(item["token"], float(item["logprob"]), tuple(alternatives))


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


# --------------------------------------------------------------------------- safety


def scrub(
    text: str,
    secrets: Sequence[str] = (),
    *,
    cut_at: Sequence[str] = (),
    limit: int = MAX_MESSAGE_CHARS,
) -> str:
    """Make a host's message safe to put in an error: no secrets, no images, no echo.

    Args:
        text: The message.
        secrets: Strings to redact wherever they appear (e.g. the API key).
        cut_at: Fragments of the request (its texts); the message is cut where one
            appears, as it is where an ``"input":`` / ``"messages":`` /
            ``"content":`` echo starts.
        limit: Most characters to keep.

    Returns:
        The message with secrets redacted, any echo of the request dropped, base64
        data URLs and long base64 runs replaced, whitespace folded, cut to ``limit``.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    cut = len(text)
    echo = _REQUEST_ECHO.search(text)
    if echo is not None:
        cut = echo.start()
    for fragment in cut_at:
        found = text.find(fragment, 0, cut)
        if found >= 0:
            cut = found
    if cut < len(text):
        text = text[:cut] + "[request omitted]"
    text = text[: 16 * limit]
    text = _DATA_URL.sub("data:[base64 omitted]", text)
    text = _BASE64_RUN.sub("[base64 omitted]", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def display_url(url: URL | str) -> str:
    """The URL without user info, query or fragment: safe for messages and metadata."""
    url = URL(url) if isinstance(url, str) else url
    return str(url.with_user(None).with_query(None).with_fragment(None))


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
