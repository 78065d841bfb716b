r"""THE score parser: what the thinking reward model says, turned into a number or refused.

Accepted, after surrounding white space is stripped, and nothing else:

* a bare decimal in [0, 1]: ``0``, ``0.7``, ``0.70``, ``1``, ``1.0``;
* that number wrapped, once or nested, in ``<answer>…</answer>``, ``\boxed{…}``,
  ``$…$`` or markdown bold ``**…**`` (white space allowed inside the wrappers).

Everything else raises :class:`~judge.errors.ScoreParseError`: empty text, prose, two
numbers, a number outside [0, 1], ``nan``/``inf``, signs, exponents, and any text longer
than :data:`MAX_ANSWER_CHARS` (refused before it is looked at: the model answers in a few
tokens, and a host may send megabytes). The parser never picks a number out of prose: a
failed judgment must not look like a low score.

Linear: the wrappers are peeled by moving two indices inward, never by copying the text,
so the work is proportional to the text's length however deeply it nests (and that length
is bounded).

An answer is a score only when the model finished it: :func:`check_finished` refuses a
``finish_reason`` other than a natural end (:data:`FINISHED`) with
:class:`~judge.errors.TruncatedAnswerError` (the pipeline asks after the text parsed:
text that is no score stays a ScoreParseError, cut off or not).

A completion whose fields have impossible types (:func:`malformed_completion`) is not
read at all.

A refusal's message quotes the model's output through :func:`excerpt`: on one line, cut to
:data:`EXCERPT_CHARS`, base64 runs and control characters scrubbed; the whole output stays
in the error's ``llm_output`` (and the failed score's ``raw``). The message is the parser's
own (:class:`~judge.errors.ScoreParseError` keeps LangChain's troubleshooting link out).

The *expected score* (the probability-weighted mean of the answer, from the digit
tokens' top logprobs) is in :mod:`judge.core.expected`.

Pure: no I/O, no state.
"""

from __future__ import annotations

import re

from backends.base import Completion
from judge.errors import ScoreParseError, TruncatedAnswerError

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_WRAPPERS = (("<answer>", "</answer>"), ("\\boxed{", "}"), ("$", "$"), ("**", "**"))
_BASE64 = re.compile(r"(?:data:[\w/+.-]+;base64,)?[A-Za-z0-9+/]{64,}={0,2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e]")

EXCERPT_CHARS = 80
"""The most characters of a model's output an error message quotes."""

MAX_ANSWER_CHARS = 1_000
"""The longest answer parsed: far beyond what the model writes within its ``max_tokens``."""

FINISHED: frozenset[str | None] = frozenset(
    {None, "", "stop", "eos", "eos_token", "end_turn", "stop_sequence", "end", "complete"}
)
"""The finish reasons of an answer the model ended itself (compared in lower case): vLLM
and OpenAI say ``"stop"``, Anthropic ``"end_turn"`` / ``"stop_sequence"``, TGI
``"eos_token"``, Cohere ``"COMPLETE"``; None is a backend that does not say. Anything
else (``"length"``, ``"abort"``, ``"content_filter"``, ``"tool_calls"``, an unknown word)
is refused."""

SCORE_GRID: tuple[str, ...] = tuple(["0", *(f"0.{d}" for d in range(1, 10)), "1.0"])
"""The answers the model was trained to give, as it writes them."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The model's output as an error message may quote it: one line, short, scrubbed.

    White space runs become one space, control and invisible formatting characters go,
    base64 runs of 64 characters or more (an image echoed back) become
    ``<base64, N chars>``; the rest is cut to ``limit`` characters, with ``…`` and the
    whole length when cut.

    Args:
        text: What the model said.
        limit: The most characters kept.

    Returns:
        A ``repr``-quoted excerpt, e.g. ``'I would say fairly good'`` or
        ``'The response is…' (2400 characters)``.
    """
    line = " ".join(_CONTROL.sub("", text).split())
    line = _BASE64.sub(lambda match: f"<base64, {len(match.group())} chars>", line)
    if len(line) <= limit:
        return repr(line)
    return f"{line[:limit]!r}… ({len(text)} characters)"


