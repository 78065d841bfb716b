"""OpenRLHF's reward protocol, pure: read its samples, answer in its shape.

OpenRLHF asks for rewards in two ways, with the same three lists (``query``, ``prompts``,
``labels``):

* remote: ``POST {"query": [...], "prompts": [...], "labels": [...]}`` to
  ``--remote_rm_url`` (several URLs, comma-separated, share the requests), reading
  ``scores`` (``rewards`` when it has none), ``rewards`` and ``extra_logs`` from the JSON
  answer (the route of ``openrlhf/cli/serve_rm.py``, ``POST /get_reward``, which answers
  lists of floats);
* local: ``reward_func(queries, prompts, labels)`` from a Python file given as
  ``--remote_rm_url file.py`` (loaded with ``importlib.util.spec_from_file_location``),
  called one sample per call through ``asyncio.to_thread``.

Checked against OpenRLHF 0.11.2 (the wheel on PyPI) and OpenRLHF/OpenRLHF at commit
3c3be6234e0cb353e76bb8019947db9dfe99fca7: ``openrlhf/utils/agent.py``
(``SingleTurnAgentExecutor``: ``execute``, ``_fetch_rewards_via_http``,
``_fetch_rewards_via_func``), ``openrlhf/cli/serve_rm.py`` and
``openrlhf/trainer/ppo_utils/samples_generator.py``
(``_process_response_into_experience``). The executor builds ``query`` as
``hf_tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)``: the prompt,
already in the policy's chat template (left-truncated when too long), followed by the
response WITH its special tokens (``<|im_end|>`` and, when padded, ``<|endoftext|>`` for
Qwen). Earlier releases sent ``prompt + action_text`` instead (vLLM's text, usually
without special tokens: ``RolloutAndRewardWorker`` in ``openrlhf/utils/rollout.py``,
commit 61760f9c41c826e4490db69654ac738f2e63b6be, removed by
629870839cfb025698b29fe5f9474dbb14bd2e31 with ``openrlhf/utils/remote_rm_utils.py``);
:func:`split_query` reads both.

Failed judgments. OpenRLHF turns a reward into ``torch.tensor`` and has no notion of a
missing reward: ``None`` breaks the tensor, NaN poisons the advantages, and this project
never reports a failure as 0.0. Its HTTP client retries any error (``raise_for_status``:
any HTTP error status) five times, one second apart, within a 180 s total timeout per
attempt, then raises; the executor logs that (at INFO) and leaves the sample's reward
None, and a sample without a reward stops the step when the experiences are made (a
local ``reward_func`` that raises takes the same way). So the convention is:

* by default a request with a failed judgment is answered ``503`` with the failures in
  the body (:class:`JudgmentsFailed`): OpenRLHF retries it, which often succeeds for
  timeouts and overloaded servers, and otherwise stops instead of training on an
  invented reward;
* with an explicit ``failure_reward`` (a number the user chose), the answer is ``200``,
  the failed samples get that reward and ``extra_logs["judge_failed"]`` is 1.0 for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from judge.errors import InputError
from judge.types import JudgeInput, ThinkingScore

__all__ = [
    "END_TOKENS",
    "JudgmentsFailed",
    "judge_inputs",
    "merge_results",
    "reward_payload",
    "split_query",
]

END_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
"""Special tokens stripped from the end of a response (Qwen's end of turn and padding)."""

_USER = "<|im_start|>user\n"
_ASSISTANT = "<|im_start|>assistant\n"
_TURN_END = "<|im_end|>"
_VISION = ("<|vision_start|>", "<|image_pad|>", "<|video_pad|>", "<|vision_end|>")


class JudgmentsFailed(Exception):
    """Some judgments of a request failed and no ``failure_reward`` was chosen.

    Attributes:
        failures: One entry per failed sample: its ``index``, ``error_kind``,
            ``retryable`` and ``error`` message.
    """

    def __init__(self, failures: list[dict[str, Any]]) -> None:
        self.failures = failures
        super().__init__(f"{len(failures)} judgment(s) failed")


def _strip_end(response: str) -> str:
    """``response`` without trailing end-of-turn and padding tokens (and whitespace)."""
    text = response.rstrip()
    changed = True
    while changed:
        changed = False
        for token in END_TOKENS:
            if text.endswith(token):
                text = text[: -len(token)].rstrip()
                changed = True
    return text


def _question(prompt: str) -> str:
    """The last user turn of a Qwen chat-templated prompt, or the prompt when it has none."""
    start = prompt.rfind(_USER)
    if start < 0:
        text = prompt
    else:
        text = prompt[start + len(_USER) :]
        end = text.find(_TURN_END)
        text = text if end < 0 else text[:end]
    for marker in _VISION:
        text = text.replace(marker, "")
    return text.strip()


def split_query(query: str, prompt: str | None = None) -> tuple[str, str]:
    """Split OpenRLHF's ``query`` into the question and the response.

    The response is ``query`` minus its ``prompt`` prefix; when the prompt is not a prefix
    (decoding does not always give back the same text, and OpenRLHF may truncate a long
    prompt), it is what follows the last ``<|im_start|>assistant`` header. Trailing
    ``<|im_end|>``/``<|endoftext|>`` tokens and surrounding whitespace are stripped. The
    question is the prompt's last user turn, vision placeholders removed (the protocol
    carries no pixels).

    Args:
        query: The prompt and response, decoded with special tokens.
        prompt: The prompt as OpenRLHF sent it in ``prompts``, or None.

    Returns:
        ``(question, response)``.

    Raises:
        InputError: The response cannot be found, or the question or response is empty.
    """
    if prompt and query.startswith(prompt):
        head, response = prompt, query[len(prompt) :]
    else:
        cut = query.rfind(_ASSISTANT)
        if cut < 0:
            raise InputError(
                "the query does not start with its prompt and has no "
                "'<|im_start|>assistant' header: cannot find the response"
            )
        head, response = query[:cut], query[cut + len(_ASSISTANT) :]
    question = _question(head)
    response = _strip_end(response).lstrip()
    if not question:
        raise InputError("the query's prompt has no question")
    if not response:
        raise InputError("the query's response is empty")
    return question, response


def judge_inputs(
    queries: Sequence[str], prompts: Sequence[str] | None = None
) -> list[JudgeInput | InputError]:
    """One judge input per query, or the :class:`InputError` that query raised.

    Args:
        queries: OpenRLHF's ``query`` list.
        prompts: OpenRLHF's ``prompts`` list (same length), or None.

    Raises:
        InputError: ``prompts`` is not as long as ``queries``.
    """
    if prompts is not None and len(prompts) != len(queries):
        raise InputError(f"{len(queries)} queries but {len(prompts)} prompts")
    inputs: list[JudgeInput | InputError] = []
    for index, query in enumerate(queries):
        try:
            question, response = split_query(query, prompts[index] if prompts else None)
        except InputError as exc:
            inputs.append(exc)
        else:
            inputs.append({"question": question, "response": response})
    return inputs


def merge_results(
    inputs: Sequence[JudgeInput | InputError], judged: Sequence[ThinkingScore | BaseException]
) -> list[ThinkingScore]:
    """One result per input: the judgments of the good inputs, failures for the others.

    Args:
        inputs: What :func:`judge_inputs` returned.
        judged: The judge's results for the inputs that are not errors, in order (from
            ``batch``/``abatch`` with ``return_exceptions=True``: an exception is a failure).

    Raises:
        ValueError: ``judged`` does not have one result per good input.
    """
    good = [item for item in inputs if not isinstance(item, InputError)]
    if len(judged) != len(good):
        raise ValueError(f"{len(good)} inputs judged but {len(judged)} results")
    results = iter(judged)
    merged: list[ThinkingScore] = []
    for item in inputs:
        outcome = item if isinstance(item, InputError) else next(results)
        merged.append(
            ThinkingScore.failure(outcome) if isinstance(outcome, BaseException) else outcome
        )
    return merged


def reward_payload(
    results: Sequence[ThinkingScore],
    *,
    failure_reward: float | None = None,
    use_expected_score: bool = False,
) -> dict[str, Any]:
    """OpenRLHF's answer for ``results``: ``rewards``, ``scores`` and ``extra_logs``.

    Args:
        results: One judgment per query, in order.
        failure_reward: The reward of a failed judgment, chosen by the user; None (the
            default) raises :class:`JudgmentsFailed` instead.
        use_expected_score: Reward ``expected_score`` when the judge computed it.

    Returns:
        ``{"rewards": [...], "scores": [...], "extra_logs": {"judge_failed": [...]}}``,
        lists of floats as long as ``results`` (``scores`` equal ``rewards``).

    Raises:
        JudgmentsFailed: A judgment failed and ``failure_reward`` is None.
        ValueError: ``failure_reward`` is not a finite number.
    """
    if failure_reward is not None and not math.isfinite(failure_reward):
        raise ValueError(f"failure_reward must be a finite number, got {failure_reward}")
    values = [result.value(use_expected_score) for result in results]
    failures = [
        {
            "index": index,
            "error_kind": result.error_kind.value if result.error_kind is not None else None,
            "retryable": result.retryable,
            "error": result.error,
        }
        for index, (result, value) in enumerate(zip(results, values, strict=True))
        if value is None
    ]
    if failures and failure_reward is None:
        raise JudgmentsFailed(failures)
    rewards = [failure_reward if value is None else value for value in values]
    return {
        "rewards": rewards,
        "scores": list(rewards),
        "extra_logs": {"judge_failed": [1.0 if value is None else 0.0 for value in values]},
    }
