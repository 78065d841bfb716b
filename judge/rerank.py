"""Reranking and best-of-n with the thinking reward model, as LangChain Runnables.

* :class:`ThinkingRerank` takes a question (and its images) with N candidate responses
  (strings, ``AIMessage`` objects, generations) and returns them best first, each with
  its :class:`~judge.types.ThinkingScore` attached. The N candidates are judged in ONE
  batched judge call (``judge.batch``), so a batch-native backend sees them together.
* :func:`best_of_n` builds a :class:`BestOfN`: it samples n responses from any chat
  model or chain (``generator.batch`` on n copies of the input), reranks them and
  returns the best.

Order. Candidates are ranked by their expected score when the judge computes one
(``ThinkingRewardJudge(expected_score=True)``: a continuous value, so fewer ties) and
``use_expected_score`` is on, else by the model's answer; ties keep the order the
candidates were given in (the sort is stable). A candidate whose judgment failed is
never ranked as a low score: it comes after every scored one, in input order, with
``rank=None`` and its error in ``score.error``.

Traces. The rerank and best-of-n runs are ``chain`` runs whose children are the judge's
runs (and the generator's); image inputs appear in their traced inputs as short
descriptions (``<image: 1234 bytes>``), never as bytes or base64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import NotRequired, TypedDict

from judge.core.images import traced_input
from judge.core.inputs import image_fields, question_text, response_text
from judge.errors import InputError, JudgmentError
from judge.types import JudgeInput, JudgeRunnable, ThinkingScore


class RerankInput(TypedDict):
    """What :class:`ThinkingRerank` takes.

    Attributes:
        question: The question the candidates answer.
        responses: The candidates: strings, messages (``AIMessage``, OpenAI-style
            dicts) or generations; a message's separate reasoning is put back as
            ``<think>…</think>`` (see :func:`judge.core.inputs.response_text`).
        image: One image for the question, as for :class:`~judge.types.JudgeInput`.
        images: Several images.
    """

    question: str
    responses: Sequence[Any]
    image: NotRequired[Any]
    images: NotRequired[list[Any]]


class RankedResponse(BaseModel):
    """One candidate, judged.

    Attributes:
        rank: 1 for the best; None when its judgment failed.
        index: Its position among the candidates given.
        response: The candidate as given (string, message, generation...).
        text: The text the judge read.
        value: What the ranking used: the expected score when used, else the
            score; None when the judgment failed.
        score: The judgment.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    rank: int | None
    index: int
    response: Any
    text: str
    value: float | None
    score: ThinkingScore


def rank(
    responses: Sequence[Any],
    texts: Sequence[str],
    scores: Sequence[ThinkingScore],
    *,
    use_expected_score: bool = True,
) -> list[RankedResponse]:
    """Order judged candidates: best first, ties in input order, failures last.

    Args:
        responses: The candidates as given.
        texts: The text the judge read for each.
        scores: The judgment of each.
        use_expected_score: Rank by the expected score where there is one.

    Returns:
        One :class:`RankedResponse` per candidate.
    """
    values = [score.value(use_expected_score) for score in scores]
    scored = sorted(
        (i for i, value in enumerate(values) if value is not None),
        key=lambda i: -values[i],  # type: ignore[operator]
    )
    failed = [i for i, value in enumerate(values) if value is None]
    ranked: list[tuple[int | None, int]] = [(position + 1, i) for position, i in enumerate(scored)]
    ranked += [(None, i) for i in failed]
    return [
        RankedResponse(
            rank=position,
            index=i,
            response=responses[i],
            text=texts[i],
            value=values[i],
            score=scores[i],
        )
        for position, i in ranked
    ]


# --------------------------------------------------------------------------- the rerank


