"""RL rewards: the thinking judge as a GRPO reward for TRL, verl and EasyR1.

The thinking reward model exists to reward *reasoning* during RL. This module turns a
:class:`~judge.runnable.ThinkingRewardJudge` into the reward function each framework
calls:

* :class:`GRPOReward` (async) / :class:`SyncGRPOReward`: a TRL ``GRPOTrainer`` reward
  function, usually made with ``judge.as_reward_func(...)``;
* :class:`VerlReward`: verl's ``compute_score`` (per sample, sync or async, and batched);
* :class:`EasyR1Reward`: EasyR1's batch ``compute_score(reward_inputs)``.

Every call judges all the completions it needs in ONE batched judge call
(``ThinkingRewardJudge.abatch`` / ``batch``), never one request after another, and
returns the rewards in input order.

Trust-GRPO
----------
SophiaVL-R1 (arXiv 2505.17018, eq. 1-5) adds the thinking reward ``R_t`` to the outcome
reward ``R_o`` of each response ``i`` of a group (the completions of one prompt)::

    R_i = R_o,i + gamma * alpha * exp(-step / T) * R_t,i

    gamma = 1                                 if mu_correct >= mu_wrong
          = exp(mu_correct - mu_wrong)        otherwise

where ``mu_correct`` / ``mu_wrong`` are the mean ``R_t`` of the group's correct
(``R_o >= 0.5``) and wrong responses: a group whose wrong answers out-think its right
ones has a thinking reward that is not to be trusted, and it is down-weighted. ``gamma``
is 1 when the group has no correct or no wrong response. ``alpha`` (0.3) and the
annealing ``exp(-step / T)`` follow the training code (``kxfan2002/SophiaVL-R1``,
``verl/workers/reward/custom.py``), as do its two savings, on by default here:

* a *saturated* group, where every response has ``R_o >= 0.9`` or every one
  ``R_o <= 0.1``, is not judged: the thinking term cannot change the group's ranking, so
  its ``R_t`` is 0 and ``R_i = R_o,i``;
* a response with ``R_o < 0.2`` is not judged: its ``R_t`` is 0 (and, as in the training
  code, that 0 counts in ``mu_wrong``).

The training code logs ``exp(2 * (mu_correct - mu_wrong))`` as its gamma but applies
``exp(mu_correct - mu_wrong)``; here the applied one is both used and logged.

Failures
--------
A failed judgment is never a thinking score of 0. For TRL its reward is ``None`` (TRL
turns it into NaN and leaves it out); with ``include_outcome=False`` only the thinking
term is missing, so an accuracy reward passed beside it still counts. The failed
response is left out of its group's means. verl and EasyR1 have no "no reward": there a
failed judgment's response gets its outcome reward alone, flagged in the returned
dict, or, without an outcome reward, the call raises :class:`~judge.errors.JudgmentError`.
Every failure is logged (``logging``, and TRL's ``log_metric``).

Prefix caching
--------------
The completions of one prompt are sent adjacently, in one batch, so that vLLM's
automatic prefix cache can serve the rubric and the question to every completion of a
group after the first (the image part follows the text in the model card's layout, so
the shared prefix is the text up to the response). Measured on vLLM 0.32 (CPU, tiny
model, 4 groups of 8): every completion of a group but the first is served the rubric
and the question from the cache, whether the group is sent at once or its first
completion ahead of the rest, so no second round trip is spent on "priming" the cache.

Layout: :class:`TrustGRPO` and :func:`trust_weight` are pure arithmetic; :class:`_Core`
plans a step (which completions to judge, in which order) and finishes it from the
judge's scores, with no I/O; the adapters only read their framework's arguments and
run the judge call, once sync and once async.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from judge.errors import InputError, JudgmentError
from judge.types import JudgeInput, ThinkingScore

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from judge.runnable import ThinkingRewardJudge

logger = logging.getLogger(__name__)

QuestionFrom = Literal["prompt", "user"] | Callable[[Any], str]
"""How a TRL prompt becomes the judge's question: see :class:`GRPOReward`."""

__all__ = [
    "EasyR1Reward",
    "GRPOReward",
    "GroupReward",
    "RewardStep",
    "SyncGRPOReward",
    "TrustGRPO",
    "VerlReward",
    "trust_weight",
]


# -- pure Trust-GRPO arithmetic ---------------------------------------------------------


def trust_weight(
    outcome: Sequence[float | None],
    thinking: Sequence[float | None],
    *,
    correct_threshold: float = 0.5,
) -> float:
    """The trust weight ``gamma`` of one group (SophiaVL-R1, eq. 4).

    Args:
        outcome: The outcome reward ``R_o`` of each response of the group.
        thinking: The thinking reward ``R_t`` of each response, None where it is
            unknown (a failed judgment, or no outcome); those are left out.
        correct_threshold: ``R_o`` at or above which a response counts as correct.

    Returns:
        1.0 when the correct responses think at least as well on average as the wrong
        ones, or when either set is empty; else ``exp(mu_correct - mu_wrong)`` (< 1).
    """
    right: list[float] = []
    wrong: list[float] = []
    for r_o, r_t in zip(outcome, thinking, strict=True):
        if r_o is None or r_t is None:
            continue
        (right if r_o >= correct_threshold else wrong).append(r_t)
    if not right or not wrong:
        return 1.0
    gap = sum(right) / len(right) - sum(wrong) / len(wrong)
    return 1.0 if gap >= 0 else math.exp(gap)


