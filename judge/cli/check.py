"""``thinking-judge check``: can this server serve the judge? Each failure with its fix.

:func:`check` asks a running server, step by step, what the judge needs of it:

1. **reachable**: ``GET <base URL>/models`` answers (a URL that names an endpoint such as
   ``/v1/chat/completions``, or lacks ``/v1``, is corrected and said so; a refused
   connection on port 80 is pointed out: the model card's command serves there, vLLM's
   default is 8000; a 401 asks for the API key in ``VLLM_API_KEY``); the server's vLLM
   version is shown;
2. **model**: the served model names include the expected one (else they are listed);
3. **judgment**: one real judgment (the bundled chart question) comes back as a score;
   a failure's fix is chosen by its :class:`~judge.failures.FailureKind`.

Every request goes through the project's one HTTP client
(:class:`backends.transport.Transport`, and :class:`~backends.vllm_server.VLLMServerBackend`
for the version and the judgment).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from yarl import URL

from backends.errors import BackendConnectionError, BackendError, BackendTimeoutError
from backends.openai_wire import display_url
from backends.transport import Transport, credentials
from backends.vllm_server import VLLMServerBackend
from judge.cli.common import API_KEY_ENV, DEFAULT_PORT, SERVED_MODEL_NAME, demo_input
from judge.failures import ExitStatus, FailureKind, advice, exit_status
from judge.types import ThinkingScore

_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")
_API_ROOT_FIX = "give the server's OpenAI-compatible API root, e.g. http://HOST:8000/v1"

_JUDGMENT_FIXES: dict[FailureKind, str] = {
    FailureKind.PARSE: "the model answered, but not with a score: is the served model the "
    "thinking reward model? (a random-weight test model needs --constrained)",
    FailureKind.CONTEXT_LENGTH: "start the server with a larger --max-model-len (the model "
    "card uses 32768)",
    FailureKind.SERVER: "the server refused the request; if it mentions images, start it so "
    "that it takes one (--limit-mm-per-prompt '{\"image\": 1}' or more)",
}
"""What to do when the test judgment fails, where a server needs more than
:func:`judge.failures.advice` says."""


@dataclass
class Step:
    """One line of ``check``'s report."""

    name: str
    ok: bool
    message: str
    fix: str | None = None


@dataclass
class CheckReport:
    """What ``check`` found: its steps in order and the exit status they add up to."""

    base_url: str
    steps: list[Step] = field(default_factory=list)
    exit_status: int = ExitStatus.OK

    def add(self, step: Step, *, status: int = ExitStatus.OK) -> None:
        """Record ``step``; the last failure decides the exit status.

        A corrected base URL (status 2) does not stop the check; a later failure, which
        does, is the one the status reports.
        """
        self.steps.append(step)
        if not step.ok:
            self.exit_status = status

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return self.exit_status == ExitStatus.OK

    def render(self) -> str:
        """The report as text: one line per step, each failure followed by its fix."""
        lines = [f"thinking-judge check {self.base_url}"]
        for step in self.steps:
            lines.append(f"  {'ok  ' if step.ok else 'FAIL'}  {step.name}: {step.message}")
            if step.fix:
                lines.append(f"        fix: {step.fix}")
        if self.ok:
            lines.append(
                f"ready: thinking-judge score --base-url {self.base_url} "
                "--question ... --response ..."
            )
        return "\n".join(lines)


def _strip_endpoint(url: URL) -> tuple[URL, str | None]:
    """``.../v1/chat/completions`` -> ``.../v1`` and the suffix that was removed."""
    path = url.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            return url.with_path(path[: -len(suffix)] or "/"), suffix
    return url.with_path(path or "/"), None


def _shown(url: URL) -> str:
    """The URL without credentials, query or fragment, for messages."""
    return display_url(url).rstrip("/")


def _v1(url: URL) -> URL:
    return url.with_path(url.path.rstrip("/") + "/v1")


