"""The judgment cache: repeated work is free, keys follow content, many writers at once.

The cache is a backend wrapper (``backends.caching.CachingBackend`` over a
``JudgmentCache`` of completions): the first part drives the judge with ``cache=`` as a
user does; the wrapper's own contract (keys, what is stored, the async path) is tested
on requests in ``test_cache_backend.py``.
"""

from __future__ import annotations

import importlib
import io
import json
import multiprocessing
import pickle
import sqlite3
import threading
import warnings

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from PIL import Image

from backends import FakeBackend
from backends.caching import CacheWarning
from backends.errors import BackendConnectionError
from judge import CacheError, JudgmentCache, ThinkingRewardJudge
from judge.batch.runner import run_batch

cli = importlib.import_module("judge.cli.main")
cli_common = importlib.import_module("judge.cli.common")

ITEMS = [
    {"question": f"What is {i}+{i}?", "response": f"<think>{i}+{i}={2 * i}</think>{2 * i}"}
    for i in range(6)
]


def png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path):
    with JudgmentCache(tmp_path / "judgments.sqlite") as made:
        yield made


def judge_with(cache, backend=None, **options) -> ThinkingRewardJudge:
    return ThinkingRewardJudge(
        backend=backend or FakeBackend(scores=[0.7, 0.2, 0.9]), cache=cache, **options
    )


# ----------------------------------------------------------------------- the hit path


def test_a_second_run_makes_no_backend_call_and_says_hit(cache):
    first = judge_with(cache)
    scores = first.batch(ITEMS)
    assert len(first.backend.requests) == len(ITEMS)
    assert [s.metadata["cache"] for s in scores] == ["miss"] * len(ITEMS)
    assert cache.stats.misses == len(ITEMS)
    assert cache.stats.writes == len(ITEMS)

    second = judge_with(cache, FakeBackend(["0.0"]))  # would answer differently
    again = second.batch(ITEMS)
    assert second.backend.requests == []
    assert [s.metadata["cache"] for s in again] == ["hit"] * len(ITEMS)
    assert [s.score for s in again] == [s.score for s in scores]
    strip = {"metadata": {"cache"}}
    assert [s.model_dump(exclude=strip) for s in again] == [
        s.model_dump(exclude=strip) for s in scores
    ]
    assert cache.stats.hits == len(ITEMS)


async def test_the_async_path_shares_the_cache(cache):
    await judge_with(cache).abatch(ITEMS[:3])
    backend = FakeBackend(["0.0"])
    again = await judge_with(cache, backend).abatch(ITEMS[:3])
    assert backend.requests == []
    assert all(s.metadata["cache"] == "hit" for s in again)
    single = await judge_with(cache, backend).ainvoke(ITEMS[0])
    assert single.metadata["cache"] == "hit"
    assert backend.requests == []


def test_hits_and_misses_keep_the_input_order_and_only_misses_are_sent(cache):
    judge_with(cache, FakeBackend(scores=[0.1])).batch([ITEMS[1], ITEMS[3]])
    backend = FakeBackend(scores=[0.8])
    mixed = [ITEMS[0], ITEMS[1], {"question": "", "response": "x"}, ITEMS[3], ITEMS[4]]
    scores = judge_with(cache, backend).batch(mixed)
    assert len(backend.requests) == 2  # ITEMS[0] and ITEMS[4]
    assert [s.score for s in scores] == [0.8, 0.1, None, 0.1, 0.8]
    assert [s.metadata.get("cache") for s in scores] == ["miss", "hit", None, "hit", "miss"]
    assert scores[2].error_type == "InputError"


def test_a_path_is_accepted_for_the_cache(tmp_path):
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]), cache=tmp_path / "c.sqlite")
    assert isinstance(judge.cache, JudgmentCache)
    judge.invoke(ITEMS[0])
    other = ThinkingRewardJudge(backend=FakeBackend(["0.1"]), cache=str(tmp_path / "c.sqlite"))
    assert other.invoke(ITEMS[0]).score == 0.5
    assert other.backend.requests == []


def test_no_cache_means_no_cache_metadata():
    score = ThinkingRewardJudge(backend=FakeBackend(["0.5"])).invoke(ITEMS[0])
    assert "cache" not in score.metadata


