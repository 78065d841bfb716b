"""ChatModelBackend: any LangChain chat model as the judge's backend. No network.

Most tests use a small chat model defined here, which records what it was sent and
answers from a function; one uses langchain_core's own fake. ChatOpenAI is used only
against a tiny in-process OpenAI-compatible host (aiohttp, 127.0.0.1, in a thread of
its own), for what only a real client shows: the request body it sends and how it
fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import openai
import pytest
from aiohttp import web
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from pydantic import Field, SecretStr
from threaded_host import ThreadedHost

import backends
from backends import ChatModelBackend
from backends.base import Completion, JudgeRequest, TokenLogprob
from backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
)
from judge import ThinkingRewardJudge

KEY = "sk-test-0123456789-secret"
IMAGE_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_URL = f"data:image/png;base64,{IMAGE_B64}"
LOGPROBS = {
    "content": [
        {
            "token": "0",
            "logprob": -0.25,
            "bytes": [48],
            "top_logprobs": [  # not sorted
                {"token": "1", "logprob": -2.0, "bytes": [49]},
                {"token": "0", "logprob": -0.25, "bytes": [48]},
            ],
        },
        {"token": ".7", "logprob": -0.5, "bytes": None, "top_logprobs": []},
    ],
    "refusal": None,
}


def last_text(messages: list[BaseMessage]) -> str:
    content = messages[-1].content
    if isinstance(content, str):
        return content
    return next(part["text"] for part in content if part.get("type") == "text")


def default_reply(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
    """Echo the last text; logprobs when asked; usage as ChatOpenAI reports it."""
    metadata: dict[str, Any] = {"finish_reason": "stop", "model_name": "served-model"}
    if kwargs.get("logprobs"):
        metadata["logprobs"] = LOGPROBS
    return AIMessage(
        content=last_text(messages),
        response_metadata=metadata,
        usage_metadata={"input_tokens": 11, "output_tokens": 2, "total_tokens": 13},
    )


class RecordingChatModel(BaseChatModel):
    """A chat model with ChatOpenAI's sampling fields that records every call."""

    model_name: str = "recording-model"
    api_key: SecretStr = SecretStr(KEY)
    temperature: float | None = None
    max_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    extra_body: dict[str, Any] | None = None
    reply: Any = default_reply
    delay: float = 0.0
    calls: list[tuple[list[BaseMessage], dict[str, Any]]] = Field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append((messages, kwargs))
        if self.delay:
            time.sleep(self.delay)
        return self._result(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append((messages, kwargs))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return self._result(messages, kwargs)

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        message = self.reply(messages, kwargs)
        if isinstance(message, Exception):
            raise message
        return ChatResult(generations=[ChatGeneration(message=message)])


def req(text: str = "0.7", **kwargs: Any) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], **kwargs)


def judge_messages(text: str = "judge this") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": IMAGE_URL}},
            ],
        },
    ]


@pytest.fixture
def llm() -> RecordingChatModel:
    return RecordingChatModel()


# --------------------------------------------------------------------------- messages


def test_messages_become_langchain_messages_with_the_image_part(llm):
    backend = ChatModelBackend(llm)
    (completion,) = backend.generate([JudgeRequest(messages=judge_messages())])
    assert isinstance(completion, Completion)
    (messages, _kwargs) = llm.calls[0]
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[0].content == "You are a helpful assistant."
    assert messages[1].content == [
        {"type": "text", "text": "judge this"},
        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
    ]


def test_an_assistant_prefix_becomes_an_ai_message(llm):
    backend = ChatModelBackend(llm, supports_continuation=True)
    messages = [*judge_messages(), {"role": "assistant", "content": "<answer>0"}]
    backend.generate([JudgeRequest(messages=messages, continue_final_message=True)])
    sent, kwargs = llm.calls[0]
    assert isinstance(sent[-1], AIMessage)
    assert sent[-1].content == "<answer>0"
    assert kwargs["extra_body"] == {"continue_final_message": True, "add_generation_prompt": False}


