"""Recipe: a self-critique loop in LangGraph, the thinking reward model as the critic.

What it shows: a LangGraph ``StateGraph`` where

1. the **agent** answers the question (reasoning in ``<think>``, answer in ``<answer>``);
2. the **judge** scores the reasoning with ``judge.as_evaluator()``: a score and a
   comment (the score's band and the rubric: logical soundness, correct reasoning,
   error identification, language consistency, redundancy);
3. below ``--threshold`` the agent **revises**, its previous answer and the judge's
   comment in its prompt, up to ``--max-rounds`` answers in all; at or above it, the
   loop ends. A failed judgment ends the loop too (``stopped="judge_error"``): the
   agent is never sent to revise against a score that does not exist.

The judge is a ``VLLMServerBackend`` constrained to the model's eleven answers. The
agent is, with ``--agent server`` (the default), a ``ChatOpenAI`` chat model on the same
OpenAI-compatible server as the judge (a real policy model would be served apart); with
``--agent scripted``, a LangChain fake chat model whose first answer has an arithmetic
slip and whose revisions fix it. The tests use the scripted agent: the tiny
random-weight test model they serve answers with blank lines, which the judge rightly
refuses to score (the loop then stops with ``stopped="judge_error"``). With that model
the scores are noise; the loop's mechanics are those of a real run.

Run it against a vLLM server serving the thinking reward model::

    python recipes/self_critique_langgraph.py --base-url http://127.0.0.1:8000/v1

(``--model`` defaults to ``thinking-reward-model``; ``THINKING_JUDGE_BASE_URL`` and
``THINKING_JUDGE_MODEL`` may stand for the flags; the server's API key, if any, is read
from ``VLLM_API_KEY``.) Needs the ``langchain`` extra (LangGraph).
"""

from __future__ import annotations

import argparse
import operator
import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from backends import VLLMServerBackend
from judge import ThinkingRewardJudge
from judge.core.inputs import response_text

QUESTION = "If 3 notebooks cost $4.50, how much do 7 notebooks cost?"
SYSTEM = (
    "Think step by step inside <think></think>, then give the final answer inside "
    "<answer></answer>."
)


SCRIPTED_ANSWERS = [
    "<think>One notebook costs 4.50 / 3 = 1.50. Seven cost 7 * 1.50 = 10.00.</think>"
    "<answer>$10.00</answer>",
    "<think>One notebook costs 4.50 / 3 = 1.50. Seven cost 7 * 1.50 = 10.50, since "
    "7 * 1 = 7 and 7 * 0.50 = 3.50.</think><answer>$10.50</answer>",
]


def scripted_agent() -> FakeListChatModel:
    """A fake chat model: a first answer with a slip, then the corrected one."""
    return FakeListChatModel(responses=[*SCRIPTED_ANSWERS, SCRIPTED_ANSWERS[-1]])


def server_agent(base_url: str, model: str) -> ChatOpenAI:
    """The agent on the OpenAI-compatible server, decoding greedily."""
    return ChatOpenAI(
        base_url=base_url,
        model=model,
        api_key=os.environ.get("VLLM_API_KEY") or "EMPTY",
        temperature=0.0,
        max_tokens=48,
        timeout=120,
    )


class Round(TypedDict):
    """One answer and its judgment."""

    answer: str
    score: float | None
    comment: str


class CritiqueState(TypedDict, total=False):
    """The graph's state."""

    question: str
    answer: str
    score: float | None
    comment: str
    rounds: Annotated[list[Round], operator.add]
    stopped: str


def revision_prompt(question: str, rounds: Sequence[Round]) -> list[BaseMessage]:
    """The agent's messages: the question, then its last answer and the judge's comment."""
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage(question)]
    if rounds:
        last = rounds[-1]
        messages += [
            AIMessage(last["answer"]),
            HumanMessage(
                f"A reviewer scored the reasoning above {last['comment']}. Revise it: fix "
                "the errors, keep what is sound, then answer again in the same format."
            ),
        ]
    return messages


def build_graph(
    agent: BaseChatModel,
    judge: ThinkingRewardJudge,
    *,
    threshold: float = 0.7,
    max_rounds: int = 3,
) -> CompiledStateGraph:
    """The agent -> judge -> (revise | end) loop.

    Args:
        agent: The chat model that answers and revises.
        judge: The thinking reward judge.
        threshold: The score at which an answer is accepted.
        max_rounds: Most answers the agent gives (the first one included).

    Returns:
        The compiled graph; invoke it with ``{"question": ...}``.

    Raises:
        ValueError: ``threshold`` outside [0, 1] or ``max_rounds`` below 1.
    """
    if not 0.0 <= threshold <= 1.0 or max_rounds < 1:
        raise ValueError("threshold must be in [0, 1] and max_rounds at least 1")
    evaluator = judge.as_evaluator()

    def answer(state: CritiqueState) -> CritiqueState:
        reply = agent.invoke(revision_prompt(state["question"], state.get("rounds", [])))
        return {"answer": response_text(reply)}

    def critique(state: CritiqueState) -> CritiqueState:
        result = evaluator(inputs={"question": state["question"]}, outputs=state["answer"])
        done: Round = {
            "answer": state["answer"],
            "score": result["score"],
            "comment": result["comment"],
        }
        return {"score": result["score"], "comment": result["comment"], "rounds": [done]}

    def route(state: CritiqueState) -> Literal["answer", "finish"]:
        score, rounds = state["score"], len(state["rounds"])
        if score is None or score >= threshold or rounds >= max_rounds:
            return "finish"
        return "answer"

    def finish(state: CritiqueState) -> CritiqueState:
        if state["score"] is None:
            return {"stopped": "judge_error"}
        if state["score"] >= threshold:
            return {"stopped": "accepted"}
        return {"stopped": "max_rounds"}

    graph = StateGraph(CritiqueState)
    graph.add_node("answer", answer)
    graph.add_node("critique", critique)
    graph.add_node("finish", finish)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", "critique")
    graph.add_conditional_edges("critique", route, ["answer", "finish"])
    graph.add_edge("finish", END)
    return graph.compile()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The server's URL and model, from flags or the environment; the loop's settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("THINKING_JUDGE_BASE_URL"))
    parser.add_argument(
        "--model", default=os.environ.get("THINKING_JUDGE_MODEL", "thinking-reward-model")
    )
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--max-rounds", type=int, default=3)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--agent", choices=["server", "scripted"], default="server")
    args = parser.parse_args(argv)
    if not args.base_url:
        parser.error("give --base-url or set THINKING_JUDGE_BASE_URL")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe; print the rounds and return the final state."""
    args = parse_args(argv)
    agent = server_agent(args.base_url, args.model) if args.agent == "server" else scripted_agent()
    with VLLMServerBackend(args.base_url, args.model) as backend:
        judge = ThinkingRewardJudge(backend=backend, constrained=True)
        graph = build_graph(agent, judge, threshold=args.threshold, max_rounds=args.max_rounds)
        state = graph.invoke({"question": args.question})
    for number, done in enumerate(state["rounds"], 1):
        print(f"round {number}: {done['answer'][:60]!r}\n  judge: {done['comment']}")
    print(f"stopped: {state['stopped']}")
    return state


if __name__ == "__main__":
    main()