@dataclass(frozen=True)
class GroupReward:
    """Trust-GRPO's result for one group of responses (see :meth:`TrustGRPO.group`).

    Attributes:
        rewards: ``R_o + bonus`` per response; None where the judgment failed or the
            outcome is unknown.
        bonus: The thinking term ``gamma * alpha * exp(-step / T) * R_t`` per response;
            None where the judgment failed or the outcome is unknown.
        thinking: ``R_t`` as used: the judge's score, 0.0 where it was not asked (a
            saved call), None where it failed.
        gamma: The group's trust weight (1.0 for a saturated group).
        scale: ``alpha * exp(-step / T)``.
        judged: Responses the judge was asked about.
        saved: Responses not judged under the skip rules.
        failed: Judged responses whose judgment failed.
        saturated: Whether the whole group was skipped (all right or all wrong).
    """

    rewards: tuple[float | None, ...]
    bonus: tuple[float | None, ...]
    thinking: tuple[float | None, ...]
    gamma: float
    scale: float
    judged: int
    saved: int
    failed: int
    saturated: bool


@dataclass(frozen=True)
class TrustGRPO:
    """Trust-GRPO's settings, and its arithmetic on one group (no I/O).

    Attributes:
        alpha: Weight of the thinking reward (0.3 in SophiaVL-R1).
        anneal_steps: ``T`` of the annealing ``exp(-step / T)``; None for none (the
            training code's default is 500 steps).
        trust: Apply the trust weight ``gamma``; False keeps ``gamma = 1``.
        correct_threshold: ``R_o`` at or above which a response is correct (0.5).
        skip_saturated: Judge no response of a group whose every ``R_o`` is at or above
            ``saturated_high`` or whose every ``R_o`` is at or below ``saturated_low``.
        saturated_high: See ``skip_saturated`` (0.9).
        saturated_low: See ``skip_saturated`` (0.1).
        skip_below: Judge no response with ``R_o`` below it (0.2); its ``R_t`` is 0.
            None judges them all.

    Raises:
        ValueError: A setting out of range.
    """

    alpha: float = 0.3
    anneal_steps: float | None = None
    trust: bool = True
    correct_threshold: float = 0.5
    skip_saturated: bool = True
    saturated_high: float = 0.9
    saturated_low: float = 0.1
    skip_below: float | None = 0.2

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if self.anneal_steps is not None and not self.anneal_steps > 0:
            raise ValueError(f"anneal_steps must be > 0 (or None), got {self.anneal_steps}")
        if self.saturated_low >= self.saturated_high:
            raise ValueError("saturated_low must be below saturated_high")

    def scale(self, step: int | None) -> float:
        """``alpha * exp(-step / T)``.

        Raises:
            ValueError: Annealing is on and ``step`` is None or negative.
        """
        if self.anneal_steps is None:
            return self.alpha
        if step is None or step < 0:
            raise ValueError(
                f"annealing (anneal_steps={self.anneal_steps}) needs the training step, got {step}"
            )
        return self.alpha * math.exp(-step / self.anneal_steps)

    def saturated(self, outcome: Sequence[float | None]) -> bool:
        """Whether the skip rule for a whole group applies to these outcomes."""
        known = [r for r in outcome if r is not None]
        if not self.skip_saturated or not known:
            return False
        return all(r >= self.saturated_high for r in known) or all(
            r <= self.saturated_low for r in known
        )

    def to_judge(self, outcome: Sequence[float | None]) -> list[bool]:
        """Which responses of a group the judge is to be asked about."""
        if self.saturated(outcome):
            return [False] * len(outcome)
        low = self.skip_below
        return [r is not None and (low is None or r >= low) for r in outcome]

    def group(
        self,
        outcome: Sequence[float | None],
        thinking: Sequence[float | None],
        *,
        step: int | None = None,
    ) -> GroupReward:
        """Trust-GRPO rewards of one group.

        Args:
            outcome: ``R_o`` per response (None where the outcome reward gave none).
            thinking: ``R_t`` per response for those :meth:`to_judge` selects, None
                where that judgment failed; entries of responses not selected are
                ignored (their ``R_t`` is 0).
            step: The training step, for the annealing.

        Returns:
            The group's rewards and what went into them.
        """
        if len(outcome) != len(thinking):
            raise ValueError(f"{len(outcome)} outcome rewards but {len(thinking)} thinking ones")
        asked = self.to_judge(outcome)
        used: list[float | None] = [
            (r_t if ask else 0.0) if r_o is not None else None
            for r_o, r_t, ask in zip(outcome, thinking, asked, strict=True)
        ]
        saturated = self.saturated(outcome)
        gamma = 1.0
        if self.trust and not saturated:
            gamma = trust_weight(outcome, used, correct_threshold=self.correct_threshold)
        scale = self.scale(step)
        bonus = [None if r_t is None else gamma * scale * r_t for r_t in used]
        rewards = [
            None if r_o is None or b is None else r_o + b
            for r_o, b in zip(outcome, bonus, strict=True)
        ]
        judged = sum(asked)
        failed = sum(1 for ask, r_t in zip(asked, used, strict=True) if ask and r_t is None)
        return GroupReward(
            rewards=tuple(rewards),
            bonus=tuple(bonus),
            thinking=tuple(used),
            gamma=gamma,
            scale=scale,
            judged=judged,
            saved=sum(
                1 for ask, r_o in zip(asked, outcome, strict=True) if not ask and r_o is not None
            ),
            failed=failed,
            saturated=saturated,
        )


