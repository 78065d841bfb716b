"""``judge.batch.progress``: tqdm's bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import io

from batch_fakes import (
    FakeTerminal,
    judge_with,
    records,
    write_jsonl,
)

from judge.batch import (
    make_progress,
    run_batch,
)

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


def test_the_bar_draws_in_place_on_a_terminal(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    stream = FakeTerminal()
    run_batch(judge_with(), source, tmp_path / "out.jsonl", progress=make_progress("auto", stream))
    text = stream.getvalue()
    assert text.startswith("\r")
    assert "100%|" in text
    assert "3/3" in text
    assert text.endswith("\n")


def test_the_bar_shows_the_failures(tmp_path):
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
