"""Fakes and file helpers shared by the ``judge.batch`` unit tests."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from backends import FakeBackend
from backends.base import AsyncBackend, Completion, JudgeRequest, Result
from backends.errors import BackendTimeoutError
from judge import ThinkingRewardJudge, ThinkingScore

SCORE_FIELDS = set(ThinkingScore.model_fields)


def text_of(request: JudgeRequest) -> str:
    """The rendered prompt text of a request (the question and response are inside)."""
    return request.messages[1]["content"][0]["text"]


def scripted(request: JudgeRequest) -> str | BackendTimeoutError:
    """A fake model: fails what says so, else scores 0.5."""
    text = text_of(request)
    if "fail-timeout" in text:
        return BackendTimeoutError("took too long", backend="fake")
    if "fail-parse" in text:
        return "I cannot say"
    return "0.5"


class BatchRecorder(FakeBackend):
    """A batch-native fake that records the size of every batch it is given."""

    def __init__(self, script=scripted) -> None:
        super().__init__(script)
        self.batches: list[int] = []

    def generate(self, requests: Sequence[JudgeRequest], *, max_concurrency=None) -> list[Result]:
        self.batches.append(len(requests))
        return super().generate(requests, max_concurrency=max_concurrency)


class SlowHTTP(AsyncBackend):
    """An async (HTTP-shaped) fake whose replies take random times: they finish out of order."""

    name = "slow-http"

    def __init__(self, seed: int = 0, script=scripted, max_delay: float = 0.01) -> None:
        super().__init__()
        self.model = "slow-model"
        self.rng = random.Random(seed)
        self.script = script
        self.max_delay = max_delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.completed: list[str] = []

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency=None
    ) -> list[Result]:
        async def one(request: JudgeRequest) -> Result:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.rng.random() * self.max_delay)
            finally:
                self.in_flight -= 1
            self.calls += 1
            reply = self.script(request)
            if isinstance(reply, Exception):
                return reply
            self.completed.append(text_of(request))
            return Completion(text=reply, finish_reason="stop", model=self.model)

        return list(await asyncio.gather(*(one(r) for r in requests)))


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    with path.open("w") as file:
        for row in rows:
            file.write(row if isinstance(row, str) else json.dumps(row))
            file.write("\n")
    return path


def records(n: int, **extra) -> list[dict]:
    return [{"id": f"r{i}", "question": f"q{i}", "response": f"a{i}", **extra} for i in range(n)]


def results(path: Path) -> list[dict]:
    """Every output line, parsed; fails on a torn or invalid line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in data.splitlines()]


def by_id(path: Path) -> dict:
    lines = results(path)
    ids = [line["id"] for line in lines]
    assert len(ids) == len(set(ids)), f"duplicate ids in the output: {ids}"
    return {line["id"]: line for line in lines}


def judge_with(backend=None) -> ThinkingRewardJudge:
    return ThinkingRewardJudge(backend=backend or FakeBackend(scripted))


def png(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")
    return path


def image_urls(request: JudgeRequest) -> list[str]:
    return [
        p["image_url"]["url"] for p in request.messages[1]["content"] if p["type"] == "image_url"
    ]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True