def test_each_input_keeps_its_traced_run_on_hits(cache):
    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.ends = []

        def on_chain_end(self, outputs, *, run_id, **kwargs):
            self.ends.append(outputs)

    judge_with(cache).batch(ITEMS[:3])
    recorder = Recorder()
    scores = judge_with(cache, FakeBackend(["0.0"])).batch(
        ITEMS[:3], config={"callbacks": [recorder]}
    )
    assert len(recorder.ends) == 3
    assert all(s.metadata["cache"] == "hit" for s in scores)


def test_the_expected_score_and_its_continuations_are_cached(cache):
    backend = FakeBackend(scores=lambda request: {1.0: 0.6, 0.0: 0.4})  # needs continuations
    first = judge_with(cache, backend, expected_score=True).invoke(ITEMS[0])
    assert first.expected_score == pytest.approx(0.6)
    assert len(backend.requests) > 1  # the answer and its continuation(s)
    backend = FakeBackend(["0.0"])
    again = judge_with(cache, backend, expected_score=True).invoke(ITEMS[0])
    assert backend.requests == []
    assert again.expected_score == first.expected_score
    assert again.metadata["expected_score"] == first.metadata["expected_score"]


# ------------------------------------------------------------------------------ keys


def requests_of(cache, item, backend=None, **options) -> int:
    backend = backend or FakeBackend(["0.5"])
    judge_with(cache, backend, **options).invoke(item)
    return len(backend.requests)


@pytest.mark.parametrize(
    ("options", "backend"),
    [
        ({"temperature": 0.7}, None),
        ({"max_tokens": 40}, None),
        ({"repetition_penalty": 1.05}, None),
        ({"output_format": "answer_tag"}, None),
        ({"constrained": True}, None),
        ({"expected_score": True}, None),
        ({}, FakeBackend(["0.5"], model="another-model")),
    ],
)
def test_the_key_changes_with_sampling_model_format_and_options(cache, options, backend):
    assert requests_of(cache, ITEMS[0]) == 1
    assert requests_of(cache, ITEMS[0]) == 0  # same judgment: a hit
    assert requests_of(cache, ITEMS[0], backend, **options) >= 1


def test_top_logprobs_counts_only_when_logprobs_are_asked(cache):
    assert requests_of(cache, ITEMS[0], expected_score=True) >= 1
    assert requests_of(cache, ITEMS[0], expected_score=True, top_logprobs=5) >= 1
    assert requests_of(cache, ITEMS[0], top_logprobs=5) == 1  # first without logprobs
    assert requests_of(cache, ITEMS[0], top_logprobs=7) == 0  # not sent: same key


def test_the_key_follows_image_content_not_names(cache, tmp_path):
    (tmp_path / "a.png").write_bytes(png("red"))
    (tmp_path / "b.png").write_bytes(png("red"))
    (tmp_path / "c.png").write_bytes(png("blue"))
    item = dict(ITEMS[0])
    assert requests_of(cache, {**item, "image": str(tmp_path / "a.png")}) == 1
    assert requests_of(cache, {**item, "image": str(tmp_path / "b.png")}) == 0  # same bytes
    assert requests_of(cache, {**item, "image": png("red")}) == 0
    assert requests_of(cache, {**item, "image": str(tmp_path / "c.png")}) == 1  # other bytes
    assert requests_of(cache, item) == 1  # no image


def test_the_revision_and_namespace_are_part_of_the_key(tmp_path):
    backend = FakeBackend(["0.5"])
    backend.describe = lambda: {"backend": "fake", "model": "m", "model_revision": "abc"}
    cache = JudgmentCache(tmp_path / "c.sqlite")
    assert requests_of(cache, ITEMS[0], backend) == 1
    assert requests_of(cache, ITEMS[0], backend) == 1  # 2 requests in all: a hit
    other = FakeBackend(["0.5"])
    other.describe = lambda: {"backend": "fake", "model": "m", "model_revision": "def"}
    assert requests_of(cache, ITEMS[0], other) == 1
    spaced = JudgmentCache(tmp_path / "c.sqlite", namespace="tiny")
    assert requests_of(spaced, ITEMS[0]) == 1


# -------------------------------------------------------------------------- failures


