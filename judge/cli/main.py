"""The ``thinking-judge`` command: its parser, and the dispatch to one module per command.

::

    thinking-judge score --question Q --response R [--image PATH] [--json]
                         [--base-url URL ... | --backend offline] [--model M]
                         [--constrained] [--expected-score] [--output-format FORMAT]
                         [--cache PATH]
    thinking-judge batch IN.jsonl -o OUT.jsonl [--max-concurrency N] [--retry-failed]
                         [--image-root DIR] [--image-urls pass|public|refuse]
                         [backend and judge options as for score]
    thinking-judge demo [--cache-dir DIR] [--json]
    thinking-judge serve [--model M] [--host H] [--port P] [--max-model-len N]
                         [--max-num-seqs N] [--tensor-parallel-size N] [-- VLLM ARGS ...]
    thinking-judge check [--base-url URL] [--model NAME] [--constrained]
    thinking-judge reward-server [--host H] [--port P] [--failure-reward R]
                         [backend and judge options as for score]

One module per command: :mod:`judge.cli.score`, :mod:`judge.cli.batch`,
:mod:`judge.cli.demo`, :mod:`judge.cli.serve` and :mod:`judge.cli.check`; what they share
is in :mod:`judge.cli.common`.

Exit status (:class:`judge.failures.ExitStatus`; a failed judgment's status comes from
its kind, :func:`judge.failures.exit_status`): 0 scored (batch: every input id has a
score); 1 a judgment failed (the reason and what to do are printed; batch: some record
failed or repeated an id); 2 bad usage; 3 the backend cannot run (model not loadable,
vLLM missing, server unreachable); 130 interrupted. ``batch`` is resumable: run the same
command again after any interruption (see :mod:`judge.batch`). ``serve`` exits 0 when
stopped by Ctrl-C or SIGTERM, 3 when the server cannot start or dies; ``check`` exits 0
when the server is ready, 3 when it cannot be used (unreachable, API key, model name), 1
when its answer to the test judgment is not a score, else 2 when the base URL had to be
corrected (see :mod:`judge.cli.check`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backends.errors import BackendUnavailableError
from judge import DEFAULT_MODEL, __version__
from judge.batch import EXTENSIONS, BatchError
from judge.cli import batch as batch_command
from judge.cli import demo as demo_command
from judge.cli import reward_server as reward_server_command
from judge.cli import score as score_command
from judge.cli.common import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_PORT,
    MODEL_CARD_SETTINGS,
    SERVED_MODEL_NAME,
    UsageError,
    add_judge_options,
    base_urls,
    default_cache_dir,
    positive_int,
    say,
)
from judge.errors import CacheError
from judge.failures import ExitStatus


def build_parser() -> argparse.ArgumentParser:
    """The ``thinking-judge`` parser, every command in it."""
    parser = argparse.ArgumentParser(
        prog="thinking-judge",
        description="Score the thinking in a response with the SophiaVL-R1 Thinking Reward Model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_score(commands)
    _add_batch(commands)
    _add_demo(commands)
    _add_serve(commands)
    _add_check(commands)
    reward_server_command.add_parser(commands)
    return parser


def _add_score(commands: Any) -> None:
    score = commands.add_parser("score", help="score one question and response")
    score.add_argument("--question", required=True)
    score.add_argument("--response", required=True, help="the whole response, <think> included")
    score.add_argument("--image", action="append", default=[], help="image path or URL")
    add_judge_options(score)
    score.add_argument("--json", action="store_true", help="print the whole ThinkingScore")


def _add_batch(commands: Any) -> None:
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
        "--max-concurrency", type=positive_int, default=64, help="judgments in flight (64)"
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
    batch.add_argument(
        "--image-root",
        type=Path,
        help="relative image paths in the data are read from this folder, and every image "
        "file must lie inside it, symlinks resolved, or its record fails (default: the "
        "input file's folder)",
    )
    batch.add_argument(
        "--image-urls",
        choices=["pass", "public", "refuse"],
        default="public",
        help="http(s) image URLs: 'public' (default) sends only those whose host is a "
        "public address (no loopback, private or link-local), 'pass' sends all for the "
        "server to fetch, 'refuse' fails their records",
    )
    batch.add_argument(
        "--report",
        type=Path,
        metavar="HTML",
        help="then write a self-contained HTML report of the whole output file here "
        "(score histogram, expected-score calibration, failures by kind, slowest items)",
    )
    add_judge_options(batch)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="build a tiny random-weight model and score an example on it (no GPU)"
    )
    demo.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="where the model goes"
    )
    demo.add_argument("--json", action="store_true", help="print the whole ThinkingScore")


def _add_serve(commands: Any) -> None:
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
        type=positive_int,
        default=MODEL_CARD_SETTINGS["max_model_len"],
        help=f"context length ({MODEL_CARD_SETTINGS['max_model_len']}, as the card)",
    )
    serve.add_argument(
        "--max-num-seqs",
        type=positive_int,
        default=MODEL_CARD_SETTINGS["max_num_seqs"],
        help=f"sequences scheduled at once ({MODEL_CARD_SETTINGS['max_num_seqs']}, as the card)",
    )
    serve.add_argument(
        "--tensor-parallel-size",
        type=positive_int,
        default=1,
        help="GPUs to shard the model over (1; the card uses 2)",
    )
    serve.add_argument(
        "--startup-timeout", type=float, default=1800.0, help="seconds to wait for it (1800)"
    )
    serve.add_argument("--log-file", type=Path, help="the server's log (a temporary file)")
    serve.add_argument(
        "--allowed-media-domains",
        nargs="+",
        default=[],
        metavar="HOST",
        help="the only hosts the server fetches image URLs from (vLLM's flag of that name; "
        "default: every host, loopback and private ones included)",
    )
    serve.add_argument("vllm_args", nargs="*", metavar="VLLM_ARG", help="after '--': for vLLM")


def _add_check(commands: Any) -> None:
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
        "--api-key-env", help=f"env var holding the server's API key (default: {API_KEY_ENV})"
    )
    check.add_argument("--timeout", type=float, default=120.0, help="request timeout (s)")
    check.add_argument(
        "--constrained",
        action="store_true",
        help="constrain the test judgment to the score grid (needed by random-weight models)",
    )


def _serve(args: argparse.Namespace) -> int:
    from judge.cli.serve import serve

    return serve(
        args.model,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        tensor_parallel_size=args.tensor_parallel_size,
        vllm_args=args.vllm_args,
        allowed_media_domains=args.allowed_media_domains,
        startup_timeout=args.startup_timeout,
        log_file=args.log_file,
    )


def _check(args: argparse.Namespace) -> int:
    from judge.cli.check import check

    urls = [args.base_url] if args.base_url else base_urls(None)
    if len(urls) != 1:
        raise UsageError(f"check takes one --base-url (or ${BASE_URL_ENV} with one URL)")
    options = {"constrained": True} if args.constrained else {}
    return check(
        urls[0],
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        judge_options=options,
    )


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "score": score_command.run,
    "batch": batch_command.run,
    "demo": demo_command.run,
    "serve": _serve,  # serve and check import their modules (and aiohttp) when run
    "check": _check,
    "reward-server": reward_server_command.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (:class:`judge.failures.ExitStatus`)."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (UsageError, BatchError, CacheError) as exc:
        say(str(exc))
        return ExitStatus.USAGE
    except BackendUnavailableError as exc:
        say(str(exc))
        return ExitStatus.UNAVAILABLE


__all__ = ["build_parser", "main"]
