"""thinking-reward-judge: the SophiaVL-R1 Thinking Reward Model as a LangChain citizen.

``import judge`` imports neither vLLM, torch nor transformers. The evaluators, the
reranker and the RL rewards are imported on first use of one of their names (the
LangSmith evaluation machinery alone takes most of a second to import), in the manner
of vLLM's ``MODULE_ATTRS``; ``__all__`` lists them all the same.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from backends.caching import JudgmentCache
from judge.core.parse import SCORE_GRID, parse_score
from judge.core.prompt import TEMPLATE_VERSION, render_messages, render_prompt
from judge.errors import (
    BackendError,
    CacheError,
    ConstraintError,
    ImageError,
    InputError,
    JudgmentError,
    ScoreParseError,
    ThinkingJudgeError,
    TruncatedAnswerError,
)
from judge.failures import FailureKind
from judge.lazy import lazy_attributes
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

if TYPE_CHECKING:
    from judge.integrations import (
        EVALUATION_KEY,
        ThinkingRunEvaluator,
        create_async_thinking_evaluator,
        create_thinking_evaluator,
    )
    from judge.rerank import BestOfN, RankedResponse, ThinkingRerank, best_of_n
    from judge.rl import (
        EasyR1Reward,
        GroupReward,
        GRPOReward,
        RewardStep,
        SyncGRPOReward,
        TrustGRPO,
        VerlReward,
        trust_weight,
    )

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "EVALUATION_KEY",
            "ThinkingRunEvaluator",
            "create_async_thinking_evaluator",
            "create_thinking_evaluator",
        ),
        "judge.integrations",
    ),
    **dict.fromkeys(("BestOfN", "RankedResponse", "ThinkingRerank", "best_of_n"), "judge.rerank"),
    **dict.fromkeys(
        (
            "EasyR1Reward",
            "GroupReward",
            "GRPOReward",
            "RewardStep",
            "SyncGRPOReward",
            "TrustGRPO",
            "VerlReward",
            "trust_weight",
        ),
        "judge.rl",
    ),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


try:
    __version__ = version("thinking-reward-judge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

DEFAULT_MODEL = "bunny127/SophiaVL-R1-Thinking-Reward-Model-3B"
"""The thinking reward model on the model hub."""

__all__ = [
    "DEFAULT_MODEL",
    "EVALUATION_KEY",
    "SCORE_GRID",
    "TEMPLATE_VERSION",
    "BackendError",
    "BestOfN",
    "CacheError",
    "ConstraintError",
    "EasyR1Reward",
    "FailureKind",
    "GRPOReward",
    "GroupReward",
    "ImageError",
    "InputError",
    "JudgeInput",
    "JudgmentCache",
    "JudgmentError",
    "RankedResponse",
    "RewardStep",
    "ScoreParseError",
    "SyncGRPOReward",
    "ThinkingJudgeError",
    "ThinkingRerank",
    "ThinkingRewardJudge",
    "ThinkingRunEvaluator",
    "ThinkingScore",
    "TruncatedAnswerError",
    "TrustGRPO",
    "VerlReward",
    "__version__",
    "best_of_n",
    "create_async_thinking_evaluator",
    "create_thinking_evaluator",
    "parse_score",
    "render_messages",
    "render_prompt",
    "trust_weight",
]
