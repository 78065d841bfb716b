"""The judgment cache against the real vLLM server: re-scoring makes no request to it,
not even the expected score's continuations.
"""

from __future__ import annotations

import json

from server_metrics import served_requests, wait_for_requests

from judge import JudgmentCache, ThinkingRewardJudge, cli

QUESTIONS = ["What is 2+2?", "Which bar is the tallest?", "Is 17 prime?", "What is 3*4?"]


def inputs(make_png) -> list[dict]:
    items = [
        {"question": q, "response": f"<think>Working on: {q}</think><answer>{i}</answer>"}
        for i, q in enumerate(QUESTIONS)
    ]
    items[1]["image"] = make_png((32, 32), "blue")
    return items


def test_rescoring_a_batch_with_the_cache_makes_no_request(vllm_server, make_png, tmp_path):
    items = inputs(make_png)
    path = tmp_path / "judgments.sqlite"
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True, cache=path)
    before = served_requests(vllm_server)
    first = judge.batch(items)
    assert all(s.ok for s in first), [s.error for s in first]
    assert [s.metadata["cache"] for s in first] == ["miss"] * len(items)
    settled = wait_for_requests(vllm_server, before + len(items))
    assert settled == before + len(items)

    second = judge.batch(items)
    again = ThinkingRewardJudge(backend=vllm_server, constrained=True, cache=JudgmentCache(path))
    third = again.batch(items)
    assert served_requests(vllm_server) == settled  # not one request more
    for scores in (second, third):
        assert [s.metadata["cache"] for s in scores] == ["hit"] * len(items)
        assert [s.score for s in scores] == [s.score for s in first]
        assert [s.raw for s in scores] == [s.raw for s in first]


async def test_the_async_path_hits_too(vllm_server, make_png, tmp_path):
    items = inputs(make_png)[:2]
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True, cache=tmp_path / "c.db")
    before = served_requests(vllm_server)
    first = await judge.abatch(items)
    assert all(s.ok for s in first)
    settled = wait_for_requests(vllm_server, before + len(items))
    second = await judge.abatch(items)
    assert served_requests(vllm_server) == settled
    assert [s.metadata["cache"] for s in second] == ["hit", "hit"]


async def test_the_expected_score_and_its_continuations_are_cached(vllm_server, tmp_path):
    items = [
        {"question": f"Cached question {i}?", "response": f"<think>step {i}</think>{i}"}
        for i in range(6)
    ]
    path = tmp_path / "expected.sqlite"
    judge = ThinkingRewardJudge(
        backend=vllm_server, constrained=True, expected_score=True, cache=path
    )
    before = served_requests(vllm_server)
    first = await judge.abatch(items)
    assert all(s.ok for s in first), [s.error for s in first]
    sent = len(items) + sum(
        len(s.metadata["expected_score"].get("continuations", [])) for s in first
    )
    settled = wait_for_requests(vllm_server, before + sent)
    assert settled == before + sent
    assert len(JudgmentCache(path)) == sent  # every answer and every continuation

    again = ThinkingRewardJudge(
        backend=vllm_server, constrained=True, expected_score=True, cache=path
    ).batch(items)
    assert served_requests(vllm_server) == settled  # continuations were not sent again
    assert [s.metadata["cache"] for s in again] == ["hit"] * len(items)
    assert [s.expected_score for s in again] == [s.expected_score for s in first]
    assert [s.metadata["expected_score"] for s in again] == [
        s.metadata["expected_score"] for s in first
    ]


def test_cli_batch_with_cache_shows_hits_and_sends_nothing(vllm_server, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    items = [
        {"id": i, "question": q, "response": f"<think>{q}</think><answer>{i}</answer>"}
        for i, q in enumerate(QUESTIONS)
    ]
    source.write_text("".join(json.dumps(item) + "\n" for item in items))
    common = [
        "batch",
        str(source),
        "--base-url",
        str(vllm_server.base_url),
        "--model",
        vllm_server.model,
        "--constrained",
        "--cache",
        str(tmp_path / "judgments.sqlite"),
        "--progress",
        "off",
        "-o",
    ]
    before = served_requests(vllm_server)
    assert cli.main([*common, str(tmp_path / "a.jsonl")]) == 0
    assert f"cache: 0 hits, {len(items)} misses" in capsys.readouterr().err
    settled = wait_for_requests(vllm_server, before + len(items))
    assert cli.main([*common, str(tmp_path / "b.jsonl")]) == 0
    assert f"cache: {len(items)} hits, 0 misses" in capsys.readouterr().err
    assert served_requests(vllm_server) == settled
    first, second = (
        {r["id"]: r["score"] for r in map(json.loads, (tmp_path / name).read_text().splitlines())}
        for name in ("a.jsonl", "b.jsonl")
    )
    assert first == second
    assert len(second) == len(items)