class _Plan:
    """The pure half of a rerank: what to judge, and the order once judged."""

    def __init__(self, input: Any, use_expected: bool) -> None:
        if not isinstance(input, Mapping):
            raise InputError(
                f"ThinkingRerank takes {{'question': ..., 'responses': [...]}}, "
                f"got {type(input).__name__}"
            )
        responses = input.get("responses")
        if not isinstance(responses, Sequence) or isinstance(responses, (str, bytes)):
            raise InputError("ThinkingRerank needs 'responses': a list of candidate responses")
        self.use_expected = use_expected
        self.responses = list(responses)
        if input.get("question") is None:
            raise InputError("ThinkingRerank needs 'question': the question the responses answer")
        question = question_text(input["question"])
        images = image_fields(input)
        self.texts: list[str] = []
        self.scores: list[ThinkingScore | None] = []
        self.items: list[JudgeInput] = []
        for response in self.responses:
            try:
                text = response_text(response)
            except InputError as exc:
                self.texts.append("")
                self.scores.append(ThinkingScore.failure(exc))
                continue
            self.texts.append(text)
            self.scores.append(None)
            self.items.append({"question": question, "response": text, **images})  # type: ignore[typeddict-item]

    def finish(self, judged: Sequence[ThinkingScore | Exception]) -> list[RankedResponse]:
        pending = iter(judged)
        scores = [score if score is not None else _as_score(next(pending)) for score in self.scores]
        return rank(self.responses, self.texts, scores, use_expected_score=self.use_expected)


def _as_score(result: ThinkingScore | Exception) -> ThinkingScore:
    """A judge built with ``raise_on_error=True`` returns errors in a batch: keep them."""
    if isinstance(result, ThinkingScore):
        return result
    return ThinkingScore.failure(result)


def _child(config: RunnableConfig, run_manager: Any, tag: str) -> RunnableConfig:
    return patch_config(config, callbacks=run_manager.get_child(tag))


class ThinkingRerank(RunnableSerializable[RerankInput, list[RankedResponse]]):
    """Rerank candidate responses to a question by the thinking reward model.

    Example:
        ```python
        rerank = ThinkingRerank(judge=judge)
        ranked = rerank.invoke({"question": "What is 2+2?",
                                "responses": [ai_message, "<think>...</think>..."]})
        best = ranked[0].response      # as given
        ranked[0].score.score          # its score
        ```

    Attributes:
        judge: The judge; all candidates of one rerank go to it in one batch.
        use_expected_score: Rank by the expected score when the judge computes one.
        top_n: Keep only the first ``top_n`` of the ranking (None: all).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    judge: JudgeRunnable
    use_expected_score: bool = True
    top_n: int | None = Field(default=None, ge=1)

    def invoke(
        self, input: RerankInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[RankedResponse]:
        """Judge the candidates in one batch and return them best first."""
        return self._call_with_config(
            functools.partial(self._rerank, original=input),
            traced_input(input),
            config,
            run_type="chain",
        )

    async def ainvoke(
        self, input: RerankInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[RankedResponse]:
        """Judge the candidates in one batch and return them best first (async)."""
        return await self._acall_with_config(
            functools.partial(self._arerank, original=input),
            traced_input(input),
            config,
            run_type="chain",
        )

    def _rerank(
        self,
        _shown: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        original: RerankInput,
    ) -> list[RankedResponse]:
        plan = _Plan(original, self.use_expected_score)
        judged = (
            self.judge.batch(
                plan.items, _child(config, run_manager, "judge"), return_exceptions=True
            )
            if plan.items
            else []
        )
        return self._cut(plan.finish(judged))

    async def _arerank(
        self,
        _shown: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        original: RerankInput,
    ) -> list[RankedResponse]:
        plan = _Plan(original, self.use_expected_score)
        judged = (
            await self.judge.abatch(
                plan.items, _child(config, run_manager, "judge"), return_exceptions=True
            )
            if plan.items
            else []
        )
        return self._cut(plan.finish(judged))

    def _cut(self, ranking: list[RankedResponse]) -> list[RankedResponse]:
        return ranking if self.top_n is None else ranking[: self.top_n]


# --------------------------------------------------------------------------- best of n


def _default_question(input: Any) -> str:
    return question_text(input)


def _default_images(input: Any) -> dict[str, Any]:
    return image_fields(input)


class BestOfN(RunnableSerializable[Any, Any]):
    """Sample n responses from a generator, rerank them, return the best.

    Build it with :func:`best_of_n`.

    Attributes:
        generator: Any Runnable producing a response (a chat model, a chain); it is
            run on n copies of the input in one ``batch`` call, so sample with a
            temperature above 0 or the n responses will be the same.
        rerank: The rerank that judges them (one batched judge call).
        n: How many responses to sample.
        question: The question the judge reads, from the input; by default the input
            itself (a string), its last user message, or its ``"question"``.
        images: The images the judge sees, from the input; by default the input's
            ``"image"`` / ``"images"``.
        return_ranking: Return the whole ranking (``list[RankedResponse]``) instead
            of the best response.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Runnable[Any, Any]
    rerank: ThinkingRerank
    n: int = Field(default=4, ge=1)
    question: Callable[[Any], str] = _default_question
    images: Callable[[Any], Mapping[str, Any]] = _default_images
    return_ranking: bool = False

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Sample, judge in one batch, return the best (or the ranking)."""
        return self._call_with_config(
            functools.partial(self._best, original=input),
            traced_input(input),
            config,
            run_type="chain",
        )

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Sample, judge in one batch, return the best (or the ranking); async."""
        return await self._acall_with_config(
            functools.partial(self._abest, original=input),
            traced_input(input),
            config,
            run_type="chain",
        )

    def _rerank_input(self, original: Any, samples: Sequence[Any]) -> RerankInput:
        responses = [sample for sample in samples if not isinstance(sample, Exception)]
        if not responses:
            raise samples[0]
        return cast(
            "RerankInput",
            {"question": self.question(original), "responses": responses, **self.images(original)},
        )

    def _pick(self, ranking: list[RankedResponse]) -> Any:
        if self.return_ranking:
            return ranking
        if not ranking or ranking[0].rank is None:
            reasons = "; ".join(sorted({str(r.score.error) for r in ranking})) or "no responses"
            raise JudgmentError(f"none of the {len(ranking)} responses could be judged: {reasons}")
        return ranking[0].response

    def _best(
        self,
        _shown: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        original: Any,
    ) -> Any:
        samples = self.generator.batch(
            [original] * self.n, _child(config, run_manager, "sample"), return_exceptions=True
        )
        rerank_input = self._rerank_input(original, samples)
        return self._pick(self.rerank.invoke(rerank_input, _child(config, run_manager, "rerank")))

    async def _abest(
        self,
        _shown: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        original: Any,
    ) -> Any:
        samples = await self.generator.abatch(
            [original] * self.n, _child(config, run_manager, "sample"), return_exceptions=True
        )
        rerank_input = self._rerank_input(original, samples)
        ranking = await self.rerank.ainvoke(rerank_input, _child(config, run_manager, "rerank"))
        return self._pick(ranking)


