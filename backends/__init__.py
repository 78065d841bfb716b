"""How a rendered judge request reaches a model.

Backends are registered by name and imported lazily, so ``import backends`` stays cheap
and the optional ones (vLLM) cost nothing until used::

    from backends import VLLMServerBackend          # imports backends.vllm_server
    cls = backend_class("vllm-offline")             # by registry name

One entry deliberately points outside this package: ``"fake"`` is
:class:`judge.testing.fake.FakeBackend`, which speaks the judge's prompt and score grid.
It is imported only when asked for (``from backends import FakeBackend``,
``backend_class("fake")``); no module of ``backends`` imports ``judge``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from backends.base import (
    AsyncBackend,
    Backend,
    Completion,
    JudgeRequest,
    SyncBackend,
    TokenLogprob,
)
from backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    ThinkingJudgeError,
)

if TYPE_CHECKING:
    from backends.chat_model import ChatModelBackend
    from backends.openai_compatible import OpenAICompatibleBackend
    from backends.vllm_offline import VLLMOfflineBackend
    from backends.vllm_server import VLLMServerBackend

REGISTRY: dict[str, str] = {
    "chat-model": "backends.chat_model:ChatModelBackend",
    "fake": "judge.testing.fake:FakeBackend",  # the one lazy alias outside backends
    "openai-compatible": "backends.openai_compatible:OpenAICompatibleBackend",
    "vllm-offline": "backends.vllm_offline:VLLMOfflineBackend",
    "vllm-server": "backends.vllm_server:VLLMServerBackend",
}
"""Backend registry name -> ``"module:Class"``."""

_CLASS_NAMES = {target.rsplit(":", 1)[1]: target for target in REGISTRY.values()}


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``.

    Raises:
        KeyError: ``name`` is not registered; the message lists what is.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no backend named {name!r}; known backends: {known}") from None
    module, _, attr = target.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def __getattr__(attr: str) -> Any:
    target = _CLASS_NAMES.get(attr)
    if target is None:
        raise AttributeError(f"module 'backends' has no attribute {attr!r}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "REGISTRY",
    "AsyncBackend",
    "Backend",
    "BackendConnectionError",
    "BackendError",
    "BackendHTTPError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ChatModelBackend",
    "Completion",
    "FakeBackend",
    "JudgeRequest",
    "OpenAICompatibleBackend",
    "SyncBackend",
    "ThinkingJudgeError",
    "TokenLogprob",
    "VLLMOfflineBackend",
    "VLLMServerBackend",
    "backend_class",
]
