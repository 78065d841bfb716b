"""``judge.batch.runner``: one result per id, typed failures, the backend-down stop, streaming."""

from __future__ import annotations

import asyncio

import pytest
from batch_fakes import (
    SCORE_FIELDS,
    BatchRecorder,
    SlowHTTP,
    by_id,
    judge_with,
    records,
    results,
    scripted,
    text_of,
    write_jsonl,
)

from backends import FakeBackend
from backends.errors import BackendConnectionError, BackendUnavailableError
from judge import ThinkingRewardJudge
from judge.batch import (
    ajudge_records,
    arun_batch,
    read_records,
    run_batch,
)
from judge.failures import ExitStatus, FailureKind

# ------------------------------------------------------------------------ basics


def test_scores_every_record_into_one_line_per_id(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(25))
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {f"r{i}" for i in range(25)}
    line = out["r3"]
    assert set(line) == {"id", "input_sha256"} | SCORE_FIELDS
    assert len(line["input_sha256"]) == 64
    assert line["score"] == 0.5
    assert line["error"] is None
    assert line["raw"] == "0.5"
    assert line["backend"] == "fake"
    assert len(line["prompt_sha256"]) == 64
    assert (summary.scored, summary.failed, summary.skipped, summary.records) == (25, 0, 0, 25)
    assert summary.exit_status == 0
    assert summary.rate > 0
    assert "25 scored, 0 failed, 0 skipped as done" in summary.describe()