def test_failures_are_never_cached(cache):
    failing = FakeBackend([BackendConnectionError("down"), "not a score"])
    scores = judge_with(cache, failing).batch(ITEMS[:2])
    assert [s.error_type for s in scores] == ["BackendConnectionError", "ScoreParseError"]
    assert [s.metadata["cache"] for s in scores] == ["miss", "miss"]
    assert len(cache) == 0
    backend = FakeBackend(["0.4"])
    again = judge_with(cache, backend).batch(ITEMS[:2])
    assert len(backend.requests) == 2
    assert [s.score for s in again] == [0.4, 0.4]
    assert len(cache) == 2
    assert cache.put("k", BackendConnectionError("down")) is False


def test_a_failed_continuation_is_not_cached_and_is_asked_again(cache):
    def reply(request):
        if request.continue_final_message:
            return BackendConnectionError("down")
        return {1.0: 0.6, 0.0: 0.4}

    first = judge_with(cache, FakeBackend(scores=reply), expected_score=True).invoke(ITEMS[0])
    assert first.ok
    assert first.expected_score is None
    assert len(cache) == 1  # the answer; not the failed continuation
    backend = FakeBackend(scores=lambda request: {1.0: 0.6, 0.0: 0.4})
    again = judge_with(cache, backend, expected_score=True).invoke(ITEMS[0])
    assert backend.requests  # the continuation is sent again...
    assert all(r.continue_final_message for r in backend.requests)  # ...the answer is not
    assert again.score == first.score
    assert again.expected_score == pytest.approx(0.6)


def test_raise_on_error_judges_still_cache_their_successes(cache):
    judge = judge_with(cache, FakeBackend(["0.3", "nonsense"]), raise_on_error=True)
    results = judge.batch(ITEMS[:2], return_exceptions=True)
    assert results[0].score == 0.3
    assert isinstance(results[1], Exception)
    assert len(cache) == 1


# ------------------------------------------------------------------ file and errors


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(CacheError, match="not a usable judgment cache"):
        JudgmentCache(path)
    assert path.read_bytes().startswith(b"this is not")  # left alone


def test_another_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(CacheError, match="not a judgment cache"):
        JudgmentCache(path)


def test_another_schema_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    JudgmentCache(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    with pytest.raises(CacheError, match="schema"):
        JudgmentCache(path)


def test_a_locked_file_is_bypassed_with_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = JudgmentCache(path, timeout=0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        backend = FakeBackend(["0.6"])
        with pytest.warns(CacheWarning, match="going on without it"):
            score = judge_with(cache, backend).invoke(ITEMS[0])
        assert score.score == 0.6  # the judgment went on
        assert cache.stats.errors == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(cache) == 0
    judge_with(cache, FakeBackend(["0.6"])).invoke(ITEMS[0])
    assert len(cache) == 1


def test_strict_raises_the_typed_error(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = JudgmentCache(path, timeout=0, strict=True)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(CacheError, match="locked"):
            judge_with(cache, FakeBackend(["0.6"])).invoke(ITEMS[0])
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_damaged_table_misses_with_a_warning(cache):
    judge_with(cache).invoke(ITEMS[0])
    with sqlite3.connect(cache.path) as connection:
        connection.execute("DROP TABLE completions")
    backend = FakeBackend(["0.6"])
    with pytest.warns(CacheWarning):
        score = judge_with(cache, backend).invoke(ITEMS[0])
    assert score.score == 0.6
    assert score.metadata["cache"] == "miss"
    assert len(backend.requests) == 1


def test_an_unreadable_entry_is_a_miss_and_is_replaced(cache):
    judge_with(cache).invoke(ITEMS[0])
    with sqlite3.connect(cache.path) as connection:
        connection.execute("UPDATE completions SET value = '{\"text\": 7}'")
    backend = FakeBackend(["0.6"])
    assert judge_with(cache, backend).invoke(ITEMS[0]).metadata["cache"] == "miss"
    assert judge_with(cache, FakeBackend(["0.0"])).invoke(ITEMS[0]).score == 0.6


def test_nothing_secret_or_base64_is_stored_beyond_the_completion(cache):
    judge_with(cache).invoke({**ITEMS[0], "image": png()})
    with sqlite3.connect(cache.path) as connection:
        ((key, value),) = connection.execute("SELECT key, value FROM completions").fetchall()
    assert "base64" not in value
    assert len(key) == 64  # a hash: the prompt and image are not stored
    stored = json.loads(value)
    assert stored["text"] == "0.7"
    assert "messages" not in stored


# ------------------------------------------------------------------------ concurrency


def _write_in_process(cache: JudgmentCache, worker: int, n: int) -> None:
    # Forked: the parent's object, whose connection is not used here; spawned: unpickled.
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5]), cache=cache)
    # Each worker judges its own inputs and the shared ones, one small batch at a time.
    for start in range(0, n, 5):
        own = [
            {"question": f"w{worker} q{i}", "response": f"r{i}"} for i in range(start, start + 5)
        ]
        shared = [{"question": f"shared q{i}", "response": "r"} for i in range(start, start + 5)]
        scores = judge.batch(own + shared)
        assert all(s.ok for s in scores)
    assert cache.stats.errors == 0


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_several_processes_write_at_once(tmp_path, start_method):
    path = tmp_path / "c.sqlite"
    cache = JudgmentCache(path)  # open in the parent too: a fork inherits the connection
    cache.get_many(["warm"])
    context = multiprocessing.get_context(start_method)
    workers = [context.Process(target=_write_in_process, args=(cache, w, 30)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(cache) == 4 * 30 + 30  # own inputs, plus the shared ones once
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_several_threads_write_at_once_through_one_cache_and_several(tmp_path):
    path = tmp_path / "c.sqlite"
    shared = JudgmentCache(path)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        cache = shared if index % 2 else JudgmentCache(path)
        judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5]), cache=cache)
        barrier.wait()
        try:
            for start in range(0, 40, 4):
                items = [
                    {"question": f"t{index} q{i}", "response": "r"} for i in range(start, start + 4)
                ]
                assert all(s.ok for s in judge.batch(items))
        except BaseException as exc:
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(shared) == 6 * 40


