"""backends.transport, backends.retries and backends.openai_wire on their own.

The backend-level behaviour (the retries table, fail-over, ejection, sessions per loop)
is in test_openai_compatible.py; here each layer is checked through its public API: a
:class:`Transport` against a small threaded host, :func:`with_retries` with scripted
attempts and an injected clock, and the wire format's pure functions.
"""

from __future__ import annotations

import asyncio
import json
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
    scrub,
)
from backends.retries import RetryPolicy, Tries, with_retries
from backends.transport import Transport, bearer, credentials

KEY = "sk-transport-0123456789"


class EchoHost(ThreadedHost):
    """GET /echo answers the Authorization header; /slow answers late; /leak echoes the key.

    /big/{size} answers a 200 of ``size`` bytes, streamed in chunks with no length
    (``?length=1`` declares it; ``?status=500`` makes it an error); ``written`` is how
    much of it went out before the client hung up.
    """

    written = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/echo", self.echo)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/leak", self.leak)
        app.router.add_route("*", "/big/{size}", self.big)
        app.router.add_post("/moved", self.moved)
        return app

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{self.root}/echo")

    async def big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        headers = {"Content-Length": str(size)} if request.query.get("length") else {}
        response = web.StreamResponse(status=int(request.query.get("status", 200)), headers=headers)
        await response.prepare(request)
        self.written = 0
        chunk = b"x" * 65536
        try:
            while self.written < size:
                piece = chunk[: size - self.written]
                await response.write(piece)
                self.written += len(piece)
        except (ConnectionError, RuntimeError):
            pass
        return response

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


async def test_a_failed_connection_says_why_in_the_system_s_words():
    """A refused port reads 'Connection refused', not aiohttp's 'ssl:default [...]' text."""
    async with Transport(name="t", timeout=5.0) as transport:
        with pytest.raises(BackendConnectionError) as refused:
            await transport.get(_dead_url())
    assert str(refused.value).endswith("failed: Connection refused")
    assert "ssl:default" not in str(refused.value)


@pytest.mark.parametrize("declared", [False, True])
async def test_a_reply_past_the_limit_fails_unread(host, declared):
    limit = 256 * 1024
    query = "?length=1" if declared else ""
    async with Transport(name="t", timeout=10.0, max_reply_bytes=limit) as transport:
        reply = await transport.post(URL(f"{host.root}/big/{limit}"), b"{}", shown="u")
        assert isinstance(reply, tuple)
        assert len(reply.body) == limit  # exactly the limit is read
        error = await transport.post(URL(f"{host.root}/big/{64 << 20}{query}"), b"{}", shown="u")
        assert isinstance(error, BackendResponseError)
        assert not error.retryable
        assert f"longer than {limit} bytes" in str(error)
        assert host.written < 24 << 20  # the client hung up: most of it never went out
        with pytest.raises(BackendResponseError, match="max_reply_bytes"):
            await transport.get(f"{host.root}/big/{limit + 1}{query}")
        # an error status: its start is read for the message, the status decides
        reply = await transport.post(URL(f"{host.root}/big/{8 << 20}?status=500"), b"{}", shown="u")
        assert isinstance(reply, tuple)
        assert reply.status == 500
        assert len(reply.body) == 65536
        # and the session still works
        status, _ = await transport.get(f"{host.root}/echo")
        assert status == 200
    with pytest.raises(ValueError, match="max_reply_bytes"):
        Transport(name="t", timeout=1.0, max_reply_bytes=0)


async def test_a_post_is_never_redirected(host):
    async with Transport(name="t", timeout=5.0, headers={"api-key": KEY}) as transport:
        reply = await transport.post(URL(f"{host.root}/moved"), b"{}", shown="u")
    assert isinstance(reply, tuple)
    assert reply.status == 307  # not followed: the api-key header went nowhere else
    error = transport.http_error(reply.status, reply.body, "u")
    assert not error.retryable
    assert "redirects are not followed" in str(error)


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
    _, _, secrets = credentials([URL("http://h/v1?api-key=q-secret-1&v=1&sig=a%2Fb%3D")], KEY)
    shown = [s.get_secret_value() for s in secrets]
    assert {KEY, "q-secret-1", "a/b=", "a%2Fb%3D"} <= set(shown)
    assert "1" not in shown  # too short to be a secret
    transport = Transport(name="t", timeout=1.0, headers={"api-key": "h-secret-1", "X": "ab"})
    assert transport.safe("got h-secret-1 and ab") == "got *** and ab"
    with pytest.raises(ValueError, match="credentials in base_url"):
        credentials([URL("http://a:b@h/v1")], KEY)


def test_http_error_recognises_context_length():
    transport = Transport(name="t", timeout=1.0)
    body = b'{"error": {"message": "Please shorten it.", "code": "context_length_exceeded"}}'
    assert isinstance(transport.http_error(400, body, "u"), BackendContextLengthError)
    assert not isinstance(transport.http_error(429, body, "u"), BackendContextLengthError)


