"""Real vLLM for the integration tests: one server and one in-process engine per session.

Both serve the tiny random-weight Qwen2.5-VL that :func:`judge.testing.build_tiny_model`
builds locally; nothing is downloaded. The server is started through the project's own
``VLLMServerBackend.launch``, so the launcher is under test too (including the torch
repair it gives the server's processes: the test process's own environment has none).

Every process the tests start carries :data:`RUN_MARK` in its environment; when the
session ends (and at exit, if it ends otherwise), every process group other than this
process's own that still holds such a process is killed: servers run in a process group
of their own, so a failed test never leaves a vLLM server running.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import signal
import uuid
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
RUN_MARK = f"THINKING_JUDGE_TEST_RUN={os.getpid()}-{uuid.uuid4().hex}"
"""In the environment of every process this test run starts (inherited by theirs)."""
os.environ[RUN_MARK.split("=", 1)[0]] = RUN_MARK.split("=", 1)[1]


def _marked_processes() -> list[int]:
    """The live processes (other than this one) whose environment carries RUN_MARK."""
    found = []
    mark = RUN_MARK.encode()
    for entry in Path("/proc").iterdir() if Path("/proc/self/environ").exists() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def kill_leftover_processes() -> list[int]:
    """SIGKILL each process group this run started (a server's) that is still alive.

    Processes in this process's own group (helpers of the in-process engine, a
    ``serve`` command) are left alone: a ``serve`` exits once its server is gone.

    Returns:
        The groups killed.
    """
    own_group = os.getpgid(0)
    groups: set[int] = set()
    for pid in _marked_processes():
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    groups.discard(own_group)
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    return sorted(groups)


atexit.register(kill_leftover_processes)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The safety net: after every fixture's own stop, nothing this run started is left."""
    left = kill_leftover_processes()
    if left:
        print(f"\nintegration: killed {len(left)} leftover server process group(s): {left}")


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
    try:
        yield backend
    finally:  # whatever the outcome: its process group, then the safety net
        backend.close()


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
