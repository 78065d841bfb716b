"""backends.transport, backends.retries and backends.openai_wire on their own.

The backend-level behaviour (the retries table, fail-over, ejection, sessions per loop)
is in test_openai_compatible.py; here each layer is checked through its public API: a
:class:`Transport` against a small threaded host, :func:`with_retries` with scripted
attempts and an injected clock, and the wire format's pure functions.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import socket
from typing import Any

import pytest
from aiohttp import web
from fake_clock import FakeClock
from pydantic import SecretStr
from threaded_host import ThreadedHost
from yarl import URL

from backends.base import Completion, JudgeRequest
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
)
from backends.openai_wire import (
    NotACompletion,
    body_message,
    chat_body,
    display_url,
    error_message,
    is_context_length,
    parse_completion,
)
from backends.retries import RetryPolicy, Tries, with_retries
from backends.transport import Transport, bearer, credentials

KEY = "sk-transport-0123456789"


class EchoHost(ThreadedHost):
    """GET /echo answers the Authorization header; /slow answers late; /leak echoes the key."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/echo", self.echo)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/leak", self.leak)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response({"authorization": request.headers.get("Authorization")})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def leak(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"bad key {KEY}"}}, status=401)


@pytest.fixture(scope="module")
def host():
    echo = EchoHost()
    echo.start()
    yield echo
    echo.stop()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/health"


# --------------------------------------------------------------------------- transport


async def test_get_sends_the_auth_header_and_closes_its_session(host):
    async with Transport(name="t", timeout=5.0, authorization=bearer(KEY)) as transport:
        status, body = await transport.get(URL(host.root) / "echo")
        [entry] = transport.sessions.values()
    assert status == 200
    assert KEY in body.decode()
    assert entry.session.closed
    assert transport.sessions == {}


async def test_get_errors_are_typed_and_never_show_the_key(host):
    transport = Transport(
        name="t", timeout=0.2, authorization=bearer(KEY), secrets=[SecretStr(KEY)]
    )
    with pytest.raises(BackendConnectionError) as refused:
        await transport.get(_dead_url())
    with pytest.raises(BackendTimeoutError, match=r"within 0\.2 s"):
        await transport.get(f"{host.root}/slow")
    status, body = await transport.get(f"{host.root}/leak")
    error = transport.http_error(status, body, display_url(f"{host.root}/leak"))
    await transport.aclose()
    assert refused.value.retryable
    assert isinstance(error, BackendHTTPError)
    assert error.status == 401
    assert KEY not in str(error)
    assert "bad key ***" in str(error)


def test_transport_cannot_be_pickled_and_hides_its_key():
    transport = Transport(name="t", timeout=1.0, authorization=bearer(KEY))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(transport)
    assert KEY not in repr(transport)


def test_credentials_from_the_url_or_the_key():
    urls, auth, secrets = credentials([URL("http://alice:hunter2-pw@h/v1")], None)
    assert urls == [URL("http://h/v1")]
    assert auth is not None
    assert auth.get_secret_value().startswith("Basic ")
    assert "hunter2-pw" in [s.get_secret_value() for s in secrets]
    urls, auth, secrets = credentials([URL("http://h/v1")], KEY)
    assert auth is not None
    assert auth.get_secret_value() == f"Bearer {KEY}"
    assert [s.get_secret_value() for s in secrets] == [KEY]
    assert credentials([URL("http://h/v1")], None)[1:] == (None, ())
    with pytest.raises(ValueError, match="credentials in base_url"):
        credentials([URL("http://a:b@h/v1")], KEY)


def test_http_error_recognises_context_length():
    transport = Transport(name="t", timeout=1.0)
    body = b'{"error": {"message": "Please shorten it.", "code": "context_length_exceeded"}}'
    assert isinstance(transport.http_error(400, body, "u"), BackendContextLengthError)
    assert not isinstance(transport.http_error(429, body, "u"), BackendContextLengthError)


# --------------------------------------------------------------------------- retries


