"""A scripted backend, for testing reward pipelines without a model or a GPU.

:class:`FakeBackend` answers like the thinking reward model would, from a script:

* ``FakeBackend(["0.7", "1.0"])``: these texts, in turn (repeated when used up);
* ``FakeBackend(scores=[0.7, 0.2])``: these scores, written as the model writes them
  (``"0.7"``, or ``"<answer>0.7</answer>"`` when the prompt asks for the tag format);
* ``FakeBackend(scores=lambda request: {0.6: 0.5, 0.8: 0.5})``: a distribution over the
  grid per request. The answer is its most likely score (the lower one on a tie), and
  the token logprobs are those of the distribution, so ``expected_score=True`` gives
  the distribution's mean (0.7 here). The judge's continuation requests (which
  continue ``"0"`` or ``"0."``) are answered from the same distribution: from the reply
  their prompt got, for a list; by calling the function again, for a function (it
  sees ``request.continue_final_message``).

A reply may also be a :class:`~backends.errors.BackendError`, to fail that request.
Every request is recorded in :attr:`FakeBackend.requests`.

It lives in ``judge`` (not ``backends``) because it speaks the judge's prompt and score
grid (:data:`judge.core.parse.SCORE_GRID`, :data:`judge.core.prompt.ANSWER_TAG`), and
backends never import judge. ``from backends import FakeBackend`` and
``backend_class("fake")`` still find it: it is the one entry of the backends registry
that points outside ``backends``, imported only when asked for.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from backends.base import Completion, JudgeRequest, Result, SyncBackend, TokenLogprob
from backends.errors import BackendError
from judge.core.parse import SCORE_GRID
from judge.core.prompt import ANSWER_TAG, ANSWER_TAG_REQUEST

Reply = str | BackendError
Script = Iterable[Reply] | Callable[[JudgeRequest], Reply]
ScoreReply = float | Mapping[float, float] | BackendError
Scores = Iterable[ScoreReply] | Callable[[JudgeRequest], ScoreReply]

_END = "<|im_end|>"
_OPEN, _CLOSE = ANSWER_TAG


class FakeBackend(SyncBackend):
    """Answers each request from a script, and records what it was sent.

    Args:
        script: The replies, used in order and repeated when exhausted, or a function
            from the request to the reply. A reply is the model's text, or a
            :class:`~backends.errors.BackendError` to fail that request with.
        scores: Instead of ``script``: scores in [0, 1] (rounded to the model's grid of
            tenths), or distributions ``{score: probability}``, in order and repeated,
            or a function from the request to one. Answers come with token logprobs.
        model: The model name to report.

    Raises:
        ValueError: Both or neither of a non-empty ``script`` and ``scores``, or a score
            outside [0, 1].

    Example:
        ```python
        judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.7, 1.0]))
        assert judge.invoke({"question": "q", "response": "r"}).score == 0.7
        ```
    """

    name = "fake"
    supports_structured_outputs = True
    """The fake's answers are always on the grid, so a constraint holds trivially."""
    supports_continuation = True

    def __init__(
        self,
        script: Script | None = None,
        *,
        scores: Scores | None = None,
        model: str = "fake-thinking-reward-model",
    ) -> None:
        super().__init__()
        if script is not None and scores is not None:
            raise ValueError("give FakeBackend a script or scores, not both")
        self.model = model
        self._reply: Callable[[JudgeRequest], Reply | Mapping[float, float]]
        # A scripted sequence answers a continuation from its prompt's own reply; a
        # function is asked every time (it sees request.continue_final_message).
        self._remember = scores is not None and not callable(scores)
        if scores is not None:
            self._reply = _replier(scores, "scores")
        else:
            self._reply = _replier(("1.0",) if script is None else script, "script")
        self.requests: list[JudgeRequest] = []
        self._lock = threading.Lock()
        # A continuation is answered from its prompt's own reply, not the script's next.
        self._replies: dict[bytes, Reply | Mapping[float, float]] = {}

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Reply to each request from the script."""
        with self._lock:
            self.requests.extend(requests)
            replies = [(request, self._reply_to(request)) for request in requests]
        return [self._result(request, reply) for request, reply in replies]

    def _reply_to(self, request: JudgeRequest) -> Reply | Mapping[float, float]:
        if request.continue_final_message and self._remember:
            known = self._replies.get(_key(request.messages[:-1]))
            if known is not None:
                return known
        reply = self._reply(request)
        if self._remember and not request.continue_final_message and len(self._replies) < 100_000:
            self._replies[_key(request.messages)] = reply
        return reply

    def _result(self, request: JudgeRequest, reply: Reply | Mapping[float, float]) -> Result:
        if isinstance(reply, BackendError):
            return reply
        if isinstance(reply, str):
            return Completion(text=reply, finish_reason="stop", model=self.model, latency_s=0.0)
        return _answer(request, reply, self.model)


def _key(messages: Sequence[Mapping[str, Any]]) -> bytes:
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).digest()


def _replier(
    source: Iterable[Any] | Callable[[JudgeRequest], Any], what: str
) -> Callable[[JudgeRequest], Any]:
    convert = _distribution if what == "scores" else (lambda reply: reply)
    if callable(source):
        return lambda request: convert(source(request))
    replies = [convert(reply) for reply in source]
    if not replies:
        raise ValueError(f"FakeBackend needs at least one entry in {what}")
    cycle = itertools.cycle(replies)
    return lambda _request: next(cycle)


def _distribution(reply: ScoreReply) -> Mapping[float, float] | BackendError:
    """A score or a distribution, as probabilities over the grid's strings' values."""
    if isinstance(reply, BackendError):
        return reply
    items = reply.items() if isinstance(reply, Mapping) else [(reply, 1.0)]
    dist: dict[float, float] = {}
    for score, weight in items:
        if not 0.0 <= float(score) <= 1.0 or weight < 0:
            raise ValueError(f"a fake score must be in [0, 1] with weight >= 0, got {score}")
        key = round(float(score) * 10) / 10
        dist[key] = dist.get(key, 0.0) + float(weight)
    total = sum(dist.values())
    if total <= 0:
        raise ValueError("a fake score distribution needs positive weight")
    return {score: weight / total for score, weight in dist.items()}


def _text(score: float) -> str:
    return SCORE_GRID[round(score * 10)]


def _position(choices: Mapping[str, float], chosen: str) -> TokenLogprob:
    """One position: the chosen token and every alternative with its log probability."""
    top = tuple(
        sorted(((t, math.log(p)) for t, p in choices.items() if p > 0), key=lambda t: -t[1])
    )
    return TokenLogprob(chosen, dict(top).get(chosen, -math.inf), top)


def _sure(token: str) -> TokenLogprob:
    return TokenLogprob(token, 0.0, ((token, 0.0),))


def _answer(request: JudgeRequest, dist: Mapping[float, float], model: str) -> Completion:
    """The most likely answer, with the per-token logprobs of ``dist``, digit by digit.

    A continuation (``continue_final_message``) of ``"0"`` or ``"0."`` (after
    ``"<answer>"`` in the tag format) is answered from ``dist`` conditioned on it.
    """
    tagged = _asks_for_tag(request)
    written = ""
    if request.continue_final_message and request.messages:
        written = str(request.messages[-1].get("content") or "").removeprefix(_OPEN)
    p = {text: dist.get(index / 10, 0.0) for index, text in enumerate(SCORE_GRID)}
    possible = [t for t in SCORE_GRID if t.startswith(written) and p[t] > 0] or ["0.1"]
    best = max(possible, key=p.__getitem__)
    p_point = sum(p[t] for t in SCORE_GRID[1:10])
    close = _CLOSE if tagged else _END
    tokens: list[TokenLogprob] = [] if written or not tagged else [_sure(_OPEN)]
    state = written
    for token in [*best[len(written) :], close]:
        if state == "":
            tokens.append(_position({"1": p["1.0"], "0": 1.0 - p["1.0"]}, token))
        elif state == "0":
            tokens.append(_position({".": p_point, close: p["0"]}, token))
        elif state == "0.":
            tokens.append(_position({t[-1]: p[t] for t in SCORE_GRID[1:10]}, token))
        else:
            tokens.append(_sure(token))
        state += token
    if tagged:
        tokens.append(_sure(_END))
    text = best[len(written) :] + (_CLOSE if tagged else "")
    if tagged and not written:
        text = _OPEN + text
    return Completion(
        text=text,
        finish_reason="stop",
        completion_tokens=len(tokens),
        logprobs=tuple(tokens) if request.top_logprobs is not None else None,
        model=model,
        latency_s=0.0,
    )


def _asks_for_tag(request: JudgeRequest) -> bool:
    for message in request.messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"text": content}]
        for part in parts:
            if isinstance(part, Mapping) and ANSWER_TAG_REQUEST in str(part.get("text") or ""):
                return True
    return False


__all__ = ["FakeBackend"]