# --------------------------------------------------------------------------- secrets

HEADER_SECRET = "hdr-0123456789abcdef-secret"
QUERY_SECRET = "qry-0123456789abcdef-secret"


class LeakyHost(ThreadedHost):
    """A chat host that echoes every header value, the query and masked keys back.

    The request's last message picks the status and the shape: ``401`` / ``500`` (an
    error body), ``200error`` (a 200 with only an error), ``200both`` (an error beside
    choices).
    """

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.Response:
        mode = (await request.json())["messages"][-1]["content"]
        mode = mode if isinstance(mode, str) else "401"  # the judge's prompt
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        echoed = " ".join(f"{name}={value}" for name, value in request.headers.items())
        message = (
            f"Masked: {HEADER_SECRET[:4]}****{HEADER_SECRET[-4:]} {QUERY_SECRET[:9]}\u2026 "
            f"Incorrect API key provided: {auth[:3]}...{auth[-4:]} or {auth[:8]}**** or "
            f"{auth[:10]}. Query: {request.query_string}. Headers: {echoed}."
        )
        error = {"error": {"message": message, "type": "invalid_request_error"}}
        if mode.isdigit():
            return web.json_response(error, status=int(mode))
        if mode == "200both":
            error["choices"] = [{"message": {"content": "1"}, "finish_reason": "stop"}]
        return web.json_response(error)


@pytest.fixture(scope="module")
def leaky():
    server = LeakyHost()
    server.start()
    yield server
    server.stop()


def leaks(text: str) -> list[str]:
    """The pieces of a secret found in ``text``: whole, its first 8, or masked ends."""
    found = []
    for secret in (KEY, HEADER_SECRET, QUERY_SECRET):
        for piece in (secret, secret[:8], secret[-8:], f"{secret[:4]}****", f"...{secret[-4:]}"):
            if piece in text:
                found.append(piece)
    return found


def test_echoes_of_secrets_are_recognised():
    from backends.scrubbing import echoes, scrub

    assert echoes("sk-transport-01", KEY)  # its start
    assert echoes("sk-t...6789", KEY)  # a masked form
    assert echoes("sk-tr****", KEY)
    assert echoes("\u2026port-0123456789", KEY)
    assert not echoes("sk-other-key-value", KEY)
    assert not echoes("loading...", KEY)
    assert not echoes("transport", KEY)
    assert scrub(f"key {KEY[:9]}*** rejected", [KEY]) == "key *** rejected"
    assert scrub("no secret in here at all", [KEY]) == "no secret in here at all"


async def test_header_query_and_key_echoes_never_show(leaky, caplog):
    from backends.openai_compatible import OpenAICompatibleBackend
    from judge import ThinkingRewardJudge

    caplog.set_level("DEBUG")
    backend = OpenAICompatibleBackend(
        f"{leaky.url}?api-version=2024-06-01&api-key={QUERY_SECRET}",
        "m",
        api_key=KEY,
        headers={"api-key": HEADER_SECRET, "X-Org": "org-visible-name"},
        max_retries=1,
        backoff_base=0.0,
    )
    try:
        modes = ["401", "500", "200error", "200both", "403"]
        requests = [JudgeRequest(messages=[{"role": "user", "content": mode}]) for mode in modes]
        results = await backend.agenerate(requests)
        shown = [str(r) for r in results] + [repr(r) for r in results]
        assert all(isinstance(r, BackendError) for r in results)
        assert isinstance(results[3], BackendResponseError)  # an error beside choices
        assert "Incorrect API key provided" in shown[0]  # the host's message is kept
        judge = ThinkingRewardJudge(backend=backend)
        score = await judge.ainvoke({"question": "Is this ok?", "response": "401"})
        assert not score.ok
        shown += [str(score.error), score.model_dump_json(), repr(score)]
        shown += [repr(backend), str(backend.describe()), repr(backend.transport)]
        client_logs = [
            record.getMessage()
            for record in caplog.records
            if not record.name.startswith(("aiohttp.access", "aiohttp.server", "aiohttp.web"))
        ]
        assert any("retrying" in line for line in client_logs)
        for text in [*shown, *client_logs]:
            assert leaks(text) == [], text
        assert "?" not in backend.describe()["base_url"]
    finally:
        await backend.aclose()


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
        (b'{"choices": [{"message": {"content": "x"}, "logprobs": [1]}]}', "logprobs is a"),
    ]:
        with pytest.raises(NotACompletion, match=why):
            parse_completion(bad, model="m")


