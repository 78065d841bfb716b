"""``thinking-judge batch`` run as a user runs it, against the real vLLM server: killed
with SIGKILL again and again, then finished, with exactly one result per input id."""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from judge import SCORE_GRID

N_LINES = 200
BAD_JSON = (13, 150)  # lines that are not JSON: their id is "line:N" (1-based)
NO_RESPONSE, BAD_ID, MISSING_IMAGE = 77, 99, 120
TEXT_ONLY_WITH_DEFAULT_ID = (3, 30, 199)


def batch_command(source: Path, output: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "judge.cli", "batch", str(source), "-o", str(output),
        "--base-url", url, "--constrained", "--max-concurrency", "8", "--progress", "log",
        *extra,
    ]  # fmt: skip


def complete_lines(path: Path) -> list[bytes]:
    """The output's complete lines; a torn last line (none expected) is left out."""
    if not path.exists():
        return []
    return path.read_bytes().split(b"\n")[:-1]


def input_rows(folder: Path, make_png: Callable[..., bytes]) -> tuple[list[str], dict]:
    """200 input lines (text, images, a data URL, bad lines) and the expected outcome by id."""
    (folder / "img").mkdir(parents=True)
    for n, color in enumerate(["red", "green", "blue"]):
        (folder / "img" / f"{n}.png").write_bytes(make_png((112 + 56 * n, 112), color))
    data_url = "data:image/png;base64," + base64.b64encode(make_png((84, 84), "white")).decode()
    lines: list[str] = []
    expected: dict = {}
    for i in range(N_LINES):
        row: dict = {"id": f"item-{i}", "question": f"What is {i} + {i}?"}
        row["response"] = f"<think>{i} + {i} = {2 * i}</think><answer>{2 * i}</answer>"
        outcome = "score"
        if i in BAD_JSON:
            lines.append('{"id": "broken", "question": ')
            expected[f"line:{i + 1}"] = "InputError"
            continue
        if i in TEXT_ONLY_WITH_DEFAULT_ID:
            del row["id"]
        if i == NO_RESPONSE:
            del row["response"]
            outcome = "InputError"
        if i == BAD_ID:
            row["id"] = [i]
            outcome = "InputError"
        if i % 20 == 5:
            row["image"] = f"img/{i % 3}.png"  # relative to the input file's folder
        if i % 20 == 11:
            row["images"] = ["img/0.png", "img/2.png"]
        if i == 50:
            row["image"] = data_url
        if i == MISSING_IMAGE:
            row["image"] = "img/no-such.png"
            outcome = "ImageError"
        lines.append(json.dumps(row))
        default = f"line:{i + 1}"
        expected[default if i == BAD_ID else row.get("id", default)] = outcome
    return lines, expected


def test_batch_killed_at_random_points_then_finished_has_one_result_per_id(
    vllm_server, make_png, tmp_path
):
    folder = tmp_path / "data"
    lines, expected = input_rows(folder, make_png)
    source = folder / "inputs.jsonl"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out" / "scores.jsonl"
    command = batch_command(source, output, str(vllm_server.base_urls[0]))

    # Kill once the output holds K lines, for K drawn (seeded) across the run: the
    # trigger is the progress made, not a wall-clock delay.
    targets = sorted(random.Random(20240611).sample(range(1, N_LINES - 20), 4))
    for run, target in enumerate(targets):
        log = tmp_path / f"run{run}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 600
            try:
                while len(complete_lines(output)) < target:
                    assert process.poll() is None, (
                        f"run {run} ended before {target} results:\n{log.read_text()[-3000:]}"
                    )
                    assert time.monotonic() < deadline, f"no progress: {log.read_text()[-3000:]}"
                    time.sleep(0.01)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait()
        data = output.read_bytes()
        assert data.endswith(b"\n"), "a kill left a torn line"  # one os.write per line
        ids = [json.loads(line)["id"] for line in data.splitlines()]
        assert len(ids) == len(set(ids)), f"an id was written twice after kill {run}"
        assert target <= len(ids) < N_LINES  # killed mid-run, not after it

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 1, finished.stderr[-3000:]  # the bad lines failed
    summary = finished.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"thinking-judge batch: {N_LINES} records read: ")
    assert "skipped as done" in summary
    assert f"{N_LINES} records read: 0 scored" not in summary  # the kills left work

    results = [json.loads(line) for line in output.read_text().splitlines()]
    by_id = {json.dumps(r["id"]): r for r in results}
    assert len(by_id) == len(results) == N_LINES
    assert set(by_id) == {json.dumps(i) for i in expected}
    for rid, outcome in expected.items():
        result = by_id[json.dumps(rid)]
        if outcome == "score":
            assert result["error"] is None, result
            assert result["raw"] in SCORE_GRID  # constrained: always on the grid
            assert result["score"] == float(result["raw"])
            assert result["backend"] == "vllm-server"
        else:
            assert result["score"] is None
            assert result["error_type"] == outcome, result
    # The images reached the model: their prompts are longer than text alone.
    tokens = {rid: by_id[json.dumps(rid)]["usage"]["prompt_tokens"] for rid in ("item-1", "item-5")}
    assert tokens["item-5"] > tokens["item-1"] + 20
    two = by_id[json.dumps("item-11")]["usage"]["prompt_tokens"]
    assert two > tokens["item-5"]

    # --retry-failed judges the failures again; the file keeps one line per id.
    retried = subprocess.run(
        [*command, "--retry-failed"], capture_output=True, text=True, timeout=600, check=False
    )
    assert retried.returncode == 1, retried.stderr[-3000:]
    failures = sum(outcome != "score" for outcome in expected.values())
    assert f"0 scored, {failures} failed, {N_LINES - failures} skipped as done" in retried.stderr
    again = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(json.dumps(r["id"]) for r in again) == sorted(by_id)
    assert not list(output.parent.glob(".*compacting"))


def test_batch_against_a_dead_server_stops_with_exit_3_and_writes_no_failures(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"question": "q", "response": "r"}\n' * 5)
    output = tmp_path / "out.jsonl"
    command = batch_command(source, output, "http://127.0.0.1:9/v1")
    command.remove("--constrained")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert complete_lines(output) == []
    assert "unreachable" in proc.stderr
    assert "127.0.0.1:9" in proc.stderr
    assert "run the same command again to resume" in proc.stderr


@pytest.mark.parametrize("flag", ["--expected-score", "--output-format=answer_tag"])
def test_batch_passes_the_judge_options_through(vllm_server, tmp_path, flag):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": i, "question": "What is 2+2?", "response": "<answer>4</answer>"})
            + "\n"
            for i in range(3)
        )
    )
    output = tmp_path / "out.jsonl"
    command = batch_command(source, output, str(vllm_server.base_urls[0]), flag)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in results) == [0, 1, 2]
    for result in results:
        if flag == "--expected-score":
            assert result["metadata"]["sampling"]["logprobs"] is True
            assert "expected_score" in result["metadata"]  # how it was computed, or why not
        else:
            assert result["metadata"]["output_format"] == "answer_tag"
            assert result["raw"].startswith("<answer>")
