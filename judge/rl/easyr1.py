"""The thinking judge as EasyR1's batch reward function (``compute_score(reward_inputs)``).

EasyR1's reward manager (``AutoRewardManager`` in ``verl/workers/reward/function.py``)
hands a batch reward function one dict per response with ``response``,
``response_length`` and ``ground_truth`` only: the dataset's answer column, unchanged.
The judge also needs the question and the images, so they travel inside the answer
column: :func:`easyr1_row` (or :func:`pack_ground_truth`) packs the original answer,
the question and image references into a JSON envelope when the dataset is prepared,
and :class:`EasyR1Reward` unpacks it, passing the original answer on to the outcome
reward.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from judge.core.inputs import URL_PREFIXES
from judge.errors import InputError
from judge.rl.base import close_awaitable
from judge.rl.framework import FrameworkReward, step_from
from judge.rl.planner import outcome_value

__all__ = ["ENVELOPE_KEY", "EasyR1Reward", "easyr1_row", "pack_ground_truth", "unpack_ground_truth"]

_STEP_KEYS = ("global_step", "global_steps", "step")

ENVELOPE_KEY = "thinking_judge_envelope"
"""The key that marks a packed answer (its value is the envelope's version, 1)."""


def _image_reference(image: Any, image_dir: str | None) -> str:
    """An image as a string reference: a URL, a data URL or a file path."""
    if isinstance(image, Mapping) and image.get("path"):
        image = image["path"]  # a datasets Image(decode=False) struct
    if not isinstance(image, str) or not image:
        raise ValueError(
            f"an image to pack must be a path or a URL, got {type(image).__name__}: write "
            "in-memory images to files (or cast the column to Image(decode=False)) first"
        )
    if image_dir is not None and not image.lower().startswith(URL_PREFIXES):
        return os.path.join(image_dir, image)  # as EasyR1 resolves paths with its image_dir
    return image


def pack_ground_truth(
    answer: Any, question: str, images: Sequence[Any] = (), *, image_dir: str | None = None
) -> str:
    """The answer column's value that carries the question and images to the reward.

    Args:
        answer: The original answer (anything JSON can hold); the outcome reward gets it back.
        question: The question the policy answers (the judge's question).
        images: The images as paths or URLs (or ``{"path": ...}`` dicts).
        image_dir: The folder relative paths are joined to (EasyR1's ``data.image_dir``).

    Raises:
        ValueError: An empty question, or an image that is not a path or a URL.
    """
    if not isinstance(question, str) or not question:
        raise ValueError("the question to pack must be a non-empty string")
    envelope = {
        ENVELOPE_KEY: 1,
        "answer": answer,
        "question": question,
        "images": [_image_reference(image, image_dir) for image in images],
    }
    return json.dumps(envelope, ensure_ascii=False)


def unpack_ground_truth(value: Any) -> tuple[Any, dict[str, Any] | None]:
    """The original answer and the packed fields (question, images), or ``(value, None)``.

    A value that is not an envelope made by :func:`pack_ground_truth` comes back as it is.
    """
    if not isinstance(value, str) or ENVELOPE_KEY not in value:
        return value, None
    try:
        envelope = json.loads(value)
    except ValueError:
        return value, None
    if not isinstance(envelope, dict) or envelope.get(ENVELOPE_KEY) != 1:
        return value, None
    return envelope.get("answer"), {
        "question": envelope.get("question"),
        "images": list(envelope.get("images") or []),
    }


def easyr1_row(
    row: Mapping[str, Any],
    *,
    prompt_key: str = "prompt",
    answer_key: str = "answer",
    image_key: str = "images",
    image_dir: str | None = None,
) -> dict[str, Any]:
    """A dataset row for EasyR1 whose answer column also carries the question and images.

    For ``datasets.Dataset.map``; the keys are EasyR1's ``data.prompt_key``,
    ``data.answer_key`` and ``data.image_key``. Every other column stays as it is.

    Raises:
        ValueError: The row has no question, or an image that is not a path or a URL.
    """
    images = row.get(image_key) or []
    if not isinstance(images, (list, tuple)):
        images = [images]
    out = dict(row)
    out[answer_key] = pack_ground_truth(
        row.get(answer_key), row.get(prompt_key, ""), images, image_dir=image_dir
    )
    return out


class EasyR1Reward(FrameworkReward):
    """The thinking judge as EasyR1's batch reward function.

    In a reward file for EasyR1 (``worker.reward.reward_function=./thinking.py:compute_score``)::

        REWARD_NAME = "thinking"
        REWARD_TYPE = "batch"
        compute_score = EasyR1Reward(judge, outcome_reward=math_compute_score)

    and the dataset prepared with :func:`easyr1_row` (the question and images packed into
    the answer column). EasyR1 calls ``compute_score(reward_inputs)`` with one dict per
    response (``response``, ``response_length``, ``ground_truth``) and takes one dict per
    response with ``"overall"`` (the reward) and more keys, which it logs as metrics.
    A packed ``ground_truth`` gives the question and images; the outcome reward gets the
    inputs with the original answer as ``ground_truth``, and EasyR1's
    ``reward_function_kwargs`` (all keyword arguments but the step). An input may instead carry the
    question (``"question"`` or ``"prompt"``) and images (``"images"``, ``"image"``,
    ``"multi_modal_data"``) itself, for a reward manager that passes them. The step is
    ``global_step`` (or ``global_steps``, ``step``) of the first input or the keyword
    arguments, else the number of earlier calls (validation calls included). Groups,
    Trust-GRPO and failures are as in :class:`VerlReward`.

    Args:
        judge: The judge. Packed image paths are read under its ``image_root``.
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
        """Score a batch of EasyR1 reward inputs, one judge call for all.

        Raises:
            InputError: An input without a question, packed or its own.
        """
        unpacked = [self._unpack(item, i) for i, item in enumerate(reward_inputs)]
        samples = [
            self._sample(str(item.get("response", "")), fields, f"reward_inputs[{i}]")
            for i, (item, fields) in enumerate(zip(reward_inputs, unpacked, strict=True))
        ]
        outcome = None
        if self.outcome_reward is not None:
            plain = [
                {**item, "ground_truth": fields["ground_truth"]} if "ground_truth" in item else item
                for item, fields in zip(reward_inputs, unpacked, strict=True)
            ]
            passed = {k: v for k, v in kwargs.items() if k not in _STEP_KEYS}
            values = self.outcome_reward(plain, **passed)
            if inspect.isawaitable(values):
                close_awaitable(values)
                raise TypeError("EasyR1's outcome reward must be a plain function")
            outcome = [outcome_value(v, "the outcome reward") for v in values]
        step = step_from(kwargs, reward_inputs[0] if reward_inputs else None)
        plan = self._plan_batch(samples, outcome, step)
        return self._results(self._run(plan), "overall")

    def _unpack(self, item: Mapping[str, Any], index: int) -> dict[str, Any]:
        """The input's fields with a packed ground truth unpacked (the packed fields win)."""
        answer, packed = unpack_ground_truth(item.get("ground_truth"))
        if packed is None:
            if not any(isinstance(item.get(key), str) and item[key] for key in self.question_keys):
                raise InputError(
                    f"reward_inputs[{index}] carries no question: EasyR1 passes only response, "
                    "response_length and ground_truth, so pack the question and images into "
                    "the answer column (judge.rl.easyr1.easyr1_row when preparing the dataset)"
                )
            return {**item}
        fields = {**item, "ground_truth": answer, "images": packed["images"]}
        fields.pop("image", None)
        fields.pop("multi_modal_data", None)
        for key in self.question_keys:
            fields[key] = packed["question"]
        return fields