def _unwrap(text: str) -> str:
    """Peel the accepted wrappers and white space off ``text`` while one encloses it all.

    Two indices move inward; each step passes at least one character, and nothing is
    copied until the end: linear in the text's length, whatever it holds (slicing at
    each step made 1.2 MB of nested ``$`` quadratic; a regex with white space on both
    sides of a lazy group backtracked for a minute).
    """
    start, end = 0, len(text)
    while True:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        for opening, closing in _WRAPPERS:
            if (
                end - start >= len(opening) + len(closing)
                and text.startswith(opening, start, end)
                and text.endswith(closing, start, end)
            ):
                start, end = start + len(opening), end - len(closing)
                break
        else:
            return text[start:end]


def parse_score(text: str) -> float:
    """Parse the thinking reward model's answer.

    Args:
        text: The model's output.

    Returns:
        The score, a float in [0, 1].

    Raises:
        ScoreParseError: ``text`` is not one of the accepted shapes, or its number is
            outside [0, 1].
    """
    if not isinstance(text, str):
        raise ScoreParseError(f"expected text, got {type(text).__name__}", llm_output=str(text))
    if len(text) > MAX_ANSWER_CHARS:
        raise ScoreParseError(
            f"the model output is {len(text)} characters long, more than a score's "
            f"{MAX_ANSWER_CHARS}: {excerpt(text)}",
            llm_output=text,
        )
    core = _unwrap(text)
    if not core:
        raise ScoreParseError(f"no score in the model output {excerpt(text)}", llm_output=text)
    if not _NUMBER.fullmatch(core):
        raise ScoreParseError(
            f"the model output {excerpt(text)} is not a score in [0, 1]", llm_output=text
        )
    value = float(core)
    if not 0.0 <= value <= 1.0:
        raise ScoreParseError(
            f"the model output {excerpt(text)} is outside [0, 1]", llm_output=text
        )
    return value


def check_finished(finish_reason: object) -> None:
    """Refuse an answer the model did not finish itself.

    Args:
        finish_reason: The completion's ``finish_reason``, as the backend gave it.

    Raises:
        TruncatedAnswerError: It is not one of :data:`FINISHED` (compared in lower case;
            a value that is not text is refused too).
    """
    if finish_reason is None or (
        isinstance(finish_reason, str) and finish_reason.lower() in FINISHED
    ):
        return
    reason = finish_reason[:40] if isinstance(finish_reason, str) else type(finish_reason).__name__
    hint = (
        "raise max_tokens" if reason.lower() in {"length", "max_tokens"} else "see the server's log"
    )
    raise TruncatedAnswerError(
        f"the answer was not finished (finish_reason {reason!r}): a cut-off or aborted answer "
        f"is not a score; {hint}",
        finish_reason=reason,
    )


_NONE = type(None)
_FIELDS: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("text", (str,)),
    ("finish_reason", (str, _NONE)),
    ("prompt_tokens", (int, _NONE)),
    ("completion_tokens", (int, _NONE)),
    ("logprobs", (tuple, list, _NONE)),
    ("model", (str, _NONE)),
    ("latency_s", (float, int, _NONE)),
    ("attempts", (int,)),
)


def malformed_completion(completion: Completion) -> str | None:
    """Which field of a completion has a type it cannot have, or None.

    A backend builds :class:`~backends.base.Completion` from what a host sent; a field
    of another type (a number for ``model``, text for ``prompt_tokens``) is a malformed
    reply, never a crash and never a score.
    """
    for name, types in _FIELDS:
        value = getattr(completion, name, None)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"{name} is a {type(value).__name__}"
    return None


def constraint_choices(prefix: str = "", suffix: str = "", after: str = "") -> list[str]:
    """The strings a constrained answer may take, or its remainders after ``after``.

    Args:
        prefix: Text the answer opens with (``"<answer>"`` for the tag format).
        suffix: Text it closes with (``"</answer>"``).
        after: The part of the number already written (a continuation's prefix): the
            choices are then what may follow it, e.g. ``after="0"`` gives ``""``
            (the answer "0"), ``".1"`` ... ``".9"``.

    Returns:
        The allowed strings, for vLLM's ``structured_outputs={"choice": [...]}``.
    """
    if not after:
        return [f"{prefix}{value}{suffix}" for value in SCORE_GRID]
    return [f"{value[len(after) :]}{suffix}" for value in SCORE_GRID if value.startswith(after)]


__all__ = [
    "EXCERPT_CHARS",
    "FINISHED",
    "MAX_ANSWER_CHARS",
    "SCORE_GRID",
    "check_finished",
    "constraint_choices",
    "excerpt",
    "malformed_completion",
    "parse_score",
]
