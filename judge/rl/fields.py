"""Trainer fields -> the judge's question, response and images (to move to judge.core.inputs).

TRL prompts and completions as strings or message lists (content a string or parts),
images from an ``image`` / ``images`` column value or from the prompt's
``{"type": "image", "image": ...}`` parts, datasets-style ``{"bytes", "path"}`` image
dicts (verl, EasyR1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from judge.errors import InputError

QuestionFrom = Literal["prompt", "user"] | Callable[[Any], str]
"""How a TRL prompt becomes the judge's question: see :class:`~judge.rl.trl.GRPOReward`."""

__all__ = [
    "QuestionFrom",
    "content_text",
    "image_list",
    "image_value",
    "prompt_images",
    "question_text",
    "response_text",
]


def image_list(value: Any) -> tuple[Any, ...]:
    """Images from a column value: None, one image, or a list of them."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(image_value(v) for v in value if v is not None)
    return (image_value(value),)


def image_value(value: Any) -> Any:
    """An image as the judge takes it; a datasets-style ``{"bytes", "path"}`` dict too.

    Raises:
        InputError: An image dict with neither.
    """
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise InputError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    return value


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type", "text") == "text" and "text" in part:
            parts.append(str(part["text"]))
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)


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


def question_text(prompt: Any, how: QuestionFrom) -> str:
    """The judge's question from a TRL prompt (see ``question`` of ``GRPOReward``).

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
        return content_text(users[-1].get("content"))
    # The training code's question: the policy's chat-templated prompt decoded without
    # special tokens, i.e. each message as "role\ntext\n", then the generation prompt.
    return (
        "".join(f"{m.get('role')}\n{content_text(m.get('content'))}\n" for m in prompt)
        + "assistant\n"
    )


def response_text(completion: Any) -> str:
    """The response from a TRL completion: a string, or its messages' texts joined."""
    if isinstance(completion, str):
        return completion
    return "\n".join(content_text(m.get("content")) for m in completion if isinstance(m, Mapping))