def test_malformed_messages_fail_alone_without_echoing_them(llm):
    bad = JudgeRequest(messages=[{"role": "wizard", "content": f"secret {IMAGE_URL}"}])
    first, second = ChatModelBackend(llm).generate([bad, req("fine")])
    assert isinstance(first, BackendError)
    assert first.attempts == 0
    assert "base64" not in str(first)
    assert "secret" not in str(first)
    assert isinstance(second, Completion)
    assert second.text == "fine"
    assert len(llm.calls) == 1


# --------------------------------------------------------------------------- sampling


def test_sampling_goes_as_invocation_kwargs(llm):
    backend = ChatModelBackend(llm)
    backend.generate([req(max_tokens=7, temperature=0.3, top_logprobs=5)])
    _messages, kwargs = llm.calls[0]
    # repetition_penalty is not sent by default (OpenAI's own API rejects it).
    assert kwargs == {"max_tokens": 7, "temperature": 0.3, "logprobs": True, "top_logprobs": 5}


def test_no_logprobs_asked_none_sent(llm):
    ChatModelBackend(llm).generate([req()])
    assert llm.calls[0][1] == {"max_tokens": 16, "temperature": 0.0}


def test_repetition_penalty_extra_and_continuation_go_in_extra_body(llm):
    llm.extra_body = {"top_k": 1, "repetition_penalty": 9.0}
    backend = ChatModelBackend(
        llm,
        supports_repetition_penalty=True,
        supports_structured_outputs=True,
        supports_continuation=True,
    )
    request = JudgeRequest(
        messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "0"}],
        repetition_penalty=1.0,
        extra={"structured_outputs": {"choice": [".5", ""]}},
        continue_final_message=True,
    )
    kwargs = backend.invocation_kwargs(request)
    assert kwargs["extra_body"] == {
        "top_k": 1,  # the chat model's own extra_body is kept
        "repetition_penalty": 1.0,  # the request's wins
        "continue_final_message": True,
        "add_generation_prompt": False,
        "structured_outputs": {"choice": [".5", ""]},
    }
    backend.generate([request])
    assert llm.calls[0][1] == kwargs
    assert backend.sent_sampling(request) == {
        "max_tokens": 16,
        "temperature": 0.0,
        "top_k": 1,
        "repetition_penalty": 1.0,
        "continue_final_message": True,
        "add_generation_prompt": False,
        "structured_outputs": {"choice": [".5", ""]},
    }


def test_a_chat_model_without_sampling_fields_gets_none_and_says_so(caplog):
    caplog.set_level(logging.WARNING, logger="backends.chat_model")
    fake = GenericFakeChatModel(messages=iter([AIMessage(content="0.4")]))
    backend = ChatModelBackend(fake, model="fake-model")
    assert backend.invocation_kwargs(req(top_logprobs=3)) == {}
    assert "no max_tokens field" in caplog.text
    assert "no temperature field" in caplog.text
    (completion,) = backend.generate([req(top_logprobs=3)])
    assert completion.text == "0.4"
    assert completion.logprobs is None
    assert completion.model == "fake-model"


def test_without_extra_body_extra_goes_as_kwargs():
    fake = GenericFakeChatModel(messages=iter([]))
    backend = ChatModelBackend(fake, supports_structured_outputs=True, supports_continuation=True)
    request = JudgeRequest(
        messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "pre"}],
        extra={"format": "json"},
        continue_final_message=True,
    )
    # No extra_body: the final assistant message is sent as it is (a prefill).
    assert backend.invocation_kwargs(request) == {"format": "json"}


def test_repetition_penalty_needs_a_way_to_send_it():
    with pytest.raises(ValueError, match="repetition_penalty"):
        ChatModelBackend(GenericFakeChatModel(messages=iter([])), supports_repetition_penalty=True)


