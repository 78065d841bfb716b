"""A scripted backend, for testing reward pipelines without a model or a GPU."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence

from backends.base import Completion, JudgeRequest, Result, SyncBackend
from backends.errors import BackendError

Reply = str | BackendError
Script = Iterable[Reply] | Callable[[JudgeRequest], Reply]


class FakeBackend(SyncBackend):
    """Answers each request from a script, and records what it was sent.

    Args:
        script: The replies, used in order and repeated when exhausted, or a function
            from the request to the reply. A reply is the model's text, or a
            :class:`~backends.errors.BackendError` to fail that request with.
        model: The model name to report.

    Example:
        .. code-block:: python

            judge = ThinkingRewardJudge(backend=FakeBackend(["0.7", "1.0"]))
    """

    name = "fake"

    def __init__(
        self, script: Script = ("1.0",), *, model: str = "fake-thinking-reward-model"
    ) -> None:
        super().__init__()
        self.model = model
        self._reply: Callable[[JudgeRequest], Reply]
        if callable(script):
            self._reply = script
        else:
            replies = list(script)
            if not replies:
                raise ValueError("FakeBackend needs at least one reply")
            cycle = itertools.cycle(replies)
            self._reply = lambda _request: next(cycle)
        self.requests: list[JudgeRequest] = []
        self._lock = threading.Lock()

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Reply to each request from the script."""
        with self._lock:
            self.requests.extend(requests)
            replies = [self._reply(request) for request in requests]
        return [
            reply if isinstance(reply, BackendError) else _completion(reply, self.model)
            for reply in replies
        ]


def _completion(text: str, model: str) -> Completion:
    return Completion(text=text, finish_reason="stop", model=model, latency_s=0.0)


__all__ = ["FakeBackend"]
