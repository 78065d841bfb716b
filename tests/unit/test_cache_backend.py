"""``CachingBackend``: hits make no model call, keys follow what is sent, errors never stick."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import math
import sqlite3
import threading
import warnings

import pytest

from backends import Backend, Completion, FakeBackend, JudgeRequest, TokenLogprob
from backends.cache_store import dump_completion, is_locked, load_completion
from backends.caching import CacheWarning, CachingBackend, JudgmentCache, request_key
from backends.errors import BackendConnectionError, BackendTimeoutError, CacheError


def ask(text: str = "q", **fields) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], **fields)


def image_request(data: bytes) -> JudgeRequest:
    url = "data:image/png;base64," + data.hex()
    content = [{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {"url": url}}]
    return JudgeRequest(messages=[{"role": "user", "content": content}])


@pytest.fixture
def store(tmp_path):
    with JudgmentCache(tmp_path / "c.sqlite") as made:
        yield made


def sent(store: JudgmentCache, request: JudgeRequest, backend: Backend | None = None) -> int:
    """How many requests reached the model to answer ``request`` through the cache."""
    backend = backend or FakeBackend(scores=[0.5])
    before = len(backend.requests)  # type: ignore[attr-defined]
    [result] = CachingBackend(backend, store).generate([request])
    assert isinstance(result, Completion)
    return len(backend.requests) - before  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ hits and misses


def test_a_hit_makes_no_model_call_and_is_the_stored_completion(store):
    requests = [ask(f"q{i}", top_logprobs=5) for i in range(3)]
    first = CachingBackend(FakeBackend(scores=lambda r: {1.0: 0.6, 0.0: 0.4}), store)
    answered = first.generate(requests)
    assert [r.cached for r in answered] == [False] * 3
    model = FakeBackend(["0.0"])  # would answer differently
    again = CachingBackend(model, store).generate(requests)
    assert model.requests == []
    assert [dataclasses.replace(r, cached=False) for r in again] == answered
    assert all(r.cached for r in again)
    assert (store.stats.hits, store.stats.misses, store.stats.writes) == (3, 3, 3)


def test_only_misses_are_sent_and_the_order_is_kept(store):
    CachingBackend(FakeBackend(["known"]), store).generate([ask("b"), ask("d")])
    model = FakeBackend(["new"])
    results = CachingBackend(model, store).generate([ask(x) for x in "abcde"])
    assert [r.messages[0]["content"] for r in model.requests] == ["a", "c", "e"]
    assert [r.text for r in results] == ["new", "known", "new", "known", "new"]
    assert [r.cached for r in results] == [False, True, False, True, False]


def test_nothing_is_sent_when_everything_hits(store):
    class Refusing(FakeBackend):
        def generate(self, requests, *, max_concurrency=None):
            raise AssertionError("a hit reached the model")

    CachingBackend(FakeBackend(["0.5"]), store).generate([ask()])
    assert CachingBackend(Refusing(), store).generate([ask()])[0].cached


async def test_the_async_path_hits_and_does_its_file_io_off_the_event_loop(store):
    seen: list[threading.Thread] = []
    get_many, put_many = store.get_many, store.put_many

    def watched(method):
        def call(*args, **kwargs):
            seen.append(threading.current_thread())
            return method(*args, **kwargs)

        return call

    store.get_many, store.put_many = watched(get_many), watched(put_many)
    backend = CachingBackend(FakeBackend(["0.5"]), store)
    first = await backend.agenerate([ask("a"), ask("b")])
    again = await backend.agenerate([ask("a"), ask("b")])
    assert [r.cached for r in first + again] == [False, False, True, True]
    assert len(seen) == 3  # look up, store; look up (nothing to store)
    assert threading.current_thread() not in seen


def test_continuation_requests_are_cached_like_any_other(store):
    answer = ask("q", top_logprobs=5)
    continued = JudgeRequest(
        messages=[*answer.messages, {"role": "assistant", "content": "0"}],
        max_tokens=2,
        top_logprobs=5,
        continue_final_message=True,
    )
    backend = FakeBackend(scores=lambda r: {0.0: 0.5, 0.3: 0.5})
    assert sent(store, answer, backend) == 1
    assert sent(store, continued, backend) == 1
    assert sent(store, continued, backend) == 0
    assert sent(store, answer, backend) == 0


# ------------------------------------------------------------------------------ keys


@pytest.mark.parametrize(
    "changed",
    [
        ask("another question"),
        ask(temperature=0.7),
        ask(max_tokens=40),
        ask(repetition_penalty=1.05),
        ask(repetition_penalty=None),
        ask(top_logprobs=5),
        ask(extra={"structured_outputs": {"choice": ["0", "1.0"]}}),
        ask(continue_final_message=True),
        JudgeRequest(messages=[{"role": "system", "content": "s"}, *ask().messages]),
    ],
)
def test_the_key_changes_with_the_messages_and_every_sampling_field(store, changed):
    assert sent(store, ask()) == 1
    assert sent(store, ask()) == 0
    assert sent(store, changed) == 1


def test_the_key_follows_image_content(store):
    assert sent(store, image_request(b"red")) == 1
    assert sent(store, image_request(b"red")) == 0
    assert sent(store, image_request(b"blue")) == 1


def test_the_key_follows_the_sampling_the_backend_really_sends(store):
    class NoPenalty(FakeBackend):
        supports_repetition_penalty = False

        def sent_sampling(self, request):
            return {k: v for k, v in request.sampling().items() if k != "repetition_penalty"}

    backend = NoPenalty(["0.5"])
    assert sent(store, ask(repetition_penalty=1.0), backend) == 1
    assert sent(store, ask(repetition_penalty=1.3), backend) == 0  # not sent: same key
    assert sent(store, ask(temperature=0.5), backend) == 1


def test_the_model_revision_and_namespace_are_part_of_the_key(tmp_path, store):
    assert sent(store, ask()) == 1
    assert sent(store, ask(), FakeBackend(["0.5"], model="another-model")) == 1
    revised = FakeBackend(["0.5"])
    revised.describe = lambda: {"backend": "fake", "model": revised.model, "revision": "abc"}
    assert sent(store, ask(), revised) == 1
    assert sent(store, ask(), revised) == 0
    revised.describe = lambda: {"backend": "fake", "model": revised.model, "revision": "def"}
    assert sent(store, ask(), revised) == 1
    spaced = JudgmentCache(store.path, namespace="tiny")
    assert sent(spaced, ask()) == 1
    assert sent(spaced, ask()) == 0


def test_request_key_is_stable_and_sensitive():
    base = {"model": "m", "messages": [{"role": "user", "content": "q"}], "sampling": {"t": 0}}
    key = request_key(**base)
    assert key == request_key(**{**base, "sampling": {"t": 0}})
    assert len(key) == 64
    assert key == request_key(**{**base, "revision": None, "namespace": ""})
    for change in (
        {"revision": "r"},
        {"namespace": "n"},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "Q"}]},
        {"sampling": {"t": 1}},
    ):
        assert request_key(**{**base, **change}) != key, change


def test_a_request_that_is_not_json_is_sent_and_not_stored(store):
    model = FakeBackend(["0.5"])
    backend = CachingBackend(model, store)
    odd = ask("a lone surrogate: \ud800")
    assert backend.generate([odd, ask()])[0].text == "0.5"
    assert backend.generate([odd])[0].cached is False
    assert len(model.requests) == 3
    assert len(store) == 1


# ------------------------------------------------------------------- what is stored


def test_backend_errors_are_never_stored(store):
    model = FakeBackend([BackendConnectionError("down"), BackendTimeoutError("slow"), "0.5"])
    results = CachingBackend(model, store).generate([ask("a"), ask("b"), ask("c")])
    assert [type(r).__name__ for r in results] == [
        "BackendConnectionError",
        "BackendTimeoutError",
        "Completion",
    ]
    assert len(store) == 1
    assert sent(store, ask("a")) == 1
    assert store.put("k", BackendConnectionError("down")) is False
    assert len(store) == 2


def test_cacheable_decides_which_completions_are_stored(store):
    backend = CachingBackend(
        FakeBackend(["0.5", "not a score"]),
        store,
        cacheable=lambda request, completion: completion.text != "not a score",
    )
    assert [r.text for r in backend.generate([ask("a"), ask("b")])] == ["0.5", "not a score"]
    assert len(store) == 1
    assert [r.cached for r in backend.generate([ask("a"), ask("b")])] == [True, False]


def test_completions_round_trip_with_infinite_logprobs():
    completion = Completion(
        text="0.7",
        finish_reason="length",
        prompt_tokens=12,
        completion_tokens=3,
        logprobs=(TokenLogprob("0", -math.inf, (("0", -0.1), ("1", -math.inf))),),
        model="m",
        latency_s=0.25,
        attempts=2,
    )
    again = load_completion(dump_completion(completion))
    assert again == dataclasses.replace(completion, cached=True)
    assert load_completion(dump_completion(Completion(text="x"))).logprobs is None
    for junk in (b"{", b"[]", b'{"text": 7}', b'{"text": "x"}'):
        with pytest.raises(ValueError, match="not a stored completion"):
            load_completion(junk)


def test_a_backend_returning_too_few_results_is_an_error(store):
    class Short(FakeBackend):
        def generate(self, requests, *, max_concurrency=None):
            return []

    with pytest.raises(RuntimeError, match="0 results for 1 requests"):
        CachingBackend(Short(), store).generate([ask()])


# ------------------------------------------------------------------ what is forwarded


def test_the_wrapper_is_the_inner_backend_to_its_caller(store):
    closed: list[str] = []

    class Inner(FakeBackend):
        name = "inner"
        supports_structured_outputs = False
        supports_continuation = False
        supports_repetition_penalty = False

        def describe(self):
            return {"backend": "inner", "model": self.model, "revision": "r1"}

        def sent_sampling(self, request):
            return {"only": request.max_tokens}

        def close(self):
            closed.append("sync")

    inner = Inner(["0.5"], model="m1")
    backend = CachingBackend(inner, store)
    assert (backend.name, backend.model) == ("inner", "m1")
    assert not backend.supports_structured_outputs
    assert not backend.supports_continuation
    assert not backend.supports_repetition_penalty
    assert backend.describe() == inner.describe()
    assert backend.sent_sampling(ask(max_tokens=3)) == {"only": 3}
    assert "Inner" in repr(backend)
    assert "c.sqlite" in repr(backend)
    backend.close()
    asyncio.run(backend.aclose())  # Backend.aclose calls close
    assert closed == ["sync", "sync"]
    assert len(store) == 0  # the store stays usable after its backend closes
    backend.generate([ask()])
    assert len(store) == 1


# ------------------------------------------------------------- a file locked by another process


def hold(path, *, readers_too: bool = False) -> sqlite3.Connection:
    """Another connection holding the write lock (and the read lock with ``readers_too``)."""
    holder = sqlite3.connect(path, isolation_level=None)
    if readers_too:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS other (x)")
    return holder


def judge_one_at_a_time(store: JudgmentCache, n: int) -> list[object]:
    backend = CachingBackend(FakeBackend(scores=[0.5]), store)
    return [backend.generate([ask(f"q{i}")])[0] for i in range(n)]


def test_a_cache_locked_by_a_writer_is_read_and_its_writes_are_bypassed_once(tmp_path):
    path = tmp_path / "c.sqlite"
    JudgmentCache(path).close()
    holder = hold(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = JudgmentCache(path, timeout=0.1)  # a valid cache: it opens
            results = judge_one_at_a_time(store, 5)
        assert all(isinstance(r, Completion) for r in results)
        assert store.stats.errors == 5  # every write bypassed ...
        [warning] = [w for w in caught if issubclass(w.category, CacheWarning)]  # ... one warning
        assert "locked by another process" in str(warning.message)
        assert "delete" not in str(warning.message)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    judge_one_at_a_time(store, 2)  # free again: written
    assert len(store) == 2


@pytest.mark.parametrize("made_before", [True, False])
def test_a_cache_locked_before_the_run_is_not_called_unusable(tmp_path, made_before):
    path = tmp_path / "c.sqlite"
    if made_before:
        JudgmentCache(path).close()
    holder = hold(path, readers_too=True)  # not even reads get through
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = JudgmentCache(path, timeout=0.1)  # no CacheError
            results = judge_one_at_a_time(store, 5)
        assert all(isinstance(r, Completion) for r in results)
        [warning] = [w for w in caught if issubclass(w.category, CacheWarning)]
        assert "locked by another process" in str(warning.message)
        assert "delete" not in str(warning.message)
        assert "usable" not in str(warning.message)
        with pytest.raises(CacheError, match="locked") as raised:
            JudgmentCache(path, timeout=0.1, strict=True)
        assert "delete" not in str(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    judge_one_at_a_time(store, 2)  # free again: opened and written
    assert len(store) == 2
    assert store.get_many([]) == {}


def test_is_locked_tells_a_lock_from_a_damaged_file(tmp_path):
    assert is_locked(sqlite3.OperationalError("database is locked"))
    assert not is_locked(sqlite3.DatabaseError("file is not a database"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as raised:
        sqlite3.connect(junk).execute("SELECT name FROM sqlite_master")
    assert not is_locked(raised.value)


def test_a_batch_on_a_cache_locked_before_the_run_judges_every_record(
    tmp_path, monkeypatch, capsys
):
    """The user's view: exit 0, every record scored, one warning, no advice to delete."""
    cli_common = importlib.import_module("judge.cli.common")
    monkeypatch.setattr(cli_common, "make_backend", lambda args, **kwargs: FakeBackend(["0.3"]))
    monkeypatch.setattr(cli_common, "JudgmentCache", functools.partial(JudgmentCache, timeout=0.1))
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"question": "q{i}", "response": "r{i}"}}\n' for i in range(8)))
    cache = tmp_path / "judgments.sqlite"
    JudgmentCache(cache).close()
    holder = hold(cache, readers_too=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            argv = ["batch", str(source), "--cache", str(cache), "--progress", "off", "-o"]
            status = importlib.import_module("judge.cli.main").main(
                [*argv, str(tmp_path / "out.jsonl")]
            )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert status == 0
    assert "8 scored" in capsys.readouterr().err
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1
    assert "locked by another process" in messages[0]
    assert "delete" not in messages[0]


def test_each_kind_of_failure_warns_once_per_store(tmp_path):
    path = tmp_path / "c.sqlite"
    store = JudgmentCache(path, timeout=0.1)
    damage = sqlite3.connect(path)
    damage.execute("DROP TABLE completions")  # damaged meanwhile: not a lock
    damage.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = judge_one_at_a_time(store, 4)
        store.close()  # reopened below, while another process holds the file
        holder = hold(path, readers_too=True)
        try:
            results += judge_one_at_a_time(store, 4)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert all(isinstance(r, Completion) for r in results)
    assert store.stats.errors == 16  # a lookup and a store per record, each bypassed
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 2
    assert "no such table" in messages[0]
    assert "locked by another process" in messages[1]
