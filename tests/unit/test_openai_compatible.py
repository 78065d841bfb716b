"""OpenAICompatibleBackend and VLLMServerBackend against an in-process fake host.

The fake host is an aiohttp.web app on 127.0.0.1 (random port) in its own thread, so
sync and async callers alike can reach it. Each request takes the next fault planned
for its text (``server.plan``), else the next scripted fault (``server.faults``), or is
answered normally: the reply's content echoes the last message's text. A host can also
be ``down`` (503 to everything, health probes included, until ``recover_after_probes``
probes) or killed after a number of requests (``kill_after``: in-flight requests are
reset, new connections refused). Nothing here waits on wall-clock timing: the backoff
is patched out or tiny, and the only timeouts are far shorter than the delays they cut.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fake_clock import FakeClock  # the same injected clock as the pool's own tests
from pydantic import SecretStr
from threaded_host import ThreadedHost

from backends.base import Completion, JudgeRequest
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from backends.openai_compatible import (
    OpenAICompatibleBackend,
    backoff_delay,
    parse_retry_after,
    scrub,
)
from backends.vllm_server import VLLMServerBackend

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

KEY = "sk-test-0123456789-secret"
IMAGE_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    * 4
)
IMAGE_URL = f"data:image/png;base64,{IMAGE_B64}"
PROMPT_MARKER = "PROMPT-MARKER-do-not-echo"
# What vLLM 0.32 answers (HTTP 400) for a prompt longer than --max-model-len: the
# renderer's check, and the engine's input processor's.
VLLM_CONTEXT_LENGTH = (
    "This model's maximum context length is 4096 tokens. However, your prompt contains "
    "5012 input tokens, which exceeds this limit even without any output tokens. Please "
    "reduce the length of the input prompt. (parameter=input_tokens, value=5012)"
)
VLLM_MODEL_LENGTH = (
    "The decoder prompt (length 5012) is longer than the maximum model length of 4096. "
    "Make sure that `max_model_len` is no smaller than the number of text tokens plus "
    "multimodal tokens."
)
REPO = Path(__file__).resolve().parents[2]


def request(text: str = "0.7", **kwargs: Any) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], **kwargs)


def image_request() -> JudgeRequest:
    content = [
        {"type": "text", "text": f"{PROMPT_MARKER} judge this"},
        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
    ]
    return JudgeRequest(messages=[{"role": "user", "content": content}])


# --------------------------------------------------------------------------- fake host


class FakeChatServer(ThreadedHost):
    """An OpenAI-compatible chat host with faults on demand, in a thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.faults: deque[str] = deque()
        self.plan: dict[str, list[str]] = {}
        self.seen: list[dict[str, Any]] = []
        self.probes: list[str] = []
        self.down = False
        self.recover_after_probes: int | None = None
        self.kill_after: int | None = None
        self.killed = False
        self.hold = False  # normal answers wait for release_all()
        self.transports: set[Any] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate_size = 0
        self.gate = self._on_loop(asyncio.Event) if self.thread.is_alive() else None
        self.release = self._on_loop(asyncio.Event) if self.thread.is_alive() else None
        self.delays: dict[str, float] = {}

    def _on_loop(self, fn: Any) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self.dead])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/version", self.version)
        return app

    def start(self) -> None:
        super().start()
        self.reset()

    def stop(self) -> None:
        self.release_all()
        super().stop()

    def release_all(self) -> None:
        if self.release is not None:
            self.loop.call_soon_threadsafe(self.release.set)

    @property
    def count(self) -> int:
        return len(self.seen)

    @web.middleware
    async def dead(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.killed:  # a request on a kept-alive connection to a dead host
            request.transport.abort()  # type: ignore[union-attr]
            return web.Response(text="never sent")
        return await handler(request)

    def kill(self) -> None:
        """Die as a crashed server does: no new connections, in-flight ones reset."""
        self.killed = True
        self.site._server.close()  # type: ignore[union-attr]
        for transport in self.transports:
            transport.abort()

    async def probe(self, request: web.Request) -> web.Response:
        self.probes.append(request.path)
        if self.down and self.recover_after_probes is not None:
            self.down = len(self.probes) < self.recover_after_probes
        return web.Response(status=503 if self.down else 200)

    async def health(self, request: web.Request) -> web.Response:
        return await self.probe(request)

    async def models(self, request: web.Request) -> web.Response:
        return await self.probe(request)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.32.0-fake"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append({"headers": dict(request.headers), "body": body})
        planned = self.plan.get(last_text(body))
        fault = planned.pop(0) if planned else self.faults.popleft() if self.faults else "ok"
        if self.down:
            fault = "503"
        self.transports.add(request.transport)
        if self.kill_after is not None and self.count >= self.kill_after:
            self.kill()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate_size and not self.gate.is_set():
                if self.in_flight >= self.gate_size:
                    self.gate.set()
                else:
                    await asyncio.wait_for(self.gate.wait(), 10)
            return await self.answer(request, body, fault)
        finally:
            self.in_flight -= 1
            self.transports.discard(request.transport)

    async def answer(self, request: web.Request, body: dict[str, Any], fault: str) -> Any:
        kind, _, arg = fault.partition(":")
        if kind == "ok":
            text = last_text(body)
            await asyncio.sleep(self.delays.get(text, 0.0))
            if self.hold:
                await asyncio.wait_for(self.release.wait(), 10)
            return web.json_response(completion(body, text))
        if kind == "ctx400":
            error = {"message": VLLM_CONTEXT_LENGTH, "type": "BadRequestError", "code": 400}
            return web.json_response({"error": error}, status=400)
        if kind == "ctx400-engine":  # vLLM's older flat error shape
            return web.json_response(
                {"object": "error", "message": VLLM_MODEL_LENGTH, "code": 400}, status=400
            )
        if kind == "ctx400-openai":
            error = {"message": "Please shorten it.", "code": "context_length_exceeded"}
            return web.json_response({"error": error}, status=400)
        if kind.isdigit():
            headers = {"Retry-After": arg} if arg else {}
            error = {"message": f"fault {kind}", "type": "BadRequestError", "code": int(kind)}
            return web.json_response({"error": error}, status=int(kind), headers=headers)
        if kind == "429-date":
            when = email.utils.formatdate(time.time() + float(arg), usegmt=True)
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": when}
            )
        if kind == "echo400":  # vLLM-like validation error echoing what it was sent
            message = (
                f"1 validation error: {json.dumps(body)} auth={request.headers['Authorization']}"
            )
            return web.json_response({"object": "error", "message": message}, status=400)
        if kind == "leak400":  # a message that echoes base64 and the key before any 'input'
            message = f"bad image {IMAGE_URL} raw {IMAGE_B64} key {KEY} " + "x" * 1000
            return web.json_response({"error": {"message": message}}, status=400)
        if kind == "reset":
            request.transport.abort()  # type: ignore[union-attr]
            await asyncio.sleep(0)
            return web.Response(text="never sent")
        if kind == "short":  # Content-Length promises more than is sent
            response = web.StreamResponse(
                status=200, headers={"Content-Type": "application/json", "Content-Length": "999"}
            )
            await response.prepare(request)
            await response.write(b'{"choices": [{"mess')
            request.transport.close()  # type: ignore[union-attr]
            return response
        if kind == "malformed":
            return web.Response(
                body=b'{"choices": [{"message": {"content": "0.',
                status=200,
                content_type="application/json",
            )
        if kind == "html":
            return web.Response(text="<html>gateway</html>", content_type="text/html")
        if kind == "nochoices":
            return web.json_response({"object": "chat.completion", "choices": []})
        if kind == "error200":
            return web.json_response({"error": {"message": f"oops {IMAGE_URL}"}})
        if kind == "infinity":  # not strict JSON; the stdlib parser takes it
            data = completion({**body, "logprobs": True, "top_logprobs": 2}, "7")
            raw = json.dumps(data).replace("-0.5", "-Infinity")
            return web.Response(text=raw, content_type="application/json")
        if kind == "huge":  # a valid completion padded past any reasonable size
            raw = json.dumps(completion(body, "1"))[:-1] + ', "pad": "' + "x" * int(arg) + '"}'
            return web.Response(text=raw, content_type="application/json")
        if kind == "slow":
            await asyncio.wait_for(self.release.wait(), 10)
            return web.json_response(completion(body, "late"))
        raise AssertionError(f"unknown fault {fault}")


