"""The expected score: the probability-weighted mean of the thinking reward model's answer.

The model answers one of :data:`~judge.core.parse.SCORE_GRID` (``0``, ``0.1`` ... ``1.0``),
one digit per token. From the top logprobs at the answer's digit positions this module
reads three distributions (the first digit; what follows ``"0"``; the digit after
``"0."``) into a :class:`ScoreTrace`, says which one is still missing (then a short
continuation request reads it), and computes E[score] (:func:`expected_score`).

The logprobs come from a host and are checked before they are used (:func:`vet`):

* **refused** (no expected score, ``metadata["expected_score"]["reason"]`` says why):
  a logprob that is not a number, NaN, ``+Infinity`` or above 0 (a probability above
  1; :data:`MAX_LOGPROB` allows float noise), a token that is not text, or a position
  whose top alternatives add up to a probability above 1 (beyond :data:`MASS_SLACK`).
  ``-Infinity`` is a probability of 0 and is fine. Such numbers cannot be a
  distribution, so no number computed from them is reported (``Infinity`` once gave
  an expected score of 0.0 beside a score of 0.7);
* **flagged** (the expected score is computed from the top alternatives as usual, and
  ``metadata["expected_score"]["inconsistent"]`` says what contradicts what): the
  tokens do not spell the answer text (special tokens such as ``<|im_end|>`` and white
  space at the ends aside), a generated token's own logprob differs from its entry in
  its top list, or a generated token missing from its top list is more likely than an
  alternative in it. These contradict the text, not probability itself: the text is
  still the score, and the flag says its logprobs deserve no trust. A generated token
  that is missing from its top list and less likely than all of it is normal (sampling,
  a constraint) and not flagged.

Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.base import TokenLogprob

END = "end"
"""The class of tokens that close the number: end of turn, a closing tag, white space."""
DOT = "."
DIGITS = "0123456789"


MAX_LOGPROB = 1e-6
"""The largest logprob taken as a probability of 1 (float noise above 0 is allowed)."""
MASS_SLACK = 1e-3
"""How far above 1 a position's top probabilities may add up (float noise)."""
_LOGPROB_SLACK = 1e-3
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>")
_MAX_NOTES = 3


def _short(token: str) -> str:
    return repr(token if len(token) <= 20 else token[:20] + "…")


def _value_problem(token: object, logprob: object) -> str | None:
    if not isinstance(token, str):
        return f"a token that is not text ({type(token).__name__})"
    if isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return f"the logprob of {_short(token)} is not a number ({type(logprob).__name__})"
    if math.isnan(logprob) or logprob > MAX_LOGPROB:
        return f"the logprob of {_short(token)} is {logprob!r}, not a probability's (<= 0)"
    return None


def _problem(index: int, entry: TokenLogprob) -> str | None:
    """Why position ``index`` cannot be a distribution, or None."""
    try:
        pairs = [(entry.token, entry.logprob), *((token, value) for token, value in entry.top)]
    except (AttributeError, TypeError, ValueError):
        return f"position {index}: not a token with its logprob and (token, logprob) pairs"
    seen: dict[str, float] = {}
    for token, value in pairs:
        problem = _value_problem(token, value)
        if problem is not None:
            return f"position {index}: {problem}"
        seen[token] = max(seen.get(token, -math.inf), float(value))
    mass = math.fsum(math.exp(value) for value in seen.values())
    if mass > 1.0 + MASS_SLACK:
        return f"position {index}: its top logprobs add up to a probability of {mass:.4f} > 1"
    return None


def _contradictions(text: str, logprobs: Sequence[TokenLogprob]) -> list[str]:
    notes: list[str] = []
    spelt = _SPECIAL.sub("", "".join(entry.token for entry in logprobs))
    if spelt != text and spelt.strip() != text.strip():
        notes.append(f"the tokens spell {_short(spelt)}, the text is {_short(text)}")
    for index, entry in enumerate(logprobs):
        top: dict[str, float] = {}
        for token, value in entry.top:
            top[token] = max(top.get(token, -math.inf), value)
        own = top.get(entry.token)
        if own is not None and abs(own - entry.logprob) > _LOGPROB_SLACK:
            notes.append(
                f"position {index}: {_short(entry.token)} has logprob {entry.logprob!r}, "
                f"and {own!r} in its top list"
            )
        elif own is None and top and entry.logprob > min(top.values()) + _LOGPROB_SLACK:
            notes.append(
                f"position {index}: {_short(entry.token)} (logprob {entry.logprob!r}) is "
                "missing from its top list though more likely than an entry in it"
            )
    return notes