# -- one step, planned and finished without I/O ---------------------------------------------


@dataclass(frozen=True)
class _Sample:
    """One completion to reward: what the judge would be asked."""

    question: str
    response: str
    images: tuple[Any, ...] = ()

    def judge_input(self) -> JudgeInput:
        item: JudgeInput = {"question": self.question, "response": self.response}
        if self.images:
            item["images"] = list(self.images)
        return item


@dataclass
class _Plan:
    """Which samples go to the judge, in the order they are sent."""

    samples: Sequence[_Sample]
    groups: list[range]
    outcome: list[float | None] | None
    step: int | None
    order: list[int]  # sample indices to judge, group by group

    def inputs(self) -> list[JudgeInput]:
        return [self.samples[i].judge_input() for i in self.order]


@dataclass
class RewardStep:
    """One reward call's results, per sample and for the step (a reward's ``last_step``).

    Attributes:
        rewards: What was returned for each sample (None: failed).
        thinking: ``R_t`` per sample as used (0.0 where not judged, None where failed).
        bonus: The thinking term per sample (``rewards`` when there is no outcome).
        gamma: The trust weight of each sample's group.
        outcome: ``R_o`` per sample, when there is an outcome reward.
        scores: The judge's result for each judged sample, by sample index.
        metrics: ``judge_calls``, ``calls_saved``, ``failures``, ``thinking_mean``,
            ``gamma`` (mean over judged groups), ``scale``.
        errors: Why each failed judgment failed.
    """

    rewards: list[float | None]
    thinking: list[float | None]
    bonus: list[float | None]
    gamma: list[float]
    outcome: list[float | None] | None
    scores: dict[int, ThinkingScore | BaseException] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class _Core:
    """What every adapter shares: the plan of a step, the judge call, the finish."""

    def __init__(
        self,
        judge: ThinkingRewardJudge,
        *,
        trust: TrustGRPO | None,
        include_outcome: bool,
        use_expected_score: bool,
        num_generations: int | None,
        max_concurrency: int | None,
        name: str,
    ) -> None:
        if num_generations is not None and num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if trust is None and not include_outcome:
            raise ValueError("include_outcome=False needs an outcome reward")
        self.judge = judge
        self.trust = trust
        self.include_outcome = include_outcome
        self.use_expected_score = use_expected_score
        self.num_generations = num_generations
        self.max_concurrency = max_concurrency
        self.name = name

    # -- pure ------------------------------------------------------------------------

    def groups(self, keys: Sequence[Any]) -> list[range]:
        """Consecutive groups: fixed ``num_generations`` chunks, or runs of equal keys."""
        n = len(keys)
        if self.num_generations is not None:
            size = self.num_generations
            if n % size:
                raise ValueError(f"{n} completions are not whole groups of num_generations={size}")
            return [range(start, start + size) for start in range(0, n, size)]
        groups: list[range] = []
        start = 0
        for i in range(1, n + 1):
            if i == n or not _same(keys[i], keys[start]):
                groups.append(range(start, i))
                start = i
        return groups

    def plan(
        self,
        samples: Sequence[_Sample],
        groups: list[range],
        outcome: list[float | None] | None,
        step: int | None,
    ) -> _Plan:
        """Choose what to judge: everything, or what the skip rules leave."""
        if outcome is not None and len(outcome) != len(samples):
            raise ValueError(
                f"the outcome reward returned {len(outcome)} values for {len(samples)} completions"
            )
        if self.trust is not None and outcome is not None:
            self.trust.scale(step)  # fail before any request when the step is missing
        order: list[int] = []  # group by group: a group's completions are adjacent
        for group in groups:
            if self.trust is None or outcome is None:
                order.extend(group)
            else:
                wanted = self.trust.to_judge([outcome[i] for i in group])
                order.extend(i for i, ask in zip(group, wanted, strict=True) if ask)
        return _Plan(samples, groups, outcome, step, order)

    def finish(self, plan: _Plan, results: Sequence[ThinkingScore | BaseException]) -> RewardStep:
        """Turn the judge's results into rewards and metrics."""
        n = len(plan.samples)
        scores = dict(zip(plan.order, results, strict=True))
        judged: list[float | None] = [None] * n
        errors: list[str] = []
        for index, result in scores.items():
            value = self._value(result)
            if value is None:
                errors.append(_describe(result))
            judged[index] = value
        step = RewardStep(
            rewards=list(judged),  # without an outcome reward: the thinking score alone
            thinking=list(judged),
            bonus=list(judged),
            gamma=[1.0] * n,
            outcome=plan.outcome,
        )
        saved, gammas = 0, []
        if self.trust is not None and plan.outcome is not None:
            for group in plan.groups:
                weighted = self.trust.group(
                    [plan.outcome[i] for i in group], [judged[i] for i in group], step=plan.step
                )
                saved += weighted.saved
                if weighted.judged:
                    gammas.append(weighted.gamma)
                for offset, index in enumerate(group):
                    step.rewards[index] = weighted.rewards[offset]
                    step.thinking[index] = weighted.thinking[offset]
                    step.bonus[index] = weighted.bonus[offset]
                    step.gamma[index] = weighted.gamma
            if not self.include_outcome:
                step.rewards = list(step.bonus)
        step.scores = scores
        step.errors = errors
        step.metrics = self._metrics(plan, judged, errors, saved, gammas)
        return step

    def _value(self, result: ThinkingScore | BaseException) -> float | None:
        if not isinstance(result, ThinkingScore) or result.score is None:
            return None
        if self.use_expected_score and result.expected_score is not None:
            return result.expected_score
        return result.score

    def _metrics(
        self,
        plan: _Plan,
        judged: Sequence[float | None],
        errors: Sequence[str],
        saved: int,
        gammas: Sequence[float],
    ) -> dict[str, float]:
        scored = [judged[i] for i in plan.order if judged[i] is not None]
        metrics: dict[str, float] = {
            "judge_calls": float(len(plan.order)),
            "calls_saved": float(saved),
            "failures": float(len(errors)),
        }
        if scored:
            metrics["thinking_mean"] = sum(scored) / len(scored)  # type: ignore[arg-type]
        if gammas:
            metrics["gamma"] = sum(gammas) / len(gammas)
        if self.trust is not None and plan.outcome is not None:
            metrics["scale"] = self.trust.scale(plan.step)
        return metrics

    def report(self, step: RewardStep, log_metric: Callable[[str, float], Any] | None) -> None:
        """Log the step's failures and metrics (through TRL's ``log_metric`` if given)."""
        if step.errors:
            logger.warning(
                "%s: %d of %d judgments failed (their thinking reward is None); first: %s",
                self.name,
                len(step.errors),
                len(step.scores),
                step.errors[0],
            )
        logger.debug("%s: %s", self.name, step.metrics)
        if log_metric is not None:
            for key, value in step.metrics.items():
                log_metric(f"{self.name}/{key}", value)

    # -- I/O: the judge call, once sync and once async -------------------------------

    def run(self, plan: _Plan) -> RewardStep:
        """Judge what the plan asks in one batched call (none when nothing is asked)."""
        inputs = plan.inputs()
        results: list[Any] = []
        if inputs:
            results = self.judge.batch(inputs, self._config(), return_exceptions=True)
        return self.finish(plan, results)

    async def arun(self, plan: _Plan) -> RewardStep:
        """Async :meth:`run`."""
        inputs = plan.inputs()
        results: list[Any] = []
        if inputs:
            results = await self.judge.abatch(inputs, self._config(), return_exceptions=True)
        return self.finish(plan, results)

    def _config(self) -> RunnableConfig | None:
        if self.max_concurrency is None:
            return None
        return {"max_concurrency": self.max_concurrency}


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an object whose == does not answer a bool (e.g. arrays)
        return False