def reply(**changes: Any) -> bytes:
    """A chat completion body, with fields of it replaced (a dotted path per key)."""
    entry = {"token": "1", "logprob": -0.1, "top_logprobs": [{"token": "1", "logprob": -0.1}]}
    data: dict[str, Any] = {
        "model": "served",
        "choices": [
            {
                "message": {"role": "assistant", "content": "1"},
                "finish_reason": "stop",
                "logprobs": {"content": [entry]},
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 1},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return json.dumps(data, allow_nan=True).encode()


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"choices": "x"}, "no choices"),
        ({"choices": {}}, "no choices"),
        ({"choices": [1]}, "not a chat message"),
        ({"choices__0__message": "1"}, "not a chat message"),
        ({"choices__0__message__content": 1}, "content is a JSON number"),
        ({"choices__0__message__content": ["1"]}, "content is a JSON list"),
        ({"choices__0__finish_reason": 7}, "finish_reason is a JSON number"),
        ({"error": {"message": "overloaded"}}, "the body is an error: overloaded"),
        ({"error": "overloaded"}, "the body is an error: overloaded"),
        ({"choices__0__logprobs__content__0__token": 1}, "a token is a JSON number"),
        ({"choices__0__logprobs__content__0__token": None}, "a token is a JSON null"),
        ({"choices__0__logprobs__content__0__logprob": "-0.1"}, "a logprob is a JSON string"),
        ({"choices__0__logprobs__content__0__logprob": True}, "a logprob is a JSON boolean"),
        ({"choices__0__logprobs__content__0__logprob": 10**400}, "not usable"),
        ({"choices__0__logprobs__content__0__top_logprobs": {}}, "top_logprobs is a JSON"),
        ({"choices__0__logprobs__content__0__top_logprobs__0__token": []}, "a token is a"),
        ({"choices__0__logprobs__content": "1"}, "logprobs.content is a JSON string"),
        ({"choices__0__logprobs__content__0": 1}, "entry is a JSON number"),
    ],
)
def test_a_wrong_field_refuses_the_reply_with_a_reason(changes, why):
    with pytest.raises(NotACompletion, match=why):
        parse_completion(reply(**changes), model="m")


@pytest.mark.parametrize(
    "body",
    [b"null", b"1", b'"x"', b"true", b"[]", b"1e999", b"NaN", b"[" * 100_000, b'{"a":' * 5000],
)
def test_any_json_at_the_top_level_is_refused(body):
    with pytest.raises(NotACompletion):
        parse_completion(body, model="m")


@pytest.mark.parametrize(
    "changes",
    [
        {"usage__prompt_tokens": "11"},
        {"usage__prompt_tokens": 11.0},
        {"usage__prompt_tokens": -1},
        {"usage__prompt_tokens": True},
        {"usage__prompt_tokens": 2**70},
        {"usage__prompt_tokens": {"n": 1}},
        {"usage": "11"},
        {"usage": [11]},
    ],
)
def test_a_wrong_usage_is_dropped_not_trusted(changes, caplog):
    caplog.set_level("DEBUG", logger="backends.openai_wire")
    completion = parse_completion(reply(**changes), model="m")
    assert completion.text == "1"
    assert completion.prompt_tokens is None
    usage = completion.usage()
    assert usage is None or all(type(v) is int for v in usage.values())
    assert "ignored usage" in caplog.text


@pytest.mark.parametrize("name", [7, 1.5, True, {"id": "x"}, ["x"], "", None])
def test_a_wrong_model_name_gives_the_configured_one(name):
    completion = parse_completion(reply(model=name), model="configured")
    assert completion.model == "configured"
    long = parse_completion(reply(model="x " * 1000), model="m").model
    assert long is not None
    assert long.startswith("x x")
    assert len(long) <= 256


def test_odd_but_numeric_logprobs_and_reasons_are_passed_through():
    for value, seen in [(math.inf, math.inf), (0.5, 0.5), (0, 0.0), (-(10**300), -1e300)]:
        body = reply(choices__0__logprobs__content__0__logprob=value)
        [token] = parse_completion(body, model="m").logprobs  # type: ignore[misc]
        assert type(token.logprob) is float
        assert token.logprob == seen
    nan = parse_completion(reply(choices__0__logprobs__content__0__logprob=math.nan), model="m")
    assert math.isnan(nan.logprobs[0].logprob)  # type: ignore[index]
    for reason in ("length", "abort", None):
        completion = parse_completion(reply(choices__0__finish_reason=reason), model="m")
        assert completion.finish_reason == reason
    long = parse_completion(reply(choices__0__finish_reason="l " * 999), model="m").finish_reason
    assert long is not None
    assert long.startswith("l l")
    assert len(long) <= 64
    for empty in (None, {}, []):
        assert parse_completion(reply(choices__0__logprobs=empty), model="m").logprobs is None


def test_host_text_beside_the_answer_is_made_safe():
    body = reply(model=f"served {KEY[:10]}", choices__0__finish_reason=f"odd {KEY}")
    completion = parse_completion(body, model="m", safe=lambda text: scrub(text, [KEY]))
    assert completion.model == "served ***"
    assert completion.finish_reason == "odd ***"
    assert parse_completion(reply(model="m"), model="m").model == "m"


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
