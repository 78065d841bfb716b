"""``thinking-judge reward-server``: OpenRLHF's remote reward model protocol over HTTP.

::

    thinking-judge reward-server --base-url http://127.0.0.1:8000/v1 [--port 5000]
                                 [--host 127.0.0.1] [--failure-reward R] [judge options]

    # then, in OpenRLHF:  --remote_rm_url http://127.0.0.1:5000/get_reward

Endpoints (a FastAPI app from :func:`create_app`, served by uvicorn; install the
``server`` extra):

* ``POST /get_reward``: OpenRLHF's request ``{"query": [...], "prompts": [...],
  "labels": [...]}`` (the route of ``openrlhf/cli/serve_rm.py``); each query is split into
  question and response by :func:`judge.rl.openrlhf.split_query` and the answer is
  ``{"rewards": [...], "scores": [...], "extra_logs": {"judge_failed": [...]}}``. Requests
  arriving together (OpenRLHF sends one sample per request, many at once) are judged in
  ONE ``abatch`` call. A failed judgment answers ``503`` with the failures in the body,
  so OpenRLHF's client retries the request and, if it keeps failing, stops the step;
  with ``--failure-reward R`` the answer is ``200`` and the failed samples get ``R``
  (see :mod:`judge.rl.openrlhf`). A request that is not OpenRLHF's shape answers ``400``.
* ``GET /health``: ``{"status": "ok"}`` while the server runs.
* ``GET /metrics``: Prometheus counters of judgments and failures (by kind) and
  histograms of request latency and batch size.

It binds 127.0.0.1 unless ``--host`` says otherwise: it has no authentication.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations
# at run time, and ``Request`` is imported inside create_app (FastAPI is an extra).
import argparse
import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from judge.cli.common import add_judge_options, judge_options, make_backend, make_judge
from judge.errors import InputError
from judge.rl.openrlhf import JudgmentsFailed, judge_inputs, merge_results, reward_payload
from judge.types import JudgeInput, JudgeRunnable, ThinkingScore

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DEFAULT_REWARD_PORT",
    "add_parser",
    "add_server_options",
    "app_from_args",
    "create_app",
    "run",
]

DEFAULT_REWARD_PORT = 5000
"""The port of OpenRLHF's own ``serve_rm``."""


class _Batcher:
    """Judges the inputs of concurrent requests in one ``abatch`` call.

    The first request to arrive while no batch is open starts a task that waits
    ``wait_s``, takes every request that arrived meanwhile and judges them together;
    requests arriving while that batch is judged open the next one. The task is not the
    request's, so a client that goes away does not leave the others of its batch waiting.
    """

    def __init__(self, judge: JudgeRunnable, wait_s: float, observe_batch: Any) -> None:
        self.judge = judge
        self.wait_s = wait_s
        self.observe_batch = observe_batch
        self.pending: list[tuple[list[JudgeInput], asyncio.Future[list[Any]]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, inputs: list[JudgeInput]) -> list[ThinkingScore | BaseException]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending.append((inputs, future))
        if len(self.pending) == 1:
            task = asyncio.create_task(self._flush())
            self.tasks.add(task)  # a reference, so the task is not collected while it runs
            task.add_done_callback(self.tasks.discard)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.wait_s)
        batch, self.pending = self.pending, []
        await self._judge(batch)

    async def _judge(self, batch: list[tuple[list[JudgeInput], asyncio.Future[list[Any]]]]) -> None:
        flat = [item for inputs, _ in batch for item in inputs]
        self.observe_batch(len(flat))
        results: list[Any]
        try:
            results = list(await self.judge.abatch(flat, return_exceptions=True)) if flat else []
        except Exception as exc:  # the whole call failed: every input failed with it
            results = [exc] * len(flat)
        start = 0
        for inputs, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(inputs)])
            start += len(inputs)


def _strings(body: dict[str, Any], key: str, *, required: bool) -> list[str] | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{key!r} must be a list of strings")
    return value


