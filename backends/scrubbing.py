"""Messages made safe: no secrets (nor echoes of their start or masked forms), no echo.

Everything a host says can end up in an error, a score's ``error``, a log line or a
trace, so every host message goes through :func:`scrub` first:

==============================  ========================================================
Name                            What it does
==============================  ========================================================
:func:`scrub`                   redact secrets and their echoes, drop any echo of the
                                request, replace base64, fold whitespace, bound
:func:`echoes`                  whether a word of a message echoes a secret (its start,
                                its end, or a masked form ``sk-ab...wxyz``)
:func:`secret_values`           the secrets a user gave in headers and URL queries
:func:`request_fragments`       the starts of a request's texts, for ``scrub``
:func:`display_url`             a URL without user info, query or fragment
==============================  ========================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from yarl import URL

from backends.base import JudgeRequest

MAX_MESSAGE_CHARS = 300
"""The longest host message put in an error."""
MIN_SECRET_CHARS = 4
"""A shorter string is too short to be a secret and is left alone."""
ECHO_CHARS = 8
"""A word holding this many of a secret's first (or last) characters echoes it."""

_DATA_URL = re.compile(r"data:[\w.+/-]*;base64,[A-Za-z0-9+/=_-]*", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{64,}")
_REQUEST_ECHO = re.compile(r"""['"](?:input|messages|content)['"]\s*:""")
_WORD = re.compile(r"""[^\s'"`,;()\[\]{}<>|]+""")
_MASK = re.compile(r"\*{2,}|\.{3,}|\u2026|x{4,}|X{4,}|#{3,}")
_FRAGMENT_CHARS = 32
_MASK_ENDS = 3


def secret_values(headers: Mapping[str, str] | None = None, urls: Iterable[URL] = ()) -> list[str]:
    """Every user-given header value and every query value of ``urls``, as secrets.

    Each value is taken as given and as it would appear percent-encoded; values
    shorter than :data:`MIN_SECRET_CHARS` are left out.
    """
    values: list[str] = []
    for value in (headers or {}).values():
        values.append(str(value))
    for url in urls:
        for name, value in url.query.items():
            values.append(value)
            if len(name) >= MIN_SECRET_CHARS and not value:
                values.append(name)  # a bare "?<token>"
        if url.raw_query_string:
            values.extend(part.partition("=")[2] for part in url.raw_query_string.split("&"))
    out: list[str] = []
    for value in values:
        for form in (value, quote(value, safe=""), value.strip()):
            if len(form) >= MIN_SECRET_CHARS and form not in out:
                out.append(form)
    return out


def echoes(word: str, secret: str) -> bool:
    """Whether ``word`` echoes ``secret``.

    It does when it holds the whole of it, its first or last :data:`ECHO_CHARS`
    characters, or a masked form that keeps at least its first or last three
    characters around ``***`` / ``...`` (``sk-abc...wxyz``, ``sk-abc****``).
    """
    if secret in word:
        return True
    if len(secret) >= ECHO_CHARS and (secret[:ECHO_CHARS] in word or secret[-ECHO_CHARS:] in word):
        return True
    mask = _MASK.search(word)
    if mask is None or len(secret) < 2 * _MASK_ENDS:
        return False
    head, tail = word[: mask.start()], word[mask.end() :].rstrip(".:")
    return (len(head) >= _MASK_ENDS and secret.startswith(head[-len(secret) :])) or (
        len(tail) >= _MASK_ENDS and secret.endswith(tail)
    )


def _redact(text: str, secrets: Sequence[str]) -> str:
    secrets = [s for s in secrets if len(s) >= MIN_SECRET_CHARS]
    if not secrets:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")

    def word(match: re.Match[str]) -> str:
        found = match.group()
        if found == "***" or not any(echoes(found, secret) for secret in secrets):
            return found
        return "***"

    return _WORD.sub(word, text)


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
        secrets: Strings to redact wherever they appear (the API key, header values,
            query values), with any word that echoes one (see :func:`echoes`).
        cut_at: Fragments of the request (its texts); the message is cut where one
            appears, as it is where an ``"input":`` / ``"messages":`` /
            ``"content":`` echo starts.
        limit: Most characters to keep.

    Returns:
        The message with secrets redacted, any echo of the request dropped, base64
        data URLs and long base64 runs replaced, whitespace folded, cut to ``limit``.
    """
    text = text[: 64 * limit + 4096]  # bounded work, whatever the host sent
    text = _redact(text, secrets)
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


def request_fragments(request: JudgeRequest) -> list[str]:
    """The starts of a request's texts, to recognise a host echoing them (see :func:`scrub`)."""
    fragments: list[str] = []
    for message in request.messages:
        content: Any = message.get("content") if isinstance(message, Mapping) else None
        parts = [content] if isinstance(content, str) else content or ()
        for part in parts if isinstance(parts, (list, tuple)) else ():
            text = part.get("text") if isinstance(part, Mapping) else part
            if isinstance(text, str) and len(text.strip()) >= 12:
                fragments.append(text.strip()[:_FRAGMENT_CHARS])
    return fragments


def display_url(url: URL | str) -> str:
    """The URL without user info, query or fragment: safe for messages and metadata."""
    url = URL(url) if isinstance(url, str) else url
    return str(url.with_user(None).with_query(None).with_fragment(None))


__all__ = [
    "ECHO_CHARS",
    "MAX_MESSAGE_CHARS",
    "MIN_SECRET_CHARS",
    "display_url",
    "echoes",
    "request_fragments",
    "scrub",
    "secret_values",
]
