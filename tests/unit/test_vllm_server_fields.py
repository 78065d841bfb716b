"""VLLMServerBackend sends a constraint under the name the server reads, or not at all."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from backends.base import JudgeRequest
from backends.errors import BackendConnectionError, BackendError
from backends.vllm_launch import stop_process
from backends.vllm_server import VLLMServerBackend, reads_structured_outputs

CHOICE = {"structured_outputs": {"choice": ["0", "1.0"]}}


def request(**kwargs) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": "x"}], **kwargs)


@pytest.mark.parametrize(
    ("version", "reads"),
    [
        ("0.32.0", True),
        ("0.10.2", True),
        ("0.10.2.dev5+gabc", True),
        ("0.11.0rc1", True),
        ("1.0.0", True),
        ("0.10.1.1", False),
        ("0.9.2", False),
        ("0.6.3.post1", False),
        ("v0.8.5", False),
        ("unknown-build", True),
    ],
)
def test_which_versions_read_structured_outputs(version, reads):
    assert reads_structured_outputs(version) is reads


def test_new_server_gets_structured_outputs_and_legacy_fields_translated():
    backend = VLLMServerBackend(vllm_version="0.32.0")
    body = backend.request_body(request(extra=CHOICE))
    assert body["structured_outputs"] == {"choice": ["0", "1.0"]}
    body = backend.request_body(request(extra={"guided_choice": ["0", "1.0"]}))
    assert "guided_choice" not in body
    assert body["structured_outputs"] == {"choice": ["0", "1.0"]}
    backend.close()


def test_old_server_gets_guided_fields():
    backend = VLLMServerBackend(vllm_version="0.9.2")
    body = backend.request_body(request(extra=CHOICE))
    assert "structured_outputs" not in body
    assert body["guided_choice"] == ["0", "1.0"]
    body = backend.request_body(request(extra={"structured_outputs": {"regex": "[01]"}}))
    assert body["guided_regex"] == "[01]"
    with pytest.raises(BackendError, match="no counterpart"):
        backend.request_body(request(extra={"structured_outputs": {"structural_tag": "x"}}))
    backend.close()


def test_sent_sampling_is_the_body_without_model_and_messages():
    backend = VLLMServerBackend(vllm_version="0.9.2", extra_body={"top_k": 1})
    sent = backend.sent_sampling(request(extra=CHOICE, continue_final_message=True))
    assert sent == {
        "max_tokens": 16,
        "temperature": 0.0,
        "repetition_penalty": 1.0,
        "continue_final_message": True,
        "add_generation_prompt": False,
        "top_k": 1,
        "guided_choice": ["0", "1.0"],
    }
    backend.close()


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_unknown_version_refuses_constrained_requests_only():
    backend = VLLMServerBackend(dead_url(), max_retries=0, timeout=5)
    results = backend.generate([request(extra=CHOICE), request()])
    assert isinstance(results[0], BackendError)
    assert "refusing to send a constraint" in str(results[0])
    assert "vllm_version=" in str(results[0])
    # The unconstrained request was sent (and met the dead port).
    assert isinstance(results[1], BackendConnectionError)
    backend.close()


def test_old_server_refuses_a_constraint_it_has_no_field_for():
    backend = VLLMServerBackend(dead_url(), vllm_version="0.9.2", max_retries=0, timeout=5)
    odd = request(extra={"structured_outputs": {"structural_tag": "x"}})
    results = backend.generate([odd, request(extra=CHOICE)])
    assert "no counterpart" in str(results[0])
    assert isinstance(results[1], BackendConnectionError)  # sent, as guided_choice
    backend.close()


def test_continuation_fields_are_sent_only_for_a_continuation():
    from backends.openai_compatible import OpenAICompatibleBackend

    generic = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")
    assert generic.supports_continuation is False
    assert OpenAICompatibleBackend(
        "http://127.0.0.1:9/v1", "m", supports_continuation=True
    ).supports_continuation
    body = generic.request_body(request(continue_final_message=True))
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert "continue_final_message" not in generic.request_body(request())
    assert VLLMServerBackend().supports_continuation
    generic.close()


def test_a_launched_server_gets_the_torch_repair_and_the_callers_environment(monkeypatch):
    import os

    from backends._torch_compat import SITE_DIR
    from backends.vllm_launch import server_environment

    monkeypatch.setenv("THINKING_JUDGE_TEST_MARK", "inherited")
    env = server_environment({"PYTHONPATH": "/somewhere", "EXTRA": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(SITE_DIR), "/somewhere"]
    assert env["EXTRA"] == "1"
    assert env["THINKING_JUDGE_TEST_MARK"] == "inherited"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/v1"),
        ("0.0.0.0", "http://127.0.0.1:8000/v1"),
        ("", "http://127.0.0.1:8000/v1"),
        ("::", "http://[::1]:8000/v1"),
        ("example.org", "http://example.org:8000/v1"),
    ],
)
def test_a_launched_server_is_reached_on_loopback_when_it_serves_everywhere(host, url):
    from backends.vllm_launch import api_root

    assert api_root(host, 8000) == url


def test_the_server_command_puts_the_callers_arguments_after_the_names():
    from backends.vllm_launch import server_command

    assert server_command(
        "py",
        "vllm.entrypoints.openai.api_server",
        model="m",
        host="h",
        port=1,
        served_model_name="n",
        server_args=["--dtype", "bfloat16"],
        options={"enforce_eager": True},
    ) == [
        "py",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "h",
        "--port",
        "1",
        "--model",
        "m",
        "--served-model-name",
        "n",
        "--dtype",
        "bfloat16",
        "--enforce-eager",
    ]


# ------------------------------------------------------------------- stopping a server's processes

SERVER_WITH_CHILDREN = """
import signal, subprocess, sys, time
sleep = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]
same_group = subprocess.Popen(sleep)
escaped = subprocess.Popen(sleep, start_new_session=True)  # left the group
with open("children", "w") as out:
    out.write(f"{same_group.pid} {escaped.pid}")
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_stopping_a_server_stops_its_group_and_the_children_that_left_it(tmp_path):
    pytest.importorskip("psutil")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_CHILDREN], cwd=tmp_path, start_new_session=True
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "children").exists() or not (tmp_path / "children").read_text():
            assert time.monotonic() < deadline, "the test server did not start its children"
            time.sleep(0.05)
        children = [int(pid) for pid in (tmp_path / "children").read_text().split()]
        time.sleep(0.2)  # the children set their SIGTERM handling
        stop_process(process, 1.0)  # they ignore SIGTERM: SIGKILL after the grace period
        assert process.returncode is not None
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if not _gone(pid)] == []
    finally:
        for pid in [process.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