def test_requests_with_different_sampling_are_sent_in_separate_batches(llm, monkeypatch):
    batches = []
    original = RecordingChatModel.batch

    def counting_batch(self, inputs, config=None, **kwargs):
        batches.append((len(inputs), kwargs["max_tokens"]))
        return original(self, inputs, config, **kwargs)

    monkeypatch.setattr(RecordingChatModel, "batch", counting_batch)
    requests = [req(str(i), max_tokens=4 if i % 2 else 8) for i in range(6)]
    results = ChatModelBackend(llm).generate(requests)
    assert [r.text for r in results] == [str(i) for i in range(6)]
    assert batches == [(3, 8), (3, 4)]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("request_kwargs", "flag"),
    [
        ({"extra": {"structured_outputs": {"choice": ["0.5"]}}}, "supports_structured_outputs"),
        ({"continue_final_message": True}, "supports_continuation"),
    ],
)
def test_unsupported_fields_are_refused_not_dropped(llm, request_kwargs, flag):
    results = ChatModelBackend(llm).generate([req("a"), req("b", **request_kwargs), req("c")])
    assert [r.text for r in (results[0], results[2])] == ["a", "c"]
    refused = results[1]
    assert isinstance(refused, BackendError)
    assert refused.attempts == 0
    assert not refused.retryable
    assert flag in str(refused)
    assert [last_text(messages) for messages, _ in llm.calls] == ["a", "c"]


def test_the_judge_refuses_to_constrain_without_structured_outputs(llm):
    with pytest.raises(ValueError, match="structured outputs"):
        ThinkingRewardJudge(backend=ChatModelBackend(llm), constrained=True)


# --------------------------------------------------------------------------- replies


def test_logprobs_usage_and_finish_reason_are_read(llm):
    (completion,) = ChatModelBackend(llm).generate([req("0.7", top_logprobs=2)])
    assert completion.text == "0.7"
    assert completion.finish_reason == "stop"
    assert completion.model == "served-model"
    assert completion.prompt_tokens == 11
    assert completion.completion_tokens == 2
    assert completion.attempts == 1
    assert completion.logprobs == (
        TokenLogprob("0", -0.25, (("0", -0.25), ("1", -2.0))),  # best first
        TokenLogprob(".7", -0.5, ()),
    )


def test_text_blocks_and_provider_usage(llm):
    def reply(messages, kwargs):
        return AIMessage(
            content=[
                {"type": "reasoning", "reasoning": "hmm"},
                {"type": "text", "text": "0."},
                "5",
            ],
            response_metadata={
                "stop_reason": "end_turn",
                "token_usage": {"prompt_tokens": 5, "completion_tokens": 3},
            },
        )

    llm.reply = reply
    (completion,) = ChatModelBackend(llm, model="override").generate([req()])
    assert completion.text == "0.5"
    assert completion.finish_reason == "end_turn"
    assert (completion.prompt_tokens, completion.completion_tokens) == (5, 3)
    assert completion.model == "override"
    assert completion.logprobs is None


def test_malformed_logprobs_are_a_response_error(llm):
    llm.reply = lambda messages, kwargs: AIMessage(
        content="0.5", response_metadata={"logprobs": {"content": [{"token": "0"}]}}
    )
    (result,) = ChatModelBackend(llm).generate([req(top_logprobs=2)])
    assert isinstance(result, BackendResponseError)
    assert result.retryable


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({"finish_reason": 5}, "finish reason"),
        ({"finish_reason": ["stop"]}, "finish reason"),
        ({"logprobs": {"content": [{"token": 1, "logprob": -0.1}]}}, "logprobs"),
        ({"logprobs": {"content": [{"token": "0", "logprob": "-0.1"}]}}, "logprobs"),
        ({"logprobs": {"content": [{"token": "0", "logprob": 10**400}]}}, "logprobs"),
        ({"logprobs": {"content": "0"}}, "logprobs"),
    ],
)
def test_a_wrong_reply_field_fails_its_request_alone(llm, metadata, why):
    def reply(messages, kwargs):
        if last_text(messages) == "bad":
            return AIMessage(content="0.5", response_metadata=metadata)
        return default_reply(messages, kwargs)

    llm.reply = reply
    bad, good = ChatModelBackend(llm).generate([req("bad"), req("0.5")])
    assert isinstance(bad, BackendResponseError)
    assert why in str(bad)
    assert isinstance(good, Completion)


