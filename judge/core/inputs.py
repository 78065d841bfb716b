"""THE one input extractor: whatever a caller holds -> the judge's question, response, images.

Every face reads its inputs here and nowhere else: the Runnable (a judge input mapping),
the evaluators (LangSmith examples, runs and attachments; LangChain and OpenAI messages),
the reranker, the RL rewards (TRL prompts and completions, dataset image columns,
verl's / EasyR1's per-sample fields) and ``thinking-judge batch`` (dataset rows). Pure:
no I/O beyond rewinding an attachment's reader, no Runnable.

Each function raises :class:`~judge.errors.InputError` (with a message that says what is
missing and how to give it) instead of guessing.

========================================  ===============================================
source                                    function
========================================  ===============================================
a judge input mapping                     :func:`checked_fields`
a message, generation or string           :func:`response_text`, :func:`message_text`
                                          (from :mod:`judge.core.messages`)
an example's inputs / a run's outputs     :func:`question_text`, :func:`outputs_response`
an example + run (+ attachments)          :func:`prepare_judge_input`
TRL prompt / completion / image columns   :func:`trl_question`, :func:`trl_response`,
                                          :func:`prompt_images`, :func:`column_images`
verl / EasyR1 per-sample fields           :func:`info_question`, :func:`info_images`
a dataset row (JSONL, CSV, Parquet)       :func:`record_input`, :func:`resolve_image`
========================================  ===============================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.outputs import Generation

from judge.core.messages import (
    is_message_dict,
    last_message,
    message_role,
    message_text,
    response_text,
)
from judge.errors import InputError
from judge.types import JudgeInput

IMAGE_KEYS = ("image", "images")
"""The input fields that carry images."""

URL_PREFIXES = ("http://", "https://", "data:")
"""Image strings that are URLs (sent as they are), not paths."""

QuestionFrom = Literal["prompt", "user"] | Callable[[Any], str]
"""How a TRL prompt becomes the judge's question: see :func:`trl_question`."""


# --------------------------------------------------------------------------- judge inputs


def checked_fields(item: Any) -> tuple[str, str, Any]:
    """A judge input's fields, checked: ``(question, response, images)``.

    Args:
        item: A :class:`~judge.types.JudgeInput` mapping.

    Returns:
        The question, the response, and the ``images`` list or the one ``image`` (or None).

    Raises:
        InputError: Not a mapping; a missing, empty or non-string question or response;
            both ``image`` and ``images``.
    """
    if not isinstance(item, Mapping):
        raise InputError(
            f"a judge input is a mapping with 'question' and 'response', got {type(item).__name__}"
        )
    for key in ("question", "response"):
        value = item.get(key)
        if not isinstance(value, str):
            got = "nothing" if value is None else type(value).__name__
            hint = " (decode it to text first)" if got in ("bytes", "bytearray") else ""
            raise InputError(f"judge input field {key!r} must be a string, got {got}{hint}")
        if not value or value.isspace():
            raise InputError(f"judge input field {key!r} is empty")
    image, images = item.get("image"), item.get("images")
    if image is not None and images is not None:
        raise InputError("give either 'image' or 'images', not both")
    return item["question"], item["response"], images if images is not None else image


def image_fields(value: Any) -> dict[str, Any]:
    """The image fields (``image`` / ``images``) a mapping carries, to pass on as they are."""
    if isinstance(value, Mapping):
        return {key: value[key] for key in IMAGE_KEYS if value.get(key) is not None}
    return {}


def _only_text(values: Mapping[str, Any], kinds: tuple[type, ...]) -> Any:
    found = [
        value
        for key, value in values.items()
        if key not in IMAGE_KEYS and (isinstance(value, kinds) or is_message_dict(value))
    ]
    return found[0] if len(found) == 1 else None


# --------------------------------------------------------------------------- examples and runs


def question_text(inputs: Any) -> str:
    """The question in an example's (or a chain's) inputs.

    Args:
        inputs: A string; a list of messages (the last user message); or a mapping:
            its ``"question"``, else the last user message of its ``"messages"``, else
            its only string value (image fields aside).

    Returns:
        The question text.

    Raises:
        InputError: No question can be told apart.
    """
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, Mapping) and not is_message_dict(inputs):
        if inputs.get("question") is not None:
            question = inputs["question"]
            return question if isinstance(question, str) else response_text(question)
        message = last_message(inputs.get("messages"), "user")
        if message is not None:
            return response_text(message)
        only = _only_text(inputs, (str, BaseMessage))
        if only is not None:
            return response_text(only)
        keys = ", ".join(map(repr, inputs)) or "none"
        raise InputError(
            f"cannot tell which input is the question (keys: {keys}); put it under "
            "'question' or pass prepare=..."
        )
    message = last_message(inputs if isinstance(inputs, Sequence) else [inputs], "user")
    if message is not None:
        return response_text(message)
    raise InputError(
        f"cannot read a question from inputs of type {type(inputs).__name__}; pass prepare=..."
    )