def last_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return next(part["text"] for part in content if part["type"] == "text")


def completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
        "logprobs": None,
    }
    if body.get("logprobs"):
        top = [{"token": "x", "logprob": -2.0}, {"token": "y", "logprob": -0.5}]  # not sorted
        choice["logprobs"] = {
            "content": [
                {"token": ch, "logprob": -0.1, "bytes": [ord(ch)], "top_logprobs": top}
                for ch in text
            ]
        }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": len(text), "total_tokens": 0},
    }


@pytest.fixture(scope="module")
def fake_host():
    host = FakeChatServer()
    host.start()
    yield host
    host.stop()


@pytest.fixture
def server(fake_host: FakeChatServer):
    fake_host.reset()
    yield fake_host
    fake_host.release_all()


@pytest.fixture
def make_backend(server: FakeChatServer):
    made: list[OpenAICompatibleBackend] = []

    def make(cls: type[OpenAICompatibleBackend] = OpenAICompatibleBackend, **kwargs: Any):
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("backoff_base", 0.001)
        kwargs.setdefault("backoff_max", 0.002)
        kwargs.setdefault("timeout", 10.0)
        backend = cls(kwargs.pop("base_url", server.url), kwargs.pop("model", "judge"), **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# --------------------------------------------------------------------------- happy path


async def test_completion_is_parsed(server, make_backend):
    backend = make_backend()
    [result] = await backend.agenerate([request("0.7", top_logprobs=2)])
    assert isinstance(result, Completion)
    assert result.text == "0.7"
    assert result.finish_reason == "stop"
    assert (result.prompt_tokens, result.completion_tokens) == (11, 3)
    assert result.model == "judge"
    assert result.attempts == 1
    assert result.latency_s is not None
    assert result.latency_s >= 0
    assert result.logprobs is not None
    assert [t.token for t in result.logprobs] == ["0", ".", "7"]
    assert result.logprobs[0].logprob == pytest.approx(-0.1)
    assert result.logprobs[0].top == (("y", -0.5), ("x", -2.0))  # best first


async def test_request_body_and_headers(server, make_backend):
    backend = make_backend(extra_body={"seed": 1, "top_k": 5}, headers={"X-Team": "eval"})
    await backend.agenerate([request("a", max_tokens=7, extra={"top_k": 9})])
    await backend.agenerate([request("b", top_logprobs=3, repetition_penalty=None)])
    first, second = (seen["body"] for seen in server.seen)
    assert first == {
        "model": "judge",
        "messages": [{"role": "user", "content": "a"}],
        "max_tokens": 7,
        "temperature": 0.0,
        "seed": 1,
        "top_k": 9,  # the request's own extra wins over extra_body
    }
    assert second["logprobs"] is True
    assert second["top_logprobs"] == 3
    headers = server.seen[0]["headers"]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Team"] == "eval"


async def test_repetition_penalty_only_where_supported(server, make_backend):
    await make_backend().agenerate([request()])
    await make_backend(supports_repetition_penalty=True).agenerate([request()])
    await make_backend(cls=VLLMServerBackend).agenerate([request(repetition_penalty=1.0)])
    await make_backend(cls=VLLMServerBackend).agenerate([request(repetition_penalty=None)])
    bodies = [seen["body"] for seen in server.seen]
    assert "repetition_penalty" not in bodies[0]
    assert bodies[1]["repetition_penalty"] == 1.0
    assert bodies[2]["repetition_penalty"] == 1.0
    assert "repetition_penalty" not in bodies[3]


async def test_api_key_from_environment(server, make_backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-openai")
    monkeypatch.setenv("MY_KEY", "sk-from-env-mine")
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    await make_backend(api_key=None).agenerate([request()])
    await make_backend(api_key=None, api_key_env="MY_KEY").agenerate([request()])
    await make_backend(api_key=SecretStr("sk-secret-str")).agenerate([request()])
    await make_backend(cls=VLLMServerBackend, api_key=None).agenerate([request()])
    auth = [seen["headers"].get("Authorization") for seen in server.seen]
    assert auth == [
        "Bearer sk-from-env-openai",
        "Bearer sk-from-env-mine",
        "Bearer sk-secret-str",
        None,  # a vLLM server reads VLLM_API_KEY, never an OpenAI key
    ]


async def test_empty_batch_and_bad_concurrency(make_backend):
    backend = make_backend()
    assert await backend.agenerate([]) == []
    with pytest.raises(ValueError, match="max_concurrency"):
        await backend.agenerate([request()], max_concurrency=0)


def test_constructor_validates():
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleBackend("ftp://host/v1", "m", api_key="k")
    with pytest.raises(ValueError, match="positive"):
        OpenAICompatibleBackend("http://host/v1", "m", api_key="k", timeout=0)
    with pytest.raises(ValueError, match="no api_key"):
        OpenAICompatibleBackend("http://user:pw@host/v1", "m", api_key="k")


async def test_unencodable_request_fails_alone(server, make_backend):
    bad = JudgeRequest(messages=[{"role": "user", "content": object()}])
    results = await make_backend().agenerate([request("1"), bad, request("2")])
    assert [getattr(r, "text", None) for r in results] == ["1", None, "2"]
    assert type(results[1]) is BackendError
    assert results[1].attempts == 0
    assert server.count == 2


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", ["500", "502", "503"])
async def test_5xx_is_retried(server, make_backend, status):
    server.faults.extend([status, status])
    [result] = await make_backend(max_retries=3).agenerate([request()])
    assert isinstance(result, Completion)
    assert result.attempts == 3
    assert server.count == 3


async def test_retries_are_bounded(server, make_backend):
    server.faults.extend(["503"] * 10)
    [result] = await make_backend(max_retries=2).agenerate([request()])
    assert isinstance(result, BackendHTTPError)
    assert result.status == 503
    assert result.retryable
    assert result.attempts == 3
    assert server.count == 3
    assert "fault 503" in str(result)
    assert "(after 3 attempts)" in str(result)


async def test_no_retries_when_max_retries_is_zero(server, make_backend):
    server.faults.append("500")
    [result] = await make_backend(max_retries=0).agenerate([request()])
    assert isinstance(result, BackendHTTPError)
    assert result.attempts == 1
    assert server.count == 1


@pytest.mark.parametrize("status", ["400", "401", "403", "404", "422"])
async def test_other_4xx_are_not_retried(server, make_backend, status):
    server.faults.extend([status, status])
    [result] = await make_backend().agenerate([request()])
    assert isinstance(result, BackendHTTPError)
    assert result.status == int(status)
    assert not result.retryable
    assert result.attempts == 1
    assert server.count == 1
    assert f"HTTP {status}" in str(result)
    assert f"fault {status}" in str(result)


async def test_429_honours_retry_after(server, make_backend, monkeypatch):
    backend = make_backend(backoff_max=30.0, max_retries=4)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(backend, "_sleep", record)
    server.faults.extend(["429:7", "429:120", "429-date:5", "429"])
    [result] = await backend.agenerate([request()])
    assert isinstance(result, Completion)
    assert result.attempts == 5
    assert waits[0] == 7.0
    assert waits[1] == 30.0  # capped at backoff_max
    assert 2.0 <= waits[2] <= 5.0  # an HTTP date, second resolution
    assert 0.0 <= waits[3] <= 0.001 * 2**3  # no header: full-jitter backoff (base 0.001)


async def test_connection_reset_is_retried(server, make_backend):
    server.faults.append("reset")
    [result] = await make_backend().agenerate([request()])
    assert isinstance(result, Completion)
    assert result.attempts == 2


async def test_connection_failures_are_typed(server, make_backend):
    server.faults.extend(["reset"] * 3)
    [result] = await make_backend(max_retries=2).agenerate([request()])
    assert isinstance(result, BackendConnectionError)
    assert result.retryable
    assert result.attempts == 3


async def test_unreachable_host(make_backend):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    [result] = await backend.agenerate([request()])
    assert isinstance(result, BackendConnectionError)
    assert result.attempts == 2
    assert f"127.0.0.1:{port}" in str(result)


@pytest.mark.parametrize("fault", ["short", "malformed", "html", "nochoices", "error200"])
async def test_unusable_replies_are_retried(server, make_backend, fault):
    server.faults.append(fault)
    [result] = await make_backend().agenerate([request()])
    assert isinstance(result, Completion)
    assert result.attempts == 2

    server.faults.extend([fault] * 2)
    [result] = await make_backend(max_retries=1).agenerate([request()])
    assert isinstance(result, BackendResponseError)
    assert result.retryable
    assert result.attempts == 2
    assert "base64," not in str(result)


async def test_a_reply_past_max_reply_bytes_fails_alone_and_is_not_retried(server, make_backend):
    backend = make_backend(max_reply_bytes=100_000)
    server.plan = {"big": [f"huge:{1 << 20}"], "small": ["huge:1000"]}
    results = await backend.agenerate([request("big"), request("small"), request("0.5")])
    assert isinstance(results[0], BackendResponseError)
    assert not results[0].retryable
    assert results[0].attempts == 1
    assert "longer than 100000 bytes" in str(results[0])
    assert [r.text for r in results[1:]] == ["1", "0.5"]  # type: ignore[union-attr]
    assert server.count == 3


async def test_non_strict_json_numbers_are_accepted(server, make_backend):
    server.faults.append("infinity")
    [result] = await make_backend().agenerate([request()])
    assert isinstance(result, Completion)
    assert result.logprobs is not None
    assert result.logprobs[0].top[-1] == ("y", float("-inf"))


async def test_timeout_is_retried_then_reported(server, make_backend):
    server.faults.extend(["slow", "slow"])
    [result] = await make_backend(timeout=0.3, max_retries=1).agenerate([request()])
    assert isinstance(result, BackendTimeoutError)
    assert result.retryable
    assert result.attempts == 2
    assert server.count == 2


def test_backoff_is_full_jitter_and_capped():
    assert backoff_delay(1, base=0.5, cap=20, rand=lambda: 0.999999) == pytest.approx(0.5, 1e-3)
    assert backoff_delay(3, base=0.5, cap=20, rand=lambda: 0.5) == pytest.approx(1.0)
    assert backoff_delay(10, base=0.5, cap=20, rand=lambda: 0.999999) == pytest.approx(20, 1e-3)
    assert backoff_delay(500, base=0.5, cap=20, rand=lambda: 0.5) == pytest.approx(10)
    assert backoff_delay(1, base=0.5, cap=20, rand=lambda: 0.0) == 0.0
    assert backoff_delay(1, base=0.5, cap=20, retry_after=3.0) == 3.0
    assert backoff_delay(1, base=0.5, cap=2, retry_after=3.0) == 2.0


def test_parse_retry_after():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": "12"}) == 12.0
    assert parse_retry_after({"Retry-After": " 1.5 "}) == 1.5
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now - 30)}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "-4"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "nan"}) is None
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({}) is None