def vet(text: str, logprobs: Sequence[TokenLogprob]) -> tuple[str | None, str | None]:
    """Check a completion's logprobs before they are used (see the module docstring).

    Args:
        text: The completion's text.
        logprobs: Its per-token logprobs.

    Returns:
        ``(refused, inconsistent)``: why the logprobs cannot be used at all (then no
        expected score is computed from them), and what in them contradicts the text
        (a flag for the metadata); each None when there is nothing to say.
    """
    for index, entry in enumerate(logprobs):
        problem = _problem(index, entry)
        if problem is not None:
            return problem, None
    notes = _contradictions(text, logprobs)
    if len(notes) > _MAX_NOTES:
        notes[_MAX_NOTES:] = [f"and {len(notes) - _MAX_NOTES} more"]
    return None, "; ".join(notes) or None


def usable(
    text: str,
    logprobs: Sequence[TokenLogprob] | None,
    *,
    what: str,
    missing: str,
    into: dict[str, Any],
) -> bool:
    """:func:`vet` a completion's logprobs, recording in ``into`` what it found.

    Args:
        text: The completion's text.
        logprobs: Its logprobs, if any.
        what: What the completion is (``"answer"``, ``"continuation"``), for messages.
        missing: The ``reason`` to record when there are no logprobs.
        into: The expected score's metadata: ``reason`` is set when the logprobs are
            unusable, ``inconsistent`` extended when they contradict the text.

    Returns:
        Whether the logprobs may be used.
    """
    if not logprobs:
        into["reason"] = missing
        return False
    refused, inconsistent = vet(text, logprobs)
    if inconsistent:
        note = f"the logprobs of the {what}: {inconsistent}"
        into["inconsistent"] = f"{into['inconsistent']}; {note}" if "inconsistent" in into else note
    if refused:
        into["reason"] = f"the logprobs of the {what} are unusable: {refused}"
        return False
    return True


def token_class(token: str) -> str | None:
    """What a token means inside the score, or None when it cannot be part of one.

    Qwen's tokenizer writes one digit per token and ``"."`` on its own, so the answer
    ``0.7`` is the tokens ``"0" "." "7"``. After the number comes an end-of-turn token
    (``<|im_end|>``, ``<|endoftext|>``), a closing tag (``</answer>``, ``</``, ``<``)
    or white space: all of these are :data:`END`.
    """
    if len(token) == 1 and token in DIGITS:
        return token
    if token == DOT:
        return DOT
    if token.startswith("<") or (token != "" and token.isspace()):
        return END
    return None


def position_mass(entry: TokenLogprob) -> dict[str, float]:
    """Probability mass per token class at one position (``"other"`` for the rest).

    The mass is read from the position's top alternatives (the generated token is added
    when it is not among them); what lies beyond the top-k counts as nowhere.
    """
    seen: dict[str, float] = {}
    for token, logprob in entry.top:
        seen[token] = max(seen.get(token, -math.inf), logprob)
    if entry.token not in seen:
        seen[entry.token] = entry.logprob
    mass: dict[str, float] = {}
    for token, logprob in seen.items():
        if logprob == -math.inf or math.isnan(logprob):
            continue
        key = token_class(token) or "other"
        mass[key] = mass.get(key, 0.0) + math.exp(logprob)
    return mass


@dataclass(slots=True)
class ScoreTrace:
    """The three distributions the expected score needs, as far as they are known.

    Attributes:
        prefix: The answer's text before its first digit (``""`` or ``"<answer>"``).
        first: Mass per class at the first digit (``"0"`` / ``"1"`` matter).
        after_zero: Mass per class after ``"0"`` (``"."`` / :data:`END` matter).
        after_point: Mass per class after ``"0."`` (the digits matter).
        sources: Where each distribution was read: ``"answer"`` (the generated answer)
            or ``"continuation"`` (a request continuing ``prefix + "0"`` or ``"0."``).
    """

    prefix: str
    first: dict[str, float]
    after_zero: dict[str, float] | None = None
    after_point: dict[str, float] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def missing(self) -> str | None:
        """The number text to continue from to learn what is still needed, or None.

        ``"0"`` when the mass after "0" is unknown (one continuation then usually
        yields the digits too), ``"0."`` when only the digits are unknown; None when
        nothing that carries weight is missing.
        """
        if self.first.get("0", 0.0) <= 0.0:
            return None
        if self.after_zero is None:
            return "0"
        if self.after_zero.get(DOT, 0.0) > 0.0 and self.after_point is None:
            return "0."
        return None

    def add_continuation(self, after: str, logprobs: Sequence[TokenLogprob]) -> None:
        """Fill in what a continuation of ``prefix + after`` revealed."""
        if not logprobs:
            return
        if after == "0":
            self.after_zero = position_mass(logprobs[0])
            self.sources["after_zero"] = "continuation"
            if logprobs[0].token == DOT and len(logprobs) > 1:
                self.after_point = position_mass(logprobs[1])
                self.sources["after_point"] = "continuation"
        elif after == "0.":
            self.after_point = position_mass(logprobs[0])
            self.sources["after_point"] = "continuation"

    def details(self) -> dict[str, Any]:
        """The masses used, rounded for metadata."""
        out: dict[str, Any] = {"prefix": self.prefix, "sources": dict(self.sources)}
        for name in ("first", "after_zero", "after_point"):
            value = getattr(self, name)
            if value is not None:
                out[name] = {k: round(v, 9) for k, v in sorted(value.items())}
        return out


