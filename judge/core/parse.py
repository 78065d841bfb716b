r"""THE score parser: what the thinking reward model says, turned into a number or refused.

Accepted, after surrounding white space is stripped, and nothing else:

* a bare decimal in [0, 1]: ``0``, ``0.7``, ``0.70``, ``1``, ``1.0``;
* that number wrapped, once or nested, in ``<answer>…</answer>``, ``\boxed{…}``,
  ``$…$`` or markdown bold ``**…**`` (white space allowed inside the wrappers).

Everything else raises :class:`~judge.errors.ScoreParseError`: empty text, prose, two
numbers, a number outside [0, 1], ``nan``/``inf``, signs, exponents. The parser never
picks a number out of prose: a failed judgment must not look like a low score.

The second half of the module is the *expected score*: the probability-weighted mean of
the model's answer, computed from the top logprobs of its digit tokens (see
:func:`expected_score`).

Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.base import TokenLogprob
from judge.errors import ScoreParseError

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_WRAPPERS = (("<answer>", "</answer>"), ("\\boxed{", "}"), ("$", "$"), ("**", "**"))
_MAX_SHOWN = 80

SCORE_GRID: tuple[str, ...] = tuple(["0", *(f"0.{d}" for d in range(1, 10)), "1.0"])
"""The answers the model was trained to give, as it writes them."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…")


def _unwrap(text: str) -> str:
    """Peel the accepted wrappers off ``text`` (already stripped) while one encloses it all.

    Plain prefix/suffix tests, not regular expressions: linear in the text's length
    whatever it holds (an unclosed wrapper before much white space made a regex
    backtrack for a minute).
    """
    while True:
        for opening, closing in _WRAPPERS:
            if (
                len(text) >= len(opening) + len(closing)
                and text.startswith(opening)
                and text.endswith(closing)
            ):
                text = text[len(opening) : len(text) - len(closing)].strip()
                break
        else:
            return text


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
    core = _unwrap(text.strip())
    if not core:
        raise ScoreParseError(f"no score in the model output {_shown(text)}", llm_output=text)
    if not _NUMBER.fullmatch(core):
        raise ScoreParseError(
            f"the model output {_shown(text)} is not a score in [0, 1]", llm_output=text
        )
    value = float(core)
    if not 0.0 <= value <= 1.0:
        raise ScoreParseError(f"the model output {_shown(text)} is outside [0, 1]", llm_output=text)
    return value


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


# --------------------------------------------------------------------------- expected score

END = "end"
"""The class of tokens that close the number: end of turn, a closing tag, white space."""
DOT = "."
DIGITS = "0123456789"


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
    "END",
    "SCORE_GRID",
    "ScoreTrace",
    "constraint_choices",
    "expected_score",
    "parse_score",
    "position_mass",
    "token_class",
    "trace_answer",
]