# --------------------------------------------------------------------------- concurrency


async def test_order_is_kept_under_concurrency(server, make_backend):
    texts = [f"item-{i}" for i in range(60)]
    server.delays = {text: (i % 7) * 0.002 for i, text in enumerate(texts[::-1])}
    server.faults.extend(["503", "ok", "reset", "ok", "malformed"])
    results = await make_backend().agenerate([request(t) for t in texts], max_concurrency=16)
    assert [r.text for r in results] == texts  # type: ignore[union-attr]


@pytest.mark.parametrize(("limit", "passed"), [(5, 5), (3, None), (1, 1)])
async def test_max_concurrency_bounds_in_flight(server, make_backend, limit, passed):
    server.gate_size = limit  # hold the first wave until `limit` requests are in flight
    backend = make_backend(max_concurrency=3)
    results = await backend.agenerate([request(str(i)) for i in range(20)], max_concurrency=passed)
    assert all(isinstance(r, Completion) for r in results)
    assert server.max_in_flight == limit


async def test_concurrent_calls_share_one_session(server, make_backend):
    backend = make_backend()
    batches = await asyncio.gather(
        *(backend.agenerate([request(f"{b}-{i}") for i in range(5)]) for b in range(4))
    )
    assert [[r.text for r in batch] for batch in batches] == [  # type: ignore[union-attr]
        [f"{b}-{i}" for i in range(5)] for b in range(4)
    ]
    assert len(backend.transport.sessions) == 1