def test_a_cache_pickles_without_its_connection(cache):
    judge_with(cache).invoke(ITEMS[0])
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.path == cache.path
    assert copy.stats.hits == 0
    assert copy.get_many(["nothing"]) == {}
    assert len(copy) == 1


# ------------------------------------------------------------------------ batch and CLI


def test_run_batch_counts_hits_and_misses(tmp_path, cache):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, **item}) + "\n" for i, item in enumerate(ITEMS)))
    first = run_batch(judge_with(cache), source, tmp_path / "a.jsonl")
    assert (first.cache_hits, first.cache_misses) == (0, len(ITEMS))
    assert f"cache: 0 hits, {len(ITEMS)} misses" in first.describe()
    backend = FakeBackend(["0.0"])
    second = run_batch(judge_with(cache, backend), source, tmp_path / "b.jsonl")
    assert (second.cache_hits, second.cache_misses) == (len(ITEMS), 0)
    assert backend.requests == []
    assert second.exit_status == 0


def test_cli_cache_flag(tmp_path, monkeypatch, capsys):
    made: list[FakeBackend] = []

    def backend(args, **kwargs):
        made.append(FakeBackend(["0.3"]))
        return made[-1]

    monkeypatch.setattr(cli_common, "make_backend", backend)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in ITEMS[:3]))
    cache = str(tmp_path / "judgments.sqlite")
    argv = ["batch", str(source), "--cache", cache, "--progress", "off", "-o"]
    assert cli.main([*argv, str(tmp_path / "a.jsonl")]) == 0
    assert "cache: 0 hits, 3 misses" in capsys.readouterr().err
    assert cli.main([*argv, str(tmp_path / "b.jsonl")]) == 0
    assert "cache: 3 hits, 0 misses" in capsys.readouterr().err
    assert made[1].requests == []

    score = ["score", "--question", ITEMS[0]["question"], "--response", ITEMS[0]["response"]]
    assert cli.main([*score, "--cache", cache, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["cache"] == "hit"
    assert made[2].requests == []


def test_cli_unusable_cache_file_exits_2_before_a_backend_is_made(tmp_path, monkeypatch, capsys):
    made: list[object] = []
    monkeypatch.setattr(cli_common, "make_backend", lambda args, **kwargs: made.append(1))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 50)
    score = ["score", "--question", "q", "--response", "r", "--cache", str(junk)]
    assert cli.main(score) == 2
    assert "not a usable judgment cache" in capsys.readouterr().err
    assert made == []