def _connection_fix(url: URL) -> str:
    port = url.port
    if port == 80:
        suggestion = _shown(url.with_port(DEFAULT_PORT))
        return (
            f"nothing answers on port 80. The model card's command serves on --port 80 "
            f"(which needs root); vLLM's own default and thinking-judge serve's is "
            f"{DEFAULT_PORT}. Give the port the server was started with, e.g. "
            f"--base-url {suggestion}"
        )
    return (
        f"is a vLLM server running at {url.host}:{port}? Start one with: thinking-judge serve "
        f"--port {port} (or check the host, the port and any firewall)"
    )


def _served_names(body: bytes) -> list[str] | None:
    try:
        data = orjson.loads(body)["data"]
        return [str(entry["id"]) for entry in data]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def _reach(
    transport: Transport, base: URL, report: CheckReport
) -> tuple[URL, list[str]] | None:
    """Step 1: find the API root that answers ``GET /models``; None when there is none."""
    unreachable = ExitStatus.UNAVAILABLE
    try:
        status, body = await transport.get(base / "models")
    except BackendConnectionError as exc:
        report.add(
            Step("reachable", False, f"cannot connect: {exc}", _connection_fix(base)),
            status=unreachable,
        )
        return None
    except BackendTimeoutError:
        report.add(
            Step(
                "reachable",
                False,
                f"no answer from {_shown(base)} in {transport.timeout:g} s",
                "the server may still be loading the model (thinking-judge serve prints the "
                "URL once it is ready), or the host/port is filtered; raise --timeout",
            ),
            status=unreachable,
        )
        return None
    except BackendError as exc:
        report.add(Step("reachable", False, str(exc), _connection_fix(base)), status=unreachable)
        return None
    if status in (401, 403):
        report.add(
            Step(
                "reachable",
                False,
                f"HTTP {status} from {_shown(base / 'models')}: the server wants an API key",
                f"set {API_KEY_ENV} to the key the server was started with (vllm serve "
                "--api-key, or its VLLM_API_KEY), or name another variable with --api-key-env",
            ),
            status=unreachable,
        )
        return None
    if status == 404 and not base.path.rstrip("/").endswith("/v1"):
        with contextlib.suppress(BackendError):
            v1_status, v1_body = await transport.get(_v1(base) / "models")
            if v1_status == 200 and _served_names(v1_body) is not None:
                report.add(
                    Step(
                        "url",
                        False,
                        f"{_shown(base)} has no /models; {_shown(_v1(base))} does",
                        f"the base URL ends in /v1: --base-url {_shown(_v1(base))}",
                    ),
                    status=ExitStatus.USAGE,
                )
                status, body, base = v1_status, v1_body, _v1(base)
    names = _served_names(body) if status == 200 else None
    if names is None:
        what = (
            f"HTTP {status} from {_shown(base / 'models')}"
            if status != 200
            else f"{_shown(base / 'models')} answered, but not with an OpenAI model list"
        )
        report.add(Step("reachable", False, what, _API_ROOT_FIX), status=unreachable)
        return None
    return base, names


async def _version(backend: VLLMServerBackend) -> str:
    """The server's vLLM version, as the reachable step shows it."""
    try:
        return f" (vLLM {await backend.aversion()})"
    except BackendError:
        return " (no GET /version: not a vLLM server?)"


def _judgment_step(result: ThinkingScore) -> Step:
    """Step 3's line for the test judgment's result."""
    if result.ok:
        tokens = (result.usage or {}).get("prompt_tokens")
        latency = f" in {result.latency_s:.2f} s" if result.latency_s is not None else ""
        return Step(
            "judgment",
            True,
            f"score {result.score:g} for the chart question{latency} "
            f"({tokens} prompt tokens, image included)",
        )
    kind = result.error_kind or FailureKind.INTERNAL
    fix = _JUDGMENT_FIXES.get(kind) or f"{advice(kind)}; see the server's log"
    raw = f"; the model said {result.raw[:120]!r}" if isinstance(result.raw, str) else ""
    return Step("judgment", False, f"{result.error}{raw}", fix)


async def _judge_once(backend: VLLMServerBackend, judge_options: dict[str, Any]) -> ThinkingScore:
    """Step 3: one real judgment of the bundled chart question."""
    from judge.runnable import ThinkingRewardJudge

    judge = ThinkingRewardJudge(backend=backend, **judge_options)
    return await judge.ainvoke(demo_input())