@pytest.mark.parametrize(
    "usage", [{"prompt_tokens": "5"}, {"prompt_tokens": -1}, {"prompt_tokens": True}, "5"]
)
@pytest.mark.parametrize("model_name", [7, {"id": "m"}, "", None])
def test_a_wrong_usage_or_model_name_is_dropped(llm, usage, model_name):
    llm.reply = lambda messages, kwargs: AIMessage(
        content="0.5",
        response_metadata={"token_usage": usage, "model_name": model_name, "finish_reason": None},
    )
    (completion,) = ChatModelBackend(llm, model="configured").generate([req()])
    assert isinstance(completion, Completion)
    assert completion.prompt_tokens is None
    assert completion.model == "configured"
    assert completion.usage() is None or all(
        type(v) is int
        for v in completion.usage().values()  # type: ignore[union-attr]
    )


async def test_order_is_kept_and_concurrency_bounded(llm):
    llm.delay = 0.01
    requests = [req(str(i)) for i in range(20)]
    results = await ChatModelBackend(llm).agenerate(requests, max_concurrency=4)
    assert [r.text for r in results] == [str(i) for i in range(20)]
    assert llm.max_in_flight == 4


def test_latency_is_per_request(llm):
    def reply(messages, kwargs):
        time.sleep(0.5 if last_text(messages) == "slow" else 0.0)
        return default_reply(messages, kwargs)

    llm.reply = reply
    fast, slow = ChatModelBackend(llm).generate([req("fast"), req("slow")], max_concurrency=2)
    assert slow.latency_s >= 0.5
    assert fast.latency_s < 0.25  # its own run, not the batch


async def test_errors_are_per_request_and_scrubbed(llm):
    def reply(messages, kwargs):
        text = last_text(messages)
        if text == "boom":
            return RuntimeError(f"failed with key {KEY} on {IMAGE_URL}")
        if text == "timeout":
            return TimeoutError("took too long")
        if text == "conn":
            return ConnectionResetError("reset by peer")
        return default_reply(messages, kwargs)

    llm.reply = reply
    backend = ChatModelBackend(llm)
    requests = [req("a"), req("boom"), req("timeout"), req("conn"), req("b")]
    results = await backend.agenerate(requests)
    assert [type(r) for r in results] == [
        Completion,
        BackendError,
        BackendTimeoutError,
        BackendConnectionError,
        Completion,
    ]
    message = str(results[1])
    assert message.startswith("RecordingChatModel failed: RuntimeError")
    assert KEY not in message
    assert IMAGE_B64 not in message
    assert all(r.backend == "chat-model" for r in results[1:4])


def test_a_message_no_check_foresaw_fails_alone(llm, monkeypatch):
    import backends.chat_model_replies as replies

    read = replies.content_text

    def fragile(content: Any) -> str:
        if content == "odd":
            raise RuntimeError("unreadable")
        return read(content)

    monkeypatch.setattr(replies, "content_text", fragile)
    odd, fine = ChatModelBackend(llm).generate([req("odd"), req("0.5")])
    assert isinstance(odd, BackendResponseError)
    assert "cannot be read (RuntimeError)" in str(odd)
    assert isinstance(fine, Completion)


def test_a_non_message_reply_is_a_response_error(llm, monkeypatch):
    monkeypatch.setattr(RecordingChatModel, "batch", lambda self, inputs, config, **kw: ["text"])
    (result,) = ChatModelBackend(llm).generate([req()])
    assert isinstance(result, BackendResponseError)


def test_a_batch_call_that_raises_fails_its_requests(llm, monkeypatch):
    def broken(self, inputs, config=None, **kwargs):
        raise RuntimeError(f"config trouble {KEY}")

    monkeypatch.setattr(RecordingChatModel, "batch", broken)
    results = ChatModelBackend(llm).generate([req("a"), req("b")])
    assert all(isinstance(r, BackendError) for r in results)
    assert KEY not in str(results[0])


def test_empty_batch(llm):
    assert ChatModelBackend(llm).generate([]) == []


