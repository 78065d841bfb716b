"""Helpers for testing without the real model.

* :func:`build_tiny_model` (:mod:`judge.testing.tiny_model`): a tiny random-weight
  Qwen2.5-VL with the real Qwen2.5-VL tokenizer, built offline, that real vLLM and
  transformers load on a CPU;
* :class:`FakeBackend` (:mod:`judge.testing.fake`): a backend that answers without a model.

Names are imported on first use, so ``import judge.testing`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from judge.lazy import lazy_attributes

if TYPE_CHECKING:
    from judge.testing.fake import FakeBackend
    from judge.testing.tiny_model import (
        QWEN2_5_VL_CHAT_TEMPLATE,
        QWEN2_5_VL_TOKEN_IDS,
        TINY_MODEL_VERSION,
        TokenizerFilesError,
        build_tiny_model,
    )

_LAZY: dict[str, str] = {
    "QWEN2_5_VL_CHAT_TEMPLATE": "judge.testing.tiny_model",
    "QWEN2_5_VL_TOKEN_IDS": "judge.testing.tiny_model",
    "TINY_MODEL_VERSION": "judge.testing.tiny_model",
    "TokenizerFilesError": "judge.testing.tiny_model",
    "build_tiny_model": "judge.testing.tiny_model",
    "FakeBackend": "judge.testing.fake",
}
"""Public name -> the module that defines it."""

__all__ = [
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "QWEN2_5_VL_TOKEN_IDS",
    "TINY_MODEL_VERSION",
    "FakeBackend",
    "TokenizerFilesError",
    "build_tiny_model",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
