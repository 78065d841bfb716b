"""Reading chat messages: their text, their role, and reasoning kept apart from the answer.

LangChain messages, OpenAI-style message dicts and LangChain generations; part of the one
input extractor (:mod:`judge.core.inputs` re-exports these names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, Generation

from backends.base import content_text
from judge.errors import InputError


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or its text parts joined."""
    return "" if content is None else content_text(content)


def _reasoning(content: Any, extra: Mapping[str, Any]) -> str:
    """Reasoning a parser kept apart from the answer (vLLM, DeepSeek, Anthropic, v1 blocks)."""
    found = extra.get("reasoning_content") or extra.get("reasoning")
    if isinstance(found, str) and found:
        return found
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "reasoning":
                parts.append(str(block.get("reasoning") or ""))
            elif block.get("type") == "thinking":
                parts.append(str(block.get("thinking") or ""))
    return "".join(parts)


def _with_thinking(reasoning: str, text: str) -> str:
    if reasoning and "<think>" not in text:
        return f"<think>{reasoning}</think>{text}"
    return text


def is_message_dict(value: Any) -> bool:
    """Whether ``value`` is an OpenAI-style message dict (``role`` and ``content``)."""
    return isinstance(value, Mapping) and "role" in value and "content" in value


def response_text(value: Any) -> str:
    """The text the judge reads from a response: a string, a message or a generation.

    A message's reasoning, when a reasoning parser kept it apart from the content
    (``additional_kwargs["reasoning_content"]``, reasoning or thinking blocks), is put
    back in front as ``<think>…</think>``: the judge scores the thinking.

    Args:
        value: A string, a LangChain message (``AIMessage``...), an OpenAI-style
            message dict, or a ``Generation`` / ``ChatGeneration``.

    Returns:
        The response text.

    Raises:
        InputError: ``value`` is none of these.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return _with_thinking(
            _reasoning(value.content, value.additional_kwargs), content_text(value.content)
        )
    if isinstance(value, ChatGeneration):
        return response_text(value.message)
    if isinstance(value, Generation):
        return value.text
    if is_message_dict(value):
        return _with_thinking(_reasoning(value["content"], value), content_text(value["content"]))
    raise InputError(
        f"cannot read a response from a value of type {type(value).__name__}: give a "
        "string, a message or a generation"
    )


def message_role(message: Any) -> str | None:
    """A message's role in OpenAI's words (``user``, ``assistant``...), or None."""
    if isinstance(message, BaseMessage):
        return {"human": "user", "ai": "assistant"}.get(message.type, message.type)
    if is_message_dict(message):
        return str(message["role"])
    return None


def last_message(messages: Any, role: str) -> Any:
    """The last message of ``role`` in a list of messages, or None."""
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        for message in reversed(messages):
            if message_role(message) == role:
                return message
    return None


__all__ = [
    "is_message_dict",
    "last_message",
    "message_role",
    "message_text",
    "response_text",
]