def _describe(result: ThinkingScore | BaseException) -> str:
    if isinstance(result, ThinkingScore):
        return f"{result.error_type}: {result.error}"
    return f"{type(result).__name__}: {result}"


def _number(value: Any, what: str) -> float | None:
    """An outcome reward as a float (None stays None); a dict's main key is read."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("score", "overall"):
            if key in value:
                return _number(value[key], what)
        raise TypeError(f"{what} returned a dict without 'score' or 'overall': {sorted(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy and torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"{what} returned {type(value).__name__}, not a number") from None
    if math.isnan(value):
        return None
    return float(value)


def _trust(
    outcome_reward: object | None,
    alpha: float,
    anneal_steps: float | None,
    trust: bool,
    skip_saturated: bool,
    skip_below: float | None,
) -> TrustGRPO | None:
    if outcome_reward is None:
        if anneal_steps is not None:
            raise ValueError("anneal_steps applies to Trust-GRPO: it needs an outcome_reward")
        return None
    return TrustGRPO(
        alpha=alpha,
        anneal_steps=anneal_steps,
        trust=trust,
        skip_saturated=skip_saturated,
        skip_below=skip_below,
    )


def _image_list(value: Any) -> tuple[Any, ...]:
    """Images from a column value: None, one image, or a list of them."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(_image(v) for v in value if v is not None)
    return (_image(value),)