# --------------------------------------------------------------------------- secrets


async def test_errors_never_show_key_body_or_base64(server, make_backend):
    backend = make_backend(max_retries=0)
    server.faults.extend(["echo400", "leak400", "error200"])
    results = await backend.agenerate(
        [image_request(), image_request(), image_request()], max_concurrency=1
    )
    for error in results:
        assert isinstance(error, BackendError)
        for text in (str(error), repr(error)):
            assert KEY not in text
            assert IMAGE_B64[:40] not in text
            assert "base64," not in text
            assert PROMPT_MARKER not in text
            assert len(text) < 500
    assert results[0].status == 400
    assert results[0].attempts == 1
    assert "[request omitted]" in str(results[0])
    assert "[request omitted]" not in str(results[1])  # nothing to cut before
    assert "***" in str(results[1])
    assert "[base64 omitted]" in str(results[1])


def test_repr_and_describe_hide_credentials(server):
    backend = OpenAICompatibleBackend(
        "http://alice:hunter2-password@127.0.0.1:9/v1?api-key=sk-query-secret", "m"
    )
    also = VLLMServerBackend("http://127.0.0.1:9/v1", api_key=KEY)
    for b in (backend, also):
        for text in (repr(b), str(b), json.dumps(b.describe())):
            assert "hunter2" not in text
            assert "sk-query-secret" not in text
            assert KEY not in text
    assert backend.describe() == {
        "backend": "openai-compatible",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
    }
    assert (
        repr(also)
        == "VLLMServerBackend(model='thinking-reward-model', base_url='http://127.0.0.1:9/v1')"
    )
    [error] = backend.generate([request()])
    assert isinstance(error, BackendConnectionError)
    assert "hunter2" not in str(error)
    assert "sk-query-secret" not in str(error)
    backend.close()
    also.close()


async def test_basic_auth_from_url(server, make_backend):
    url = server.url.replace("http://", "http://alice:hunter2-password@")
    await make_backend(base_url=url, api_key=None).agenerate([request()])
    assert server.seen[0]["headers"]["Authorization"].startswith("Basic ")


def test_scrub():
    text = f"key {KEY} img {IMAGE_URL} tail"
    assert scrub(text, [KEY]) == "key *** img data:[base64 omitted] tail"
    long = scrub("word " * 300)
    assert long.endswith("\u2026")
    assert len(long) == 300
    assert scrub("x" * 1000) == "[base64 omitted]"
    assert scrub(f"could not parse {PROMPT_MARKER} at 3", cut_at=[PROMPT_MARKER]) == (
        "could not parse [request omitted]"
    )
    assert scrub("bad request; {'input': {'messages': 'secret prompt'}}") == (
        "bad request; {[request omitted]"
    )
    assert scrub('{"input": "prompt"}') == "{[request omitted]"
    assert scrub('got {"messages": [{"role": "user"}]}') == "got {[request omitted]"


# --------------------------------------------------------------------------- sync use


def test_generate_from_sync_code(server, make_backend):
    backend = make_backend()
    results = backend.generate([request("1"), request("2")])
    assert [r.text for r in results] == ["1", "2"]  # type: ignore[union-attr]
    assert backend.generate([request("3")])[0].text == "3"  # type: ignore[union-attr]
    backend.close()
    assert not backend._sync_runner.started
    assert backend.generate([request("4")])[0].text == "4"  # usable again  # type: ignore[union-attr]


