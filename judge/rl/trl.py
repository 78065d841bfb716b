"""The thinking judge as a TRL ``GRPOTrainer`` reward function (async and sync).

Usually made with ``judge.as_reward_func(...)``. Every call judges all the completions
it needs in ONE batched judge call and returns the rewards in input order; a failed
judgment's reward is None (TRL turns it into NaN and leaves it out), never 0.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from judge.core.inputs import (
    QuestionFrom,
    column_images,
    prompt_images,
    trl_question,
    trl_response,
)
from judge.rl.base import RewardAdapter, close_awaitable
from judge.rl.planner import Plan, RewardStep, Sample, outcome_value
from judge.rl.processes import (
    Collective,
    Part,
    adrive,
    default_collective,
    drive,
    part_of,
    spread_step,
)
from judge.rl.trust import trust_settings
from judge.types import JudgeRunnable

__all__ = ["GRPOReward", "SyncGRPOReward", "TRLReward", "aclose_sessions"]


class TRLReward(RewardAdapter):
    """What the async and sync TRL reward functions share: reading TRL's arguments."""

    _asynchronous = False

    def __init__(
        self,
        judge: JudgeRunnable,
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
        collective: Collective | None = None,
    ) -> None:
        if not callable(question) and question not in ("prompt", "user"):
            raise ValueError(f"question must be 'prompt', 'user' or a function, got {question!r}")
        self.outcome_reward = outcome_reward
        self.question = question
        self.collective = collective
        super().__init__(
            judge,
            trust=trust_settings(
                outcome_reward, alpha, anneal_steps, trust, skip_saturated, skip_below
            ),
            include_outcome=include_outcome,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
            max_concurrency=max_concurrency,
            name=name,
        )
        if self._asynchronous and hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)  # for callers that ask the object, not __call__

    def _samples(
        self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Sample], list[Any]]:
        """The judge's inputs, and each completion's group key (prompt and images)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        column = "images" if kwargs.get("images") is not None else "image"
        images = kwargs.get(column)
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"the {column!r} column has {len(images)} rows for {len(prompts)}")
        samples, keys = [], []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            found = column_images(images[i]) if images is not None else prompt_images(prompt)
            question = trl_question(prompt, self.question)
            samples.append(Sample(question, trl_response(completion), found))
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
    ) -> Plan:
        samples, keys = self._samples(prompts, completions, kwargs)
        values = None
        if outcome is not None:
            values = [outcome_value(v, "the outcome reward") for v in outcome]
        step = getattr(trainer_state, "global_step", None)
        return self.planner.plan(samples, self.planner.groups(keys), values, step)

    def _processes(self) -> Collective | None:
        """The run's processes when there are several (given, or torch.distributed's)."""
        return self.collective if self.collective is not None else default_collective()

    def _part(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        outcome: Sequence[Any] | None,
        kwargs: Mapping[str, Any],
    ) -> tuple[list[Sample], Part]:
        """This process's samples, and what it tells the others (outcomes, group edges)."""
        samples, keys = self._samples(prompts, completions, kwargs)
        values = None
        if outcome is not None:
            values = [outcome_value(v, "the outcome reward") for v in outcome]
            if len(values) != len(samples):
                raise ValueError(
                    f"the outcome reward returned {len(values)} values for "
                    f"{len(samples)} completions"
                )
        return samples, part_of(keys, values, self.planner.num_generations)

    def _done(
        self,
        step: RewardStep,
        log_metric: Callable[[str, float], Any] | None,
        log_extra: Callable[[str, list[Any]], Any] | None,
    ) -> list[float | None]:
        self._report(step, log_metric)
        if log_extra is not None:  # never the bare name: that is the reward's own column
            log_extra(f"{self.__name__}/thinking", list(step.thinking))
            log_extra(f"{self.__name__}/gamma", list(step.gamma))
        return list(step.rewards)