async def acheck(
    base_url: str,
    *,
    model: str = SERVED_MODEL_NAME,
    api_key_env: str | None = None,
    timeout: float = 60.0,
    judge_options: dict[str, Any] | None = None,
) -> CheckReport:
    """Check that a server can serve the judge: reachable, right model, a judgment.

    Args:
        base_url: The server's API root (``http://HOST:PORT/v1``); an endpoint URL or one
            without ``/v1`` is corrected, and the correction reported as a failure.
        model: The served model name the judge will ask for.
        api_key_env: The environment variable holding the API key (default
            ``VLLM_API_KEY``).
        timeout: Seconds each request may take.
        judge_options: ``ThinkingRewardJudge`` fields for the judgment
            (``{"constrained": True}``...).

    Returns:
        The report; its ``exit_status`` (a :class:`~judge.failures.ExitStatus`) is 0 when
        every step passed, 3 when the server cannot be used (unreachable, API key, model
        name), the status :func:`judge.failures.exit_status` gives the test judgment's
        failure kind (1 when its answer is not a score), else 2 when the base URL had to
        be corrected.
    """
    url = URL(base_url.strip())
    report = CheckReport(base_url=base_url)
    if url.scheme not in ("http", "https") or not url.host:
        report.add(
            Step(
                "url",
                False,
                f"{base_url!r} is not an http(s) URL",
                "give the server's API root, e.g. --base-url http://127.0.0.1:8000/v1",
            ),
            status=ExitStatus.USAGE,
        )
        return report
    base, suffix = _strip_endpoint(url)
    report.base_url = _shown(base)
    if suffix is not None:
        report.add(
            Step(
                "url",
                False,
                f"{_shown(url)} names the {suffix} endpoint, not the API root",
                f"the judge adds {suffix} itself: --base-url {_shown(base)}",
            ),
            status=ExitStatus.USAGE,
        )
    # Credentials in the URL are basic auth, else the API key is a bearer token.
    api_key = None if base.user else os.environ.get(api_key_env or API_KEY_ENV) or None
    (plain,), authorization, secrets = credentials([base], api_key)
    async with Transport(
        name="check", timeout=timeout, authorization=authorization, secrets=secrets
    ) as transport:
        reached = await _reach(transport, plain, report)
    if reached is None:
        return report
    root, names = reached
    report.base_url = _shown(root)
    if base.user is not None:
        root = root.with_user(base.user).with_password(base.password)
    backend = VLLMServerBackend(
        base_url=str(root), model=model, api_key_env=api_key_env, timeout=timeout, max_retries=1
    )
    try:
        version = await _version(backend)
        report.add(Step("reachable", True, f"{_shown(root / 'models')} answered{version}"))
        if model not in names:
            served = ", ".join(repr(name) for name in names) or "no model"
            report.add(
                Step(
                    "model",
                    False,
                    f"the server serves {served}, not {model!r}",
                    (
                        f"pass --model {names[0]} (the name the server was started with), or "
                        f"restart it with --served-model-name {model}"
                    )
                    if names
                    else f"restart the server with --served-model-name {model}",
                ),
                status=ExitStatus.UNAVAILABLE,
            )
            return report
        report.add(Step("model", True, f"serves {model!r}"))
        result = await _judge_once(backend, judge_options or {})
    finally:
        await backend.aclose()
    step = _judgment_step(result)
    report.add(step, status=exit_status([] if step.ok else [result.error_kind or "internal"]))
    return report


def check(base_url: str, *, out: TextIO | None = None, **kwargs: Any) -> int:
    """Run :func:`acheck`, print its report on ``out`` (stdout) and return its exit status.

    Args:
        base_url: As for :func:`acheck`.
        out: Where the report goes.
        **kwargs: As for :func:`acheck`.
    """
    report = asyncio.run(acheck(base_url, **kwargs))
    print(report.render(), file=out or sys.stdout)
    return report.exit_status


__all__ = ["CheckReport", "Step", "acheck", "check"]