async def test_generate_inside_a_running_loop(server, make_backend):
    backend = make_backend()
    blocking = backend.generate([request("direct")])  # blocks this loop, still works
    threaded = await asyncio.to_thread(backend.generate, [request("thread")])
    native = await backend.agenerate([request("async")])
    assert [r[0].text for r in (blocking, threaded, native)] == ["direct", "thread", "async"]  # type: ignore[union-attr]
    assert len(backend.transport.sessions) == 2  # this loop's and the private loop's
    await backend.aclose()
    assert backend.transport.sessions == {}
    assert not backend._sync_runner.started


async def test_async_context_manager_closes_sessions(server, make_backend):
    async with make_backend() as backend:
        await backend.agenerate([request()])
        session = next(iter(backend.transport.sessions.values())).session
    assert session.closed


async def test_sync_close_inside_a_running_loop(server, make_backend):
    backend = make_backend()
    await backend.agenerate([request()])
    session = next(iter(backend.transport.sessions.values())).session
    backend.close()  # a sync close in async code: scheduled on this loop
    await asyncio.sleep(0.01)
    for _ in range(100):
        if session.closed:
            break
        await asyncio.sleep(0.01)
    assert session.closed


_SCENARIO = """
import asyncio, gc, sys
from backends.base import JudgeRequest
from backends.openai_compatible import OpenAICompatibleBackend

url, scenario = sys.argv[1], sys.argv[2]
reqs = [JudgeRequest(messages=[{"role": "user", "content": str(i)}]) for i in range(8)]
backend = OpenAICompatibleBackend(url, "judge", api_key="k-123456")

async def use():
    results = await backend.agenerate(reqs, max_concurrency=4)
    assert [r.text for r in results] == [str(i) for i in range(8)], results

if scenario == "sync-never-closed":
    backend.generate(reqs)
elif scenario == "sync-dropped":
    backend.generate(reqs)
    del backend
    gc.collect()
elif scenario == "async-never-closed":
    asyncio.run(use())
    del backend
    gc.collect()
elif scenario == "async-two-loops-then-close":
    asyncio.run(use())
    asyncio.run(use())
    backend.close()
elif scenario == "sync-close-in-async":
    async def main():
        await use()
        backend.generate(reqs)
        backend.close()
    asyncio.run(main())
elif scenario == "sync-then-aclose":
    backend.generate(reqs)
    async def main():
        await use()
        await backend.aclose()
    asyncio.run(main())
elif scenario == "manual-loop":
    loop = asyncio.new_event_loop()
    loop.run_until_complete(use())
    backend.close()
    loop.close()
print("done")
"""


@pytest.mark.parametrize(
    "scenario",
    [
        "sync-never-closed",
        "sync-dropped",
        "async-never-closed",
        "async-two-loops-then-close",
        "sync-close-in-async",
        "sync-then-aclose",
        "manual-loop",
    ],
)
def test_no_unclosed_session_warnings(server, scenario):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",
            "-c",
            _SCENARIO,
            server.url,
            scenario,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "done"
    for bad in ("nclosed", "Exception ignored", "ResourceWarning", "never awaited", "destroyed"):
        assert bad not in process.stderr, process.stderr


# --------------------------------------------------------------------------- vLLM server


async def test_vllm_structured_outputs_and_legacy_fields(server, make_backend):
    choice = {"choice": ["0.0", "1.0"]}
    backend = make_backend(cls=VLLMServerBackend, structured_outputs=choice)
    await backend.agenerate([request()])
    await backend.agenerate([request(extra={"guided_choice": ["a", "b"]})])
    legacy = make_backend(cls=VLLMServerBackend, extra_body={"guided_regex": "[01]"})
    await legacy.agenerate([request()])
    bodies = [seen["body"] for seen in server.seen]
    assert bodies[0]["structured_outputs"] == choice
    assert bodies[1]["structured_outputs"] == {"choice": ["0.0", "1.0"]}  # its own wins
    assert "guided_choice" not in bodies[1]
    assert bodies[2]["structured_outputs"] == {"regex": "[01]"}
    assert "guided_regex" not in bodies[2]


async def test_vllm_health_and_version(server, make_backend):
    backend = make_backend(cls=VLLMServerBackend)
    assert await backend.ahealth()
    assert "vllm_version" not in backend.describe()
    assert await backend.aversion() == "0.32.0-fake"
    assert backend.describe()["vllm_version"] == "0.32.0-fake"
    assert backend.version() == "0.32.0-fake"  # cached; the sync path works too
    assert backend.health()


def test_vllm_health_of_nothing_is_false(make_backend):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(cls=VLLMServerBackend, base_url=f"http://127.0.0.1:{port}/v1")
    assert backend.health() is False
    with pytest.raises(BackendConnectionError):
        backend.version()


_EXITING_SERVER = """
import os, sys
print("INFO loading model", sys.argv[1:])
print("key is", os.environ.get("VLLM_API_KEY"))
print("RuntimeError: boom: no usable device", file=sys.stderr)
sys.exit(3)
"""

_FAKE_VLLM = """
import argparse, os, signal
from aiohttp import web

parser = argparse.ArgumentParser()
parser.add_argument("--host"); parser.add_argument("--port", type=int)
parser.add_argument("--model"); parser.add_argument("--served-model-name")
args, _ = parser.parse_known_args()
if os.environ.get("IGNORE_SIGTERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("NEVER_READY"):
    signal.pause()

async def health(request):
    return web.Response()

async def version(request):
    return web.json_response({"version": "0.0-fake"})

async def chat(request):
    body = await request.json()
    text = json.dumps({k: body.get(k) for k in ("model", "repetition_penalty")})
    return web.json_response({"model": body["model"], "choices": [
        {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

import json
app = web.Application()
app.router.add_get("/health", health)
app.router.add_get("/version", version)
app.router.add_post("/v1/chat/completions", chat)
print("serving", args.served_model_name, flush=True)
web.run_app(app, host=args.host, port=args.port, print=None,
            handle_signals=not os.environ.get("IGNORE_SIGTERM"))
"""