class Script:
    """An attempt function answering from a list; counts what it was asked."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.sent = 0

    async def __call__(self, tries: Tries) -> Any:
        tries.number += 1
        self.sent += 1
        result = self.results.pop(0)
        if isinstance(result, BackendError):
            result.attempts = tries.number
        return result


def busy(retry_after: float | None = None) -> BackendHTTPError:
    return BackendHTTPError("HTTP 429", status=429, retry_after=retry_after)


async def run(script: Script, policy: RetryPolicy, **kwargs: Any) -> tuple[Any, list[float]]:
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    result = await with_retries(script, policy, clock=clock, sleep=sleep, **kwargs)
    return result, waits


async def test_retry_after_is_honoured_and_capped():
    script = Script(busy(3.0), busy(99.0), busy(), Completion(text="ok"))
    result, waits = await run(script, RetryPolicy(5, backoff_base=0.001, backoff_max=10.0))
    assert isinstance(result, Completion)
    assert result.text == "ok"
    assert waits[:2] == [3.0, 10.0]
    assert 0 <= waits[2] <= 0.004  # full jitter before the third retry
    assert script.sent == 4


async def test_the_budget_and_the_deadline_stop_retries():
    result, waits = await run(Script(*[busy(1.0)] * 5), RetryPolicy(2, 0.0, 10.0))
    assert isinstance(result, BackendHTTPError)
    assert result.attempts == 3
    assert waits == [1.0, 1.0]
    result, waits = await run(Script(*[busy(4.0)] * 5), RetryPolicy(9, 0.0, 10.0, deadline=10.0))
    assert result.attempts == 3
    assert "gave up: waiting 4 s to retry would pass the 10 s deadline" in str(result)


async def test_fail_over_is_free_and_does_not_wait():
    down = [BackendConnectionError("down") for _ in range(3)]
    script = Script(*down, Completion(text="ok"))
    result, waits = await run(
        script, RetryPolicy(0, 1.0, 1.0), fails_over=lambda error, tries: tries.number < 4
    )
    assert isinstance(result, Completion)
    assert script.sent == 4
    assert waits == []


async def test_not_retryable_and_success_return_at_once():
    for first in (BackendHTTPError("HTTP 400", status=400), Completion(text="ok")):
        script = Script(first, Completion(text="never"))
        result, waits = await run(script, RetryPolicy(3, 0.0, 1.0))
        assert result is first
        assert script.sent == 1
        assert waits == []


# --------------------------------------------------------------------------- wire


def test_chat_body_fields():
    request = JudgeRequest(
        messages=[{"role": "user", "content": "q"}],
        repetition_penalty=1.05,
        top_logprobs=3,
        continue_final_message=True,
        extra={"structured_outputs": {"choice": ["0", "1"]}},
    )
    body = chat_body(request, model="m", extra_body={"seed": 1}, repetition_penalty=False)
    assert "repetition_penalty" not in body
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 3
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["seed"] == 1
    assert body["structured_outputs"] == {"choice": ["0", "1"]}
    assert chat_body(request, model="m", repetition_penalty=True)["repetition_penalty"] == 1.05


def test_parse_completion_and_why_not():
    body = b'{"choices": [{"message": {"content": null}, "finish_reason": "length"}]}'
    completion = parse_completion(body, model="m", attempts=2)
    assert (completion.text, completion.model, completion.attempts) == ("", "m", 2)
    reply = b'{"choices": [{"message": {"content": "1"}, "logprobs": {"content": [{"token": "1", "logprob": -Infinity, "top_logprobs": []}]}}]}'
    assert parse_completion(reply, model="m").logprobs[0].logprob == -math.inf  # type: ignore[index]
    for bad, why in [
        (b'{"choices": [{"mess', "not valid JSON"),
        (b"[1]", "JSON list"),
        (b'{"choices": []}', "no choices"),
        (b'{"error": {"message": "oops"}}', "the body is an error: oops"),
        (b'{"choices": [{"message": {"content": "x"}, "logprobs": [1]}]}', "not a chat"),
    ]:
        with pytest.raises(NotACompletion, match=why):
            parse_completion(bad, model="m")


def test_error_messages():
    assert error_message({"error": {"message": "a"}}) == "a"
    assert error_message({"error": "b"}) == "b"
    assert error_message({"object": "error", "message": "c"}) == "c"
    assert error_message({"detail": [1]}) == "[1]"
    assert error_message([1]) is None
    assert body_message(b"<html>gateway</html>") == "<html>gateway</html>"
    assert is_context_length(400, "This model's maximum context length is 4096 tokens.")
    assert not is_context_length(500, "This model's maximum context length is 4096 tokens.")
    assert display_url("http://u:p@h:1/v1?api-key=s#f") == "http://h:1/v1"


def test_response_error_is_retryable():
    assert BackendResponseError("x").retryable
