"""``judge.batch`` and ``thinking-judge batch``: streaming, resume, bad input, exit status."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from backends import FakeBackend
from backends.base import AsyncBackend, Completion, JudgeRequest, Result
from backends.errors import BackendConnectionError, BackendTimeoutError
from judge import ThinkingRewardJudge, ThinkingScore, cli
from judge.batch.runner import (
    BatchError,
    ajudge_records,
    arun_batch,
    count_records,
    make_progress,
    read_records,
    run_batch,
)

ROOT = Path(__file__).resolve().parents[2]
SCORE_FIELDS = set(ThinkingScore.model_fields)


def text_of(request: JudgeRequest) -> str:
    """The rendered prompt text of a request (the question and response are inside)."""
    return request.messages[1]["content"][0]["text"]


def scripted(request: JudgeRequest) -> str | BackendTimeoutError:
    """A fake model: fails what says so, else scores 0.5."""
    text = text_of(request)
    if "fail-timeout" in text:
        return BackendTimeoutError("took too long", backend="fake")
    if "fail-parse" in text:
        return "I cannot say"
    return "0.5"


class BatchRecorder(FakeBackend):
    """A batch-native fake that records the size of every batch it is given."""

    def __init__(self, script=scripted) -> None:
        super().__init__(script)
        self.batches: list[int] = []

    def generate(self, requests: Sequence[JudgeRequest], *, max_concurrency=None) -> list[Result]:
        self.batches.append(len(requests))
        return super().generate(requests, max_concurrency=max_concurrency)


class SlowHTTP(AsyncBackend):
    """An async (HTTP-shaped) fake whose replies take random times: they finish out of order."""

    name = "slow-http"

    def __init__(self, seed: int = 0, script=scripted, max_delay: float = 0.01) -> None:
        super().__init__()
        self.model = "slow-model"
        self.rng = random.Random(seed)
        self.script = script
        self.max_delay = max_delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.completed: list[str] = []

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency=None
    ) -> list[Result]:
        async def one(request: JudgeRequest) -> Result:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.rng.random() * self.max_delay)
            finally:
                self.in_flight -= 1
            self.calls += 1
            reply = self.script(request)
            if isinstance(reply, Exception):
                return reply
            self.completed.append(text_of(request))
            return Completion(text=reply, finish_reason="stop", model=self.model)

        return list(await asyncio.gather(*(one(r) for r in requests)))


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    with path.open("w") as file:
        for row in rows:
            file.write(row if isinstance(row, str) else json.dumps(row))
            file.write("\n")
    return path


def records(n: int, **extra) -> list[dict]:
    return [{"id": f"r{i}", "question": f"q{i}", "response": f"a{i}", **extra} for i in range(n)]


def results(path: Path) -> list[dict]:
    """Every output line, parsed; fails on a torn or invalid line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in data.splitlines()]


def by_id(path: Path) -> dict:
    lines = results(path)
    ids = [line["id"] for line in lines]
    assert len(ids) == len(set(ids)), f"duplicate ids in the output: {ids}"
    return {line["id"]: line for line in lines}


def judge_with(backend=None) -> ThinkingRewardJudge:
    return ThinkingRewardJudge(backend=backend or FakeBackend(scripted))


# ------------------------------------------------------------------------ basics


def test_scores_every_record_into_one_line_per_id(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(25))
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {f"r{i}" for i in range(25)}
    line = out["r3"]
    assert set(line) == {"id"} | SCORE_FIELDS
    assert line["score"] == 0.5
    assert line["error"] is None
    assert line["raw"] == "0.5"
    assert line["backend"] == "fake"
    assert len(line["prompt_sha256"]) == 64
    assert (summary.scored, summary.failed, summary.skipped, summary.records) == (25, 0, 0, 25)
    assert summary.exit_status == 0
    assert summary.rate > 0
    assert "25 scored, 0 failed, 0 skipped as done" in summary.describe()


