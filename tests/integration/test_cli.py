"""The thinking-judge command, run as a user runs it, against real vLLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from judge import SCORE_GRID

QUESTION = "What is 2+2?"
RESPONSE = "<think>2+2=4</think><answer>4</answer>"


def thinking_judge(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "judge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory, make_png_module) -> Path:
    path = tmp_path_factory.mktemp("img") / "chart.jpg"  # a PNG named .jpg on purpose
    path.write_bytes(make_png_module((112, 112)))
    return path


@pytest.fixture(scope="module")
def make_png_module():
    import io

    from PIL import Image

    def make(size):
        buffer = io.BytesIO()
        Image.new("RGB", size, "green").save(buffer, format="PNG")
        return buffer.getvalue()

    return make


def score_on(server, *extra: str) -> subprocess.CompletedProcess[str]:
    url = str(server.base_urls[0])
    return thinking_judge(
        "score", "--base-url", url, "--question", QUESTION, "--response", RESPONSE, *extra
    )


def test_score_on_a_server_reports_the_junk_answer_as_a_failure(vllm_server, chart):
    proc = score_on(vllm_server, "--image", str(chart), "--json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["score"] is None
    assert result["error_type"] == "ScoreParseError"
    assert result["backend"] == "vllm-server"
    assert result["usage"]["prompt_tokens"] > 200
    assert "the judgment failed" in proc.stderr


def test_score_text_only_uses_fewer_tokens_than_with_an_image(vllm_server, chart):
    with_image = json.loads(score_on(vllm_server, "--json", "--image", str(chart)).stdout)
    text_only = json.loads(score_on(vllm_server, "--json").stdout)
    assert with_image["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"]


def test_a_dead_server_is_one_clear_line_and_exit_3():
    proc = thinking_judge(
        "score",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--question",
        QUESTION,
        "--response",
        RESPONSE,
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("thinking-judge:")]
    assert lines
    assert "127.0.0.1:9" in lines[0]


def test_a_missing_model_folder_is_one_line_at_once_and_exit_2(tmp_path):
    """A path that does not exist is refused before vLLM loads (no hub retries)."""
    missing = tmp_path / "no-such-model"
    proc = thinking_judge(
        "score", "--backend", "offline", "--model", str(missing), "--question", QUESTION,
        "--response", RESPONSE,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no such folder" in lines[0]
    assert str(missing) in lines[0]


def test_a_model_that_cannot_be_loaded_is_one_clear_line_and_exit_3(tmp_path):
    """A folder vLLM cannot load (a config without a model type) ends in one clear line."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    proc = thinking_judge(
        "score", "--backend", "offline", "--model", str(broken), "--question", QUESTION,
        "--response", RESPONSE,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("thinking-judge: cannot load model")
    assert str(broken) in last
    assert "Traceback" not in proc.stderr


def test_server_backend_without_a_url_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("THINKING_JUDGE_BASE_URL", raising=False)
    proc = thinking_judge("score", "--backend", "server", "--question", "q", "--response", "r")
    assert proc.returncode == 2
    assert "--base-url" in proc.stderr


def test_demo_scores_end_to_end_on_the_in_process_engine(tmp_path):
    proc = thinking_judge("demo", "--cache-dir", str(tmp_path / "cache"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["raw"] in SCORE_GRID
    assert result["score"] == float(result["raw"])
    assert result["backend"] == "vllm-offline"
    assert result["usage"]["prompt_tokens"] > 200
    assert "RANDOM weights" in proc.stderr
    assert (tmp_path / "cache" / "tiny-qwen2.5-vl" / "config.json").exists()


def test_score_offline_on_the_cpu_runs_eagerly(tiny_model, chart):
    # vLLM's CPU build cannot compile the model: the CLI turns on enforce_eager by itself.
    proc = thinking_judge(
        "score",
        "--backend",
        "offline",
        "--model",
        str(tiny_model),
        "--max-model-len",
        "4096",
        "--constrained",
        "--image",
        str(chart),
        "--question",
        QUESTION,
        "--response",
        RESPONSE,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["raw"] in SCORE_GRID
