"""``thinking-judge score`` (in process, with a fake backend): output and exit status by kind."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendUnavailableError,
)
from judge.failures import ExitStatus, FailureKind, advice
from judge.testing import FakeBackend

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
    lines = err.splitlines()
    assert lines[0].startswith("thinking-judge: the judgment failed: ")
    assert lines[-1] == f"thinking-judge: {advice(kind)}"


def test_an_answer_that_is_not_a_score_is_quoted_and_exits_1(reply, capsys):
    reply("I would say fairly good")
    assert cli.main(SCORE) == ExitStatus.FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert "thinking-judge: the model said 'I would say fairly good'" in err
    assert err.splitlines()[-1] == f"thinking-judge: {advice(FailureKind.PARSE)}"


def test_the_console_script_and_python_m_reach_the_same_main():
    import judge.cli

    assert judge.cli.main is cli.main  # the console script is judge.cli:main
    done = subprocess.run(
        [sys.executable, "-m", "judge.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("thinking-judge ")
