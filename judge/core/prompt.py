r"""THE prompt of the SophiaVL-R1 Thinking Reward Model, and the chat messages around it.

The text is the model card's (``bunny127/SophiaVL-R1-Thinking-Reward-Model-3B``,
``get_process_reward``): its f-string rendered for a question and a response, byte for
byte. Its quirks are kept on purpose, because the model was trained on them: no space in
``correct.### Evaluation``, a space in ``\n - **0**``, literal braces around the score
grid, the 4-space indent before ``Question:`` and ``Reasoning process:`` and the
trailing ``\n    ``.

The message layout is the card's too: a system message ``"You are a helpful
assistant."`` and one user message whose content is the text part followed by the image
part(s); ``"<image> "`` is put before the question when an image is given and the
question does not already contain ``"<image>"``.

Two output formats exist:

* ``"bare"`` (default): the model card's prompt, byte for byte; the model answers
  ``0.7``.
* ``"answer_tag"``: the variant of the SophiaVL-R1 training code
  (kxfan2002/SophiaVL-R1, ``verl/workers/reward/custom.py``, ``get_process_reward``),
  which adds the line ``Your response format: <answer>your_score</answer>`` after the
  reasoning; the model answers ``<answer>0.7</answer>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import orjson

OutputFormat = Literal["bare", "answer_tag"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("bare", "answer_tag")

TEMPLATE_VERSION = "sophiavl-r1-trm-card/1"
"""Names the card's template (format "bare"); changes whenever its bytes do."""
TEMPLATE_VERSIONS: dict[OutputFormat, str] = {
    "bare": TEMPLATE_VERSION,
    "answer_tag": "sophiavl-r1-trm-answer-tag/1",
}
"""The template version of each output format."""
ANSWER_TAG = ("<answer>", "</answer>")
"""What the ``"answer_tag"`` format wraps the score in."""

SYSTEM_PROMPT = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<image>"

_RUBRIC = (
    "You are an expert reasoning evaluator. I will give you a multimodal question and an "
    "answer. Your goal is to judge a reward process and give a score between 0 and 1. You "
    "should focus on whether the reasoning process is good rather than whether the final "
    "answer is correct.### Evaluation Criteria:\n"
    "- **Logical Soundness**: Does each step follow logically from the previous one?\n"
    "- **Correct Reasoning**: Are the methods and steps used appropriate and valid? Are the "
    "facts and lemmas correctly stated and applied?\n"
    "- **Error Identification**: Are there any logical fallacies, unsupported assumptions, "
    "or incorrect steps?\n"
    "- **Language Consistency**: Is the reasoning process conducted in a single, consistent "
    "language without mixing different languages?\n"
    "- **Redundancy**: Is the reasoning concise, without unnecessary repetition or "
    "extraneous steps?\n"
    "Provide a single score from **{0, 0.1, 0.2, ..., 1.0}** based on the reasoning "
    "quality, where:\n"
    " - **0**: Completely flawed reasoning\n"
    "- **1**: Perfectly sound reasoning\n"
    "- Intermediate values (e.g., 0.3, 0.7) should reflect partial correctness or minor "
    "errors.\n"
    "Be strict, reward the good process and punish the bad one. You should only output the "
    "score without any explanation."
)
_QUESTION = "\n    Question: "
_REASONING = "\n    Reasoning process: "
_TAIL = "\n    "
ANSWER_TAG_REQUEST = "Your response format: <answer>your_score</answer>"
"""The line the ``"answer_tag"`` format adds to the prompt."""
_FORMAT_LINES: dict[str, str] = {
    "bare": "",
    "answer_tag": "\n    " + ANSWER_TAG_REQUEST,
}


def render_prompt(
    question: str,
    response: str,
    *,
    has_image: bool = False,
    output_format: OutputFormat = "bare",
) -> str:
    """Render the user text exactly as the model card's f-string does.

    Args:
        question: The multimodal question, as the policy saw it.
        response: The whole response to judge (``<think>``/``<answer>`` included).
        has_image: Whether an image goes with the question; then ``"<image> "`` is put
            before a question that has no ``"<image>"``.
        output_format: ``"bare"`` (the card's prompt) or ``"answer_tag"`` (the training
            code's variant, asking for ``<answer>score</answer>``).

    Returns:
        The user message's text part.

    Raises:
        ValueError: An unknown ``output_format``.
    """
    try:
        format_line = _FORMAT_LINES[output_format]
    except KeyError:
        raise ValueError(
            f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}"
        ) from None
    if has_image and IMAGE_PLACEHOLDER not in question:
        question = f"{IMAGE_PLACEHOLDER} {question}"
    return f"{_RUBRIC}{_QUESTION}{question}{_REASONING}{response}{format_line}{_TAIL}"


def render_messages(
    question: str,
    response: str,
    image_parts: Sequence[dict[str, Any]] = (),
    *,
    output_format: OutputFormat = "bare",
) -> list[dict[str, Any]]:
    """Build the chat messages of one judgment, in the model card's layout.

    Args:
        question: The question.
        response: The response to judge.
        image_parts: OpenAI ``image_url`` content parts (see :mod:`judge.core.images`).
        output_format: As for :func:`render_prompt`.

    Returns:
        ``[system, user]`` with the user content ``[text part, *image_parts]``.
    """
    text = render_prompt(
        question, response, has_image=bool(image_parts), output_format=output_format
    )
    content: list[dict[str, Any]] = [{"type": "text", "text": text}, *image_parts]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": content},
    ]


def prompt_sha256(messages: Sequence[dict[str, Any]]) -> str:
    """SHA-256 of the rendered messages (canonical JSON), images included.

    Two judgments with the same hash sent the model the same bytes.
    """
    # Same bytes as json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":")),
    # ten times faster on messages that carry a base64 image.
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


__all__ = [
    "ANSWER_TAG",
    "ANSWER_TAG_REQUEST",
    "IMAGE_PLACEHOLDER",
    "OUTPUT_FORMATS",
    "SYSTEM_PROMPT",
    "TEMPLATE_VERSION",
    "TEMPLATE_VERSIONS",
    "OutputFormat",
    "prompt_sha256",
    "render_messages",
    "render_prompt",
]
