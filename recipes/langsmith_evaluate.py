"""Recipe: score an application's reasoning in a LangSmith evaluation, fully offline.

What it shows:

* ``langsmith.evaluate`` (sync) and ``langsmith.aevaluate`` (async) over local
  ``Example`` objects, with the judge as a LangSmith ``RunEvaluator``
  (``judge.as_langsmith_evaluator()``) and as an openevals-style function
  (``judge.as_evaluator()``, and its async form);
* every example getting ``thinking_reward`` feedback: a score in [0, 1] with a comment
  (the score's band and the model's rubric), or, when the judgment failed, an
  evaluation error with its reason and no score (the blank question below);
* nothing leaving the machine: ``upload_results=False``, a LangSmith client that never
  sends, and ``keep_runs_local()`` around the application's LangChain call. Drop those
  three to record the experiment in LangSmith instead.

The application under test ("the agent") is a ``ChatOpenAI`` chat model on the same
OpenAI-compatible server as the judge (a real policy model would be served apart); the
judge is a ``VLLMServerBackend`` constrained to the model's eleven answers.

Run it against a vLLM server serving the thinking reward model::

    python recipes/langsmith_evaluate.py --base-url http://127.0.0.1:8000/v1

(``--model`` defaults to ``thinking-reward-model``; ``THINKING_JUDGE_BASE_URL`` and
``THINKING_JUDGE_MODEL`` may stand for the flags; the server's API key, if any, is read
from ``VLLM_API_KEY``. Against a random-weight test model, whose agent answers with
blank lines, ``--agent-regex '<think>[a-z ]{4,24}</think><answer>[0-9]{1,3}</answer>'``
constrains the agent's answers through vLLM's structured outputs.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Sequence
from typing import Any

import requests
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langsmith import Client, aevaluate, evaluate
from langsmith.schemas import Example

from backends import VLLMServerBackend
from judge import ThinkingRewardJudge
from judge.core.inputs import response_text
from judge.integrations import keep_runs_local

QUESTIONS = [
    "What is 17 * 24?",
    "A train leaves at 9:40 and arrives at 11:15. How long is the trip?",
    "   ",  # blank: the judge refuses it, and the evaluators report an error
]
SYSTEM = (
    "Think step by step inside <think></think>, then give the final answer inside "
    "<answer></answer>."
)


class _RefuseToSend(requests.adapters.BaseAdapter):
    """An HTTP adapter that fails every request: the client below never sends."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Refuse."""
        raise requests.ConnectionError("this LangSmith client is offline")

    def close(self) -> None:
        """Nothing to close."""


def offline_client() -> Client:
    """A LangSmith client that knows its server's info and never sends anything."""
    session = requests.Session()
    session.mount("http://", _RefuseToSend())
    session.mount("https://", _RefuseToSend())
    return Client(
        api_url="http://langsmith.invalid",
        api_key="offline",
        info={},
        session=session,
        auto_batch_tracing=False,
    )


def examples() -> list[Example]:
    """The dataset, as local examples."""
    dataset_id = uuid.uuid4()
    return [
        Example(id=uuid.uuid4(), dataset_id=dataset_id, inputs={"question": q}, outputs={})
        for q in QUESTIONS
    ]


def make_target(agent: ChatOpenAI) -> Any:
    """The application under test: the agent answers the question."""

    def target(inputs: dict[str, Any]) -> dict[str, Any]:
        question = inputs["question"]
        if not question.strip():
            return {"output": ""}
        with keep_runs_local():
            reply = agent.invoke([SystemMessage(SYSTEM), HumanMessage(question)])
        return {"output": response_text(reply)}

    return target


def summarize(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """One line per example: the question, the response and each evaluator's feedback."""
    summary = []
    for row in rows:
        feedback = {
            result.key: {
                "score": result.score,
                "comment": result.comment,
                "error": bool((result.extra or {}).get("error")),
            }
            for result in row["evaluation_results"]["results"]
        }
        summary.append(
            {
                "question": row["example"].inputs["question"],
                "response": (row["run"].outputs or {}).get("output"),
                "feedback": feedback,
            }
        )
    return summary


def run(judge: ThinkingRewardJudge, agent: ChatOpenAI) -> dict[str, list[dict[str, Any]]]:
    """Evaluate the agent on the examples with the judge, sync then async."""
    client = offline_client()
    target = make_target(agent)
    sync_results = evaluate(
        target,
        data=examples(),
        evaluators=[judge.as_langsmith_evaluator(), judge.as_evaluator(key="thinking_reward_fn")],
        upload_results=False,
        client=client,
    )

    async def atarget(inputs: dict[str, Any]) -> dict[str, Any]:
        # aevaluate wants an async target; the agent's sync client runs in a thread.
        return await asyncio.to_thread(target, inputs)

    async def evaluate_async() -> list[Any]:
        data = examples()
        ids = [example.id for example in data]
        results = await aevaluate(
            atarget,
            data=data,
            evaluators=[
                judge.as_langsmith_evaluator(),
                judge.as_evaluator(key="thinking_reward_fn", asynchronous=True),
            ],
            upload_results=False,
            client=client,
            max_concurrency=4,
        )
        rows = [row async for row in results]  # in completion order
        order = {example_id: i for i, example_id in enumerate(ids)}
        return sorted(rows, key=lambda row: order[row["example"].id])

    return {
        "sync": summarize(list(sync_results)),
        "async": summarize(asyncio.run(evaluate_async())),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The server's URL and model, from flags or the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("THINKING_JUDGE_BASE_URL"))
    parser.add_argument(
        "--model", default=os.environ.get("THINKING_JUDGE_MODEL", "thinking-reward-model")
    )
    parser.add_argument(
        "--agent-regex",
        help="constrain the agent's answers to this regular expression (vLLM's structured "
        "outputs): for a random-weight test model, which answers with blank lines",
    )
    args = parser.parse_args(argv)
    if not args.base_url:
        parser.error("give --base-url or set THINKING_JUDGE_BASE_URL")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run the recipe; print and return the feedback per example."""
    args = parse_args(argv)
    agent = ChatOpenAI(
        base_url=args.base_url,
        model=args.model,
        api_key=os.environ.get("VLLM_API_KEY") or "EMPTY",
        temperature=0.0,
        max_tokens=48,
        timeout=120,
        # vLLM's structured outputs: a random-weight test model otherwise answers with
        # blank lines, which the judge rightly refuses.
        extra_body=(
            {"structured_outputs": {"regex": args.agent_regex}} if args.agent_regex else None
        ),
    )
    with VLLMServerBackend(args.base_url, args.model) as backend:
        judge = ThinkingRewardJudge(backend=backend, constrained=True)
        summary = run(judge, agent)
    for mode, lines in summary.items():
        print(f"== langsmith.{'evaluate' if mode == 'sync' else 'aevaluate'}")
        for line in lines:
            for key, feedback in line["feedback"].items():
                shown = "ERROR" if feedback["error"] else f"{feedback['score']:.2f}"
                print(f"{line['question'][:40]!r:44} {key:20} {shown:6} {feedback['comment']}")
    return summary


if __name__ == "__main__":
    main()
