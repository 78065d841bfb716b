r"""THE score parser: what the thinking reward model says, turned into a number or refused.

Accepted, after surrounding white space is stripped, and nothing else:

* a bare decimal in [0, 1]: ``0``, ``0.7``, ``0.70``, ``1``, ``1.0``;
* that number wrapped, once or nested, in ``<answer>…</answer>``, ``\boxed{…}``,
  ``$…$`` or markdown bold ``**…**`` (white space allowed inside the wrappers).

Everything else raises :class:`~judge.errors.ScoreParseError`: empty text, prose, two
numbers, a number outside [0, 1], ``nan``/``inf``, signs, exponents. The parser never
picks a number out of prose: a failed judgment must not look like a low score.

Pure: no I/O, no state.
"""

from __future__ import annotations

import re

from judge.errors import ScoreParseError

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_WRAPPERS = (
    re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL),
    re.compile(r"\\boxed\{\s*(.*?)\s*\}", re.DOTALL),
    re.compile(r"\$\s*(.*?)\s*\$", re.DOTALL),
    re.compile(r"\*\*\s*(.*?)\s*\*\*", re.DOTALL),
)
_MAX_SHOWN = 80

SCORE_GRID: tuple[str, ...] = tuple(["0", *(f"0.{d}" for d in range(1, 10)), "1.0"])
"""The answers the model was trained to give, as it writes them."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…")


def _unwrap(text: str) -> str:
    """Peel the accepted wrappers off ``text`` while one encloses all of it."""
    while True:
        for wrapper in _WRAPPERS:
            match = wrapper.fullmatch(text)
            if match:
                text = match.group(1)
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


__all__ = ["SCORE_GRID", "parse_score"]
