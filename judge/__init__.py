"""thinking-reward-judge: the SophiaVL-R1 Thinking Reward Model as a LangChain citizen.

``import judge`` imports neither vLLM, torch nor transformers.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from judge.errors import (
    BackendError,
    ImageError,
    InputError,
    JudgmentError,
    ScoreParseError,
    ThinkingJudgeError,
)
from judge.parse import SCORE_GRID, parse_score
from judge.prompt import TEMPLATE_VERSION, render_messages, render_prompt
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

try:
    __version__ = version("thinking-reward-judge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

DEFAULT_MODEL = "bunny127/SophiaVL-R1-Thinking-Reward-Model-3B"
"""The thinking reward model on the model hub."""

__all__ = [
    "DEFAULT_MODEL",
    "SCORE_GRID",
    "TEMPLATE_VERSION",
    "BackendError",
    "ImageError",
    "InputError",
    "JudgeInput",
    "JudgmentError",
    "ScoreParseError",
    "ThinkingJudgeError",
    "ThinkingRewardJudge",
    "ThinkingScore",
    "__version__",
    "parse_score",
    "render_messages",
    "render_prompt",
]