def outputs_response(outputs: Any) -> str:
    """The response in a run's outputs.

    Args:
        outputs: A mapping (its ``"response"``, else ``"output"``, else the last AI
            message of ``"messages"``, else its only string or message value); a list of
            messages (the last assistant message); or a single message / string.

    Returns:
        The response text.

    Raises:
        InputError: No outputs, or no response can be told apart.
    """
    if outputs is None:
        raise InputError("the run has no outputs to judge")
    if isinstance(outputs, Mapping) and not is_message_dict(outputs):
        for key in ("response", "output"):
            if outputs.get(key) is not None:
                value = outputs[key]
                if isinstance(value, Mapping) and not is_message_dict(value):
                    return outputs_response(value)
                return response_text(value)
        message = last_message(outputs.get("messages"), "assistant")
        if message is not None:
            return response_text(message)
        only = _only_text(outputs, (str, BaseMessage, Generation))
        if only is not None:
            return response_text(only)
        keys = ", ".join(map(repr, outputs)) or "none"
        raise InputError(
            f"cannot tell which output is the response (keys: {keys}); put it under "
            "'response' or 'output', or pass prepare=..."
        )
    if isinstance(outputs, Sequence) and not isinstance(outputs, str):
        message = last_message(outputs, "assistant")
        if message is None:
            raise InputError("the outputs hold no assistant message to judge")
        return response_text(message)
    return response_text(outputs)


def _attachment_image(name: str, attachment: Any) -> Any:
    """An image attachment's bytes (its reader, rewound) or its URL / data."""
    if not isinstance(attachment, Mapping):
        return attachment  # a URL or bytes given directly
    reader = attachment.get("reader")
    if reader is not None:
        reader.seek(0)
        data = reader.read()
        reader.seek(0)
        return bytes(data)
    for key in ("data", "presigned_url", "url"):
        if attachment.get(key):
            return attachment[key]
    raise InputError(f"the attachment {name!r} has neither a reader nor a URL")


def _is_image_attachment(attachment: Any) -> bool:
    if not isinstance(attachment, Mapping):
        return True
    return str(attachment.get("mime_type") or "").lower().startswith("image/")


def attachment_images(attachments: Mapping[str, Any] | None) -> list[Any]:
    """The images among an example's attachments, in order.

    Args:
        attachments: LangSmith ``AttachmentInfo`` mappings (a ``reader`` or a
            ``presigned_url``), openevals-style ``{"mime_type", "data"}`` mappings, or
            URLs / bytes given directly; those whose MIME type is not an image are skipped.
    """
    return [
        _attachment_image(name, value)
        for name, value in (attachments or {}).items()
        if _is_image_attachment(value)
    ]


def prepare_judge_input(
    *,
    inputs: Any,
    outputs: Any,
    reference_outputs: Any = None,
    attachments: Mapping[str, Any] | None = None,
) -> JudgeInput:
    """The default mapping from an example and a run's outputs to the judge's input.

    The question comes from :func:`question_text`, the response from
    :func:`outputs_response`, the images from the inputs' ``image`` / ``images``, else the
    example's image attachments. ``reference_outputs`` are not used: the model judges the
    thinking, not agreement with a reference answer.

    Raises:
        InputError: The question or the response cannot be found.
    """
    item: dict[str, Any] = {
        "question": question_text(inputs),
        "response": outputs_response(outputs),
    }
    images = image_fields(inputs)
    if images:
        item.update(images)
    else:
        found = attachment_images(attachments)
        if len(found) == 1:
            item["image"] = found[0]
        elif found:
            item["images"] = found
    return item  # type: ignore[return-value]


# --------------------------------------------------------------------------- trainers


def image_value(value: Any) -> Any:
    """An image as the judge takes it; a datasets-style ``{"bytes", "path"}`` dict too."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise InputError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    return value


def column_images(value: Any) -> tuple[Any, ...]:
    """Images from a dataset column's value: None, one image, or a list of them."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(image_value(v) for v in value if v is not None)
    return (image_value(value),)


def prompt_images(prompt: Any) -> tuple[Any, ...]:
    """Images carried in a conversational prompt's parts (``{"type": "image", "image": ...}``)."""
    if isinstance(prompt, str):
        return ()
    found = []
    for message in prompt:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("image") is not None:
                    found.append(part["image"])
    return tuple(found)