def test_default_id_is_the_zero_based_line_number_and_blank_lines_are_skipped(tmp_path):
    rows = [
        {"question": "q", "response": "a"},
        "",
        "   ",
        {"question": "q", "response": "a"},
        {"id": "x", "question": "q", "response": "a"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert set(by_id(tmp_path / "out.jsonl")) == {0, 3, "x"}
    assert summary.records == 3


def test_an_integer_id_and_its_string_are_different_ids(tmp_path):
    rows = [
        {"id": 1, "question": "q", "response": "a"},
        {"id": "1", "question": "q", "response": "a"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert summary.duplicates == 0
    assert sorted(map(repr, by_id(tmp_path / "out.jsonl"))) == ["'1'", "1"]


def test_a_utf8_byte_order_mark_does_not_spoil_the_first_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(records(1)[0]).encode() + b"\n")
    run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert by_id(tmp_path / "out.jsonl")["r0"]["score"] == 0.5


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("line", "expected_id", "message"),
    [
        ("{not json", 0, "not valid JSON"),
        ('["a", "list"]', 0, "is not a JSON object (list)"),
        ("17", 0, "is not a JSON object (int)"),
        ('{"id": "m", "question": "q"}', "m", "'response' must be a string, got nothing"),
        (
            '{"id": "m", "question": 3, "response": "a"}',
            "m",
            "'question' must be a string, got int",
        ),
        ('{"id": 1.5, "question": "q", "response": "a"}', 0, "'id' must be a string or an integer"),
        (
            '{"id": true, "question": "q", "response": "a"}',
            0,
            "'id' must be a string or an integer",
        ),
        ('{"id": [1], "question": "q", "response": "a"}', 0, "'id' must be a string or an integer"),
        (
            '{"id": "m", "question": "q", "response": "a", "image": "x.png", "images": []}',
            "m",
            "not both",
        ),
        ('{"id": "m", "question": "q", "response": "a", "images": "x.png"}', "m", "must be a list"),
    ],
)
def test_an_unusable_line_becomes_an_input_error_record(tmp_path, line, expected_id, message):
    source = write_jsonl(
        tmp_path / "in.jsonl", [line, {"id": "ok", "question": "q", "response": "a"}]
    )
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    bad = out[expected_id]
    assert bad["score"] is None
    assert bad["error_type"] == "InputError"
    assert message in bad["error"]
    assert bad["metadata"] == {"input_line": 0}
    assert out["ok"]["score"] == 0.5
    assert len(backend.requests) == 1  # the bad line never reached the model
    assert (summary.scored, summary.failed) == (1, 1)
    assert summary.exit_status == 1


def test_invalid_utf8_in_a_line_is_an_error_record_not_a_crash(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"id": "bad", "question": "\xff", "response": "a"}\n'
        + b'{"id": "ok", "question": "q", "response": "a"}\n'
    )
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out[0]["error_type"] == "InputError"
    assert out["ok"]["score"] == 0.5
    assert summary.exit_status == 1


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
    assert out["p"]["score"] is None
    assert out["p"]["error_type"] == "ScoreParseError"
    assert out["p"]["raw"] == "I cannot say"
    assert (summary.scored, summary.failed, summary.exit_status) == (1, 2, 1)


def test_duplicate_ids_judge_the_first_record_only_and_are_reported(tmp_path):
    rows = [
        {"id": "a", "question": "first", "response": "x"},
        {"id": "b", "question": "q", "response": "x"},
        {"id": "a", "question": "second", "response": "x"},
        {"question": "q", "response": "x"},  # default id 3 ...
        {"id": 3, "question": "q", "response": "x"},  # ... repeated explicitly
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"a", "b", 3}
    assert all(line["score"] == 0.5 for line in out.values())
    assert not any("second" in text_of(r) for r in backend.requests)
    assert summary.duplicates == 2
    assert summary.duplicate_examples == [("a", 2), (3, 4)]
    assert summary.exit_status == 1
    assert "2 duplicate ids not judged: 'a' (line 2), 3 (line 4)" in summary.describe()
    # A re-run reports them again, and still writes nothing twice.
    again = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    assert (again.skipped, again.duplicates, again.exit_status) == (3, 2, 1)
    assert len(results(tmp_path / "out.jsonl")) == 3


# ----------------------------------------------------------------------- resume


def test_a_rerun_scores_only_the_ids_without_a_result(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(10))
    output = tmp_path / "out.jsonl"
    run_batch(judge_with(), write_jsonl(tmp_path / "first.jsonl", records(4)), output)
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, output)
    assert len(backend.requests) == 6
    assert (summary.scored, summary.skipped) == (6, 4)
    assert set(by_id(output)) == {f"r{i}" for i in range(10)}
    nothing = FakeBackend(scripted)
    summary = run_batch(judge_with(nothing), source, output)
    assert nothing.requests == []
    assert (summary.scored, summary.skipped, summary.exit_status) == (0, 10, 0)


