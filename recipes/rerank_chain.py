"""Recipe: rerank sampled answers by the quality of their thinking, in LCEL.

What it shows:

* an LCEL chain that samples N answers to a question (``prompt | policy``, mapped over N
  copies of the input), then reranks them with ``ThinkingRerank``: ONE batched judge
  call for the N candidates, the best first, each with its ``ThinkingScore``;
* ranking by the expected score (the judge's ``expected_score=True``: a continuous
  value read from the answer's logprobs), ties kept in sampling order, failed
  judgments last and never taken for a low score;
* ``best_of_n(prompt | policy, judge, n)``: the same as one Runnable that returns the
  best answer itself, composable with the rest of a chain (``| StrOutputParser()``).

The judge is a ``VLLMServerBackend`` constrained to the model's eleven answers. The
policy is, with ``--policy server`` (the default), a ``ChatOpenAI`` chat model sampling
at temperature 1 on the same OpenAI-compatible server as the judge (a real policy model
would be served apart); with ``--policy scripted``, a LangChain fake chat model giving
canned answers, some of them flawed. The tests use the scripted policy: the tiny
random-weight test model they serve mostly answers with blank lines, which the judge
rightly refuses to score. With that model the scores are noise; the mechanics are those
of a real run.

Run it against a vLLM server serving the thinking reward model::

    python recipes/rerank_chain.py --base-url http://127.0.0.1:8000/v1 --n 4

(``--model`` defaults to ``thinking-reward-model``; ``THINKING_JUDGE_BASE_URL`` and
``THINKING_JUDGE_MODEL`` may stand for the flags; the server's API key, if any, is read
from ``VLLM_API_KEY``.)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_openai import ChatOpenAI

from backends import VLLMServerBackend
from judge import RankedResponse, ThinkingRerank, ThinkingRewardJudge, best_of_n
from judge.errors import JudgmentError

QUESTION = "A shop sells pens at 3 for $2. How much do 12 pens cost?"

PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Think step by step inside <think></think>, then give the final answer "
            "inside <answer></answer>.",
        ),
        ("human", "{question}"),
    ]
)


SCRIPTED_ANSWERS = [
    "<think>3 pens cost $2, so 12 pens are 4 groups: 4 * 2 = 8.</think><answer>$8</answer>",
    "<think>One pen costs 2 / 3. 12 * 2 / 3 = 6.</think><answer>$6</answer>",
    "<think>12 pens, 3 for $2, so 12 / 3 = 4 and 4 * 3 = 12.</think><answer>$12</answer>",
    "<think>12 / 3 = 4 groups of 3 pens; each group costs $2, so 4 * $2 = $8.</think>"
    "<answer>$8</answer>",
]


def scripted_policy() -> FakeListChatModel:
    """A fake chat model that gives the canned answers in turn."""
    return FakeListChatModel(responses=SCRIPTED_ANSWERS)


def server_policy(base_url: str, model: str) -> ChatOpenAI:
    """The policy on the OpenAI-compatible server, sampling at temperature 1."""
    return ChatOpenAI(
        base_url=base_url,
        model=model,
        api_key=os.environ.get("VLLM_API_KEY") or "EMPTY",
        temperature=1.0,
        max_tokens=48,
        timeout=120,
    )


def rerank_chain(policy: Runnable[Any, Any], judge: ThinkingRewardJudge, n: int) -> Runnable:
    """``{"question"}`` -> N sampled answers -> reranked, best first."""
    sample_n = RunnableLambda(lambda inputs: [inputs] * n) | (PROMPT | policy).map()
    return RunnablePassthrough.assign(responses=sample_n) | ThinkingRerank(judge=judge)


def best_answer_chain(policy: Runnable[Any, Any], judge: ThinkingRewardJudge, n: int) -> Runnable:
    """``{"question"}`` -> the text of the best of N sampled answers."""
    return best_of_n(PROMPT | policy, judge, n=n) | StrOutputParser()


def show(ranking: Sequence[RankedResponse]) -> None:
    """Print a ranking, best first."""
    for ranked in ranking:
        how = (
            f"{ranked.value:.3f}"
            if ranked.value is not None
            else f"failed: {ranked.score.error_type}"
        )
        print(f"  #{ranked.rank or '-'}  [{ranked.index}] {how:>10}  {ranked.text[:60]!r}")


def run(policy: Runnable[Any, Any], judge: ThinkingRewardJudge, n: int) -> dict[str, Any]:
    """Rerank N answers to one question, then take the best of N as one Runnable.

    Returns:
        ``ranking`` (best first, failed judgments last), ``best`` (the best answer's
        text, or None when none of the N answers could be judged: ``best_of_n`` then
        refuses to pick one blindly) and ``best_error`` (why, or None).
    """
    ranking = rerank_chain(policy, judge, n).invoke({"question": QUESTION})
    try:
        best = best_answer_chain(policy, judge, n).invoke({"question": QUESTION})
    except JudgmentError as exc:  # no answer could be judged: say so, pick none
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        return {"ranking": ranking, "best": None, "best_error": reason}
    return {"ranking": ranking, "best": best, "best_error": None}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The server's URL and model, from flags or the environment; N."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("THINKING_JUDGE_BASE_URL"))
    parser.add_argument(
        "--model", default=os.environ.get("THINKING_JUDGE_MODEL", "thinking-reward-model")
    )
    parser.add_argument("--n", type=int, default=4, help="answers to sample per question")
    parser.add_argument("--policy", choices=["server", "scripted"], default="server")
    args = parser.parse_args(argv)
    if not args.base_url:
        parser.error("give --base-url or set THINKING_JUDGE_BASE_URL")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe; print and return the ranking and the best answer."""
    args = parse_args(argv)
    if args.policy == "server":
        policy: Runnable[Any, Any] = server_policy(args.base_url, args.model)
    else:
        policy = scripted_policy()
    with VLLMServerBackend(args.base_url, args.model) as backend:
        judge = ThinkingRewardJudge(backend=backend, constrained=True, expected_score=True)
        result = run(policy, judge, args.n)
    print(f"{args.n} answers to {QUESTION!r}, best first:")
    show(result["ranking"])
    if result["best"] is None:
        print(f"best of {args.n}: none, no answer could be judged ({result['best_error']})")
    else:
        print(f"best of {args.n}: {result['best'][:80]!r}")
    return result


if __name__ == "__main__":
    main()