def _image(value: Any) -> Any:
    """An image as the judge takes it; a datasets-style ``{"bytes", "path"}`` dict too."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise InputError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    return value


# -- TRL ------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type", "text") == "text" and "text" in part:
            parts.append(str(part["text"]))
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)


def _prompt_images(prompt: Any) -> tuple[Any, ...]:
    """Images carried in a conversational prompt's parts (``{"type": "image", "image": ...}``)."""
    if isinstance(prompt, str):
        return ()
    found = []
    for message in prompt:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("image") is not None:
                    found.append(part["image"])
    return tuple(found)


def _question(prompt: Any, how: QuestionFrom) -> str:
    if callable(how):
        return how(prompt)
    if isinstance(prompt, str):
        return prompt
    if how == "user":
        users = [m for m in prompt if m.get("role") == "user"]
        if not users:
            raise InputError("the prompt has no user message to take the question from")
        return _text(users[-1].get("content"))
    # The training code's question: the policy's chat-templated prompt decoded without
    # special tokens, i.e. each message as "role\ntext\n", then the generation prompt.
    return "".join(f"{m.get('role')}\n{_text(m.get('content'))}\n" for m in prompt) + "assistant\n"


def _response(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "\n".join(_text(m.get("content")) for m in completion if isinstance(m, Mapping))


class _GRPORewardBase:
    """What the sync and async TRL reward functions share."""

    __name__: str
    _asynchronous = False

    def __init__(
        self,
        judge: ThinkingRewardJudge,
        *,
        outcome_reward: Callable[..., Any] | None = None,
        alpha: float = 0.3,
        anneal_steps: float | None = None,
        trust: bool = True,
        include_outcome: bool = True,
        skip_saturated: bool = True,
        skip_below: float | None = 0.2,
        use_expected_score: bool = True,
        question: QuestionFrom = "prompt",
        num_generations: int | None = None,
        max_concurrency: int | None = None,
        name: str = "thinking_reward",
    ) -> None:
        if not callable(question) and question not in ("prompt", "user"):
            raise ValueError(f"question must be 'prompt', 'user' or a function, got {question!r}")
        self.outcome_reward = outcome_reward
        self.question = question
        self.__name__ = name
        self._core = _Core(
            judge,
            trust=_trust(outcome_reward, alpha, anneal_steps, trust, skip_saturated, skip_below),
            include_outcome=include_outcome,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
            max_concurrency=max_concurrency,
            name=name,
        )
        self.last_step: RewardStep | None = None
        """The last call's details (rewards, thinking scores, gammas, metrics)."""
        if self._asynchronous and hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)  # for callers that ask the object, not __call__

    @property
    def trust(self) -> TrustGRPO | None:
        """The Trust-GRPO settings, or None without an outcome reward."""
        return self._core.trust

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, trust={self.trust!r})"

    def _samples(
        self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[_Sample], list[Any]]:
        """The judge's inputs, and each completion's group key (prompt and images)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        column = "images" if kwargs.get("images") is not None else "image"
        images = kwargs.get(column)
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"the {column!r} column has {len(images)} rows for {len(prompts)}")
        samples, keys = [], []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            found = _image_list(images[i]) if images is not None else _prompt_images(prompt)
            samples.append(_Sample(_question(prompt, self.question), _response(completion), found))
            keys.append((prompt, images[i] if images is not None else None))
        return samples, keys

    def _outcome(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None,
        trainer_state: Any,
        columns: Mapping[str, Any],
    ) -> Any:
        """The outcome reward's answer (maybe awaitable), or None without one."""
        if self.outcome_reward is None:
            return None
        return self.outcome_reward(
            prompts=prompts,
            completions=completions,
            completion_ids=completion_ids,
            trainer_state=trainer_state,
            **columns,
        )

    def _plan(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        outcome: Sequence[Any] | None,
        trainer_state: Any,
        kwargs: Mapping[str, Any],
    ) -> _Plan:
        samples, keys = self._samples(prompts, completions, kwargs)
        values = None
        if outcome is not None:
            values = [_number(v, "the outcome reward") for v in outcome]
        step = getattr(trainer_state, "global_step", None)
        return self._core.plan(samples, self._core.groups(keys), values, step)

    def _done(self, step: RewardStep, log_metric: Any, log_extra: Any) -> list[float | None]:
        self.last_step = step
        self._core.report(step, log_metric)
        if log_extra is not None:
            log_extra(self.__name__, list(step.thinking))
        return list(step.rewards)


