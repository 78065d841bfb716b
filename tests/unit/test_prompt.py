"""The rendered prompt equals the model card's f-string, byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from model_card import card_prompt  # the card's f-string, verbatim (tests/support)

from judge.core.prompt import SYSTEM_PROMPT, prompt_sha256, render_messages, render_prompt

QUESTION = "What is 2+2?"
RESPONSE = "<think>2+2=4</think><answer>4</answer>"


def test_text_only_prompt_is_the_cards():
    assert render_prompt(QUESTION, RESPONSE) == card_prompt(QUESTION, RESPONSE)


def test_image_prompt_gets_the_image_prefix():
    rendered = render_prompt(QUESTION, RESPONSE, has_image=True)
    assert rendered == card_prompt(QUESTION, RESPONSE, image_path="chart.png")
    assert "Question: <image> What is 2+2?" in rendered


def test_question_with_image_tag_keeps_it_once():
    question = "Look at <image> and add."
    rendered = render_prompt(question, RESPONSE, has_image=True)
    assert rendered == card_prompt(question, RESPONSE, image_path="chart.png")
    assert rendered.count("<image>") == 1


def test_quirks_of_the_card_are_kept():
    rendered = render_prompt("q", "r")
    assert "correct.### Evaluation Criteria:\n- **Logical" in rendered
    assert "\n - **0**: Completely flawed reasoning\n- **1**" in rendered
    assert "**{0, 0.1, 0.2, ..., 1.0}**" in rendered
    assert rendered.endswith("explanation.\n    Question: q\n    Reasoning process: r\n    ")


@given(st.text(), st.text(), st.booleans())
def test_any_question_and_response_render_as_the_card(question, response, with_image):
    image = "img.png" if with_image else None
    assert render_prompt(question, response, has_image=with_image) == card_prompt(
        question, response, image
    )


def test_message_layout_is_system_then_text_then_images():
    part = {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
    messages = render_messages(QUESTION, RESPONSE, [part])
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert SYSTEM_PROMPT == "You are a helpful assistant."
    assert messages[1]["role"] == "user"
    text, image = messages[1]["content"]
    assert text == {"type": "text", "text": card_prompt(QUESTION, RESPONSE, "x.png")}
    assert image is part
    assert len(messages) == 2


def test_text_only_messages_have_one_text_part():
    messages = render_messages(QUESTION, RESPONSE)
    assert messages[1]["content"] == [{"type": "text", "text": card_prompt(QUESTION, RESPONSE)}]


def test_prompt_hash_tracks_every_byte():
    a = prompt_sha256(render_messages(QUESTION, RESPONSE))
    assert a == prompt_sha256(render_messages(QUESTION, RESPONSE))
    assert a != prompt_sha256(render_messages(QUESTION, RESPONSE + " "))
    assert len(a) == 64


@given(st.text(), st.text())
def test_prompt_hash_is_sha256_of_canonical_json(question, response):
    import hashlib
    import json

    messages = render_messages(
        question,
        response,
        [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
    )
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert (
        prompt_sha256(messages)
        == hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    )


# A verbatim copy of the prompt f-string of the SophiaVL-R1 training code
# (kxfan2002/SophiaVL-R1, verl/workers/reward/custom.py, get_process_reward): the card's
# prompt plus a response-format line. It is the "answer_tag" output format.
def training_prompt(prompt_str, reasoning_str, image=None):
    if image is not None and "<image>" not in prompt_str:
        prompt_str = f"<image> {prompt_str}"

    prompt = f"""You are an expert reasoning evaluator. I will give you a multimodal question and an answer. Your goal is to judge a reward process and give a score between 0 and 1. You should focus on whether the reasoning process is good rather than whether the final answer is correct.### Evaluation Criteria:\n- **Logical Soundness**: Does each step follow logically from the previous one?\n- **Correct Reasoning**: Are the methods and steps used appropriate and valid? Are the facts and lemmas correctly stated and applied?\n- **Error Identification**: Are there any logical fallacies, unsupported assumptions, or incorrect steps?\n- **Language Consistency**: Is the reasoning process conducted in a single, consistent language without mixing different languages?\n- **Redundancy**: Is the reasoning concise, without unnecessary repetition or extraneous steps?\nProvide a single score from **{{0, 0.1, 0.2, ..., 1.0}}** based on the reasoning quality, where:\n - **0**: Completely flawed reasoning\n- **1**: Perfectly sound reasoning\n- Intermediate values (e.g., 0.3, 0.7) should reflect partial correctness or minor errors.\nBe strict, reward the good process and punish the bad one. You should only output the score without any explanation.
    Question: {prompt_str}
    Reasoning process: {reasoning_str}
    Your response format: <answer>your_score</answer>
    """
    return prompt


@given(st.text(), st.text(), st.booleans())
def test_answer_tag_format_is_the_training_codes_prompt(question, response, with_image):
    image = "base64..." if with_image else None
    rendered = render_prompt(question, response, has_image=with_image, output_format="answer_tag")
    assert rendered == training_prompt(question, response, image)


def test_bare_stays_the_default_and_unknown_formats_are_refused():
    assert render_prompt("q", "r") == render_prompt("q", "r", output_format="bare")
    assert "Your response format" not in render_prompt("q", "r")
    import pytest

    with pytest.raises(ValueError, match="output_format"):
        render_prompt("q", "r", output_format="json")
    messages = render_messages("q", "r", output_format="answer_tag")
    assert messages[1]["content"][0]["text"].endswith(
        "Your response format: <answer>your_score</answer>\n    "
    )
