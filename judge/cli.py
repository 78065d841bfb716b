"""The ``thinking-judge`` command.

::

    thinking-judge score --question Q --response R [--image PATH] [--json]
                         [--base-url URL | --backend offline] [--model M]
    thinking-judge demo [--cache-dir DIR] [--json]

Exit status: 0 scored; 1 the judgment failed (the reason is printed); 2 bad usage;
3 the backend cannot run (model not loadable, vLLM missing, server unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from backends.base import Backend
from backends.errors import BackendConnectionError, BackendUnavailableError
from judge import DEFAULT_MODEL, __version__
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
SERVED_MODEL_NAME = "thinking-reward-model"
BASE_URL_ENV = "THINKING_JUDGE_BASE_URL"

DEMO_QUESTION = "<image> Which bar in the chart is the tallest, and by how much?"
DEMO_RESPONSE = (
    "<think>The chart has three bars: A reaches 3, B reaches 7 and C reaches 5. "
    "B is the tallest. The next tallest is C, so B is taller by 7 - 5 = 2.</think>"
    "<answer>B, by 2</answer>"
)
RANDOM_WEIGHTS_WARNING = (
    "NOTE: the demo model has RANDOM weights. It shows the whole pipeline running end to "
    "end (prompt, image, vLLM engine, parser); its score says nothing about the response. "
    f"Real scores need the real model: thinking-judge score --model {DEFAULT_MODEL} ..."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thinking-judge",
        description="Score the thinking in a response with the SophiaVL-R1 Thinking Reward Model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score one question and response")
    score.add_argument("--question", required=True)
    score.add_argument("--response", required=True, help="the whole response, <think> included")
    score.add_argument("--image", action="append", default=[], help="image path or URL")
    score.add_argument(
        "--backend",
        choices=["offline", "server"],
        help="in-process vLLM engine or a server (default: server when a base URL is set)",
    )
    score.add_argument(
        "--base-url", default=os.environ.get(BASE_URL_ENV), help=f"server URL (or ${BASE_URL_ENV})"
    )
    score.add_argument(
        "--model",
        help=f"model id or folder (offline default: {DEFAULT_MODEL}; "
        f"server default: {SERVED_MODEL_NAME})",
    )
    score.add_argument(
        "--api-key-env", help="env var holding the server's API key (default: VLLM_API_KEY)"
    )
    score.add_argument("--max-model-len", type=int, default=8192, help="offline context length")
    score.add_argument("--timeout", type=float, default=120.0, help="server request timeout (s)")
    score.add_argument("--json", action="store_true", help="print the whole ThinkingScore")

    demo = commands.add_parser(
        "demo", help="build a tiny random-weight model and score an example on it (no GPU)"
    )
    demo.add_argument("--cache-dir", type=Path, default=_cache_dir(), help="where the model goes")
    demo.add_argument("--json", action="store_true", help="print the whole ThinkingScore")
    return parser


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "thinking-reward-judge"


def _server_backend(args: argparse.Namespace) -> Backend:
    from backends.vllm_server import VLLMServerBackend

    return VLLMServerBackend(
        base_url=args.base_url,
        model=args.model or SERVED_MODEL_NAME,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
    )


def _offline_backend(model: str, **engine_kwargs: Any) -> Backend:
    # stdout carries the result alone (--json is parsed by scripts); vLLM logs to stdout
    # unless told otherwise. Both settings yield to the user's own environment.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from backends.vllm_offline import VLLMOfflineBackend

    return VLLMOfflineBackend(model, **engine_kwargs).load()


def _report(result: ThinkingScore, *, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
    elif result.ok:
        print(f"{result.score:g}")
    if not result.ok:
        print(f"thinking-judge: the judgment failed: {result.error}", file=sys.stderr)
        if isinstance(result.raw, str):
            print(f"thinking-judge: the model said {result.raw[:200]!r}", file=sys.stderr)
        return (
            EXIT_UNAVAILABLE
            if result.error_type == BackendConnectionError.__name__
            else (EXIT_FAILED)
        )
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    use_server = args.backend == "server" or (args.backend is None and args.base_url)
    if use_server and not args.base_url:
        print(
            f"thinking-judge: --backend server needs --base-url or ${BASE_URL_ENV}", file=sys.stderr
        )
        return EXIT_USAGE
    if use_server:
        backend = _server_backend(args)
    else:
        backend = _offline_backend(args.model or DEFAULT_MODEL, max_model_len=args.max_model_len)
    item: JudgeInput = {"question": args.question, "response": args.response}
    if args.image:
        item["images"] = args.image
    with backend:
        result = ThinkingRewardJudge(backend=backend).invoke(item)
    return _report(result, as_json=args.json)


def _demo(args: argparse.Namespace) -> int:
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TORCHDYNAMO_DISABLE": "1",  # no inductor compile of the sampler: faster start
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # in-process engine core: less memory
    }.items():
        os.environ.setdefault(key, value)
    from judge.testing import build_tiny_model

    print(
        f"thinking-judge demo: building the tiny test model in {args.cache_dir} ...",
        file=sys.stderr,
    )
    model_dir = build_tiny_model(args.cache_dir / "tiny-qwen2.5-vl")
    backend = _offline_backend(
        str(model_dir),
        served_model_name="tiny-random-qwen2.5-vl",
        max_model_len=4096,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt={"image": 2, "video": 0},
    )
    image = resources.files("judge") / "data" / "demo_chart.png"
    item: JudgeInput = {
        "question": DEMO_QUESTION,
        "response": DEMO_RESPONSE,
        "image": image.read_bytes(),
    }
    with backend:
        # Random weights answer junk when free; the constraint keeps the answer on the
        # model's score grid so the demo shows a score, as the real model gives.
        result = ThinkingRewardJudge(backend=backend, constrained=True).invoke(item)
    print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    if not args.json and result.ok:
        tokens = (result.usage or {}).get("prompt_tokens")
        print(
            f"question: {DEMO_QUESTION}\nresponse: {DEMO_RESPONSE}\n"
            f"prompt tokens (text + image): {tokens}; model: {result.model}"
        )
        print("thinking score: ", end="")
    return _report(result, as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _score(args)
    except BackendUnavailableError as exc:
        print(f"thinking-judge: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
