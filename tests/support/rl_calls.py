"""Calling the RL rewards as their trainers do, with fakes that count, in the unit tests."""

from __future__ import annotations

import asyncio
import inspect
import io
from types import SimpleNamespace

from PIL import Image

from backends import FakeBackend


class CountingFake(FakeBackend):
    """A FakeBackend that also counts its batched calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def generate(self, requests, *, max_concurrency=None):
        self.batches.append(len(requests))
        return super().generate(requests, max_concurrency=max_concurrency)


def response_of(request) -> str:
    """The response a judge request asks about (the text after "Reasoning process: ")."""
    text = request.messages[1]["content"][0]["text"]
    return text.split("\n    Reasoning process: ", 1)[1].rsplit("\n    ", 1)[0]


def question_of(request) -> str:
    text = request.messages[1]["content"][0]["text"]
    return text.split("\n    Question: ", 1)[1].split("\n    Reasoning process: ", 1)[0]


def by_response(table):
    """Fake scores looked up by the response the judge is asked about."""
    return lambda request: table[response_of(request)]


def state(step=0):
    return SimpleNamespace(global_step=step)


class Metrics:
    def __init__(self):
        self.logged: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name, value):
        self.logged.setdefault(name, []).append(value)

    def log_extra(self, column, values):
        self.extra.setdefault(column, []).extend(values)


def call_as_trl(reward, prompts, completions, *, step=0, metrics=None, **columns):
    """Call a reward function exactly as TRL's GRPOTrainer does."""
    metrics = metrics or Metrics()
    kwargs = dict(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=state(step),
        log_extra=metrics.log_extra,
        log_metric=metrics.log_metric,
        **columns,
    )
    if inspect.iscoroutinefunction(reward) or inspect.iscoroutinefunction(reward.__call__):
        return asyncio.run(reward(**kwargs))
    return reward(**kwargs)


def image(color="red", size=(8, 8)):
    return Image.new("RGB", size, color)


def png() -> bytes:
    buffer = io.BytesIO()
    image().save(buffer, format="PNG")
    return buffer.getvalue()
