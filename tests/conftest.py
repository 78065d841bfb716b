"""Shared test settings: nothing reaches a model hub, caches stay in a temporary folder.

The test process imports transformers, trl and vLLM itself in places, so it gets the torch
repair explicitly (run after its first ``import torch``; see ``backends._torch_compat``).
Its environment is left alone: the processes the tests start get the repair only from the
project's own code, which is what the integration tests check.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from suite_order import stage

from backends._torch_compat import install_on_import

_CACHE = Path(tempfile.mkdtemp(prefix="thinking-judge-tests-"))

# Set before anything imports vLLM, transformers or torch (they read these at import).
TEST_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "VLLM_CACHE_ROOT": str(_CACHE / "vllm"),
    "TORCHINDUCTOR_CACHE_DIR": str(_CACHE / "inductor"),
    "HF_HOME": str(_CACHE / "hf"),
    "XDG_CACHE_HOME": str(_CACHE / "xdg"),
    "TOKENIZERS_PARALLELISM": "false",
    # vLLM compiles its sampler with inductor on first use of logprobs (16-18 s on CPU).
    "TORCHDYNAMO_DISABLE": "1",
    # The in-process engine without its engine-core subprocess: 2x faster to load and
    # 1.2 GB smaller. The session server sets it back to 1 for itself.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # Anything the tests start must not need the real API key of whoever runs them.
    "OPENAI_API_KEY": "EMPTY",
}
os.environ.update(TEST_ENV)
install_on_import()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests run before the fuzz stage, and both before the integration tests.

    pytest collects folders in name order (fuzz, integration, unit); a stable sort keeps
    each module's tests together and in their own order, so module fixtures are shared.
    """
    items.sort(key=lambda item: stage(item.nodeid))


def pytest_configure(config: pytest.Config) -> None:
    """List the 15 slowest tests at the end of every run (``--durations`` overrides)."""
    if config.option.durations is None:
        config.option.durations = 15
