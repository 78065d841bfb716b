"""Real vLLM for the integration tests: one server and one in-process engine per session.

Both serve the tiny random-weight Qwen2.5-VL that :func:`judge.testing.build_tiny_model`
builds locally; nothing is downloaded. The server is started through the project's own
``VLLMServerBackend.launch``, so the launcher is under test too (including the torch
repair it gives the server's processes: the test process's own environment has none).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from backends._torch_compat import SITE_DIR
from backends.base import Backend
from backends.vllm_offline import VLLMOfflineBackend
from backends.vllm_server import VLLMServerBackend
from judge.testing import build_tiny_model

MAX_MODEL_LEN = 4096
LIMIT_MM = {"image": 2, "video": 0}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_inherited_torch_repair() -> Iterator[None]:
    """After each test, take the torch repair's start-up hook off this process's PYTHONPATH.

    Loading vLLM in this process (the offline engine, an in-process CLI run) puts it there
    for the processes vLLM starts; the commands the tests start later (demo, serve) must
    get it from the project's own code, not inherit it from the test process.
    """
    yield
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    kept = [entry for entry in entries if entry and entry != str(SITE_DIR)]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "vllm-server.log"


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, server_log: Path) -> Iterator[VLLMServerBackend]:
    backend = VLLMServerBackend.launch(
        str(tiny_model),
        served_model_name="thinking-reward-model",
        log_file=server_log,
        env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
        startup_timeout=900,
        backend_kwargs={"max_retries": 1, "timeout": 120},
        max_model_len=MAX_MODEL_LEN,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt=LIMIT_MM,
    )
    with backend:
        yield backend


@pytest.fixture(scope="session")
def offline_backend(tiny_model: Path) -> Iterator[VLLMOfflineBackend]:
    backend = VLLMOfflineBackend(
        str(tiny_model),
        served_model_name="tiny",
        max_model_len=MAX_MODEL_LEN,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt={"image": 2, "video": 0},
    )
    with backend:
        yield backend.load()


@pytest.fixture(params=["vllm-server", "vllm-offline"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each real vLLM backend in turn: the tests that take it run against both."""
    fixture = {"vllm-server": "vllm_server", "vllm-offline": "offline_backend"}[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture
def make_png() -> Callable[..., bytes]:
    def make(size: tuple[int, int], color: str = "red") -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, color).save(buffer, format="PNG")
        return buffer.getvalue()

    return make