def trace_answer(logprobs: Sequence[TokenLogprob]) -> ScoreTrace | None:
    """Find the score's first digit in a generated answer and read what follows it.

    Tokens before the first digit (``<answer>``, white space, ``**``) are skipped and
    kept as the trace's prefix. Returns None when the answer has no digit at all.
    """
    prefix: list[str] = []
    for index, entry in enumerate(logprobs):
        if len(entry.token) == 1 and entry.token in DIGITS:
            trace = ScoreTrace(
                prefix="".join(prefix), first=position_mass(entry), sources={"first": "answer"}
            )
            rest = logprobs[index + 1 :]
            if entry.token == "0" and rest:
                trace.after_zero = position_mass(rest[0])
                trace.sources["after_zero"] = "answer"
                if rest[0].token == DOT and len(rest) > 1:
                    trace.after_point = position_mass(rest[1])
                    trace.sources["after_point"] = "answer"
            return trace
        prefix.append(entry.token)
    return None


def expected_score(
    first: Mapping[str, float],
    after_zero: Mapping[str, float] | None = None,
    after_point: Mapping[str, float] | None = None,
) -> float:
    """E[score] from the model's distributions over its answer's digit tokens.

    With each distribution renormalised over the tokens the grid allows there::

        E = P("1") * 1.0 + P("0") * P("." | "0") * E[d / 10 | "0."]

    where ``P("1") + P("0") = 1`` at the first digit, ``P("." | "0") + P(end | "0") = 1``
    after ``"0"`` (the answer "0" contributes 0), and ``d`` ranges over the digits after
    ``"0."`` (``"0.0"`` counts as 0). Whatever follows ``"1"`` is not read: the grid's
    only answer starting with 1 is 1.0.

    Args:
        first: Mass per token class at the first digit (see :func:`position_mass`).
        after_zero: Mass after ``"0"``; needed unless ``P("0")`` is 0.
        after_point: Mass after ``"0."``; needed unless ``P("0")`` or
            ``P("." | "0")`` is 0.

    Returns:
        The expected score in [0, 1].

    Raises:
        ValueError: A distribution that carries weight is missing, or has no mass on
            any allowed token (then no expected score exists).
    """
    p_zero, p_one = first.get("0", 0.0), first.get("1", 0.0)
    if p_zero + p_one <= 0.0:
        raise ValueError("neither '0' nor '1' is among the top logprobs of the first digit")
    p_one, p_zero = p_one / (p_zero + p_one), p_zero / (p_zero + p_one)
    if p_zero == 0.0:
        return 1.0
    if after_zero is None:
        raise ValueError("the distribution after '0' is unknown")
    dot, end = after_zero.get(DOT, 0.0), after_zero.get(END, 0.0)
    if dot + end <= 0.0:
        raise ValueError("neither '.' nor an end of the answer is among the top logprobs after '0'")
    p_dot = dot / (dot + end)
    decimals = 0.0
    if p_dot > 0.0:
        if after_point is None:
            raise ValueError("the distribution after '0.' is unknown")
        weights = {d: after_point.get(d, 0.0) for d in DIGITS}
        total = sum(weights.values())
        if total <= 0.0:
            raise ValueError("no digit is among the top logprobs after '0.'")
        decimals = sum(int(d) / 10 * w for d, w in weights.items()) / total
    return min(1.0, max(0.0, p_one + p_zero * p_dot * decimals))


__all__ = [
    "DIGITS",
    "DOT",
    "END",
    "MASS_SLACK",
    "MAX_LOGPROB",
    "ScoreTrace",
    "expected_score",
    "position_mass",
    "token_class",
    "trace_answer",
    "usable",
    "vet",
]