def trl_question(prompt: Any, how: QuestionFrom = "prompt") -> str:
    r"""The judge's question from a TRL prompt (a string, or a list of messages).

    Args:
        prompt: The prompt as TRL passes it to a reward function.
        how: ``"prompt"``: the training code's question, the chat-templated prompt
            decoded without special tokens (each message as ``"role\ntext\n"``, then
            ``"assistant\n"``); ``"user"``: the last user message's text; or a function
            of the prompt.

    Raises:
        InputError: ``how="user"`` and the prompt has no user message.
    """
    if callable(how):
        return how(prompt)
    if isinstance(prompt, str):
        return prompt
    if how == "user":
        users = [m for m in prompt if m.get("role") == "user"]
        if not users:
            raise InputError("the prompt has no user message to take the question from")
        return message_text(users[-1].get("content"))
    return (
        "".join(f"{m.get('role')}\n{message_text(m.get('content'))}\n" for m in prompt)
        + "assistant\n"
    )


def trl_response(completion: Any) -> str:
    """The judge's response from a TRL completion (a string, or its messages' texts joined)."""
    if isinstance(completion, str):
        return completion
    return "\n".join(message_text(m.get("content")) for m in completion if isinstance(m, Mapping))


def info_question(info: Mapping[str, Any] | None, keys: Sequence[str], where: str) -> str:
    """The question in a trainer's per-sample fields (verl's ``extra_info``, EasyR1's inputs).

    Args:
        info: The fields.
        keys: The keys to take the question from, in turn.
        where: What ``info`` is, for the error message.

    Raises:
        InputError: No non-empty string under any of ``keys``.
    """
    info = info or {}
    for key in keys:
        question = info.get(key)
        if isinstance(question, str) and question:
            return question
    raise InputError(
        f"{where} carries no question under {list(keys)}: put the question (and the "
        "image, under 'images' or 'image') there in your data"
    )


def info_images(info: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The images in a trainer's per-sample fields.

    Looked for under ``images``, ``image``, then ``multi_modal_data``'s ``images`` /
    ``image`` (verl's stock multimodal layout).
    """
    info = info or {}
    images = info.get("images")
    if images is None:
        images = info.get("image")
    data = info.get("multi_modal_data")
    if images is None and isinstance(data, Mapping):
        images = data.get("images", data.get("image"))
    return column_images(images)


# --------------------------------------------------------------------------- dataset rows


def resolve_image(value: Any, base: Path) -> Any:
    """An image field of a data file: a relative path resolved against ``base``.

    URLs and data URLs pass unchanged, a path becomes absolute (a relative one resolved
    against ``base``; symlinks are left for the judge's image root to resolve and check:
    nothing is read here), and a Parquet / datasets ``{"bytes", "path"}`` struct gives
    its bytes (else its path).
    """
    if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
        value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
    if isinstance(value, str) and not value.lower().startswith(URL_PREFIXES):
        return os.path.join(os.path.abspath(base), value)
    return value


def record_input(row: Mapping[str, Any], base: Path) -> JudgeInput:
    """A data file's row (JSONL object, CSV row, Parquet row) as a judge input.

    Args:
        row: The row's fields: ``question``, ``response``, optionally ``image`` or
            ``images`` (paths relative to ``base``, URLs, data URLs, Parquet structs).
        base: The folder relative image paths are resolved against. Which files may
            then be read is the judge's image root
            (:attr:`~judge.runnable.ThinkingRewardJudge.image_root`; ``thinking-judge
            batch`` sets it to the input file's folder unless ``--image-root`` is given).

    Raises:
        InputError: A missing or non-string question or response, both image fields,
            or an ``images`` that is not a list.
    """
    for key in ("question", "response"):
        value = row.get(key)
        if not isinstance(value, str):
            got = "nothing" if value is None else type(value).__name__
            raise InputError(f"{key!r} must be a string, got {got}")
    item: JudgeInput = {"question": row["question"], "response": row["response"]}
    image, images = row.get("image"), row.get("images")
    if image is not None and images is not None:
        raise InputError("give 'image' or 'images', not both")
    if image is not None:
        item["image"] = resolve_image(image, base)
    elif images is not None:
        if not isinstance(images, list):
            raise InputError(f"'images' must be a list, got {type(images).__name__}")
        item["images"] = [resolve_image(one, base) for one in images]
    return item


__all__ = [
    "IMAGE_KEYS",
    "URL_PREFIXES",
    "QuestionFrom",
    "attachment_images",
    "checked_fields",
    "column_images",
    "image_fields",
    "image_value",
    "info_images",
    "info_question",
    "is_message_dict",
    "last_message",
    "message_role",
    "message_text",
    "outputs_response",
    "prepare_judge_input",
    "prompt_images",
    "question_text",
    "record_input",
    "resolve_image",
    "response_text",
    "trl_question",
    "trl_response",
]
