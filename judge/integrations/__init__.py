"""The judge as a LangSmith, openevals or langchain-classic evaluator.

Three shapes over one mapping:

* a LangSmith ``RunEvaluator``, from ``judge.as_langsmith_evaluator()``
  (:mod:`judge.integrations.langsmith`);
* an openevals-style function, sync or async, from ``judge.as_evaluator()``
  (:mod:`judge.integrations.openevals`);
* langchain-classic's ``StringEvaluator``, from ``judge.as_string_evaluator()``
  (:mod:`judge.integrations.classic`; ``ThinkingStringEvaluator`` is reachable here, but
  left out of ``__all__``: it needs the optional langchain-classic).

Underneath, :mod:`~judge.integrations.evaluation` maps an example and a run to a judge
input (:mod:`judge.core.inputs`) and runs the judge, and :mod:`~judge.integrations.verdict`
turns the judgment into the score, the comment (its band and the model card's rubric) and
the metadata every shape reports. A failed judgment is never a score.

The names below are imported on first use (as vLLM's ``MODULE_ATTRS`` does), so importing
this package loads neither the LangSmith evaluation machinery nor langchain-classic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from judge.lazy import lazy_attributes

if TYPE_CHECKING:
    from judge.integrations.classic import (
        ThinkingStringEvaluator as ThinkingStringEvaluator,
    )
    from judge.integrations.classic import (
        create_string_evaluator,
        failure_error,
    )
    from judge.integrations.evaluation import Evaluation, Prepare, evaluation, keep_runs_local
    from judge.integrations.langsmith import ThinkingRunEvaluator, evaluation_result
    from judge.integrations.openevals import (
        EvaluatorResult,
        create_async_thinking_evaluator,
        create_thinking_evaluator,
    )
    from judge.integrations.verdict import (
        EVALUATION_KEY,
        FEEDBACK_CONFIG,
        RUBRIC,
        Verdict,
        band,
        score_comment,
        verdict,
    )

MODULE_ATTRS: dict[str, str] = {
    **dict.fromkeys(
        (
            "EVALUATION_KEY",
            "FEEDBACK_CONFIG",
            "RUBRIC",
            "Verdict",
            "band",
            "score_comment",
            "verdict",
        ),
        "judge.integrations.verdict",
    ),
    **dict.fromkeys(
        ("Evaluation", "Prepare", "evaluation", "keep_runs_local"),
        "judge.integrations.evaluation",
    ),
    **dict.fromkeys(("ThinkingRunEvaluator", "evaluation_result"), "judge.integrations.langsmith"),
    **dict.fromkeys(
        ("EvaluatorResult", "create_async_thinking_evaluator", "create_thinking_evaluator"),
        "judge.integrations.openevals",
    ),
    **dict.fromkeys(
        ("ThinkingStringEvaluator", "create_string_evaluator", "failure_error"),
        "judge.integrations.classic",
    ),
}
"""Which module each public name lives in; imported on first use."""


# ThinkingStringEvaluator stays lazy: langchain-classic may be missing, then installed.
__getattr__, __dir__ = lazy_attributes(__name__, MODULE_ATTRS, uncached={"ThinkingStringEvaluator"})


__all__ = [
    "EVALUATION_KEY",
    "FEEDBACK_CONFIG",
    "RUBRIC",
    "Evaluation",
    "EvaluatorResult",
    "Prepare",
    "ThinkingRunEvaluator",
    "Verdict",
    "band",
    "create_async_thinking_evaluator",
    "create_string_evaluator",
    "create_thinking_evaluator",
    "evaluation",
    "evaluation_result",
    "failure_error",
    "keep_runs_local",
    "score_comment",
    "verdict",
]
