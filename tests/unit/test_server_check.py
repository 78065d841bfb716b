"""``thinking-judge check`` against a small in-process fake host: each fault and its fix.

The fake host is an aiohttp app in a thread of its own, speaking just enough of vLLM's
OpenAI-compatible API: ``GET /v1/models``, ``GET /version``, ``POST /v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from threaded_host import ThreadedHost

from judge.cli.check import acheck
from judge.cli.common import BASE_URL_ENV
from judge.cli.main import main
from judge.failures import ExitStatus


class FakeVLLM(ThreadedHost):
    """A fake vLLM host whose behaviour each test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.models = ["thinking-reward-model"]
        self.api_key: str | None = None
        self.answer = "0.7"
        self.prefix = "/v1"  # where the API lives
        self.chat_status = 200
        self.chats: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/{tail:.*}", self.get)
        app.router.add_post("/{tail:.*}", self.post)
        return app

    def authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == (
            f"Bearer {self.api_key}"
        )

    async def get(self, request: web.Request) -> web.Response:
        if request.path == "/version":
            return web.json_response({"version": "0.32.0"})
        if request.path == "/health":
            return web.Response()
        if request.path != f"{self.prefix}/models":
            return web.json_response({"detail": "Not Found"}, status=404)
        if not self.authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return web.json_response(
            {"object": "list", "data": [{"id": name, "object": "model"} for name in self.models]}
        )

    async def post(self, request: web.Request) -> web.Response:
        if request.path != f"{self.prefix}/chat/completions":
            return web.json_response({"detail": "Not Found"}, status=404)
        if not self.authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = await request.json()
        self.chats.append(body)
        if body["model"] not in self.models:
            return web.json_response(
                {"object": "error", "message": f"The model `{body['model']}` does not exist."},
                status=404,
            )
        if self.chat_status != 200:
            return web.json_response(
                {"object": "error", "message": "At most 0 image(s) may be provided in one prompt."},
                status=self.chat_status,
            )
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 321, "completion_tokens": 3, "total_tokens": 324},
            }
        )


@pytest.fixture
def host() -> Iterator[FakeVLLM]:
    fake = FakeVLLM()
    fake.start()
    yield fake
    fake.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["check", *args])
    return status, capsys.readouterr().out


def test_a_ready_server_passes_every_step(host, capsys, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.OK, out
    assert "ok    reachable" in out
    assert "(vLLM 0.32.0)" in out
    assert "ok    model: serves 'thinking-reward-model'" in out
    assert "ok    judgment: score 0.7" in out
    assert "FAIL" not in out
    assert f"ready: thinking-judge score --base-url {host.root}/v1" in out
    # the judgment is a real one: the card's prompt with the bundled chart image
    (chat,) = host.chats
    parts = chat["messages"][1]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url"]


def test_the_base_url_may_come_from_the_environment(host, capsys, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, f"{host.root}/v1")
    status, out = run_check(capsys)
    assert status == ExitStatus.OK, out


def test_an_endpoint_url_is_corrected_and_said_so(host, capsys):
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1/chat/completions")
    assert status == ExitStatus.USAGE
    assert "names the /chat/completions endpoint, not the API root" in out
    assert f"fix: the judge adds /chat/completions itself: --base-url {host.root}/v1" in out
    assert "ok    judgment" in out  # the rest is checked with the corrected URL


def test_a_url_without_v1_is_corrected_and_said_so(host, capsys):
    status, out = run_check(capsys, "--base-url", host.root)
    assert status == ExitStatus.USAGE
    assert f"fix: the base URL ends in /v1: --base-url {host.root}/v1" in out
    assert "ok    model" in out
    assert "ok    judgment" in out


def test_a_wrong_model_name_lists_the_served_ones(host, capsys):
    host.models = ["SophiaVL-R1-Thinking-Reward-Model-3B", "other"]
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.UNAVAILABLE
    assert (
        "FAIL  model: the server serves 'SophiaVL-R1-Thinking-Reward-Model-3B', 'other', "
        "not 'thinking-reward-model'"
    ) in out
    assert "--model SophiaVL-R1-Thinking-Reward-Model-3B" in out
    assert "--served-model-name thinking-reward-model" in out
    assert host.chats == []  # no judgment is sent to a model that is not there


def test_the_model_flag_names_another_served_model(host, capsys):
    host.models = ["my-judge"]
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1", "--model", "my-judge")
    assert status == ExitStatus.OK, out


def test_a_401_asks_for_the_api_key(host, capsys, monkeypatch):
    host.api_key = "sekret-key-123"
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.UNAVAILABLE
    assert "HTTP 401" in out
    assert "fix: set VLLM_API_KEY" in out

    monkeypatch.setenv("VLLM_API_KEY", "sekret-key-123")
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.OK, out
    assert "sekret" not in out


def test_the_api_key_may_come_from_another_variable(host, capsys, monkeypatch):
    host.api_key = "k2"
    monkeypatch.setenv("MY_KEY", "k2")
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1", "--api-key-env", "MY_KEY")
    assert status == ExitStatus.OK, out


def test_nothing_listening(capsys):
    port = free_port()
    status, out = run_check(capsys, "--base-url", f"http://127.0.0.1:{port}/v1")
    assert status == ExitStatus.UNAVAILABLE
    assert "FAIL  reachable: cannot connect" in out
    assert f"thinking-judge serve --port {port}" in out


def test_port_80_is_pointed_out():
    # Port 80 needs root to listen on: nothing of the test's listens there. Rather than
    # rely on that, the check is run with connections to port 80 refused outright.
    report = asyncio.run(_refused_check("http://127.0.0.1/v1"))
    assert report.exit_status == ExitStatus.UNAVAILABLE
    fix = report.steps[-1].fix or ""
    assert "nothing answers on port 80" in fix
    assert "--base-url http://127.0.0.1:8000/v1" in fix


async def _refused_check(url: str) -> Any:
    from unittest import mock

    import aiohttp

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise aiohttp.ClientConnectionError("Connect call failed ('127.0.0.1', 80)")

    with mock.patch.object(aiohttp.ClientSession, "get", refuse):
        return await acheck(url)


def test_a_judgment_that_is_not_a_score(host, capsys):
    host.answer = "The reasoning is fine."
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.FAILED
    assert "FAIL  judgment:" in out
    assert "The reasoning is fine." in out
    assert "is the served model the thinking reward model?" in out


def test_a_refused_judgment_says_why(host, capsys):
    host.chat_status = 400
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1")
    assert status == ExitStatus.FAILED
    assert "At most 0 image(s)" in out
    assert "--limit-mm-per-prompt" in out


def test_constrained_sends_the_grid(host, capsys):
    status, out = run_check(capsys, "--base-url", f"{host.root}/v1", "--constrained")
    assert status == ExitStatus.OK, out
    (chat,) = host.chats
    assert "0.7" in chat["structured_outputs"]["choice"]


@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "ftp://host/v1", "not a url"])
def test_not_an_http_url(url, capsys):
    status, out = run_check(capsys, "--base-url", url)
    assert status == ExitStatus.USAGE
    assert "is not an http(s) URL" in out