class GRPOReward(_GRPORewardBase):
    r"""The thinking judge as a TRL ``GRPOTrainer`` reward function (``async``).

    TRL calls it as ``await f(prompts=..., completions=..., completion_ids=...,
    trainer_state=..., log_metric=..., log_extra=..., **dataset_columns)`` and gets one
    reward per completion, in order: a float, or None where the judgment failed (TRL
    makes it NaN and leaves it out). All the completions of a step that need judging go
    to the judge in one batched call. It is logged under ``name`` (its ``__name__``).

    Both of TRL's formats are read. Standard: prompts and completions are strings.
    Conversational: lists of ``{"role", "content"}`` messages, whose content is a string
    or parts; the response is the completion's text. Images come from the ``images``
    column (a list per row) or the ``image`` column (one per row), as PIL images, paths,
    bytes or URLs, or else from ``{"type": "image", "image": ...}`` parts of the prompt.

    Without ``outcome_reward`` the reward is the thinking score ``R_t``. With one, it is
    Trust-GRPO's ``R_o + gamma * alpha * exp(-step / T) * R_t`` (see the module doc), or,
    with ``include_outcome=False``, only the thinking term, to sit beside the outcome
    reward in ``reward_funcs`` (then a failed judgment drops the term, not the outcome).

    Args:
        judge: The judge. ``constrained=True`` keeps a model's answers on the grid;
            ``expected_score=True`` gives a continuous ``R_t``.
        outcome_reward: A TRL reward function (sync or async, same arguments) giving
            ``R_o``; None for the thinking score alone.
        alpha: Weight of the thinking term.
        anneal_steps: ``T`` of ``exp(-step / T)``; None for no annealing. The step is
            ``trainer_state.global_step``.
        trust: Apply the trust weight ``gamma``.
        include_outcome: Return ``R_o + term`` (True) or the term alone (False).
        skip_saturated: Judge no response of an all-right or all-wrong group.
        skip_below: Judge no response whose ``R_o`` is below this (None: judge all).
        use_expected_score: Use ``ThinkingScore.expected_score`` as ``R_t`` when the
            judge computed it, else the score.
        question: How a prompt becomes the judge's question. ``"prompt"`` (default):
            the prompt's whole text, as the SophiaVL-R1 training code passes it (its
            decoded chat-templated prompt): a string prompt as it is; messages as
            ``"role\ntext\n"`` each, then ``"assistant\n"`` (a default system
            message that the policy's chat template would add is not invented).
            ``"user"``: the last user message's text. Or a function of the prompt.
        num_generations: TRL's ``num_generations``: groups are consecutive chunks of
            this size. None finds groups as runs of equal prompts (and images).
        max_concurrency: Judge requests in flight; None leaves it to the backend.
        name: The reward's name in TRL's logs and metrics (``name/gamma``,
            ``name/thinking_mean``, ``name/calls_saved``, ``name/failures``...).

    Raises:
        ValueError: Settings that do not fit together.

    Example:
        .. code-block:: python

            reward = judge.as_reward_func(outcome_reward=accuracy, anneal_steps=500,
                                          include_outcome=False, num_generations=8)
            trainer = GRPOTrainer(model=..., reward_funcs=[accuracy, reward], ...)
    """

    _asynchronous = True

    async def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], Any] | None = None,
        log_extra: Callable[[str, list[Any]], Any] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Reward each completion; see the class doc."""
        outcome = self._outcome(prompts, completions, completion_ids, trainer_state, kwargs)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        plan = self._plan(prompts, completions, outcome, trainer_state, kwargs)
        return self._done(await self._core.arun(plan), log_metric, log_extra)


class SyncGRPOReward(_GRPORewardBase):
    """:class:`GRPOReward` as a plain function, for a TRL that does not await rewards.

    Takes the same arguments; the judge call blocks (``ThinkingRewardJudge.batch``).
    """

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], Any] | None = None,
        log_extra: Callable[[str, list[Any]], Any] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Reward each completion; see :class:`GRPOReward`."""
        outcome = self._outcome(prompts, completions, completion_ids, trainer_state, kwargs)
        if inspect.isawaitable(outcome):
            _close(outcome)
            raise TypeError(
                "the outcome reward is async: use the async GRPOReward "
                "(as_reward_func(asynchronous=True)) to await it"
            )
        plan = self._plan(prompts, completions, outcome, trainer_state, kwargs)
        return self._done(self._core.run(plan), log_metric, log_extra)


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning


# -- verl and EasyR1 ---------------------------------------------------------------------------


