"""The real vLLM server's ``POST /tokenize``, and the messages the judge sends for an item.

``/tokenize`` (not under ``/v1``) takes chat messages (rendered with the model's chat
template, image placeholders expanded as the model reads them) or a plain prompt, and
returns the token ids, their strings and their count.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any

from PIL import Image

from backends import FakeBackend
from backends.vllm_server import VLLMServerBackend
from judge import ThinkingRewardJudge


def png(size: tuple[int, int] = (56, 56), color: str = "red") -> bytes:
    """A one-colour PNG of ``size``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def post(server: VLLMServerBackend, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST JSON to the server's root (``/tokenize`` is not under ``/v1``)."""
    root = str(server.base_url).rstrip("/").removesuffix("/v1")
    request = urllib.request.Request(
        root + path,
        data=json.dumps({"model": server.model, **body}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def tokenize(server: VLLMServerBackend, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """``/tokenize`` of chat messages: ``count``, ``tokens`` (ids), ``token_strs``."""
    status, body = post(server, "/tokenize", {"messages": messages, "return_token_strs": True})
    assert status == 200, body
    return body


def tokenize_text(server: VLLMServerBackend, text: str) -> dict[str, Any]:
    """``/tokenize`` of plain text, without the tokenizer's own special tokens."""
    status, body = post(
        server,
        "/tokenize",
        {"prompt": text, "add_special_tokens": False, "return_token_strs": True},
    )
    assert status == 200, body
    return body


def judge_messages(item: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    """The messages the judge sends for ``item`` (rendered once, recorded by a fake)."""
    backend = FakeBackend(["0.5"])
    result = ThinkingRewardJudge(backend=backend, **options).invoke(item)
    assert result.error is None, result.error
    return backend.requests[-1].messages


__all__ = ["judge_messages", "png", "post", "tokenize", "tokenize_text"]