def create_app(
    judge: JudgeRunnable,
    *,
    failure_reward: float | None = None,
    use_expected_score: bool = False,
    batch_wait_s: float = 0.005,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> "FastAPI":
    """The reward server's FastAPI app (see the module docstring for its endpoints).

    The same app runs under ``thinking-judge reward-server`` (uvicorn) and under Ray
    Serve (``recipes/ray_serve_reward_server.py``, one app per replica).

    Args:
        judge: The judge (e.g. a :class:`~judge.ThinkingRewardJudge`).
        failure_reward: The reward of a failed judgment; None answers ``503`` instead.
        use_expected_score: Reward ``expected_score`` when the judge computes it.
        batch_wait_s: How long the first request of a batch waits for others.
        on_shutdown: Awaited when the app shuts down (its ASGI lifespan ends), on the
            app's event loop: e.g. the backend's ``aclose``, which closes the HTTP
            sessions the judge opened there.

    Raises:
        ValueError: ``failure_reward`` is not a finite number.
        ModuleNotFoundError: FastAPI or prometheus_client is missing (the ``server`` extra).
    """
    if failure_reward is not None and not math.isfinite(failure_reward):
        raise ValueError(f"failure_reward must be a finite number, got {failure_reward}")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )

    registry = CollectorRegistry()
    judgments = Counter(
        "thinking_judge_judgments", "Judgments made (failed ones included)", registry=registry
    )
    failures = Counter(
        "thinking_judge_failures", "Failed judgments, by kind", ["kind"], registry=registry
    )
    latency = Histogram(
        "thinking_judge_request_seconds", "Time to answer a /get_reward request", registry=registry
    )
    batch_size = Histogram(
        "thinking_judge_batch_size",
        "Inputs per judge call",
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        registry=registry,
    )
    batcher = _Batcher(judge, batch_wait_s, batch_size.observe)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(title="thinking-judge reward server", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise InputError("the body must be a JSON object")
            queries = _strings(body, "query", required=True) or []
            inputs = judge_inputs(queries, _strings(body, "prompts", required=False))
        except (InputError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        good = [item for item in inputs if not isinstance(item, InputError)]
        results = merge_results(inputs, await batcher(good) if good else [])
        judgments.inc(len(results))
        for result in results:
            if result.error_kind is not None:
                failures.labels(kind=result.error_kind.value).inc()
        try:
            payload = reward_payload(
                results, failure_reward=failure_reward, use_expected_score=use_expected_score
            )
        except JudgmentsFailed as exc:
            payload, status = {"error": str(exc), "failures": exc.failures}, 503
        else:
            status = 200
        latency.observe(time.perf_counter() - started)
        return JSONResponse(payload, status_code=status)

    return app


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``reward-server``: where it listens, failures, batching, the judge.

    Shared with ``recipes/ray_serve_reward_server.py``, which serves the same app.
    """
    parser.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1; no auth)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_REWARD_PORT, help=f"port ({DEFAULT_REWARD_PORT})"
    )
    parser.add_argument(
        "--failure-reward",
        type=float,
        help="reward of a failed judgment, flagged in extra_logs (default: answer 503)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to judge with it (5)",
    )
    add_judge_options(parser)


def add_parser(commands: Any) -> None:
    """Add the ``reward-server`` command to the ``thinking-judge`` sub-commands."""
    server = commands.add_parser(
        "reward-server",
        help="serve OpenRLHF's remote reward model protocol (POST /get_reward)",
        description="An HTTP reward server for OpenRLHF (--remote_rm_url "
        "http://HOST:PORT/get_reward) and any trainer that speaks its protocol. A failed "
        "judgment answers 503 (OpenRLHF retries) unless --failure-reward is given.",
    )
    add_server_options(server)


def app_from_args(args: argparse.Namespace) -> "FastAPI":
    """The app for parsed :func:`add_server_options` options, on a judge of its own.

    The backend is built here (an offline engine is loaded here), and closed when the
    app shuts down.

    Raises:
        UsageError: The options do not make a judge (see :mod:`judge.cli.common`).
    """
    backend = make_backend(args)
    judge = make_judge(backend, judge_options(args))
    return create_app(
        judge,
        failure_reward=args.failure_reward,
        use_expected_score=bool(args.expected_score),
        batch_wait_s=args.batch_wait_ms / 1000,
        on_shutdown=backend.aclose,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``reward-server`` until stopped; returns the exit status (0)."""
    import uvicorn

    uvicorn.run(app_from_args(args), host=args.host, port=args.port, log_level="info")
    return 0