class _FrameworkReward:
    """What the verl and EasyR1 adapters share: dict results and explicit failures."""

    def __init__(
        self,
        judge: ThinkingRewardJudge,
        *,
        outcome_reward: Callable[..., Any] | None = None,
        alpha: float = 0.3,
        anneal_steps: float | None = None,
        trust: bool = True,
        skip_saturated: bool = True,
        skip_below: float | None = 0.2,
        use_expected_score: bool = True,
        num_generations: int | None = None,
        max_concurrency: int | None = None,
        question_keys: Sequence[str] = ("question", "prompt"),
        name: str = "thinking_reward",
    ) -> None:
        self.outcome_reward = outcome_reward
        self.question_keys = tuple(question_keys)
        self.__name__ = name
        self._core = _Core(
            judge,
            trust=_trust(outcome_reward, alpha, anneal_steps, trust, skip_saturated, skip_below),
            include_outcome=True,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
            max_concurrency=max_concurrency,
            name=name,
        )
        self.calls = 0
        """Batched calls so far: the step when the caller gives none."""
        self.last_step: RewardStep | None = None

    @property
    def trust(self) -> TrustGRPO | None:
        """The Trust-GRPO settings, or None without an outcome reward."""
        return self._core.trust

    def _sample(self, response: str, info: Mapping[str, Any] | None, where: str) -> _Sample:
        info = info or {}
        for key in self.question_keys:
            question = info.get(key)
            if isinstance(question, str) and question:
                break
        else:
            raise InputError(
                f"{where} carries no question under {list(self.question_keys)}: put the "
                "question (and the image, under 'images' or 'image') there in your data"
            )
        images = info.get("images")
        if images is None:
            images = info.get("image")
        if images is None and isinstance(info.get("multi_modal_data"), Mapping):
            images = info["multi_modal_data"].get("images", info["multi_modal_data"].get("image"))
        return _Sample(question, response, _image_list(images))

    def _results(self, step: RewardStep, main: str) -> list[dict[str, float]]:
        """One dict per sample; a failed judgment keeps its outcome reward alone."""
        self.last_step = step
        self._core.report(step, None)
        failed = [i for i, value in enumerate(step.rewards) if value is None]
        if failed and step.outcome is None:
            raise JudgmentError(
                f"{len(failed)} of {len(step.rewards)} judgments failed and there is no outcome "
                f"reward to fall back on; first: {step.errors[0] if step.errors else 'unknown'}"
            )
        out = []
        for i, reward in enumerate(step.rewards):
            r_o = step.outcome[i] if step.outcome is not None else None
            score = r_o if reward is None else reward  # failed: the outcome alone, flagged
            if score is None:
                raise ValueError(f"the outcome reward gave no value for sample {i}")
            judged = i in step.scores
            out.append(
                {
                    main: float(score),
                    "thinking": _nan(step.thinking[i]),
                    "thinking_failed": float(judged and step.thinking[i] is None),
                    "judged": float(judged),
                    "gamma": step.gamma[i],
                    **({"outcome": _nan(r_o)} if step.outcome is not None else {}),
                }
            )
        return out


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _step_from(*sources: Mapping[str, Any] | None) -> int | None:
    for source in sources:
        if not source:
            continue
        for key in ("global_step", "global_steps", "step"):
            value = source.get(key)
            if value is not None:
                return int(value)
    return None


