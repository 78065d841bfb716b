"""``judge.core.inputs``: the one extractor, read directly (the faces' tests read it through them)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from judge.core import inputs
from judge.errors import InputError


def test_checked_fields_returns_the_fields_and_refuses_what_is_unusable():
    assert inputs.checked_fields({"question": "q", "response": "r"}) == ("q", "r", None)
    assert inputs.checked_fields({"question": "q", "response": "r", "images": [1]})[2] == [1]
    with pytest.raises(InputError, match="decode it to text first"):
        inputs.checked_fields({"question": b"q", "response": "r"})
    with pytest.raises(InputError, match="'response' is empty"):
        inputs.checked_fields({"question": "q", "response": " \n"})
    with pytest.raises(InputError, match="not both"):
        inputs.checked_fields({"question": "q", "response": "r", "image": 1, "images": [1]})
    with pytest.raises(InputError, match="got list"):
        inputs.checked_fields([("question", "q")])


def test_response_text_puts_kept_apart_reasoning_back_as_think():
    message = AIMessage("4", additional_kwargs={"reasoning_content": "2+2"})
    assert inputs.response_text(message) == "<think>2+2</think>4"
    assert inputs.response_text({"role": "assistant", "content": "4", "reasoning": "r"}) == (
        "<think>r</think>4"
    )
    with pytest.raises(InputError, match="type int"):
        inputs.response_text(4)


def test_question_and_response_of_an_example_and_a_run():
    example = {"messages": [HumanMessage("first"), AIMessage("x"), HumanMessage("last")]}
    assert inputs.question_text(example) == "last"
    assert inputs.outputs_response({"output": {"response": "deep"}}) == "deep"
    with pytest.raises(InputError, match="keys: 'a', 'b'"):
        inputs.question_text({"a": "1", "b": "2"})


def test_image_attachments_are_read_rewound_and_other_types_skipped():
    reader = io.BytesIO(b"png bytes")
    reader.read()
    found = inputs.attachment_images(
        {
            "chart": {"mime_type": "image/png", "reader": reader},
            "notes": {"mime_type": "text/plain", "reader": io.BytesIO(b"text")},
        }
    )
    assert found == [b"png bytes"]
    assert reader.tell() == 0


def test_trl_prompt_question_response_and_images():
    prompt = [
        {
            "role": "user",
            "content": [{"type": "image", "image": "IMG"}, {"type": "text", "text": "Q"}],
        }
    ]
    assert inputs.trl_question(prompt) == "user\nQ\nassistant\n"
    assert inputs.trl_question(prompt, "user") == "Q"
    assert inputs.prompt_images(prompt) == ("IMG",)
    assert (
        inputs.trl_response(
            [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
        )
        == "a\nb"
    )
    with pytest.raises(InputError, match="no user message"):
        inputs.trl_question([{"role": "system", "content": "s"}], "user")


def test_trainer_fields_take_verl_multimodal_layout():
    info = {"prompt": "Q", "multi_modal_data": {"image": [{"bytes": b"1"}, None]}}
    assert inputs.info_question(info, ("question", "prompt"), "extra_info") == "Q"
    assert inputs.info_images(info) == (b"1",)
    with pytest.raises(InputError, match="extra_info carries no question"):
        inputs.info_question({"question": ""}, ("question",), "extra_info")
    with pytest.raises(InputError, match="'bytes' or 'path'"):
        inputs.column_images({"other": 1})


def test_record_input_resolves_relative_paths_only(tmp_path: Path):
    row = {
        "question": "q",
        "response": "r",
        "images": ["a.png", "/abs.png", "data:image/png;base64,AA", {"path": "b.png"}],
    }
    assert inputs.record_input(row, tmp_path)["images"] == [
        str(tmp_path / "a.png"),
        "/abs.png",
        "data:image/png;base64,AA",
        str(tmp_path / "b.png"),
    ]
    with pytest.raises(InputError, match="'images' must be a list"):
        inputs.record_input({"question": "q", "response": "r", "images": "a.png"}, tmp_path)
    with pytest.raises(InputError, match="'question' must be a string, got int"):
        inputs.record_input({"question": 3, "response": "r"}, tmp_path)
