"""The LangChain / LangSmith recipes, run end to end against the session's real vLLM server.

The server serves the tiny random-weight model, so the judge runs constrained (its
answers are then grid scores) and the agents' answers are noise: the tests check the
mechanics (every example judged, errors reported as errors, one batched judge call per
rerank, the loop's routing), not the quality of any answer. Nothing but the local
server is contacted: any other connection fails the test.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from recipe_files import load_recipe, recipe_path
from server_metrics import served_requests, wait_for_requests

from backends import FakeBackend, VLLMServerBackend
from judge import SCORE_GRID, ThinkingRewardJudge

GRID = {float(value) for value in SCORE_GRID}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def only_loopback(monkeypatch):
    """Fail on any connection that is not to this machine (no LangSmith, no hub)."""
    attempts: list[object] = []
    connect = socket.socket.connect

    def guarded(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in LOOPBACK and not host.startswith("/"):
            attempts.append(address)
            raise OSError(f"only loopback connections in these tests, not {address}")
        return connect(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    yield
    assert attempts == []


@pytest.fixture(scope="module")
def server_args(vllm_server: VLLMServerBackend) -> list[str]:
    return ["--base-url", str(vllm_server.base_url), "--model", vllm_server.model]


# --------------------------------------------------------------------------- LangSmith


@pytest.mark.filterwarnings("ignore:'upload_runs' parameter is in beta")
def test_langsmith_evaluate_recipe(server_args, only_loopback, capsys):
    recipe = load_recipe("langsmith_evaluate")
    # The random-weight agent answers in the reasoning format instead of blank lines.
    agent = ["--agent-regex", r"<think>[a-z ]{4,24}</think><answer>[0-9]{1,3}</answer>"]
    summary = recipe.main([*server_args, *agent])
    keys = {"thinking_reward", "thinking_reward_fn"}
    for mode in ("sync", "async"):
        lines = summary[mode]
        assert [line["question"] for line in lines] == recipe.QUESTIONS
        for line in lines:
            assert set(line["feedback"]) == keys
            if line["question"].strip():
                assert line["response"]  # the agent on the server answered
            for feedback in line["feedback"].values():
                if line["question"].strip() and line["response"].strip():
                    assert not feedback["error"], feedback
                    assert feedback["score"] in GRID
                    assert "rubric: logical soundness" in feedback["comment"]
                else:
                    # The blank question, or an answer of blank lines (the random-weight
                    # agent writes those for some questions): an evaluation error that
                    # names the empty field, never a score.
                    field = "question" if not line["question"].strip() else "response"
                    assert feedback["error"]
                    assert feedback["score"] is None
                    assert feedback["comment"] == (
                        "evaluation error, no score: InputError: judge input field "
                        f"{field!r} is empty"
                    )
        # At least one real judgment per mode, so the test cannot pass on errors alone.
        assert any(not f["error"] for line in lines for f in line["feedback"].values())
    out = capsys.readouterr().out
    assert "== langsmith.evaluate" in out
    assert "ERROR" in out


# --------------------------------------------------------------------------- rerank


def test_rerank_chain_recipe(server_args, vllm_server, only_loopback, monkeypatch):
    recipe = load_recipe("rerank_chain")
    calls: list[int] = []
    batch = ThinkingRewardJudge.batch

    def counting_batch(self, inputs, *args, **kwargs):
        calls.append(len(inputs))
        return batch(self, inputs, *args, **kwargs)

    monkeypatch.setattr(ThinkingRewardJudge, "batch", counting_batch)
    n = 3
    before = served_requests(vllm_server)
    result = recipe.main([*server_args, "--n", str(n), "--policy", "scripted"])

    assert calls == [n, n]  # one batched judge call per rerank (chain, then best_of_n)
    ranking = result["ranking"]
    assert len(ranking) == n
    assert sorted(r.index for r in ranking) == list(range(n))
    scored = [r for r in ranking if r.rank is not None]
    assert [r.rank for r in scored] == list(range(1, len(scored) + 1))
    values = [r.value for r in scored]
    assert values == sorted(values, reverse=True)
    for ranked in scored:
        assert ranked.score.score in GRID
        assert 0.0 <= ranked.value <= 1.0
        # ranked by the expected score where the logprobs gave one
        expected = ranked.score.expected_score
        assert ranked.value == (expected if expected is not None else ranked.score.score)
    assert result["best"] in recipe.SCRIPTED_ANSWERS
    assert {r.text for r in ranking} <= set(recipe.SCRIPTED_ANSWERS)

    # At the server: n judgments per rerank, plus the expected score's continuations,
    # which the scores record (the best-of-n ranking is not returned: at least n).
    continuations = sum(
        len(r.score.metadata.get("expected_score", {}).get("continuations", [])) for r in ranking
    )
    at_least = before + n + continuations + n
    assert wait_for_requests(vllm_server, at_least) >= at_least


def check_ranking(ranking, n: int) -> None:
    """Best first, ranks 1..k, failures last with no rank and an error."""
    assert len(ranking) == n
    ranks = [r.rank for r in ranking]
    scored = [rank for rank in ranks if rank is not None]
    assert ranks == scored + [None] * (n - len(scored))
    assert scored == list(range(1, len(scored) + 1))
    for ranked in ranking:
        assert (ranked.value is None) == (ranked.rank is None) == (ranked.score.error is not None)


def test_rerank_chain_with_the_policy_on_the_server(vllm_server, only_loopback):
    recipe = load_recipe("rerank_chain")
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True, expected_score=True)
    policy = recipe.server_policy(str(vllm_server.base_url), vllm_server.model)
    ranking = recipe.rerank_chain(policy, judge, 3).invoke({"question": recipe.QUESTION})
    check_ranking(ranking, 3)
    for ranked in ranking:  # blank samples are refused, never scored
        if not ranked.text.strip():
            assert ranked.score.error_type == "InputError"


# --------------------------------------------------------------------------- LangGraph


def test_self_critique_recipe(server_args, only_loopback):
    recipe = load_recipe("self_critique_langgraph")
    state = recipe.main(
        [*server_args, "--threshold", "1.0", "--max-rounds", "3", "--agent", "scripted"]
    )
    rounds = state["rounds"]
    assert [r["answer"] for r in rounds] == [*recipe.SCRIPTED_ANSWERS, recipe.SCRIPTED_ANSWERS[-1]][
        : len(rounds)
    ]
    assert 1 <= len(rounds) <= 3
    for done in rounds:
        assert done["score"] in GRID
        assert done["comment"].startswith(f"{done['score']:g}/1: ")
    last = rounds[-1]["score"]
    if state["stopped"] == "accepted":
        assert last >= 1.0
    else:
        assert state["stopped"] == "max_rounds"
        assert len(rounds) == 3
        assert all(done["score"] < 1.0 for done in rounds)


def test_self_critique_with_the_agent_on_the_server(server_args, only_loopback):
    recipe = load_recipe("self_critique_langgraph")
    state = recipe.main([*server_args, "--max-rounds", "2"])
    assert 1 <= len(state["rounds"]) <= 2
    last = state["rounds"][-1]
    if state["stopped"] == "judge_error":  # the tiny model may answer with blank lines
        assert last["score"] is None
        assert last["comment"].startswith("evaluation error, no score")
    else:
        assert last["score"] in GRID


class Prompts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[list] = []

    def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
        self.seen.append(messages[0])


@pytest.mark.parametrize(
    ("scores", "stopped", "answers"),
    [
        ([0.2, 0.5, 0.9], "accepted", 3),
        ([0.9], "accepted", 1),
        ([0.1, 0.2, 0.3, 0.4], "max_rounds", 3),
    ],
)
def test_self_critique_routing(scores, stopped, answers):
    recipe = load_recipe("self_critique_langgraph")
    prompts = Prompts()
    agent = FakeListChatModel(responses=["a1", "a2", "a3"], callbacks=[prompts])
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=scores))
    graph = recipe.build_graph(agent, judge, threshold=0.7, max_rounds=3)
    state = graph.invoke({"question": "Q?"})
    assert state["stopped"] == stopped
    assert [r["answer"] for r in state["rounds"]] == ["a1", "a2", "a3"][:answers]
    assert len(prompts.seen) == answers
    for number, prompt in enumerate(prompts.seen[1:], 1):
        previous = state["rounds"][number - 1]
        assert prompt[-2].content == previous["answer"]  # its own last answer
        assert previous["comment"] in prompt[-1].content  # and the judge's comment


def test_self_critique_stops_on_a_failed_judgment():
    recipe = load_recipe("self_critique_langgraph")
    agent = FakeListChatModel(responses=["a1", "a2"])
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.2", "not a score"]))
    state = recipe.build_graph(agent, judge, threshold=0.7).invoke({"question": "Q?"})
    assert state["stopped"] == "judge_error"
    assert [r["score"] for r in state["rounds"]] == [0.2, None]
    assert state["rounds"][-1]["comment"].startswith("evaluation error")


@pytest.mark.parametrize("name", ["langsmith_evaluate", "rerank_chain", "self_critique_langgraph"])
def test_recipes_run_as_scripts(name):
    done = subprocess.run(
        [sys.executable, str(recipe_path(name)), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--base-url" in done.stdout