def test_check_needs_a_url(capsys, monkeypatch):
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert main(["check"]) == ExitStatus.USAGE
    assert "check takes one --base-url" in capsys.readouterr().err


def test_serve_without_vllm_says_how_to_install_it(capsys, monkeypatch):
    import judge.cli.serve

    monkeypatch.setattr(judge.cli.serve, "vllm_installed", lambda: False)
    assert main(["serve"]) == ExitStatus.UNAVAILABLE
    err = capsys.readouterr().err
    assert "vLLM is not installed" in err
    assert "thinking-reward-judge[cpu]" in err


def test_serve_passes_the_model_card_settings(monkeypatch, capsys, tmp_path):
    """The card's flags reach ``launch``; arguments after '--' go to vLLM as given."""
    import judge.cli.serve
    from backends.errors import BackendUnavailableError

    seen: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")  # a model folder, as far as serve checks

    def launch(model: str, **kwargs: Any) -> Any:
        seen.update(kwargs, model=model)
        raise BackendUnavailableError("the vLLM server exited with code 1; the end of its log")

    monkeypatch.setattr(judge.cli.serve, "vllm_installed", lambda: True)
    monkeypatch.setattr(judge.cli.serve.VLLMServerBackend, "launch", launch)
    status = main(["serve", "--model", "m", "--port", "9001", "--", "--dtype", "bfloat16"])
    assert status == ExitStatus.UNAVAILABLE
    assert seen["model"] == "m"
    assert seen["port"] == 9001
    assert seen["served_model_name"] == "thinking-reward-model"
    assert seen["max_model_len"] == 32768
    assert seen["max_num_seqs"] == 64
    assert "tensor_parallel_size" not in seen  # one GPU unless asked
    assert seen["server_args"] == ["--dtype", "bfloat16"]
    assert "exited with code 1" in capsys.readouterr().err

    seen.clear()
    main(["serve", "--model", "m", "--tensor-parallel-size", "2"])
    assert seen["tensor_parallel_size"] == 2

    seen.clear()
    main(
        [
            "serve",
            "--model",
            "m",
            "--allowed-media-domains",
            "images.example.com",
            "cdn.example.org",
        ]
    )
    assert seen["server_args"] == [
        "--allowed-media-domains",
        "images.example.com",
        "cdn.example.org",
    ]


SERVE_WITH_A_FAKE_SERVER = """
import subprocess, sys
import judge.cli.serve as serve
from backends.vllm_launch import stop_process

class Backend:
    base_url = "http://127.0.0.1:9/v1"
    log_path = "server.log"

    def __init__(self):
        self.server_process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
        )
        with open("server.pid", "w") as pid:
            pid.write(str(self.server_process.pid))

    def close(self):
        stop_process(self.server_process, 5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

import os
os.makedirs("m")  # the current folder is the test's own
with open(os.path.join("m", "config.json"), "w") as config:
    config.write("{}")
serve.vllm_installed = lambda: True
serve.VLLMServerBackend.launch = lambda *args, **kwargs: Backend()
sys.exit(serve.serve("m"))
"""


# As a shell's `serve &` does: the signals ignored, then exec (which keeps them ignored).
# SIGHUP is set to its default whatever this test run inherited: under `nohup` it is
# ignored, and serve rightly keeps it so (test_serve_keeps_sighup_ignored_under_nohup).
IGNORING_STOP_SIGNALS = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "signal.signal(signal.SIGHUP, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])"
)


@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_serve_stops_its_server_on_a_signal_even_when_started_with_it_ignored(tmp_path, sent):
    """A background job inherits SIGINT ignored: serve still stops, and its server too."""
    process = subprocess.Popen(
        [sys.executable, "-c", IGNORING_STOP_SIGNALS, SERVE_WITH_A_FAKE_SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().strip() == b"http://127.0.0.1:9/v1"  # ready
        server = int((tmp_path / "server.pid").read_text())
        process.send_signal(getattr(signal, sent))
        process.send_signal(getattr(signal, sent))  # a second one cannot cut the stop short
        assert process.wait(timeout=60) == ExitStatus.OK
        assert b"thinking-judge serve: stopped" in process.stderr.read()
        with pytest.raises(ProcessLookupError):
            os.kill(server, 0)  # stopped and reaped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serve_keeps_sighup_ignored_under_nohup():
    from judge.cli.serve import stop_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGINT))
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
