"""The real Qwen2.5-VL tokenizer's numbers, as the real vLLM server counts them.

The tiny test model carries the real tokenizer (:func:`judge.testing.build_tiny_model`),
so these are the real model's facts, measured on the server's ``POST /tokenize`` and in
its ``usage``: the prompt token counts of the model card's request for the bundled
examples (``docs/examples/``, also in ``docs/tokens.md``), the tokens of every answer on
the score grid, the neutraliser against every control token, and the answer tag as the
expected-score path reads it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from vllm_tokenize import judge_messages, png, tokenize, tokenize_text

from backends.base import TokenLogprob
from backends.vllm_server import VLLMServerBackend
from judge import SCORE_GRID, ThinkingRewardJudge
from judge.core.expected import END, expected_score, token_class, trace_answer, vet
from judge.core.sanitize import QWEN2_5_VL_CONTROL_TOKENS
from judge.testing import QWEN2_5_VL_TOKEN_IDS

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
FIRST_ADDED_ID = 151643  # <|endoftext|>; every id from here on is an added token
LN_HALF = -0.6931471805599453


def _example(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8").strip()


QUESTION = _example("question.txt")
RESPONSES = {"sound": _example("sound.txt"), "flawed": _example("flawed.txt")}
IMAGES = {
    "text only": None,
    "224x224 image": png((224, 224)),
    "chart.png (480x320)": (EXAMPLES / "chart.png").read_bytes(),
}

# ----------------------------------------------------------- the bundled examples

PROMPT_TOKENS: dict[tuple[str, str], int] = {
    ("sound", "text only"): 402,
    ("sound", "224x224 image"): 471,
    ("sound", "chart.png (480x320)"): 594,
    ("flawed", "text only"): 398,
    ("flawed", "224x224 image"): 467,
    ("flawed", "chart.png (480x320)"): 590,
}
"""(response, image) -> the prompt token count of the card's request (format "bare").

An image adds ``"<image> "`` before the question (3 tokens), ``<|vision_start|>``,
``<|vision_end|>`` and one ``<|image_pad|>`` per 28 x 28 pixels after resizing:
64 for 224 x 224, 11 x 17 = 187 for the chart (resized to 308 x 476).
"""


@pytest.mark.parametrize("image", list(IMAGES))
@pytest.mark.parametrize("response", list(RESPONSES))
def test_prompt_tokens_of_the_bundled_examples(
    vllm_server: VLLMServerBackend, response: str, image: str
) -> None:
    item: dict[str, Any] = {"question": QUESTION, "response": RESPONSES[response]}
    if IMAGES[image] is not None:
        item["image"] = IMAGES[image]
    counted = tokenize(vllm_server, judge_messages(item))
    result = ThinkingRewardJudge(backend=vllm_server, constrained=True).invoke(item)
    assert result.error is None, result.error
    assert result.usage["prompt_tokens"] == counted["count"]
    assert counted["count"] == PROMPT_TOKENS[response, image]


# ----------------------------------------------------------- the answers

DIGIT_IDS = {str(d): 15 + d for d in range(10)}
"""Qwen2's digits: "0" is 15 ... "9" is 24; "." is 13."""
DOT_ID = 13


def test_every_grid_answer_is_one_token_per_character(vllm_server: VLLMServerBackend) -> None:
    for answer in SCORE_GRID:
        body = tokenize_text(vllm_server, answer)
        assert body["token_strs"] == list(answer)
        assert body["tokens"] == [DOT_ID if c == "." else DIGIT_IDS[c] for c in answer]
    assert tokenize_text(vllm_server, "0.7")["tokens"] == [15, 13, 22]
    # each class the expected score reads is the token's own text
    assert [token_class(str(s)) for s in tokenize_text(vllm_server, "0.")["token_strs"]] == [
        "0",
        ".",
    ]


ANSWER_TAG_TOKENS = ["<", "answer", ">", "0", ".", "3", "</", "answer", ">"]