def best_of_n(
    generator: Runnable[Any, Any],
    judge: JudgeRunnable,
    n: int = 4,
    *,
    question: Callable[[Any], str] | None = None,
    images: Callable[[Any], Mapping[str, Any]] | None = None,
    use_expected_score: bool = True,
    return_ranking: bool = False,
) -> BestOfN:
    """A Runnable that samples ``n`` responses from ``generator`` and returns the best.

    Args:
        generator: A chat model or chain; called with ``generator.batch`` on n copies
            of the input (sample with a temperature above 0).
        judge: The judge; the n responses go to it in one batch.
        n: How many responses to sample.
        question: Maps the input to the question the judge reads (default: the input
            itself when a string, its last user message, or its ``"question"``).
        images: Maps the input to ``{"image": ...}`` / ``{"images": [...]}`` (default:
            the input's own ``"image"`` / ``"images"``).
        use_expected_score: Rank by the expected score when the judge computes one.
        return_ranking: Return the whole ranking instead of the best response.

    Returns:
        The Runnable. Its output is the best response as the generator gave it (or,
        with ``return_ranking``, every response as a :class:`RankedResponse`, best
        first). When no response could be judged it raises
        :class:`~judge.errors.JudgmentError` rather than pick one blindly; when every
        sample failed, it raises the generator's first error.

    Example:
        ```python
        llm = ChatOpenAI(model="my-policy", temperature=1.0)
        best = best_of_n(prompt | llm, judge, n=8)
        message = best.invoke({"question": "What is 2+2?"})
        ```
    """
    fields: dict[str, Any] = {
        "generator": generator,
        "rerank": ThinkingRerank(judge=judge, use_expected_score=use_expected_score),
        "n": n,
        "return_ranking": return_ranking,
    }
    if question is not None:
        fields["question"] = question
    if images is not None:
        fields["images"] = images
    return BestOfN(**fields)


__all__ = [
    "BestOfN",
    "RankedResponse",
    "RerankInput",
    "ThinkingRerank",
    "best_of_n",
    "rank",
]
