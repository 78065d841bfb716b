"""Scores users can trust, on real vLLM: constraint, expected score, continuations, agreement."""

from __future__ import annotations

import pytest
from server_metrics import metric_total

from backends.base import Backend, Completion, JudgeRequest
from backends.vllm_offline import VLLMOfflineBackend
from backends.vllm_server import VLLMServerBackend
from judge import SCORE_GRID, ThinkingRewardJudge
from judge.core.expected import expected_score, position_mass, trace_answer
from judge.core.parse import constraint_choices

ITEMS = [
    {"question": f"What is {a}+{b}?", "response": f"<think>{a}+{b}={a + b}</think>{a + b}"}
    for a, b in [(2, 2), (3, 5), (10, 7), (1, 1), (6, 9), (4, 4), (12, 30), (7, 8)]
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_model / "tokenizer.json"))


def judged(backend: Backend, **kwargs) -> list:
    judge = ThinkingRewardJudge(backend=backend, constrained=True, expected_score=True, **kwargs)
    return judge.batch(ITEMS)


@pytest.mark.parametrize("output_format", ["bare", "answer_tag"])
def test_constrained_expected_scores(backend: Backend, output_format, tokenizer):
    results = judged(backend, output_format=output_format)
    tags = ("<answer>", "</answer>") if output_format == "answer_tag" else ("", "")
    continued = 0
    for result in results:
        assert result.error is None, result.error
        assert result.raw in constraint_choices(*tags)
        assert result.score in {float(v) for v in SCORE_GRID}
        meta = result.metadata["expected_score"]
        assert result.expected_score is not None, meta
        assert 0.0 <= result.expected_score <= 1.0
        # Recomputed from the masses the judge recorded.
        again = expected_score(meta["first"], meta.get("after_zero"), meta.get("after_point"))
        assert result.expected_score == pytest.approx(again, abs=1e-6)
        assert meta["prefix"] == tags[0]
        for continuation in meta.get("continuations", []):
            continued += 1
            # The continuation is the judgment's prompt plus the answer's opening, and
            # nothing else: the prompt is a prefix of it (and vLLM's prefix cache has it).
            extra = continuation["prompt_tokens"] - result.usage["prompt_tokens"]
            opening = tokenizer.encode(continuation["after"], add_special_tokens=False)
            assert extra == len(opening.ids), continuation
        if result.score == 1.0 and meta["first"].get("0", 0) > 0:
            assert meta["sources"]["after_zero"] == "continuation"
    # The tiny model's first digit is a near coin toss: some answers start with "1".
    assert continued >= 1


def test_expected_score_equals_the_value_from_the_returned_logprobs(backend: Backend):
    """Send the judge's requests by hand and recompute the expected score from them."""
    judge = ThinkingRewardJudge(backend=backend, constrained=True, expected_score=True)
    result = judge.invoke(ITEMS[0])
    messages = backend_requests_messages(judge, ITEMS[0])
    primary = backend.generate(
        [
            JudgeRequest(
                messages=messages,
                max_tokens=16,
                top_logprobs=20,
                extra=judge.pipeline()[0].constraint(),
            )
        ]
    )[0]
    assert isinstance(primary, Completion)
    assert primary.text == result.raw
    trace = trace_answer(primary.logprobs)
    for _ in range(2):
        after = trace.missing()
        if after is None:
            break
        (cont,) = backend.generate(
            [
                JudgeRequest(
                    messages=[*messages, {"role": "assistant", "content": trace.prefix + after}],
                    max_tokens=2 if after == "0" else 1,
                    top_logprobs=20,
                    continue_final_message=True,
                    extra=judge.pipeline()[0].constraint(after),
                )
            ]
        )
        trace.add_continuation(after, cont.logprobs)
    value = expected_score(trace.first, trace.after_zero, trace.after_point)
    assert result.expected_score == pytest.approx(value, abs=1e-6)


def backend_requests_messages(judge: ThinkingRewardJudge, item: dict) -> list:
    (request,) = judge.pipeline()[0].requests([item])
    return request.messages


def test_constrained_first_digit_odds_agree_masked_or_raw(
    vllm_server: VLLMServerBackend, offline_backend: VLLMOfflineBackend
):
    """Under a constraint, vLLM 0.32's in-process engine returns logprobs masked to the
    allowed tokens, while its server returns raw ones. The expected score renormalises
    over the tokens the grid allows, so both give the same odds of "1" against "0".
    """
    messages = backend_requests_messages(ThinkingRewardJudge(backend=vllm_server), ITEMS[1])
    request = JudgeRequest(
        messages=messages,
        top_logprobs=20,
        extra={"structured_outputs": {"choice": constraint_choices()}},
    )
    odds = []
    for backend in (vllm_server, offline_backend):
        (result,) = backend.generate([request])
        mass = position_mass(result.logprobs[0])
        odds.append(mass["1"] / (mass["0"] + mass["1"]))
    assert odds[0] == pytest.approx(odds[1], abs=0.02)


def test_server_and_engine_agree(
    vllm_server: VLLMServerBackend, offline_backend: VLLMOfflineBackend
):
    server = judged(vllm_server)
    engine = judged(offline_backend)
    for a, b in zip(server, engine, strict=True):
        assert a.prompt_sha256 == b.prompt_sha256
        assert a.expected_score == pytest.approx(b.expected_score, abs=0.02)
        assert a.usage["prompt_tokens"] == b.usage["prompt_tokens"]


def test_the_server_version_is_learnt_once_and_recorded(vllm_server: VLLMServerBackend):
    (result,) = ThinkingRewardJudge(backend=vllm_server, constrained=True).batch(ITEMS[:1])
    assert result.metadata["vllm_version"]
    assert result.metadata["sampling"]["structured_outputs"] == {"choice": constraint_choices()}
    assert "guided_choice" not in result.metadata["sampling"]


async def test_continuations_hit_the_prefix_cache(vllm_server: VLLMServerBackend):
    before = metric_total(vllm_server, "vllm:prefix_cache_hits")
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True, expected_score=True)
    results = await judge.abatch(
        [
            {"question": f"Unseen question {i}?", "response": f"<think>step {i}</think>"}
            for i in range(6)
        ]
    )
    continuations = sum(len(r.metadata["expected_score"].get("continuations", [])) for r in results)
    after = metric_total(vllm_server, "vllm:prefix_cache_hits")
    if continuations:
        # Each continuation repeats its prompt: at least one full block of it is cached.
        assert after - before >= 16 * continuations