def test_the_answer_tag_is_read_with_the_real_tokens(vllm_server: VLLMServerBackend) -> None:
    body = tokenize_text(vllm_server, "<answer>0.3</answer>")
    assert body["token_strs"] == ANSWER_TAG_TOKENS
    assert body["tokens"] == [27, 9217, 29, 15, 13, 18, 522, 9217, 29]
    # the expected-score path on those tokens: "0" sure, "." sure, "3" or "7" alike
    tops = {3: [("0", 0.0)], 4: [(".", 0.0)], 5: [("3", LN_HALF), ("7", LN_HALF)]}
    logprobs = [
        TokenLogprob(token, LN_HALF if i == 5 else 0.0, tuple(tops.get(i, [(token, 0.0)])))
        for i, token in enumerate(body["token_strs"])
    ]
    assert vet("<answer>0.3</answer>", logprobs) == (None, None)
    trace = trace_answer(logprobs)
    assert trace is not None
    assert trace.prefix == "<answer>"
    assert trace.missing() is None  # all three distributions are in the answer itself
    assert trace.sources == {"first": "answer", "after_zero": "answer", "after_point": "answer"}
    assert token_class(ANSWER_TAG_TOKENS[6]) == END  # "</" closes the number
    score = expected_score(trace.first, trace.after_zero, trace.after_point)
    assert score == pytest.approx(0.5)  # (0.3 + 0.7) / 2


def test_the_default_max_tokens_hold_every_answer(vllm_server: VLLMServerBackend) -> None:
    for output_format, longest in (("bare", "0.1"), ("answer_tag", "<answer>0.1</answer>")):
        judge = ThinkingRewardJudge(backend=vllm_server, output_format=output_format)
        canonical = tokenize_text(vllm_server, longest)["count"]
        assert canonical == {"bare": 3, "answer_tag": 9}[output_format]
        # a constrained random model may spell the answer in other tokens than the
        # tokenizer's, down to one per character; then comes <|im_end|>
        assert judge.pipeline()[0].max_tokens >= len(longest) + 1


# ----------------------------------------------------------- the neutraliser

IMAGE_224 = png((224, 224))


def _special_ids(server: VLLMServerBackend, item: dict[str, Any], **options: Any) -> list[int]:
    """The added-token ids of the prompt the judge sends for ``item``, in order."""
    ids = tokenize(server, judge_messages(item, **options))["tokens"]
    return [i for i in ids if i >= FIRST_ADDED_ID]


def test_the_clean_prompt_has_the_template_s_special_tokens(
    vllm_server: VLLMServerBackend,
) -> None:
    ids = QWEN2_5_VL_TOKEN_IDS
    start, end = ids["<|im_start|>"], ids["<|im_end|>"]
    image = [ids["<|vision_start|>"], *[ids["<|image_pad|>"]] * 64, ids["<|vision_end|>"]]
    clean = {"question": QUESTION, "response": RESPONSES["sound"], "image": IMAGE_224}
    # system turn, user turn (text, then the 8 x 8 merged patches), the generation prompt
    assert _special_ids(vllm_server, clean) == [start, end, start, *image, end, start]
    assert [start, end, start, end, start] == [151644, 151645, 151644, 151645, 151644]
    assert image[:2] + image[-1:] == [151652, 151655, 151653]


@pytest.mark.parametrize("where", ["question", "response"])
@pytest.mark.parametrize("token", QWEN2_5_VL_CONTROL_TOKENS)
def test_every_control_token_is_broken(
    vllm_server: VLLMServerBackend, token: str, where: str
) -> None:
    clean = {"question": QUESTION, "response": RESPONSES["sound"], "image": IMAGE_224}
    text = clean[where]
    attacked = {**clean, where: f"{token}{text[:40]}{token}{text[40:]}{token}"}
    expected = _special_ids(vllm_server, clean)
    assert _special_ids(vllm_server, attacked) == expected
    # without the neutraliser, the three reach the model as the token itself
    raw = Counter(_special_ids(vllm_server, attacked, neutralize_special_tokens=False))
    assert raw - Counter(expected) == Counter({QWEN2_5_VL_TOKEN_IDS[token]: 3})


def test_qwen3_s_think_tags_are_plain_text(vllm_server: VLLMServerBackend) -> None:
    # Qwen3 added <think> and </think> as tokens (151667, 151668); Qwen2.5-VL did not
    assert tokenize_text(vllm_server, "<think>")["token_strs"] == ["<th", "ink", ">"]
    assert tokenize_text(vllm_server, "<think>")["tokens"] == [13708, 766, 29]


def test_tool_call_tags_are_left_as_they_are(vllm_server: VLLMServerBackend) -> None:
    # ordinary added tokens with no role in the chat template (see judge.core.sanitize)
    item = {"question": QUESTION, "response": "<tool_call>{}</tool_call>4"}
    found = Counter(_special_ids(vllm_server, item))
    assert found[151657] == 1  # <tool_call>
    assert found[151658] == 1  # </tool_call>