class VerlReward(_FrameworkReward):
    """The thinking judge as verl's ``compute_score``, per sample or batched.

    In a reward file for verl (``custom_reward_function.path`` / ``.name``)::

        reward = VerlReward(judge, outcome_reward=default_compute_score, num_generations=8)
        compute_score = reward.compute_score_batch   # reward_model.reward_manager=batch

    * :meth:`compute_score_batch`: verl's batch manager's call, with Trust-GRPO on the
      groups (consecutive responses of one question: verl repeats a prompt's rollouts
      side by side) and one batched judge call;
    * :meth:`compute_score` / :meth:`acompute_score`: one sample (verl's naive manager,
      and its async reward loop, which runs the async one concurrently). With one
      sample there is no group: use ``trust=False, skip_saturated=False`` (the training
      code's per-item path: ``R_o + alpha * exp(-step / T) * R_t``).

    The question travels in ``extra_info["question"]`` (or ``"prompt"``), images in
    ``extra_info["images"]`` / ``["image"]`` (paths, bytes, PIL images, URLs, or
    ``{"bytes", "path"}`` dicts as Parquet stores them). The step, for the annealing, is
    ``global_step`` (or ``global_steps``, ``step``) from the keyword arguments or
    ``extra_info``, else the number of earlier batched calls. Each result is a dict:
    ``score`` and the details (``thinking``, ``gamma``, ``outcome``, ``judged``,
    ``thinking_failed``), which verl logs. A failed judgment leaves the response its
    outcome reward alone (``thinking_failed`` = 1); without an outcome reward it raises
    :class:`~judge.errors.JudgmentError`.

    Args:
        judge: The judge.
        outcome_reward: verl's ``compute_score(data_source, solution_str, ground_truth,
            extra_info)`` giving ``R_o`` (a number, or a dict with ``"score"``); None
            for the thinking score alone.
        alpha: As in :class:`GRPOReward`.
        anneal_steps: As in :class:`GRPOReward`.
        trust: As in :class:`GRPOReward`.
        skip_saturated: As in :class:`GRPOReward`.
        skip_below: As in :class:`GRPOReward`.
        use_expected_score: As in :class:`GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`GRPOReward`.
        question_keys: The ``extra_info`` keys to take the question from, in turn.
        name: The name in logs.
    """

    def _outcome(
        self, data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any
    ) -> float | None:
        assert self.outcome_reward is not None
        value = self.outcome_reward(
            data_source=data_source,
            solution_str=solution_str,
            ground_truth=ground_truth,
            extra_info=extra_info,
        )
        if inspect.isawaitable(value):
            _close(value)
            raise TypeError("verl's outcome reward must be a plain function")
        return _number(value, "the outcome reward")

    def _plan_one(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> _Plan:
        trust = self.trust
        if trust is not None and (trust.trust or trust.skip_saturated):
            raise ValueError(
                "one sample is no group: per-sample compute_score needs trust=False and "
                "skip_saturated=False (or use compute_score_batch for Trust-GRPO)"
            )
        sample = self._sample(solution_str, extra_info, "extra_info")
        outcome = None
        if self.outcome_reward is not None:
            outcome = [self._outcome(data_source, solution_str, ground_truth, extra_info)]
        step = _step_from(kwargs, extra_info)
        return self._core.plan([sample], [range(1)], outcome, step)

    def compute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Score one sample (verl's per-sample ``compute_score``)."""
        plan = self._plan_one(data_source, solution_str, ground_truth, extra_info, kwargs)
        return self._results(self._core.run(plan), "score")[0]

    async def acompute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Async :meth:`compute_score`, for verl's reward loop."""
        plan = self._plan_one(data_source, solution_str, ground_truth, extra_info, kwargs)
        return self._results(await self._core.arun(plan), "score")[0]

    def compute_score_batch(
        self,
        data_sources: Sequence[Any],
        solution_strs: Sequence[str],
        ground_truths: Sequence[Any],
        extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Score a batch (verl's batch ``compute_score``), one judge call for all."""
        n = len(solution_strs)
        infos = list(extra_infos) if extra_infos is not None else [None] * n
        if not len(data_sources) == len(ground_truths) == len(infos) == n:
            raise ValueError(
                "data_sources, solution_strs, ground_truths and extra_infos differ in length"
            )
        samples = [
            self._sample(s, info, f"extra_infos[{i}]")
            for i, (s, info) in enumerate(zip(solution_strs, infos, strict=True))
        ]
        outcome = None
        if self.outcome_reward is not None:
            outcome = [
                self._outcome(d, s, g, info)
                for d, s, g, info in zip(
                    data_sources, solution_strs, ground_truths, infos, strict=True
                )
            ]
        step = _step_from(kwargs, infos[0] if infos else None)
        keys = [(sample.question, sample.images) for sample in samples]
        plan = self._core.plan(samples, self._core.groups(keys), outcome, _or(step, self.calls))
        self.calls += 1
        return self._results(self._core.run(plan), "score")


def _or(step: int | None, calls: int) -> int:
    return calls if step is None else step


class EasyR1Reward(_FrameworkReward):
    """The thinking judge as EasyR1's batch reward function.

    In a reward file for EasyR1 (``worker.reward.reward_function=./thinking.py:compute_score``)::

        REWARD_NAME = "thinking"
        REWARD_TYPE = "batch"
        compute_score = EasyR1Reward(judge, outcome_reward=math_compute_score)

    EasyR1 calls ``compute_score(reward_inputs)`` with one dict per response and takes
    one dict per response with ``"overall"`` (the reward) and more keys, which it logs
    as metrics. Its stock reward manager passes ``response``, ``response_length`` and
    ``ground_truth`` only: the judge also needs the question (``"question"`` or
    ``"prompt"``) and any image (``"images"``, ``"image"`` or ``"multi_modal_data"``),
    which a reward manager that passes them must add. The step is ``global_step`` (or
    ``global_steps``, ``step``) of the first input or the keyword arguments, else the
    number of earlier calls (validation calls included). Groups, Trust-GRPO and failures
    are as in :class:`VerlReward`.

    Args:
        judge: The judge.
        outcome_reward: An EasyR1 batch reward function (``reward_inputs -> list``)
            giving ``R_o`` per input, as numbers or dicts with ``"overall"``; None for
            the thinking score alone.
        alpha: As in :class:`GRPOReward`.
        anneal_steps: As in :class:`GRPOReward`.
        trust: As in :class:`GRPOReward`.
        skip_saturated: As in :class:`GRPOReward`.
        skip_below: As in :class:`GRPOReward`.
        use_expected_score: As in :class:`GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`GRPOReward`.
        question_keys: The input keys to take the question from, in turn.
        name: The name in logs.
    """

    def __call__(
        self, reward_inputs: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> list[dict[str, float]]:
        """Score a batch of EasyR1 reward inputs, one judge call for all."""
        samples = [
            self._sample(str(item.get("response", "")), item, f"reward_inputs[{i}]")
            for i, item in enumerate(reward_inputs)
        ]
        outcome = None
        if self.outcome_reward is not None:
            values = self.outcome_reward(list(reward_inputs))
            if inspect.isawaitable(values):
                _close(values)
                raise TypeError("EasyR1's outcome reward must be a plain function")
            outcome = [_number(v, "the outcome reward") for v in values]
        step = _step_from(kwargs, reward_inputs[0] if reward_inputs else None)
        keys = [(sample.question, sample.images) for sample in samples]
        plan = self._core.plan(samples, self._core.groups(keys), outcome, _or(step, self.calls))
        self.calls += 1
        return self._results(self._core.run(plan), "overall")