def test_a_torn_last_line_is_cut_off_and_its_id_scored_again(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(6))
    output = tmp_path / "out.jsonl"
    run_batch(judge_with(), write_jsonl(tmp_path / "first.jsonl", records(4)), output)
    lines = output.read_bytes().splitlines(keepends=True)
    torn_id = json.loads(lines[-1])["id"]
    output.write_bytes(b"".join(lines[:-1]) + lines[-1][:37])  # killed mid-write
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, output)
    assert len(backend.requests) == 3  # the torn one and the two never started
    assert (summary.scored, summary.skipped) == (3, 3)
    out = by_id(output)
    assert set(out) == {f"r{i}" for i in range(6)}
    assert out[torn_id]["score"] == 0.5


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    output = tmp_path / "out.jsonl"
    run_batch(judge_with(), write_jsonl(tmp_path / "first.jsonl", records(2)), output)
    output.write_bytes(output.read_bytes().rstrip(b"\n"))
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, output)
    assert (len(backend.requests), summary.skipped) == (1, 2)
    assert set(by_id(output)) == {"r0", "r1", "r2"}


def test_an_output_that_is_not_a_result_file_is_refused_and_left_alone(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    output = tmp_path / "out.jsonl"
    original = b'{"question": "someone else\'s data"}\n{"id": 1, "score": 0.5}\n'
    output.write_bytes(original)
    with pytest.raises(BatchError, match="line 1 is not a batch result"):
        run_batch(judge_with(), source, output)
    assert output.read_bytes() == original


def test_the_input_cannot_be_its_own_output(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    with pytest.raises(BatchError, match="is the input file"):
        run_batch(judge_with(), source, tmp_path / "." / "in.jsonl")


def test_two_runs_cannot_write_one_output_at_once(tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="output locking is POSIX only")
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    output = tmp_path / "out.jsonl"
    with output.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BatchError, match="another batch run is writing"):
            run_batch(judge_with(), source, output)
    assert run_batch(judge_with(), source, output).scored == 3


def test_retry_failed_rescoring_keeps_one_line_per_id(tmp_path):
    rows = [
        *records(5),
        {"id": "flaky", "question": "fail-timeout", "response": "a"},
        {"id": "bad", "question": "q"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    first = run_batch(judge_with(), source, output)
    assert (first.scored, first.failed, first.exit_status) == (5, 2, 1)

    # Without --retry-failed a failure stays: nothing is sent, the status still says 1.
    idle = FakeBackend(lambda request: "0.9")
    second = run_batch(judge_with(idle), source, output)
    assert idle.requests == []
    assert (second.skipped, second.skipped_failed, second.exit_status) == (7, 2, 1)
    assert "2 of them failures" in second.describe()

    # With it, the failures are judged again (the flaky host now answers).
    healed = FakeBackend(lambda request: "0.9")
    third = run_batch(judge_with(healed), source, output, retry_failed=True)
    assert len(healed.requests) == 1  # the bad input line is re-checked, not sent
    assert (third.scored, third.failed, third.skipped) == (1, 1, 5)
    assert third.compacted
    out = by_id(output)
    assert len(results(output)) == 7
    assert out["flaky"]["score"] == 0.9
    assert out["bad"]["error_type"] == "InputError"
    assert out["r0"]["score"] == 0.5  # successes are kept as they were
    assert third.exit_status == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_a_run_killed_while_retrying_is_finished_by_the_next(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(4))
    output = tmp_path / "out.jsonl"
    failing = [
        {"id": f"r{i}", "score": None, "error": "x", "error_type": "BackendTimeoutError"}
        for i in range(4)
    ]
    # As a killed --retry-failed run leaves it: old failures, then two new results.
    rescored = [{"id": "r1", "score": 0.5}, {"id": "r3", "score": None, "error": "y"}]
    write_jsonl(output, [*failing, *rescored])
    plain = run_batch(judge_with(FakeBackend(["0.7"])), source, output)
    assert plain.compacted  # two lines for one id: the last one wins
    assert (plain.skipped, plain.skipped_failed) == (4, 3)
    assert len(results(output)) == 4
    retried = run_batch(judge_with(FakeBackend(["0.7"])), source, output, retry_failed=True)
    assert retried.scored == 3
    out = by_id(output)
    assert out["r1"]["score"] == 0.5
    assert {out[f"r{i}"]["score"] for i in (0, 2, 3)} == {0.7}
    assert retried.exit_status == 0


def test_results_for_ids_not_in_the_input_are_kept(tmp_path):
    output = tmp_path / "out.jsonl"
    write_jsonl(
        output, [{"id": "elsewhere", "score": 0.1}, {"id": "r0", "score": None, "error": "e"}]
    )
    run_batch(
        judge_with(), write_jsonl(tmp_path / "in.jsonl", records(2)), output, retry_failed=True
    )
    assert set(by_id(output)) == {"elsewhere", "r0", "r1"}


def test_a_stale_compaction_file_is_removed(tmp_path):
    output = tmp_path / "out.jsonl"
    stale = tmp_path / ".out.jsonl.compacting"
    stale.write_text("half a rewrite")
    run_batch(judge_with(), write_jsonl(tmp_path / "in.jsonl", records(2)), output)
    assert not stale.exists()


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
    assert summary.exit_status == 3
    assert "run the same command again to resume" in summary.describe()
    written = by_id(output)
    assert len(written) == 10
    assert all(line["score"] == 0.5 for line in written.values())
    rest = run_batch(judge_with(SlowHTTP()), source, output, max_concurrency=4)
    assert rest.skipped == len(written)
    assert rest.exit_status == 0
    assert set(by_id(output)) == {f"r{i}" for i in range(40)}


def test_a_judge_that_raises_on_error_still_gets_error_records(tmp_path):
    rows = [{"id": "p", "question": "fail-parse", "response": "a"}, *records(2)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    judge = ThinkingRewardJudge(backend=FakeBackend(scripted), raise_on_error=True)
    summary = run_batch(judge, source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["p"]["score"] is None
    assert out["p"]["error_type"] == "ScoreParseError"
    assert (summary.scored, summary.failed) == (2, 1)


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from backends import FakeBackend
    from judge import ThinkingRewardJudge
    from judge.batch.runner import run_batch

    def slow(request):
        time.sleep(0.002)
        return "junk" if "Question: q7\\n" in request.messages[1]["content"][0]["text"] else "0.5"

    judge = ThinkingRewardJudge(backend=FakeBackend(slow))
    summary = run_batch(judge, sys.argv[1], sys.argv[2], max_concurrency=3)
    sys.exit(summary.exit_status)
    """
)


def test_sigkill_at_any_point_then_rerun_leaves_exactly_one_line_per_id(tmp_path):
    rows = [*records(300), "{torn input"]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    command = [sys.executable, str(script), str(source), str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for target in (1, 150):  # kill once the output has at least this many lines
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (output.exists() and output.read_bytes().count(b"\n") >= target):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        results_so_far = output.read_bytes().splitlines()
        assert len({json.loads(line)["id"] for line in results_so_far}) == len(results_so_far)
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, check=False)
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    out = by_id(output)
    assert set(out) == {f"r{i}" for i in range(300)} | {300}
    assert out[300]["error_type"] == "InputError"
    assert out["r7"]["error_type"] == "ScoreParseError"
    assert sum(line["score"] == 0.5 for line in out.values()) == 299


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


# ----------------------------------------------------------------------- images


def png(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")
    return path


def image_urls(request: JudgeRequest) -> list[str]:
    return [
        p["image_url"]["url"] for p in request.messages[1]["content"] if p["type"] == "image_url"
    ]


def test_image_paths_are_relative_to_the_input_folder_and_urls_pass_through(tmp_path, monkeypatch):
    data = tmp_path / "data"
    png(data / "img" / "a.png")
    png(tmp_path / "elsewhere" / "b.png", "blue")
    green = png(tmp_path / "green.png", "green").read_bytes()
    data_url = "data:image/png;base64," + base64.b64encode(green).decode()
    rows = [
        {"id": "rel", "question": "q", "response": "a", "image": "img/a.png"},
        {
            "id": "abs",
            "question": "q",
            "response": "a",
            "images": [str(tmp_path / "elsewhere" / "b.png")],
        },
        {"id": "url", "question": "q", "response": "a", "image": "https://example.org/c.png"},
        {"id": "data", "question": "q", "response": "a", "image": data_url},
        {
            "id": "two",
            "question": "q",
            "response": "a",
            "images": ["img/a.png", "https://example.org/c.png"],
        },
        {"id": "missing", "question": "q", "response": "a", "image": "img/nope.png"},
        {
            "id": "hf",
            "question": "q",
            "response": "a",
            "image": {"bytes": None, "path": "img/a.png"},
        },
    ]
    source = write_jsonl(data / "in.jsonl", rows)
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative to the input, not to the cwd
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    sent = [image_urls(request) for request in backend.requests]
    out = by_id(tmp_path / "out.jsonl")
    assert out["missing"]["error_type"] == "ImageError"
    assert "nope.png" in out["missing"]["error"]
    assert (summary.scored, summary.failed) == (6, 1)
    all_urls = [url for urls in sent for url in urls]
    assert "https://example.org/c.png" in all_urls
    assert data_url in all_urls
    assert sum(url.startswith("data:image/png;base64,") for url in all_urls) == 5
    assert sorted(len(urls) for urls in sent) == [1, 1, 1, 1, 1, 2]


# --------------------------------------------------------------- other formats


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_input_is_read_with_string_ids_and_json_image_lists(tmp_path):
    png(tmp_path / "a.png")
    source = write_csv(
        tmp_path / "in.csv",
        ["id", "question", "response", "image", "images"],
        [
            ["x1", "q, with a comma", "line one\nline two", "", ""],
            ["7", "q", "a", "a.png", ""],
            ["", "q", "a", "", '["a.png", "a.png"]'],  # no id: its 0-based data row
            ["x4", "q", "a", "", "not json"],
            ["x5", "q", "", "", ""],  # an empty cell is a missing field
        ],
    )
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"x1", "7", 2, "x4", "x5"}
    assert out["7"]["score"] == 0.5
    assert out[2]["score"] == 0.5
    assert out["x4"]["error_type"] == "InputError"
    assert "JSON array" in out["x4"]["error"]
    assert out["x5"]["error_type"] == "InputError"
    assert (summary.scored, summary.failed) == (3, 2)
    assert "line one\nline two" in text_of(backend.requests[0])
    assert sorted(len(image_urls(r)) for r in backend.requests) == [0, 1, 2]


def test_csv_with_a_byte_order_mark_and_without_an_id_column(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbfquestion,response\nq,a\nq,b\n")
    run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert set(by_id(tmp_path / "out.jsonl")) == {0, 1}


def test_parquet_input(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow, not installed here")
    import pyarrow.parquet as pq

    png(tmp_path / "a.png")
    table = pa.table(
        {
            "id": ["p0", "p1", None, "p3"],
            "question": ["q", "q", "q", None],
            "response": ["a", "a", "a", "a"],
            "images": [None, ["a.png", "a.png"], None, None],  # paths relative to the file
            "image": [None, None, (tmp_path / "a.png").read_bytes(), None],  # raw bytes
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=2)
    assert count_records(tmp_path / "in.parquet") == 4
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), tmp_path / "in.parquet", tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"p0", "p1", 2, "p3"}
    assert out["p3"]["error_type"] == "InputError"
    assert (summary.scored, summary.failed) == (3, 1)
    assert sorted(len(image_urls(r)) for r in backend.requests) == [0, 1, 2]


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "in.parquet").write_bytes(b"PAR1")
    with pytest.raises(BatchError, match="pip install pyarrow"):
        run_batch(judge_with(), tmp_path / "in.parquet", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unknown_extension_is_refused_unless_the_format_is_named(tmp_path):
    source = write_jsonl(tmp_path / "in.txt", records(2))
    with pytest.raises(BatchError, match="cannot tell the format"):
        run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert run_batch(judge_with(), source, tmp_path / "out.jsonl", input_format="jsonl").scored == 2


def test_a_missing_input_is_a_batch_error(tmp_path):
    with pytest.raises(BatchError, match="cannot read"):
        run_batch(judge_with(), tmp_path / "nope.jsonl", tmp_path / "out.jsonl")


def test_count_records_estimates_without_parsing(tmp_path):
    assert count_records(write_jsonl(tmp_path / "a.jsonl", records(5))) == 5
    (tmp_path / "b.jsonl").write_text('{"x": 1}\n{"x": 2}')  # no final newline
    assert count_records(tmp_path / "b.jsonl") == 2
    assert count_records(write_csv(tmp_path / "c.csv", ["question"], [["q"]] * 3)) == 3


# --------------------------------------------------------------------- progress


def test_log_progress_prints_plain_lines_with_counts_and_failures(tmp_path):
    rows = [*records(4), {"id": "p", "question": "fail-parse", "response": "a"}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    stream = io.StringIO()
    progress = make_progress("auto", stream, interval=0.0)  # StringIO is no terminal
    run_batch(judge_with(), source, tmp_path / "out.jsonl", progress=progress)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("thinking-judge batch: 5/5 done")
    assert lines[-1].endswith("1 failed")
    assert "ETA" in lines[-1]
    assert "\r" not in stream.getvalue()


def test_progress_total_leaves_out_what_is_already_done(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(6))
    output = tmp_path / "out.jsonl"
    run_batch(judge_with(), write_jsonl(tmp_path / "first.jsonl", records(4)), output)
    stream = io.StringIO()
    run_batch(judge_with(), source, output, progress=make_progress("log", stream, interval=1e9))
    assert stream.getvalue().startswith("thinking-judge batch: 2/2 done")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_built_in_bar_draws_in_place_when_tqdm_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    stream = FakeTerminal()
    run_batch(judge_with(), source, tmp_path / "out.jsonl", progress=make_progress("auto", stream))
    text = stream.getvalue()
    assert text.startswith("\r")
    assert "100% |" in text
    assert "3/3 done" in text
    assert text.endswith("\n")


def test_tqdm_is_used_on_a_terminal_when_installed(tmp_path):
    pytest.importorskip("tqdm", reason="tqdm is not installed")
    source = write_jsonl(
        tmp_path / "in.jsonl", [*records(3), {"id": "p", "question": "fail-parse", "response": "a"}]
    )
    stream = FakeTerminal()
    run_batch(judge_with(), source, tmp_path / "out.jsonl", progress=make_progress("bar", stream))
    assert "4/4" in stream.getvalue()
    assert "failed=1" in stream.getvalue()


def test_progress_off_draws_nothing(tmp_path, capsys):
    run_batch(judge_with(), write_jsonl(tmp_path / "in.jsonl", records(3)), tmp_path / "o.jsonl")
    assert capsys.readouterr() == ("", "")


# -------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_cli_backend(monkeypatch):
    """The CLI with a fake backend in place of the server or engine it would make."""
    made: list[FakeBackend] = []

    def backend(args, **kwargs):
        made.append(FakeBackend(scripted))
        return made[-1]

    monkeypatch.setattr(cli, "_backend", backend)
    return made


def test_cli_batch_exit_status_and_summary(tmp_path, fake_cli_backend, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", records(3))
    assert cli.main(["batch", str(good), "-o", str(tmp_path / "g.out"), "--progress", "off"]) == 0
    err = capsys.readouterr().err
    assert "thinking-judge batch: 3 scored, 0 failed, 0 skipped as done" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [*records(3), "{oops"])
    assert cli.main(["batch", str(bad), "-o", str(tmp_path / "b.out"), "--progress", "off"]) == 1
    assert "3 scored, 1 failed" in capsys.readouterr().err
    again = [
        "batch",
        str(bad),
        "-o",
        str(tmp_path / "b.out"),
        "--progress",
        "off",
        "--retry-failed",
    ]
    assert cli.main(again) == 1
    assert "0 scored, 1 failed, 3 skipped as done" in capsys.readouterr().err
    assert len(results(tmp_path / "b.out")) == 4


def test_cli_batch_usage_errors_exit_2_before_any_backend_is_made(
    tmp_path, fake_cli_backend, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    assert cli.main(["batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "no input file" in capsys.readouterr().err
    weird = write_jsonl(tmp_path / "in.weird", records(1))
    assert cli.main(["batch", str(weird), "-o", str(tmp_path / "o")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert fake_cli_backend == []
    assert cli.main(["batch", str(source), "-o", str(source)]) == 2
    assert "is the input file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(source), "-o", "o", "--max-concurrency", "0"])
    assert exit_info.value.code == 2


def test_cli_constrained_on_a_backend_without_structured_outputs_is_a_usage_error(
    tmp_path, monkeypatch, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    unconstrained = FakeBackend(scripted)
    unconstrained.supports_structured_outputs = False
    monkeypatch.setattr(cli, "_backend", lambda args, **kwargs: unconstrained)
    assert cli.main(["batch", str(source), "-o", str(tmp_path / "o"), "--constrained"]) == 2
    assert "structured outputs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_foreign_output_file_with_exit_2(tmp_path, fake_cli_backend, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    (tmp_path / "o.jsonl").write_text("hello\n")
    assert cli.main(["batch", str(source), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "not a batch result" in capsys.readouterr().err


def test_cli_shared_options_parse_the_same_for_score_and_batch(monkeypatch):
    monkeypatch.delenv(cli.BASE_URL_ENV, raising=False)
    common = [
        "--base-url",
        "http://127.0.0.1:8000/v1",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--constrained",
        "--expected-score",
        "--output-format",
        "answer_tag",
        "--timeout",
        "5",
        "--model",
        "m",
    ]
    score = cli._parser().parse_args(["score", "--question", "q", "--response", "r", *common])
    batch = cli._parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl", *common])
    for args in (score, batch):
        assert cli._base_urls(args) == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]
        assert cli._judge_options(args) == {
            "constrained": True,
            "expected_score": True,
            "output_format": "answer_tag",
        }
    assert batch.max_concurrency == 64
    backend = cli._backend(batch, max_concurrency=7)
    with backend:
        assert [str(u) for u in backend.base_urls] == cli._base_urls(batch)
        assert backend.max_concurrency == 7
        assert backend.timeout == 5
        assert backend.model == "m"


def test_cli_options_not_given_are_not_passed_to_the_judge():
    args = cli._parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    assert cli._judge_options(args) == {}


def test_cli_base_urls_come_from_the_environment_comma_separated(monkeypatch):
    monkeypatch.setenv(cli.BASE_URL_ENV, "http://127.0.0.1:1/v1, http://127.0.0.1:2/v1")
    args = cli._parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    assert cli._base_urls(args) == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
