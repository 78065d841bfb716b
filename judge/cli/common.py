"""What the ``thinking-judge`` commands share: names, settings and the demo input.

Exit statuses and failure advice are in :mod:`judge.failures`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from judge import DEFAULT_MODEL
from judge.types import JudgeInput

SERVED_MODEL_NAME = "thinking-reward-model"
"""The name the model card serves the reward model under (``--served-model-name``)."""

BASE_URL_ENV = "THINKING_JUDGE_BASE_URL"
"""The environment variable that may stand for ``--base-url``."""

API_KEY_ENV = "VLLM_API_KEY"
"""The environment variable the server's API key is read from."""

DEFAULT_PORT = 8000

MODEL_CARD_SETTINGS: dict[str, Any] = {
    "max_model_len": 32768,
    "max_num_seqs": 64,
}
"""The model card's vLLM settings that ``serve`` applies by default (the card also says
``--tensor-parallel-size 2`` for its two GPUs and ``--port 80``; ``serve`` uses one GPU
and port 8000 unless told otherwise)."""

DEMO_QUESTION = "<image> Which bar in the chart is the tallest, and by how much?"
DEMO_RESPONSE = (
    "<think>The chart has three bars: A reaches 3, B reaches 7 and C reaches 5. "
    "B is the tallest. The next tallest is C, so B is taller by 7 - 5 = 2.</think>"
    "<answer>B, by 2</answer>"
)
RANDOM_WEIGHTS_WARNING = (
    "NOTE: the demo model has RANDOM weights. It shows the whole pipeline running end to "
    "end (prompt, image, vLLM engine, parser); its score says nothing about the response. "
    f"Real scores need the real model: thinking-judge score --model {DEFAULT_MODEL} ..."
)


def demo_image() -> bytes:
    """The bundled chart the demo and ``check`` ask about (PNG bytes)."""
    return (resources.files("judge") / "data" / "demo_chart.png").read_bytes()


def demo_input() -> JudgeInput:
    """The demo's judge input: the chart question, a sound response and the chart."""
    return {"question": DEMO_QUESTION, "response": DEMO_RESPONSE, "image": demo_image()}
