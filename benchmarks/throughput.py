"""Judgments per second: the judge against a bare client and the model card's loop.

A local OpenAI-compatible host (aiohttp, in a separate process) answers every chat
completion with "0.7" after a fixed delay (20 ms, a warm small-model reply). Measured
side by side, in one run, on the same inputs (a question, a response and a small PNG):

(a)  ``await ThinkingRewardJudge(backend=OpenAICompatibleBackend(...)).abatch(inputs,
     config={"max_concurrency": C})``: rendering, image checks, tracing, retries, scoring;
(a0) that backend alone: ``backend.agenerate(requests)`` on the rendered requests, to
     tell the HTTP backend's share from the judge's;
(b)  a bare asyncio loop: the same aiohttp client at the same concurrency, posting the
     same request bodies (rendered beforehand) and reading the number: the floor;
(c)  the model card's way, re-implemented: one ``httpx.post`` after another (temperature
     0, same messages), on a smaller sample.

(a), (a0) and (b) are measured interleaved, ``--repeat`` times, keeping each one's best.
Goals: (a) >= 0.8x (b), and >= 50x (c). Run::

    python benchmarks/throughput.py --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout works too

import aiohttp
import httpx
from PIL import Image

from backends.base import JudgeRequest
from backends.openai_compatible import OpenAICompatibleBackend
from judge import ThinkingRewardJudge
from judge.core.images import image_parts
from judge.core.prompt import render_messages

try:
    import orjson

    dumps, loads = orjson.dumps, orjson.loads
except ImportError:  # pragma: no cover
    dumps, loads = (lambda obj: json.dumps(obj).encode()), json.loads

MODEL = "thinking-reward-model"
RESPONSE = (
    "<think>The chart has four bars; the tallest is March at 42, so March had the most "
    "sales. Checking the axis: it starts at 0, so the heights compare directly.</think>"
    "<answer>March</answer>"
)


# --------------------------------------------------------------------------- the host


def serve(port_queue: Any, delay: float) -> None:
    """The fake host (run in its own process): read the body, wait, answer "0.7".

    A request with a ``response_format`` (a structured-output client) is answered with
    the JSON ``{"score": 0.7}`` instead.
    """
    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    reply = dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "0.7"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 420, "completion_tokens": 3, "total_tokens": 423},
        }
    )

    structured = reply.replace(b'"0.7"', dumps(dumps({"score": 0.7}).decode()))

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(delay)
        # A client asking for JSON (openevals' structured output) gets {"score": 0.7}.
        answer = structured if b'"response_format"' in body else reply
        return web.Response(body=answer, content_type="application/json")

    async def run() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(run())


# --------------------------------------------------------------------------- inputs


def small_png(variant: int = 0) -> bytes:
    """A 64x48 bar chart; each ``variant`` differs in one pixel, so in its bytes."""
    image = Image.new("RGB", (64, 48), (240, 240, 240))
    image.putpixel((variant % 64, 0), (variant // 64 % 256, 0, 0))
    for x in range(8, 56, 12):
        for y in range(48 - (x % 40) - 4, 48):
            for dx in range(8):
                image.putpixel((x + dx, y), (40, 90, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_inputs(n: int, png: bytes, *, distinct: bool) -> list[dict[str, Any]]:
    """``n`` judge inputs sharing ``png``, or each with an image of its own."""
    return [
        {
            "question": f"Which month had the most sales? (item {i})",
            "response": RESPONSE,
            "image": small_png(i) if distinct else png,
        }
        for i in range(n)
    ]


def request_body(item: dict[str, Any]) -> dict[str, Any]:
    messages = render_messages(item["question"], item["response"], image_parts(item["image"]))
    return {"model": MODEL, "messages": messages, "max_tokens": 16, "temperature": 0.0}


# --------------------------------------------------------------------------- the ways


async def run_async_rows(
    url: str, inputs: list[dict[str, Any]], concurrency: int, repeat: int
) -> dict[str, float]:
    """Best-of-``repeat`` seconds for (a), (a0) and (b), measured interleaved on one loop."""
    backend = OpenAICompatibleBackend(url, MODEL, api_key="EMPTY", max_concurrency=concurrency)
    judge = ThinkingRewardJudge(backend=backend)
    config: Any = {"max_concurrency": concurrency}
    bodies = [request_body(item) for item in inputs]
    requests = [JudgeRequest(messages=body["messages"], repetition_penalty=None) for body in bodies]
    endpoint = f"{url}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer EMPTY"}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def bare(items: list[dict[str, Any]]) -> list[float]:
            scores = [0.0] * len(items)
            pending = iter(range(len(items)))

            async def worker() -> None:
                for i in pending:
                    async with session.post(endpoint, data=dumps(items[i])) as response:
                        data = loads(await response.read())
                    scores[i] = float(data["choices"][0]["message"]["content"])

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
            return scores

        async def judged(items: list[dict[str, Any]]) -> list[float | None]:
            return [score.score for score in await judge.abatch(items, config=config)]

        async def backend_only(items: list[JudgeRequest]) -> list[float]:
            results = await backend.agenerate(items, max_concurrency=concurrency)
            return [float(r.text) for r in results]  # type: ignore[union-attr]

        rows: dict[str, tuple[Callable[[Any], Awaitable[list[Any]]], list[Any]]] = {
            "judge": (judged, inputs),
            "backend": (backend_only, requests),
            "bare": (bare, bodies),
        }
        warm = min(len(inputs), 2 * concurrency)
        for fn, items in rows.values():  # open the connection pools
            await fn(items[:warm])
        best = dict.fromkeys(rows, float("inf"))
        for _ in range(repeat):
            for name, (fn, items) in rows.items():
                started = time.perf_counter()
                scores = await fn(items)
                best[name] = min(best[name], time.perf_counter() - started)
                if any(score != 0.7 for score in scores):
                    raise SystemExit(f"{name}: some requests failed")
    await backend.aclose()
    return best


def run_card(url: str, inputs: list[dict[str, Any]]) -> float:
    """The card's loop: render, base64 the image, ``httpx.post``, parse; one at a time."""
    endpoint = f"{url}/chat/completions"
    started = time.perf_counter()
    for item in inputs:
        data_url = "data:image/png;base64," + base64.b64encode(item["image"]).decode()
        messages = render_messages(
            item["question"],
            item["response"],
            [{"type": "image_url", "image_url": {"url": data_url}}],
        )
        response = httpx.post(
            endpoint,
            json={"model": MODEL, "messages": messages, "temperature": 0.0, "max_tokens": 16},
            headers={"Authorization": "Bearer EMPTY"},
            timeout=60,
        )
        response.raise_for_status()
        if float(response.json()["choices"][0]["message"]["content"]) != 0.7:
            raise SystemExit("the card loop got a wrong answer")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="judgments for (a), (a0), (b)")
    parser.add_argument(
        "--card-n", type=int, default=None, help="requests for (c); default n/20, at least 50"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--distinct-images",
        action="store_true",
        help="give every input its own image (default: one image shared, as the completions "
        "of one RL prompt share it; the judge checks and encodes repeated bytes once)",
    )
    parser.add_argument("--delay", type=float, default=0.020, help="host reply delay, s")
    parser.add_argument(
        "--repeat", type=int, default=3, help="measure (a), (a0), (b) this often, keep the best"
    )
    args = parser.parse_args()
    card_n = args.card_n or max(50, args.n // 20)

    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    host = context.Process(target=serve, args=(port_queue, args.delay), daemon=True)
    host.start()
    try:
        url = f"http://127.0.0.1:{port_queue.get(timeout=60)}/v1"
        png = small_png()
        inputs = make_inputs(args.n, png, distinct=args.distinct_images)
        best = asyncio.run(run_async_rows(url, inputs, args.concurrency, args.repeat))
        card_s = run_card(url, inputs[:card_n])
    finally:
        host.terminate()
        host.join()

    c = args.concurrency
    rows = [
        ("(a)", f"judge.abatch, max_concurrency={c}", args.n, best["judge"]),
        ("(a0)", f"its backend alone: agenerate, {c} in flight", args.n, best["backend"]),
        ("(b)", f"bare aiohttp loop, {c} in flight", args.n, best["bare"]),
        ("(c)", "model card: sequential httpx.post", card_n, card_s),
    ]
    rate = {key: n / seconds for key, _, n, seconds in rows}
    print(
        f"host: aiohttp in its own process, '0.7' after {args.delay * 1000:g} ms; "
        f"image: {len(png)}-byte PNG, {'one per input' if args.distinct_images else 'shared'}; "
        f"CPUs: {multiprocessing.cpu_count()}; "
        f"best of {args.repeat} for (a), (a0), (b)"
    )
    print(f"{'':50s} {'requests':>9s} {'seconds':>9s} {'req/s':>9s}")
    for key, label, n, seconds in rows:
        print(f"{key:5s}{label:45s} {n:9d} {seconds:9.3f} {n / seconds:9.1f}")
    judge_bare = rate["(a)"] / rate["(b)"]
    judge_card = rate["(a)"] / rate["(c)"]
    backend_bare = rate["(a0)"] / rate["(b)"]
    print(f"judge / bare    = {judge_bare:5.2f}x  (goal >= 0.8x: {_verdict(judge_bare >= 0.8)})")
    print(f"judge / card    = {judge_card:5.1f}x  (goal >= 50x: {_verdict(judge_card >= 50)})")
    print(f"backend / bare  = {backend_bare:5.2f}x  (the HTTP backend's own share)")


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