class GRPOReward(TRLReward):
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
    Trust-GRPO's ``R_o + gamma * alpha * exp(-step / T) * R_t`` (see :mod:`judge.rl.trust`), or,
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
            ``name/thinking_mean``, ``name/calls_saved``, ``name/failures``...) and
            in the completions table's columns ``name/thinking`` and ``name/gamma``
            (never ``name`` itself: that is the reward's own column).
        collective: How this process reaches the run's other processes; None (the
            default) finds them in ``torch.distributed`` when a run of several is set
            up (``torchrun`` / ``accelerate launch``), else the call is one process's.

    On several processes, TRL hands each its consecutive part of the generation batch,
    so a group may span processes (per-device batch 4, ``num_generations=8``): the
    outcomes are gathered, every process plans the whole groups, each judges only its
    own completions, the thinking scores are gathered, and each process gets its own
    slice of the whole groups' rewards (see :mod:`judge.rl.processes`). An error on one
    process is raised on every process.

    TRL awaits it on an event loop of its own that it never closes: pass
    :meth:`callback` to the trainer (or call :meth:`close` after training) to close the
    judge's HTTP sessions there.

    Raises:
        ValueError: Settings that do not fit together.

    Example:
        ```python
        reward = judge.as_reward_func(outcome_reward=accuracy, anneal_steps=500,
                                      include_outcome=False, num_generations=8)
        trainer = GRPOTrainer(model=..., reward_funcs=[accuracy, reward], ...)
        ```
    """

    _asynchronous = True
    _loop: asyncio.AbstractEventLoop | None = None
    _closing: asyncio.Task[None] | None = None

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
        self._loop = (
            asyncio.get_running_loop()
        )  # TRL's reward loop: the judge's sessions live there
        processes = self._processes()
        if processes is not None:
            step = await self._across(
                processes, prompts, completions, completion_ids, trainer_state, kwargs
            )
            return self._done(step, log_metric, log_extra)
        outcome = self._outcome(prompts, completions, completion_ids, trainer_state, kwargs)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        plan = self._plan(prompts, completions, outcome, trainer_state, kwargs)
        return self._done(await self._arun(plan), log_metric, log_extra)

    async def _across(
        self,
        processes: Collective,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None,
        trainer_state: Any,
        kwargs: Mapping[str, Any],
    ) -> RewardStep:
        """One step whose groups may span processes (see :mod:`judge.rl.processes`).

        The gathers run in a worker thread, so that the reward loop goes on serving
        TRL's other async rewards while this process waits for the others.
        """
        prepared: tuple[list[Sample], Part] | Exception
        try:
            outcome = self._outcome(prompts, completions, completion_ids, trainer_state, kwargs)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            prepared = self._part(prompts, completions, outcome, kwargs)
        except Exception as error:  # told to the others, raised on every process
            prepared = error
        return await adrive(
            spread_step(self.planner, processes.rank, prepared, trainer_state),
            gather=lambda item: asyncio.to_thread(processes.all_gather, item),
            judge=lambda inputs: self.judge.abatch(inputs, self._config(), return_exceptions=True),
        )

    async def aclose(self) -> None:
        """Close the judge's HTTP sessions opened on the running event loop.

        The backend itself stays usable (it opens new sessions when called again) and a
        server it launched keeps running: close the backend for that.
        """
        await aclose_sessions(self.judge)

    def close(self, timeout: float = 30.0) -> None:
        """Close the judge's HTTP sessions on the loop the reward was awaited on.

        TRL awaits async rewards on an event loop of its own, in a background thread,
        which it stops at exit without closing what was opened there: call this at the
        end of training (:meth:`callback` does), from any other thread.

        Args:
            timeout: Seconds to wait for the closing.
        """
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        if loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:  # cannot wait on our own loop: schedule it
                self._closing = loop.create_task(self.aclose())
                return
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        else:
            loop.run_until_complete(self.aclose())

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that calls :meth:`close` when training ends.

        Example:
            ```python
            trainer = GRPOTrainer(..., reward_funcs=[accuracy, reward],
                                  callbacks=[reward.callback()])
            ```
        """
        from transformers import TrainerCallback

        reward = self

        class CloseJudgeSessions(TrainerCallback):
            """Closes the thinking reward's judge sessions at the end of training."""

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                reward.close()

        return CloseJudgeSessions()


async def aclose_sessions(judge: Any) -> None:
    """Close the HTTP sessions a judge's backend opened on the running event loop.

    Follows ``judge.backend`` and caching wrappers (``inner``) to the backend, and closes
    what it binds to this loop (its transport's and replicas' sessions), leaving the
    backend and any server it launched usable. Judges without such a backend: nothing.
    """
    backend: Any = getattr(judge, "backend", None)
    while getattr(backend, "inner", None) is not None:
        backend = backend.inner
    for part in (backend, getattr(backend, "replicas", None), getattr(backend, "transport", None)):
        close = getattr(part, "aclose_on_current_loop", None)
        if close is not None:
            await close()
            if part is backend:
                return


class SyncGRPOReward(TRLReward):
    """:class:`GRPOReward` as a plain function, for a TRL that does not await rewards.

    Takes the same arguments; the judge call blocks (the judge's ``batch``).
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
        processes = self._processes()
        if processes is not None:
            step = self._across(
                processes, prompts, completions, completion_ids, trainer_state, kwargs
            )
            return self._done(step, log_metric, log_extra)
        outcome = self._sync_outcome(prompts, completions, completion_ids, trainer_state, kwargs)
        plan = self._plan(prompts, completions, outcome, trainer_state, kwargs)
        return self._done(self._run(plan), log_metric, log_extra)

    def _sync_outcome(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None,
        trainer_state: Any,
        kwargs: Mapping[str, Any],
    ) -> Any:
        outcome = self._outcome(prompts, completions, completion_ids, trainer_state, kwargs)
        if inspect.isawaitable(outcome):
            close_awaitable(outcome)
            raise TypeError(
                "the outcome reward is async: use the async GRPOReward "
                "(as_reward_func(asynchronous=True)) to await it"
            )
        return outcome

    def _across(
        self,
        processes: Collective,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None,
        trainer_state: Any,
        kwargs: Mapping[str, Any],
    ) -> RewardStep:
        """:meth:`GRPOReward._across`, blocking."""
        prepared: tuple[list[Sample], Part] | Exception
        try:
            outcome = self._sync_outcome(
                prompts, completions, completion_ids, trainer_state, kwargs
            )
            prepared = self._part(prompts, completions, outcome, kwargs)
        except Exception as error:  # told to the others, raised on every process
            prepared = error
        return drive(
            spread_step(self.planner, processes.rank, prepared, trainer_state),
            gather=processes.all_gather,
            judge=lambda inputs: self.judge.batch(inputs, self._config(), return_exceptions=True),
        )
