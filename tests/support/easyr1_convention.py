"""EasyR1's calling convention for a reward function, restated for the tests (not its code).

Mirrors hiyouga/EasyR1 at commit b44b311b669bf1fd1aa2fc36f2251482ba33cb16 (the file last
changed in b637de85b17cc958e407265523e6d65cbc2a73ed):

* ``verl/utils/dataset.py`` (``RLHFDataset.__getitem__``): the row's ``answer_key`` column
  becomes ``ground_truth`` unchanged; the ``image_key`` column is popped into
  ``multi_modal_data`` for the policy, and the prompt is tokenized: neither reaches the
  reward.
* ``verl/workers/reward/function.py`` (``AutoRewardManager``): the reward file's
  function is wrapped in ``functools.partial(fn, **reward_function_kwargs)``;
  ``REWARD_TYPE`` (default ``"batch"``) picks ``compute_reward_batch``, which builds
  ``reward_inputs`` as one dict per response with exactly ``response`` (the decoded
  valid response), ``response_length`` (its token count) and ``ground_truth``
  (``non_tensor_batch["ground_truth"][i]``), calls the function ONCE with the list, puts
  ``score["overall"]`` on the response's last valid token and appends every key of every
  score to the metrics lists.

Tokens are left out: responses are given as strings with their lengths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any


def dataset_example(
    row: Mapping[str, Any], *, answer_key: str = "answer", image_key: str = "images"
):
    """The non-tensor fields one dataset row contributes (as ``RLHFDataset`` builds them)."""
    example = dict(row)
    if image_key in example:
        example["multi_modal_data"] = {"images": example.pop(image_key)}
    example["ground_truth"] = example.pop(answer_key)
    return example


class AutoRewardManager:
    """EasyR1's reward manager, batch and sequential, over strings instead of tokens."""

    def __init__(
        self,
        reward_fn: Callable[..., Any],
        *,
        reward_type: str = "batch",
        reward_function_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.reward_fn = partial(reward_fn, **(reward_function_kwargs or {}))
        self.reward_type = reward_type

    def compute_reward(
        self, responses: Sequence[str], response_lengths: Sequence[int], examples: Sequence[Mapping]
    ) -> tuple[list[list[float]], dict[str, list[Any]]]:
        """The reward tensor (one row per response, reward on its last token) and metrics."""
        ground_truth = [example["ground_truth"] for example in examples]  # non_tensor_batch
        inputs = [
            {"response": r, "response_length": n, "ground_truth": g}
            for r, n, g in zip(responses, response_lengths, ground_truth, strict=True)
        ]
        if self.reward_type == "batch":
            scores = self.reward_fn(inputs)
        elif self.reward_type == "sequential":
            scores = [self.reward_fn(one) for one in inputs]
        else:
            raise ValueError(f"Unsupported reward type: {self.reward_type}.")
        width = max(response_lengths, default=0)
        tensor = [[0.0] * width for _ in responses]
        metrics: dict[str, list[Any]] = defaultdict(list)
        for i, score in enumerate(scores):
            tensor[i][response_lengths[i] - 1] = score["overall"]
            for key, value in score.items():
                metrics[key].append(value)
        return tensor, metrics