def test_a_failed_judgment_is_recorded_with_its_typed_error_never_as_zero(tmp_path):
    rows = [
        {"id": "t", "question": "fail-timeout", "response": "a"},
        {"id": "p", "question": "fail-parse", "response": "a"},
        {"id": "ok", "question": "q", "response": "a"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["t"]["score"] is None
    assert out["t"]["error_type"] == "BackendTimeoutError"
    assert out["t"]["error_kind"] == "timeout"
    assert out["p"]["score"] is None
    assert out["p"]["error_type"] == "ScoreParseError"
    assert out["p"]["error_kind"] == "parse"
    assert out["p"]["raw"] == "I cannot say"
    assert (summary.scored, summary.failed, summary.exit_status) == (1, 2, 1)


def test_duplicate_ids_judge_the_first_record_only_and_are_reported(tmp_path):
    rows = [
        {"id": "a", "question": "first", "response": "x"},
        {"id": "b", "question": "q", "response": "x"},
        {"id": "a", "question": "second", "response": "x"},
        {"question": "q", "response": "x"},  # default id "line:4" ...
        {"id": 4, "question": "q", "response": "x"},  # ... is not the integer 4
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"a", "b", "line:4", 4}
    assert all(line["score"] == 0.5 for line in out.values())
    assert not any("second" in text_of(r) for r in backend.requests)
    assert summary.duplicates == 1
    assert summary.duplicate_examples == [("a", 3)]  # 1-based line numbers
    assert summary.exit_status == 1
    assert "1 duplicate ids not judged: 'a' (line 3)" in summary.describe()
    # A re-run reports them again, and still writes nothing twice.
    again = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    assert (again.skipped, again.duplicates, again.exit_status) == (4, 1, 1)
    assert len(results(tmp_path / "out.jsonl")) == 4


def test_an_explicit_id_shaped_like_a_default_id_is_refused_not_a_collision(tmp_path):
    rows = [
        {"question": "q", "response": "x"},  # "line:1"
        {"id": "line:1", "question": "q", "response": "x"},
        "{unreadable",  # "line:3"
        {"id": "row:3", "question": "q", "response": "x"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"line:1", "line:2", "line:3", "line:4"}
    assert out["line:1"]["score"] == 0.5
    assert "form of a default id" in out["line:2"]["error"]
    assert "form of a default id" in out["line:4"]["error"]
    assert (summary.duplicates, summary.scored, summary.failed) == (0, 1, 3)


def test_an_unreachable_backend_stops_the_run_and_writes_no_failure_for_it(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(40))
    output = tmp_path / "out.jsonl"
    answered = 0

    def down_after_ten(request):
        nonlocal answered
        answered += 1
        if answered > 10:
            return BackendConnectionError("connection refused", backend="fake")
        return "0.5"

    summary = run_batch(
        judge_with(SlowHTTP(script=down_after_ten)), source, output, max_concurrency=4
    )
    assert summary.aborted is not None
    assert "connection refused" in summary.aborted
    assert "unreachable" in summary.aborted
    assert summary.aborted_kind == FailureKind.CONNECTION
    assert summary.exit_status == 3
    assert "run the same command again to resume" in summary.describe()
    written = by_id(output)
    assert len(written) == 10
    assert all(line["score"] == 0.5 for line in written.values())
    rest = run_batch(judge_with(SlowHTTP()), source, output, max_concurrency=4)
    assert rest.skipped == len(written)
    assert rest.exit_status == 0
    assert set(by_id(output)) == {f"r{i}" for i in range(40)}


def test_a_backend_that_cannot_run_stops_the_run_like_an_unreachable_one(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(5))
    output = tmp_path / "out.jsonl"

    def missing(request):
        return BackendUnavailableError("vLLM is not installed", backend="fake")

    summary = run_batch(judge_with(FakeBackend(missing)), source, output)
    assert summary.exit_status == ExitStatus.UNAVAILABLE
    assert summary.aborted_kind == FailureKind.UNAVAILABLE
    assert "vLLM is not installed" in summary.aborted
    assert results(output) == []


def test_an_http_backend_is_found_behind_a_runnable_wrapper(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(30))
    backend = SlowHTTP(seed=3)
    calls: list[int] = []
    original = backend.agenerate

    async def counting(requests, *, max_concurrency=None):
        calls.append(len(requests))
        return await original(requests, max_concurrency=max_concurrency)

    backend.agenerate = counting  # type: ignore[method-assign]
    wrapped = judge_with(backend).with_config(tags=["batch"])
    summary = run_batch(wrapped, source, tmp_path / "out.jsonl", max_concurrency=4)
    assert summary.scored == 30
    assert calls == [1] * 30  # still fed one input per call: an HTTP backend
    assert backend.max_in_flight == 4


def test_a_judge_that_raises_on_error_still_gets_error_records(tmp_path):
    rows = [{"id": "p", "question": "fail-parse", "response": "a"}, *records(2)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    judge = ThinkingRewardJudge(backend=FakeBackend(scripted), raise_on_error=True)
    summary = run_batch(judge, source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["p"]["score"] is None
    assert out["p"]["error_type"] == "ScoreParseError"
    assert (summary.scored, summary.failed) == (2, 1)


# -------------------------------------------------------------------- streaming


def test_the_input_is_streamed_and_results_written_as_they_complete(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(300))
    output = tmp_path / "out.jsonl"
    backend = SlowHTTP(seed=7)
    behind: list[int] = []

    def watched():
        for n, record in enumerate(read_records(source)):
            written = output.read_bytes().count(b"\n") if output.exists() else 0
            behind.append(n - written)  # read but not yet written
            yield record

    summary = asyncio.run(ajudge_records(judge_with(backend), watched(), output, max_concurrency=8))
    assert summary.scored == 300
    # Never more than the in-flight judgments plus the bounded queue were read ahead.
    assert max(behind) <= 8 + 8 + 2
    assert backend.max_in_flight == 8
    order = [line["id"] for line in results(output)]
    assert sorted(order, key=lambda i: int(i[1:])) != order  # completion order, not input order


def test_an_http_backend_gets_one_input_per_call_and_max_concurrency_in_flight(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(50))
    backend = SlowHTTP(seed=1)
    calls: list[int] = []
    original = backend.agenerate

    async def counting(requests, *, max_concurrency=None):
        calls.append(len(requests))
        return await original(requests, max_concurrency=max_concurrency)

    backend.agenerate = counting  # type: ignore[method-assign]
    run_batch(judge_with(backend), source, tmp_path / "out.jsonl", max_concurrency=5)
    assert calls == [1] * 50
    assert backend.max_in_flight == 5


def test_a_batch_native_backend_gets_batches_of_max_concurrency(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(50))
    backend = BatchRecorder()
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl", max_concurrency=8)
    assert sum(backend.batches) == 50
    assert max(backend.batches) == 8
    assert summary.scored == 50


def test_chunk_size_and_max_concurrency_are_checked(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    with pytest.raises(ValueError, match="at least 1"):
        run_batch(judge_with(), source, tmp_path / "out.jsonl", max_concurrency=0)


def test_run_batch_works_inside_a_running_event_loop(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))

    async def inside() -> int:
        return run_batch(judge_with(), source, tmp_path / "out.jsonl").scored

    assert asyncio.run(inside()) == 3


async def test_arun_batch_is_awaitable(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    summary = await arun_batch(judge_with(SlowHTTP()), source, tmp_path / "out.jsonl")
    assert summary.scored == 3
