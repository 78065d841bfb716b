"""``judge.batch.store``: resume, torn lines, the lock, compaction; surviving SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from batch_fakes import (
    by_id,
    judge_with,
    png,
    records,
    results,
    scripted,
    write_jsonl,
)

from backends import FakeBackend
from judge.batch import (
    BatchError,
    run_batch,
)

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_record_changed_under_the_same_id_is_judged_again_and_reported(tmp_path):
    output = tmp_path / "out.jsonl"
    first = [
        {"id": "A", "question": "qa", "response": "a"},
        {"id": "B", "question": "qb", "response": "b"},
    ]
    run_batch(judge_with(), write_jsonl(tmp_path / "one.jsonl", first), output)
    second = [
        {"id": "B", "question": "qb", "response": "b, edited"},
        {"id": "C", "question": "qc", "response": "c"},
    ]
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), write_jsonl(tmp_path / "two.jsonl", second), output)
    assert len(backend.requests) == 2  # B (changed) and C: nothing skipped silently
    assert (summary.scored, summary.skipped, summary.changed) == (2, 0, 1)
    assert "1 changed since judged (judged again)" in summary.describe()
    out = by_id(output)  # compacted: one line per id, B's the new one
    assert set(out) == {"A", "B", "C"}
    assert out["B"]["input_sha256"] != out["A"]["input_sha256"]
    again = run_batch(judge_with(), tmp_path / "two.jsonl", output)
    assert (again.skipped, again.changed, again.exit_status) == (2, 0, 0)


def test_an_image_reference_is_part_of_what_was_judged(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png", "blue")
    output = tmp_path / "out.jsonl"
    row = {"id": "x", "question": "q", "response": "a", "image": "a.png"}
    run_batch(judge_with(), write_jsonl(tmp_path / "in.jsonl", [row]), output)
    summary = run_batch(
        judge_with(), write_jsonl(tmp_path / "in.jsonl", [{**row, "image": "b.png"}]), output
    )
    assert summary.changed == 1


def test_a_fixed_unreadable_line_is_judged_again_without_retry_failed(tmp_path):
    output = tmp_path / "out.jsonl"
    source = write_jsonl(tmp_path / "in.jsonl", ['{"question": "q", "response": '])
    assert run_batch(judge_with(), source, output).failed == 1
    assert run_batch(judge_with(), source, output).skipped_failed == 1  # the same error
    write_jsonl(source, [{"question": "q", "response": "a"}])
    summary = run_batch(judge_with(), source, output)
    assert (summary.changed, summary.scored, summary.exit_status) == (1, 1, 0)
    assert by_id(output)["line:1"]["score"] == 0.5


def test_an_old_result_file_without_fingerprints_still_resumes_and_says_so(tmp_path):
    output = tmp_path / "out.jsonl"
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    run_batch(judge_with(), source, output)
    old = [{k: v for k, v in line.items() if k != "input_sha256"} for line in results(output)]
    write_jsonl(output, old)
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, output)
    assert backend.requests == []
    assert (summary.skipped, summary.unverified, summary.exit_status) == (3, 3, 0)
    assert "3 without a fingerprint" in summary.describe()
    assert "not checked for changes" in summary.describe()


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
    assert set(out) == {f"r{i}" for i in range(300)} | {"line:301"}
    assert out["line:301"]["error_type"] == "InputError"
    assert out["r7"]["error_type"] == "ScoreParseError"
    assert sum(line["score"] == 0.5 for line in out.values()) == 299