def test_bad_max_concurrency(llm):
    with pytest.raises(ValueError, match="max_concurrency"):
        ChatModelBackend(llm, max_concurrency=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        ChatModelBackend(llm).generate([req()], max_concurrency=0)


def test_only_chat_models_are_taken():
    with pytest.raises(TypeError, match="BaseChatModel"):
        ChatModelBackend(lambda messages: "0.5")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the chat model's own machinery


class CountingRateLimiter(BaseRateLimiter):
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return True


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.parents: list[Any] = []
        self.ends: list[Any] = []
        self.chains: list[Any] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
        self.starts.append(run_id)
        self.parents.append(parent_run_id)

    def on_chain_start(self, serialized, inputs, *, run_id, **kwargs):
        self.chains.append(run_id)

    def on_llm_end(self, response, *, run_id, **kwargs):
        self.ends.append(run_id)


async def test_the_chat_models_rate_limiter_and_callbacks_apply():
    limiter, recorder = CountingRateLimiter(), Recorder()
    llm = RecordingChatModel(rate_limiter=limiter, callbacks=[recorder])
    backend = ChatModelBackend(llm)
    await backend.agenerate([req("a"), req("b"), req("c")])
    backend.generate([req("d")])
    assert limiter.acquired == 4
    assert len(recorder.starts) == 4
    assert sorted(map(str, recorder.ends)) == sorted(map(str, recorder.starts))


def test_runs_are_children_of_the_callers_run(llm):
    recorder = Recorder()
    backend = ChatModelBackend(llm)
    outer = RunnableLambda(lambda texts: backend.generate([req(t) for t in texts]))
    outer.invoke(["a", "b"], config={"callbacks": [recorder]})
    assert len(recorder.chains) == 1
    assert recorder.parents == [recorder.chains[0]] * 2


def test_the_judge_end_to_end(llm):
    judge = ThinkingRewardJudge(backend=ChatModelBackend(llm))
    llm.reply = lambda messages, kwargs: AIMessage(content="0.8")
    score = judge.invoke({"question": "What is 2+2?", "response": "<think>4</think>"})
    assert score.score == 0.8
    assert score.backend == "chat-model"
    assert score.model == "recording-model"
    assert score.metadata["chat_model"] == "RecordingChatModel"


async def test_the_judge_end_to_end_async(llm):
    judge = ThinkingRewardJudge(backend=ChatModelBackend(llm))
    scores = await judge.abatch([{"question": "q", "response": str(i)} for i in range(5)])
    # The recording model echoes the prompt: not a score, and the judge says so.
    assert all(s.score is None and s.error_type == "ScoreParseError" for s in scores)


# --------------------------------------------------------------------------- provenance


def test_repr_and_describe_show_no_secret(llm):
    backend = ChatModelBackend(llm)
    assert (
        repr(backend)
        == "ChatModelBackend(model='recording-model', chat_model='RecordingChatModel')"
    )
    assert backend.describe() == {
        "backend": "chat-model",
        "model": "recording-model",
        "chat_model": "RecordingChatModel",
    }
    assert KEY not in repr(backend)
    assert KEY not in str(vars(backend))


def test_registered():
    assert backends.backend_class("chat-model") is ChatModelBackend
    assert "ChatModelBackend" in backends.__all__


# --------------------------------------------------------------------------- ChatOpenAI


class OpenAIHost(ThreadedHost):
    """An OpenAI-compatible /v1/chat/completions in a thread of its own.

    A request takes the next scripted fault, else is answered: the reply echoes the
    last message's text, with logprobs when asked.
    """

    def __init__(self) -> None:
        super().__init__()
        self.faults: deque[str] = deque()
        self.seen: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append({"headers": dict(request.headers), "body": body})
        fault = self.faults.popleft() if self.faults else "ok"
        if fault == "ok":
            return web.json_response(self.completion(body))
        if fault == "slow":  # far longer than the client's timeout
            await asyncio.sleep(1.0)
            return web.json_response(self.completion(body))
        if fault == "leak":  # a host echoing the key and the image in its message
            message = f"bad image {IMAGE_URL} with key {KEY}"
            return web.json_response({"error": {"message": message}}, status=400)
        if fault == "echo":  # a host echoing the query, every header and a masked key
            auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
            headers = " ".join(f"{k}={v}" for k, v in request.headers.items() if k != "Cookie")
            message = (
                f"key {auth[:3]}...{auth[-4:]} / {auth[:9]}*** query {request.query_string} "
                f"api-key={request.headers.get('api-key')} headers {headers}"
            )
            return web.json_response({"error": {"message": message}}, status=401)
        status, _, retry_after = fault.partition(":")
        headers = {"Retry-After": retry_after} if retry_after else {}
        error = {"message": f"fault {status}", "type": "Error", "code": int(status)}
        return web.json_response({"error": error}, status=int(status), headers=headers)

    @staticmethod
    def completion(body: dict[str, Any]) -> dict[str, Any]:
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[0]["text"]
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length",
            "logprobs": LOGPROBS if body.get("logprobs") else None,
        }
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23},
        }


