"""``thinking-judge score``: output, exit status by kind, and each failure in one line.

In process with the project's fake backend for what the model says; against a real
closed port, a real missing image file and a real missing model folder for what a user
gets wrong.
"""

from __future__ import annotations

import importlib
import json
import socket
import subprocess
import sys

import pytest

from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendUnavailableError,
)
from judge.cli.common import score_line
from judge.failures import ExitStatus, FailureKind, advice
from judge.testing import FakeBackend
from judge.types import ThinkingScore

cli = importlib.import_module("judge.cli.main")
cli_common = importlib.import_module("judge.cli.common")

SCORE = ["score", "--question", "What is 2+2?", "--response", "<think>4</think>4"]


@pytest.fixture
def reply(monkeypatch):
    """Set what the fake backend the CLI is given answers."""
    answers: list[object] = []
    monkeypatch.setattr(
        cli_common, "make_backend", lambda args, **kwargs: FakeBackend([answers[0]])
    )
    return answers.append


@pytest.fixture
def scores(monkeypatch):
    """Set the score distribution the fake backend answers with (token logprobs included)."""
    given: list[object] = []
    monkeypatch.setattr(
        cli_common, "make_backend", lambda args, **kwargs: FakeBackend(scores=[given[0]])
    )
    return given.append


def test_a_score_is_printed_alone_on_stdout_and_exits_0(reply, capsys):
    reply("0.7")
    assert cli.main(SCORE) == ExitStatus.OK
    out, err = capsys.readouterr()
    assert out == "0.7\n"
    assert err == ""


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (BackendConnectionError("refused"), FailureKind.CONNECTION, ExitStatus.UNAVAILABLE),
        (BackendUnavailableError("no engine"), FailureKind.UNAVAILABLE, ExitStatus.UNAVAILABLE),
        (
            BackendContextLengthError("too long", status=400),
            FailureKind.CONTEXT_LENGTH,
            ExitStatus.FAILED,
        ),
        (BackendError("HTTP 500"), FailureKind.SERVER, ExitStatus.FAILED),
    ],
)
def test_a_failure_exits_with_its_kinds_status_and_advice(reply, capsys, error, kind, status):
    reply(error)
    assert cli.main([*SCORE, "--json"]) == status
    out, err = capsys.readouterr()
    assert json.loads(out)["error_kind"] == kind.value
    [line] = err.splitlines()  # what happened and what to do, in one line
    assert line == f"thinking-judge: the judgment failed: {error}; {advice(kind)}"


def test_an_answer_that_is_not_a_score_is_quoted_once_and_exits_1(reply, capsys):
    reply("I would say fairly good")
    assert cli.main(SCORE) == ExitStatus.FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "thinking-judge: the judgment failed: the model output 'I would say fairly good' is "
        f"not a score in [0, 1]; {advice(FailureKind.PARSE)}\n"
    )


def test_a_long_answer_is_bounded_and_scrubbed_without_langchains_link(reply, capsys):
    said = "The response\nreasons well. " * 20 + "data:image/png;base64," + "iVBORw0KGgo" * 30
    reply(said)
    assert cli.main(SCORE) == ExitStatus.FAILED
    _, err = capsys.readouterr()
    [line] = err.splitlines()
    assert "For troubleshooting" not in line
    assert "OUTPUT_PARSING_FAILURE" not in line
    assert "iVBORw0KGgo" not in line  # no base64, however long the output
    assert (
        "the model output 'The response reasons well. The response reasons well. The "
        f"response reasons well.'… ({len(said)} characters) is not a score" in line
    )
    assert line.count("The response") == 3  # quoted once, cut at 80 characters


def test_the_json_error_has_no_langchain_link(reply, capsys):
    reply("fairly good")
    assert cli.main([*SCORE, "--json"]) == ExitStatus.FAILED
    result = json.loads(capsys.readouterr().out)
    assert result["error"] == "the model output 'fairly good' is not a score in [0, 1]"
    assert result["raw"] == "fairly good"  # the whole output stays in raw


def test_the_expected_score_is_printed_without_json(scores, capsys):
    scores({0.7: 0.6, 0.8: 0.4})
    assert cli.main([*SCORE, "--expected-score"]) == ExitStatus.OK
    out, err = capsys.readouterr()
    assert out == "0.7 (expected 0.74)\n"
    assert err == ""


def test_score_line_without_an_expected_score_is_the_score_alone():
    assert score_line(ThinkingScore(score=0.7)) == "0.7"
    assert score_line(ThinkingScore(score=1.0, expected_score=0.98765)) == "1 (expected 0.988)"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_a_dead_port_is_one_line_saying_what_to_do(capsys):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    assert cli.main([*SCORE, "--base-url", url, "--timeout", "5"]) == ExitStatus.UNAVAILABLE
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"thinking-judge: the judgment failed: connection to {url}/chat")
    assert line.endswith(f"; {advice(FailureKind.CONNECTION)}")
    assert "thinking-judge serve" in line


def test_a_missing_image_is_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/v1"  # never asked: the input fails first
    missing = tmp_path / "chart.png"
    assert cli.main([*SCORE, "--base-url", url, "--image", str(missing)]) == ExitStatus.FAILED
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"thinking-judge: the judgment failed: image file not found: {missing}; "
        f"{advice(FailureKind.INPUT)}"
    )


@pytest.mark.parametrize("model", ["./no-such-folder", "../x", "/no/such/abs/path", "~/x"])
def test_a_missing_model_folder_offline_is_one_line_at_once(model, capsys):
    status = cli.main([*SCORE, "--backend", "offline", "--model", model])
    assert status == ExitStatus.USAGE
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"thinking-judge: --model {model}: no such folder (")


def test_an_uncached_hub_id_offline_is_one_line(capsys):
    # The suite sets HF_HUB_OFFLINE=1: the hub is not asked, and that is said.
    status = cli.main([*SCORE, "--backend", "offline", "--model", "someone/not-cached"])
    assert status == ExitStatus.UNAVAILABLE
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "thinking-judge: --model someone/not-cached: not in the local hub cache, and "
        "HF_HUB_OFFLINE is set; download it first (hf download someone/not-cached) or pass "
        "its folder"
    )


def test_the_console_script_and_python_m_reach_the_same_main():
    import judge.cli

    assert judge.cli.main is cli.main  # the console script is judge.cli:main
    done = subprocess.run(
        [sys.executable, "-m", "judge.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("thinking-judge ")