def _write_module(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


def test_launch_fails_fast_with_the_log_tail(tmp_path):
    class ExitingServer(VLLMServerBackend):
        server_module = "exiting_server"

    env = _write_module(tmp_path, "exiting_server", _EXITING_SERVER)
    log = tmp_path / "server.log"
    with pytest.raises(BackendUnavailableError) as caught:
        ExitingServer.launch(
            "some/model",
            env=env,
            log_file=log,
            backend_kwargs={"api_key": "sk-launch-secret-42"},
            server_args=["--max-model-len", "64"],
        )
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "boom: no usable device" in message
    assert "--max-model-len" in message
    assert "--served-model-name" in message
    assert "sk-launch-secret-42" not in message
    assert "key is ***" in message
    assert str(log) in message
    assert log.exists()


def test_launch_missing_module_is_unavailable(tmp_path):
    class Missing(VLLMServerBackend):
        server_module = "no_such_module_for_thinking_judge"

    with pytest.raises(BackendUnavailableError, match="No module named"):
        Missing.launch("m", log_file=tmp_path / "log")


def test_launch_times_out_with_the_log_tail(tmp_path):
    class NeverReady(VLLMServerBackend):
        server_module = "fake_vllm"

    env = _write_module(tmp_path, "fake_vllm", _FAKE_VLLM)
    with pytest.raises(BackendUnavailableError, match="not healthy within 1 s") as caught:
        NeverReady.launch(
            "m", env={**env, "NEVER_READY": "1"}, startup_timeout=1, log_file=tmp_path / "log"
        )
    assert "not healthy" in str(caught.value)


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_launch_serves_and_close_stops_the_server(tmp_path, ignore_sigterm):
    class FakeVLLM(VLLMServerBackend):
        server_module = "fake_vllm"
        shutdown_grace = 1.0

    env = _write_module(tmp_path, "fake_vllm", _FAKE_VLLM)
    if ignore_sigterm:
        env["IGNORE_SIGTERM"] = "1"
    with FakeVLLM.launch(
        "dir/model", env=env, startup_timeout=60, backend_kwargs={"max_retries": 0}
    ) as backend:
        assert backend.health()
        assert backend.describe()["vllm_version"] == "0.0-fake"
        assert backend.model == "thinking-reward-model"
        [result] = backend.generate([request()])
        assert isinstance(result, Completion), result
        assert json.loads(result.text) == {
            "model": "thinking-reward-model",
            "repetition_penalty": 1.0,
        }
        process = backend.server_process
        assert process is not None
        assert process.poll() is None
    assert process.poll() is not None
    if ignore_sigterm:
        assert process.returncode == -9
    assert backend.log_path is not None
    assert "serving" in backend.log_path.read_text()


# --------------------------------------------------------------------------- replicas


def _dead_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def test_vllm_health_needs_every_replica(server, make_backend):
    assert await make_backend(cls=VLLMServerBackend, base_url=[server.url, server.url]).ahealth()
    both = make_backend(cls=VLLMServerBackend, base_url=[server.url, _dead_url()])
    assert not await both.ahealth()
    assert await both.aversion() == "0.32.0-fake"  # the first one's


def test_credentials_in_url_need_a_single_url():
    with pytest.raises(ValueError, match="single base_url"):
        OpenAICompatibleBackend(["http://u:pass1234@h1/v1", "http://h2/v1"], "m")


def test_server_flags_from_keywords():
    from backends.vllm_server import server_flags

    assert server_flags(
        {
            "max_model_len": 4096,
            "enforce_eager": True,
            "enable_prefix_caching": False,
            "limit_mm_per_prompt": {"image": 2, "video": 0},
            "dtype": "bfloat16",
            "seed": None,
        }
    ) == [
        "--max-model-len",
        "4096",
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--limit-mm-per-prompt",
        '{"image": 2, "video": 0}',
        "--dtype",
        "bfloat16",
    ]


def test_launch_refuses_an_api_key_on_the_command_line():
    with pytest.raises(ValueError, match="backend_kwargs"):
        VLLMServerBackend.launch("m", api_key="sk-never-on-argv")


# --------------------------------------------------------------------------- reliability


@pytest.fixture
def other_hosts():
    started: list[FakeChatServer] = []

    def start() -> FakeChatServer:
        host = FakeChatServer()
        host.start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


async def until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` to hold; the test's outcome does not depend on how long."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


FAULT_MIX = {  # kind: weight; every kind is one a retry must get past
    "500": 3,
    "502": 3,
    "503": 3,
    "429:2": 4,  # Retry-After: 2
    "reset": 3,  # connection reset before any reply
    "short": 3,  # reset mid-body (Content-Length promises more)
    "malformed": 2,  # truncated JSON
    "html": 2,  # not JSON at all
    "slow": 2,  # stalls past the timeout
}


def fault_plan(texts: list[str], *, seed: int, rate: float, most: int) -> dict[str, list[str]]:
    """Up to ``most`` faults per text, each drawn with probability ``rate``; seeded."""
    rng = random.Random(seed)
    kinds, weights = list(FAULT_MIX), list(FAULT_MIX.values())
    plan: dict[str, list[str]] = {}
    for text in texts:
        faults: list[str] = []
        while len(faults) < most and rng.random() < rate:
            faults.append(rng.choices(kinds, weights)[0])
        plan[text] = faults
    return plan


async def test_batch_of_300_survives_every_kind_of_fault(server, make_backend, monkeypatch):
    texts = [f"item-{i}" for i in range(300)]
    plan = fault_plan(texts, seed=20240611, rate=0.3, most=2)
    planned = [fault for faults in plan.values() for fault in faults]
    assert set(planned) == set(FAULT_MIX)  # the seed exercises every kind
    server.plan = {text: list(faults) for text, faults in plan.items()}
    backend = make_backend(timeout=1.0, max_retries=4, backoff_max=30.0)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(backend, "_sleep", record)
    results = await backend.agenerate([request(t) for t in texts], max_concurrency=32)
    assert all(isinstance(r, Completion) for r in results), [
        str(r) for r in results if not isinstance(r, Completion)
    ]
    assert [r.text for r in results] == texts  # type: ignore[union-attr]
    for text, result in zip(texts, results, strict=True):
        assert result.attempts >= 1 + len(plan[text]), text
    assert waits.count(2.0) == planned.count("429:2")  # Retry-After honoured, each time
    assert all(w == 2.0 or w < 0.01 for w in waits)  # else the tiny full-jitter backoff
    assert sum(r.attempts for r in results) >= server.count >= len(texts) + len(planned)
    assert backend.replicas.pool.state(0).live  # a single host is never ejected


async def test_dead_host_gives_typed_errors_never_a_completion(make_backend):
    dead = _dead_url()
    backend = make_backend(base_url=dead, max_retries=2)
    results = await backend.agenerate([request(str(i)) for i in range(5)])
    for error in results:
        assert isinstance(error, BackendConnectionError)
        assert error.retryable
        assert error.attempts == 3
        assert "(after 3 attempts)" in str(error)
        assert dead.removesuffix("/v1") in str(error)
    assert backend.replicas.pool.state(0).live


async def test_dead_fleet_waits_for_a_host_then_gives_up_at_the_deadline(make_backend, caplog):
    caplog.set_level(logging.DEBUG, logger="backends")
    backend = make_backend(
        base_url=[_dead_url(), _dead_url()], deadline=0.5, cooldown=0.05, max_retries=3
    )
    results = await backend.agenerate([request(str(i)) for i in range(6)], max_concurrency=6)
    for error in results:
        assert isinstance(error, BackendConnectionError), error
        assert "no host came back within the 0.5 s deadline" in str(error)
    assert backend.replicas.pool.live_count == 0
    assert "every host is ejected; waiting" in caplog.text
    assert "still down" in caplog.text  # probes ran, and failed
    [late] = await backend.agenerate([request("late")])  # every host ejected before it came
    assert isinstance(late, BackendConnectionError)
    assert late.attempts == 0
    assert str(late).startswith("never sent: every host is ejected after failing (http://")
    assert "no host came back within the 0.5 s deadline" in str(late)
    await backend.aclose()


async def test_one_host_dead_from_the_start(server, make_backend):
    dead = _dead_url()
    backend = make_backend(base_url=[dead, server.url], max_retries=0)
    texts = [f"t{i}" for i in range(50)]
    results = await backend.agenerate([request(t) for t in texts], max_concurrency=8)
    assert [r.text for r in results] == texts  # type: ignore[union-attr]
    assert server.count == 50
    extra = sum(r.attempts for r in results) - 50
    assert extra >= 2  # the dead host was tried until ejected (eject_after=2) ...
    assert max(r.attempts for r in results) == 2  # ... and each request failed over once, free
    assert not backend.replicas.pool.state(0).live
    assert backend.replicas.pool.state(1).live
    assert backend.describe()["base_urls"] == [dead, server.url]
    assert "base_urls=" in repr(backend)
    await backend.aclose()


async def test_host_killed_mid_batch(server, make_backend, other_hosts):
    doomed = other_hosts()
    doomed.kill_after = 40
    for host in (doomed, server):
        host.delays = {f"k{i}": 0.002 for i in range(200)}  # keep requests in flight
    backend = make_backend(base_url=[doomed.url, server.url], max_retries=1)
    texts = [f"k{i}" for i in range(200)]
    results = await backend.agenerate([request(t) for t in texts], max_concurrency=16)
    assert all(isinstance(r, Completion) for r in results), [
        str(r) for r in results if not isinstance(r, Completion)
    ]
    assert [r.text for r in results] == texts  # type: ignore[union-attr]
    assert doomed.killed
    assert doomed.count >= 40
    assert server.count >= 200 - 39  # everything the doomed host did not answer
    assert not backend.replicas.pool.state(0).live
    await backend.aclose()


async def test_requests_go_to_the_host_with_fewest_in_flight(server, make_backend, other_hosts):
    busy = other_hosts()
    busy.hold = True  # its requests stay in flight until released
    backend = make_backend(base_url=[busy.url, server.url], max_retries=0)
    texts = [f"l{i}" for i in range(10)]
    batch = asyncio.ensure_future(backend.agenerate([request(t) for t in texts], max_concurrency=4))
    await until(lambda: server.count == 8, "the idle host answered the rest")
    assert busy.count == 2  # two of the first four; nothing more while they were held
    busy.release_all()
    results = await batch
    assert [r.text for r in results] == texts  # type: ignore[union-attr]
    await backend.aclose()


async def test_ties_go_round_robin(server, make_backend, other_hosts):
    other = other_hosts()
    backend = make_backend(base_url=[other.url, server.url])
    texts = [f"r{i}" for i in range(10)]
    results = await backend.agenerate([request(t) for t in texts], max_concurrency=1)
    assert [r.text for r in results] == texts  # type: ignore[union-attr]
    assert [last_text(seen["body"]) for seen in other.seen] == texts[0::2]
    assert [last_text(seen["body"]) for seen in server.seen] == texts[1::2]
    await backend.aclose()


@pytest.mark.parametrize(
    ("cls", "probe_path"),
    [(OpenAICompatibleBackend, "/v1/models"), (VLLMServerBackend, "/health")],
)
async def test_ejected_host_is_readmitted_after_a_healthy_probe(
    server, make_backend, other_hosts, cls, probe_path
):
    flaky = other_hosts()
    flaky.down = True
    backend = make_backend(cls=cls, base_url=[flaky.url, server.url], eject_after=1, cooldown=1.0)
    clock = FakeClock()
    backend.replicas.pool.clock = clock
    first = await backend.agenerate([request(f"a{i}") for i in range(6)], max_concurrency=1)
    assert all(isinstance(r, Completion) for r in first)
    assert flaky.count == 1  # one 503, ejected, failed over; the rest went elsewhere
    assert not backend.replicas.pool.state(0).live
    assert flaky.probes == []  # no probe before the cool-down is over

    flaky.down = False
    clock.advance(0.5)
    await backend.agenerate([request("b")])
    assert flaky.probes == []
    clock.advance(0.5)
    [result] = await backend.agenerate([request("c")])  # starts the probe; does not wait for it
    assert isinstance(result, Completion)
    await until(lambda: backend.replicas.pool.state(0).live, "re-admitted")
    assert flaky.probes == [probe_path]

    before = flaky.count
    second = await backend.agenerate([request(f"d{i}") for i in range(6)], max_concurrency=1)
    assert all(isinstance(r, Completion) for r in second)
    assert flaky.count - before == 3  # back in the rotation
    await backend.aclose()


async def test_every_host_ejected_requests_wait_for_one_to_return(
    server, make_backend, other_hosts
):
    recovering = other_hosts()
    recovering.down = True
    recovering.recover_after_probes = 2  # the second probe finds it healthy
    server.down = True  # and this one never recovers
    backend = make_backend(
        base_url=[recovering.url, server.url],
        eject_after=1,
        cooldown=0.01,
        cooldown_max=0.02,
        max_retries=1,
    )
    texts = [f"w{i}" for i in range(10)]
    results = await backend.agenerate([request(t) for t in texts], max_concurrency=4)
    assert [getattr(r, "text", str(r)) for r in results] == texts
    assert len(recovering.probes) == 2
    assert backend.replicas.pool.state(0).live
    assert not backend.replicas.pool.state(1).live
    await backend.aclose()


async def test_429_is_backpressure_not_a_dead_host(server, make_backend, other_hosts):
    pushy = other_hosts()
    pushy.faults.extend(["429:0"] * 3)
    backend = make_backend(base_url=[pushy.url, server.url], eject_after=1)
    results = await backend.agenerate([request(str(i)) for i in range(6)], max_concurrency=1)
    assert all(isinstance(r, Completion) for r in results)
    assert backend.replicas.pool.state(0).live
    await backend.aclose()


@pytest.mark.parametrize("status", ["400", "404", "422"])
async def test_4xx_neither_retried_nor_failed_over(server, make_backend, other_hosts, status):
    other = other_hosts()
    for host in (other, server):
        host.faults.extend([status] * 3)
    backend = make_backend(base_url=[other.url, server.url], eject_after=1)
    [result] = await backend.agenerate([request()])
    assert isinstance(result, BackendHTTPError)
    assert not isinstance(result, BackendContextLengthError)
    assert result.attempts == 1
    assert other.count + server.count == 1
    assert backend.replicas.pool.live_count == 2
    await backend.aclose()


@pytest.mark.parametrize("fault", ["ctx400", "ctx400-engine", "ctx400-openai"])
async def test_context_length_is_typed_and_not_retried(server, make_backend, fault):
    server.faults.extend([fault] * 3)
    [result] = await make_backend(max_retries=5).agenerate([request("too long")])
    assert isinstance(result, BackendContextLengthError)
    assert isinstance(result, BackendHTTPError)
    assert result.status == 400
    assert not result.retryable
    assert result.attempts == 1
    assert server.count == 1
    assert str(result).startswith(f"HTTP 400 from {server.url}/chat/completions: ")


async def test_context_length_fails_alone_in_a_batch(server, make_backend):
    texts = [f"c{i}" for i in range(8)]
    server.plan = {"c3": ["ctx400"] * 3}
    results = await make_backend().agenerate([request(t) for t in texts], max_concurrency=4)
    assert isinstance(results[3], BackendContextLengthError)
    assert "maximum context length is 4096 tokens" in str(results[3])
    assert [r.text for i, r in enumerate(results) if i != 3] == texts[:3] + texts[4:]  # type: ignore[union-attr]
    assert server.count == 8


async def test_deadline_stops_the_retries(server, make_backend, monkeypatch):
    backend = make_backend(max_retries=10, deadline=10.0, backoff_max=30.0)
    clock = FakeClock()
    backend.replicas.pool.clock = clock
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(backend, "_sleep", sleep)
    server.faults.extend(["429:4"] * 10)
    [result] = await backend.agenerate([request()])
    assert isinstance(result, BackendHTTPError)
    assert result.status == 429
    assert waits == [4.0, 4.0]
    assert result.attempts == 3
    assert server.count == 3
    assert "gave up: waiting 4 s to retry would pass the 10 s deadline" in str(result)
    assert str(result).endswith("(after 3 attempts)")


async def test_attempt_timeout_is_cut_to_the_deadline(server, make_backend, monkeypatch):
    backend = make_backend(timeout=10.0, deadline=10.0, max_retries=5)
    clock = FakeClock()
    backend.replicas.pool.clock = clock

    async def sleep(seconds: float) -> None:
        clock.advance(9.7)

    monkeypatch.setattr(backend, "_sleep", sleep)
    server.faults.extend(["503", "slow"])
    [result] = await backend.agenerate([request()])
    assert isinstance(result, BackendTimeoutError)
    assert "within 0.3 s" in str(result)
    assert "gave up: the 10 s deadline passed" in str(result)
    assert result.attempts == 2


def test_deadline_defaults_to_ten_timeouts():
    assert OpenAICompatibleBackend("http://h/v1", "m", timeout=7).deadline == 70.0
    assert OpenAICompatibleBackend("http://h/v1", "m", deadline=math.inf).deadline == math.inf
    with pytest.raises(ValueError, match="deadline"):
        OpenAICompatibleBackend("http://h/v1", "m", deadline=0)


async def test_logs_never_show_key_prompt_or_images(server, make_backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend = make_backend(base_url=[_dead_url(), server.url], cooldown=0.0, max_retries=2)
    server.faults.extend(["echo400", "leak400", "error200", "503", "reset", "short"])
    results = await backend.agenerate([image_request() for _ in range(8)], max_concurrency=1)
    assert any(isinstance(r, Completion) for r in results)
    text = caplog.text
    assert "ejected" in text
    assert "health probe" in text
    assert "retrying" in text
    for secret in (KEY, IMAGE_B64[:40], "base64,", PROMPT_MARKER):
        assert secret not in text
    for error in results:
        for shown in (str(error), repr(error)):
            assert KEY not in shown
            assert "base64," not in shown
    await backend.aclose()


def test_backend_cannot_be_pickled_or_copied():
    import copy

    backend = OpenAICompatibleBackend(["http://h1/v1", "http://h2/v1"], "m", api_key=KEY)
    with pytest.raises(TypeError, match="cannot be pickled") as caught:
        pickle.dumps(backend)
    assert KEY not in str(caught.value)
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(backend)
    assert KEY not in repr(backend)
    backend.close()