@pytest.fixture(scope="module")
def openai_host():
    host = OpenAIHost()
    host.start()
    yield host
    host.stop()


@pytest.fixture
def host(openai_host: OpenAIHost) -> OpenAIHost:
    openai_host.faults.clear()
    openai_host.seen.clear()
    return openai_host


def chat_openai(url: str, **kwargs: Any) -> ChatOpenAI:
    kwargs.setdefault("max_retries", 0)
    return ChatOpenAI(base_url=url, model="served", api_key=KEY, **kwargs)


@pytest.fixture
async def achat_openai():
    """ChatOpenAI for an async test: with an async HTTP client of this test's loop.

    langchain_openai otherwise shares one cached async client per base URL between all
    event loops, and each test has its own loop.
    """
    clients = []

    def make(url: str, **kwargs: Any) -> ChatOpenAI:
        client = openai.DefaultAsyncHttpxClient(timeout=kwargs.get("timeout", 60.0))
        clients.append(client)
        return chat_openai(url, http_async_client=client, **kwargs)

    yield make
    for client in clients:
        await client.aclose()


def test_chat_openai_sends_the_image_and_the_sampling(host):
    backend = ChatModelBackend(
        chat_openai(host.url),
        supports_repetition_penalty=True,
        supports_structured_outputs=True,
    )
    request = JudgeRequest(
        messages=judge_messages("0.7"),
        max_tokens=5,
        top_logprobs=2,
        extra={"structured_outputs": {"choice": ["0.7"]}},
    )
    (completion,) = backend.generate([request])
    body = host.seen[0]["body"]
    assert body["messages"] == request.messages  # the image part as it was given
    assert body["max_completion_tokens"] == 5
    assert body["temperature"] == 0.0
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 2
    assert body["repetition_penalty"] == 1.0
    assert body["structured_outputs"] == {"choice": ["0.7"]}
    assert host.seen[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert completion.text == "0.7"
    assert completion.finish_reason == "length"
    assert (completion.prompt_tokens, completion.completion_tokens) == (21, 2)
    assert completion.model == "served"
    assert completion.logprobs is not None
    assert completion.logprobs[0].top == (("0", -0.25), ("1", -2.0))
    assert completion.latency_s > 0


def test_chat_openai_continuation(host):
    backend = ChatModelBackend(chat_openai(host.url), supports_continuation=True)
    messages = [*judge_messages(), {"role": "assistant", "content": "0."}]
    (completion,) = backend.generate([JudgeRequest(messages=messages, continue_final_message=True)])
    body = host.seen[0]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": "0."}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert completion.text == "0."


@pytest.mark.parametrize(
    ("fault", "status", "retryable", "retry_after"),
    [
        ("429:7", 429, True, 7.0),
        ("500", 500, True, None),
        ("503", 503, True, None),
        ("400", 400, False, None),
        ("404", 404, False, None),
    ],
)
async def test_chat_openai_http_errors_are_typed(
    host, achat_openai, fault, status, retryable, retry_after
):
    host.faults.append(fault)
    backend = ChatModelBackend(achat_openai(host.url))
    failed, fine = await backend.agenerate([req("a"), req("b")], max_concurrency=1)
    assert isinstance(failed, BackendHTTPError)
    assert failed.status == status
    assert failed.retryable is retryable
    assert failed.retry_after == retry_after
    assert str(failed) == f"HTTP {status} from ChatOpenAI: fault {status}"
    assert isinstance(fine, Completion)


def test_chat_openai_errors_in_the_sync_path_too(host):
    host.faults.append("429")
    (failed,) = ChatModelBackend(chat_openai(host.url)).generate([req()])
    assert isinstance(failed, BackendHTTPError)
    assert failed.status == 429


def test_chat_openai_error_messages_hold_no_key_or_image(host):
    host.faults.append("leak")
    (failed,) = ChatModelBackend(chat_openai(host.url)).generate(
        [JudgeRequest(messages=judge_messages())]
    )
    assert isinstance(failed, BackendHTTPError)
    assert failed.status == 400
    assert KEY not in str(failed)
    assert IMAGE_B64 not in str(failed)
    assert "***" in str(failed)


def test_chat_openai_header_query_and_key_echoes_never_show(host, caplog):
    header_secret, query_secret = "hdr-0123456789-secret", "qry-0123456789-secret"
    caplog.set_level("DEBUG")
    llm = chat_openai(
        host.url, default_headers={"api-key": header_secret}, default_query={"token": query_secret}
    )
    backend = ChatModelBackend(llm)
    host.faults.append("echo")
    (failed,) = backend.generate([req()])
    assert isinstance(failed, BackendHTTPError)
    assert "query token=***" in str(failed)
    assert "api-key=***" in str(failed)
    odd = chat_openai("http://u:pw-12345@h/v1?sig=url-0123456789", default_headers={"a": "hdr-1"})
    assert {s.get_secret_value() for s in ChatModelBackend(odd)._secrets} >= {
        "url-0123456789",
        "pw-12345",
        "hdr-1",
        KEY,
    }
    # ours: the SDK's own loggers (httpx logs every URL, query included) are not
    logs = [r.getMessage() for r in caplog.records if r.name.startswith(("backends", "judge"))]
    for text in (str(failed), repr(failed), repr(backend), str(backend.describe()), *logs):
        for secret in (KEY, header_secret, query_secret):
            for piece in (secret, secret[:8], secret[-4:]):
                assert piece not in text, text


async def test_chat_openai_timeout(host, achat_openai):
    host.faults.append("slow")
    backend = ChatModelBackend(achat_openai(host.url, timeout=0.2))
    (failed,) = await backend.agenerate([req()])
    assert isinstance(failed, BackendTimeoutError)
    assert failed.retryable


async def test_chat_openai_connection_refused(achat_openai):
    backend = ChatModelBackend(achat_openai("http://127.0.0.1:9/v1"))
    (failed,) = await backend.agenerate([req()])
    assert isinstance(failed, BackendConnectionError)
    assert failed.retryable
    assert KEY not in str(failed)


def test_chat_openai_retries_are_its_own(host):
    host.faults.extend(["503:0.01", "503:0.01"])  # Retry-After: 10 ms
    (completion,) = ChatModelBackend(chat_openai(host.url, max_retries=2)).generate([req("ok")])
    assert isinstance(completion, Completion)
    assert completion.text == "ok"
    assert len(host.seen) == 3


def test_sync_calls_from_several_backends_share_one_chat_openai(host):
    """The sync path uses the chat model's sync client: no event loop to mismatch."""
    llm = chat_openai(host.url)
    for _ in range(3):
        with ChatModelBackend(llm) as backend:
            assert [r.text for r in backend.generate([req("a"), req("b")])] == ["a", "b"]


def test_sync_generate_works_inside_a_running_loop(host):
    backend = ChatModelBackend(chat_openai(host.url))

    async def main() -> list[Any]:
        return backend.generate([req("inside")])

    (completion,) = asyncio.run(main())
    assert completion.text == "inside"
