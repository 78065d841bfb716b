"""LangSmith, openevals and langchain-classic evaluators built on the judge."""

from judge.integrations.evaluators import (
    EVALUATION_KEY,
    ThinkingRunEvaluator,
    create_async_thinking_evaluator,
    create_thinking_evaluator,
)

__all__ = [
    "EVALUATION_KEY",
    "ThinkingRunEvaluator",
    "create_async_thinking_evaluator",
    "create_thinking_evaluator",
]
