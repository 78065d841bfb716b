"""``thinking-judge demo``: the whole pipeline on a tiny random-weight model, no GPU needed.

Builds the tiny Qwen2.5-VL of :func:`judge.testing.build_tiny_model` (offline, once, in
the cache folder), loads it in the in-process vLLM engine and scores the bundled chart
question with the answer constrained to the score grid: random weights answer junk when
free. The torch repair for vLLM's CPU build runs in this process and the processes vLLM
starts from it (see :mod:`backends._torch_compat`).
"""

from __future__ import annotations

import argparse
import os
import sys

from judge.cli.common import (
    DEMO_QUESTION,
    DEMO_RESPONSE,
    RANDOM_WEIGHTS_WARNING,
    demo_input,
    offline_backend,
    report,
)
from judge.failures import ExitStatus
from judge.runnable import ThinkingRewardJudge

DEMO_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "TORCHDYNAMO_DISABLE": "1",  # no inductor compile of the sampler: faster start
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # in-process engine core: less memory
}
"""Settings the demo applies unless the environment has its own."""

DEMO_MODEL_NAME = "tiny-random-qwen2.5-vl"


def run(args: argparse.Namespace) -> ExitStatus:
    """Build the tiny model in ``args.cache_dir``, score the demo input, print the result.

    Raises:
        BackendUnavailableError: vLLM is missing or cannot load the model.
    """
    for key, value in DEMO_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from judge.testing import build_tiny_model

    print(
        f"thinking-judge demo: building the tiny test model in {args.cache_dir} ...",
        file=sys.stderr,
    )
    model_dir = build_tiny_model(args.cache_dir / "tiny-qwen2.5-vl")
    backend = offline_backend(
        str(model_dir),
        served_model_name=DEMO_MODEL_NAME,
        max_model_len=4096,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt={"image": 2, "video": 0},
    )
    with backend:
        # Random weights answer junk when free; the constraint keeps the answer on the
        # model's score grid so the demo shows a score, as the real model gives.
        result = ThinkingRewardJudge(backend=backend, constrained=True).invoke(demo_input())
    print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    if not args.json and result.ok:
        tokens = (result.usage or {}).get("prompt_tokens")
        print(
            f"question: {DEMO_QUESTION}\nresponse: {DEMO_RESPONSE}\n"
            f"prompt tokens (text + image): {tokens}; model: {result.model}"
        )
        print("thinking score: ", end="")
    return report(result, as_json=args.json)


__all__ = ["DEMO_ENVIRONMENT", "DEMO_MODEL_NAME", "run"]
