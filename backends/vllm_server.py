"""vLLM's OpenAI-compatible server as a backend: the vLLM host profile.

:class:`VLLMServerBackend` talks to ``vllm serve`` (or ``python -m
vllm.entrypoints.openai.api_server``) exactly as :class:`OpenAICompatibleBackend`
does, and adds what vLLM offers on top:

* ``repetition_penalty`` is sent (vLLM would otherwise apply the model's
  ``generation_config``, 1.05 for the Thinking Reward Model);
* ``structured_outputs`` (vLLM >= 0.10.2), for every request or per request
  through ``JudgeRequest.extra``. The field name depends on the server: vLLM >= 0.10.2
  *silently ignores* the legacy ``guided_choice`` / ``guided_regex`` / ``guided_json``
  / ``guided_grammar`` fields (HTTP 200, unconstrained output), and older servers ignore
  ``structured_outputs``. So before the first constrained request the server's version
  is asked once (``GET /version``) and every constraint is sent under the name that
  server honours; when the version cannot be learnt, constrained requests fail with a
  typed error rather than go out unconstrained (pass ``vllm_version=`` to skip the
  question);
* ``continue_final_message`` / ``add_generation_prompt=false`` for requests that
  continue an assistant message (the expected score's continuations);
* :meth:`~VLLMServerBackend.health` (``GET /health``) and
  :meth:`~VLLMServerBackend.version` (``GET /version``, cached, recorded in
  :meth:`~VLLMServerBackend.describe`);
* :meth:`VLLMServerBackend.launch` starts a server and returns its backend, which
  stops the server on :meth:`~VLLMServerBackend.close` (the process supervisor is
  :mod:`backends.vllm_launch`)::

      with VLLMServerBackend.launch("path/to/model", server_args=["--max-model-len", "4096"]) as b:
          b.generate([...])

The API key is read from ``VLLM_API_KEY`` by default (not ``OPENAI_API_KEY``, which
would send an OpenAI key to a self-hosted server); a launched server is given the same
key through its environment, never on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr
from typing_extensions import Self
from yarl import URL

from backends.base import JudgeRequest, Result
from backends.errors import BackendError, BackendResponseError, BackendUnavailableError
from backends.openai_compatible import OpenAICompatibleBackend
from backends.openai_wire import display_url, loads
from backends.vllm_launch import (
    ServerProcess,
    api_root,
    free_port,
    server_command,
    server_environment,
    server_flags,
)
from backends.vllm_startup import cpu_kv_cache_environment, model_problem

logger = logging.getLogger(__name__)

_LEGACY_GUIDED = {
    "guided_choice": "choice",
    "guided_regex": "regex",
    "guided_json": "json",
    "guided_grammar": "grammar",
}


_STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)
"""The first vLLM release that reads ``structured_outputs`` (and ignores ``guided_*``)."""


def reads_structured_outputs(version: str) -> bool:
    """Whether a vLLM server of ``version`` reads ``structured_outputs``.

    Pre-releases and dev builds count as their release (``0.10.2.dev5`` reads it);
    a version that does not start with three numbers is taken to be a new one.
    """
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        return True
    release = tuple(int(part or 0) for part in match.groups())
    return release >= _STRUCTURED_OUTPUTS_SINCE


def _to_legacy(body: dict[str, Any]) -> dict[str, Any]:
    """Move ``structured_outputs`` into the legacy ``guided_*`` fields (old servers)."""
    structured = body.get("structured_outputs")
    if not structured:
        return body
    body = dict(body)
    del body["structured_outputs"]
    names = {new: old for old, new in _LEGACY_GUIDED.items()}
    for key, value in structured.items():
        if key not in names:
            raise BackendError(
                f"structured_outputs.{key} has no counterpart on this (pre-0.10.2) vLLM "
                "server; refusing to send a constraint it would ignore",
                backend="vllm-server",
            )
        body.setdefault(names[key], value)
    return body


def _wants_structure(body: Mapping[str, Any]) -> bool:
    return "structured_outputs" in body or any(key in body for key in _LEGACY_GUIDED)


def _translate_legacy(body: dict[str, Any]) -> dict[str, Any]:
    """Move legacy ``guided_*`` fields into ``structured_outputs`` (its own fields win)."""
    legacy = [key for key in _LEGACY_GUIDED if key in body]
    if not legacy:
        return body
    body = dict(body)
    structured = dict(body.get("structured_outputs") or {})
    for key in legacy:
        structured.setdefault(_LEGACY_GUIDED[key], body.pop(key))
    body["structured_outputs"] = structured
    return body


def _server_root(base_url: URL) -> URL:
    """``http://host:port/v1`` -> ``http://host:port`` (where /health and /version are)."""
    path = base_url.path.rstrip("/")
    return base_url.with_query(None).with_path(
        path[: -len("/v1")] if path.endswith("/v1") else path
    )


def _launch_key(api_key: SecretStr | str | None, api_key_env: str) -> str | None:
    """The API key a launched server is given: the backend's (as its constructor reads it)."""
    if api_key is None:
        return os.environ.get(api_key_env) or None
    return api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key


class VLLMServerBackend(OpenAICompatibleBackend):
    """A vLLM OpenAI-compatible server.

    Args:
        base_url: The server's API root, ending in ``/v1``, or a list of replicas' roots.
        model: The served model name (``--served-model-name``).
        structured_outputs: vLLM ``structured_outputs`` sent with every request
            (e.g. ``{"choice": ["0.0", "0.1", ...]}``); a request's own wins.
        vllm_version: The server's vLLM version, when known: it decides the name
            constraints are sent under, without asking ``GET /version``.
        **kwargs: As for :class:`OpenAICompatibleBackend` (``api_key``, ``timeout``,
            ``max_retries``, ``max_concurrency``, ``extra_body``...).
    """

    name = "vllm-server"
    supports_repetition_penalty = True
    supports_structured_outputs = True
    supports_continuation = True
    default_api_key_env: ClassVar[str] = "VLLM_API_KEY"
    server_module: ClassVar[str] = "vllm.entrypoints.openai.api_server"
    """The module :meth:`launch` runs with ``python -m``."""
    shutdown_grace: ClassVar[float] = 15.0
    """Seconds a launched server is given to stop after SIGTERM before SIGKILL."""

    def __init__(
        self,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1",
        model: str = "thinking-reward-model",
        *,
        structured_outputs: Mapping[str, Any] | None = None,
        vllm_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, model, **kwargs)
        if structured_outputs is not None:
            self.extra_body["structured_outputs"] = dict(structured_outputs)
        self.extra_body = _translate_legacy(self.extra_body)
        self._roots = tuple(_server_root(url) for url in self.base_urls)
        self._vllm_version: str | None = vllm_version
        self._server: ServerProcess | None = None
        self.log_path: Path | None = None
        """The launched server's log file (kept after it stops), or None."""

    # ----------------------------------------------------------------- requests

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        """As :meth:`OpenAICompatibleBackend.request_body`, the constraint under the name
        the server reads (``structured_outputs``, or ``guided_*`` before vLLM 0.10.2).
        """  # noqa: D205
        body = super().request_body(request)
        if not _wants_structure(body):
            return body
        body = _translate_legacy(body)
        if self._vllm_version is not None and not reads_structured_outputs(self._vllm_version):
            body = _to_legacy(body)
        return body

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        """Every field of the request body but the model and the messages."""
        body = self.request_body(request)
        return {k: v for k, v in body.items() if k not in ("model", "messages")}

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """As :meth:`OpenAICompatibleBackend.agenerate`; learns the server's version first
        when a request carries a constraint, and fails those requests when it cannot, or
        when an old server has no field for their constraint.
        """  # noqa: D205
        everywhere = _wants_structure(self.extra_body)
        constrained = [i for i, r in enumerate(requests) if everywhere or _wants_structure(r.extra)]
        if not constrained:
            return await super().agenerate(requests, max_concurrency=max_concurrency)
        refusals: dict[int, BackendError] = {}
        try:
            version = await self.aversion()
        except BackendError as exc:
            refusal = BackendError(
                "cannot tell whether this server reads structured_outputs or guided_* "
                f"(GET /version failed: {exc}); refusing to send a constraint it may ignore "
                "silently. Pass vllm_version= to VLLMServerBackend to say which it is.",
                backend=self.name,
            )
            refusals = dict.fromkeys(constrained, refusal)
        else:
            if not reads_structured_outputs(version):
                for index in constrained:
                    try:
                        self.request_body(requests[index])
                    except BackendError as exc:
                        refusals[index] = exc
        if not refusals:
            return await super().agenerate(requests, max_concurrency=max_concurrency)
        sent = [i for i in range(len(requests)) if i not in refusals]
        done = await super().agenerate([requests[i] for i in sent], max_concurrency=max_concurrency)
        results: list[Result | None] = [None] * len(requests)
        for index, refusal in refusals.items():
            results[index] = refusal
        for index, result in zip(sent, done, strict=True):
            results[index] = result
        return results  # type: ignore[return-value]  # every slot is filled

    def describe(self) -> dict[str, Any]:
        """Backend, model, base URL and, once known, the server's ``vllm_version``."""
        info = super().describe()
        if self._vllm_version is not None:
            info["vllm_version"] = self._vllm_version
        return info

    # ----------------------------------------------------------------- server info

    async def ahealth(self, timeout: float = 5.0) -> bool:
        """Whether ``GET /health`` answers 200 within ``timeout`` seconds; never raises.

        With several base URLs, whether every one of them does.
        """

        async def healthy(root: URL) -> bool:
            try:
                status, _ = await self.transport.get(root / "health", timeout=timeout)
            except BackendError:
                return False
            return status == 200

        return all(await asyncio.gather(*(healthy(root) for root in self._roots)))

    def health(self, timeout: float = 5.0) -> bool:
        """Sync :meth:`ahealth`."""
        return self._sync_runner.run(self.ahealth(timeout))

    def probe_url(self, index: int) -> URL:
        """An ejected replica is re-admitted once ``GET /health`` answers below 500."""
        return self._roots[index] / "health"

    async def aversion(self) -> str:
        """The server's vLLM version (``GET /version``), asked once and then cached.

        With several base URLs, the first one's that answers (replicas are expected to
        run one version).

        Raises:
            BackendError: A typed transport, HTTP or response error.
        """
        if self._vllm_version is None:
            failures: list[BackendError] = []
            for root in self._roots:  # the first replica that answers
                try:
                    self._vllm_version = await self._ask_version(root)
                    break
                except BackendError as exc:
                    failures.append(exc)
            else:
                raise (
                    failures[0]
                    if len(failures) == 1
                    else BackendError(
                        "no replica told its version: " + "; ".join(map(str, failures)),
                        backend=self.name,
                    )
                )
        return self._vllm_version

    async def _ask_version(self, root: URL) -> str:
        url = root / "version"
        status, body = await self.transport.get(url)
        if status != 200:
            raise self.transport.http_error(status, body, display_url(url))
        try:
            return str(loads(body)["version"])
        except (ValueError, KeyError, TypeError):
            raise BackendResponseError(
                f"unusable reply from {display_url(url)}: no version", backend=self.name
            ) from None

    def version(self) -> str:
        """Sync :meth:`aversion`."""
        return self._sync_runner.run(self.aversion())

    # ----------------------------------------------------------------- a server of our own

    @property
    def server_process(self) -> subprocess.Popen[bytes] | None:
        """The server process :meth:`launch` started, or None."""
        return self._server.process if self._server is not None else None

    @classmethod
    def launch(
        cls,
        model: str,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        served_model_name: str = "thinking-reward-model",
        server_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 600.0,
        python: str = sys.executable,
        log_file: str | os.PathLike[str] | None = None,
        backend_kwargs: Mapping[str, Any] | None = None,
        **server_options: Any,
    ) -> Self:
        """Start a vLLM server, wait until it is healthy, and return its backend.

        Runs ``python -m <server_module> --host H --port P --model M
        --served-model-name N *server_args`` in a new process group, with stdout and
        stderr appended to ``log_file`` (the supervisor is
        :class:`backends.vllm_launch.ServerProcess`). :meth:`close` (or leaving a
        ``with`` block) stops it: SIGTERM to the group, SIGKILL after
        :attr:`shutdown_grace` seconds.

        Args:
            model: A model directory or hub id.
            port: The port; a free one when None.
            host: The interface to serve on.
            served_model_name: The name requests use.
            server_args: Further server arguments (``--max-model-len``, ``--dtype``...).
            env: Environment variables set for the server on top of this process's.
            startup_timeout: Seconds to wait for ``/health``.
            python: The interpreter to run the server with.
            log_file: Where the server's output goes; a temporary file when None.
                Kept afterwards; its path is :attr:`log_path`.
            backend_kwargs: Passed to the constructor (``api_key``, ``timeout``...).
            **server_options: Server flags by name: ``max_model_len=4096`` is
                ``--max-model-len 4096``; True adds the bare flag, False its ``--no-``
                form; mappings and lists are passed as JSON
                (``limit_mm_per_prompt={"image": 2}``).

        Example:
            ```python
            with VLLMServerBackend.launch("bunny127/SophiaVL-R1-Thinking-Reward-Model-3B",
                                          max_model_len=8192, enforce_eager=True) as backend:
                ThinkingRewardJudge(backend=backend).batch(inputs)
            ```

        A ``model`` written as a path that is no model folder (``./no-such-folder``) is
        refused at once (:func:`backends.vllm_startup.model_problem`, without asking the
        hub), instead of the server retrying the hub for a minute.

        On vLLM's CPU build the KV cache is sized from the model and the free memory
        (``VLLM_CPU_KVCACHE_SPACE``; see :func:`backends.vllm_startup.cpu_kv_cache_gib`)
        unless ``VLLM_CPU_KVCACHE_SPACE`` is set here or in ``env``, or
        ``kv_cache_memory_bytes`` / ``gpu_memory_utilization`` is given. A model folder
        is served with ``HF_HUB_OFFLINE=1`` (unless ``env`` or this process says
        otherwise): nothing of it is on the hub.

        Returns:
            The backend, connected to the healthy server.

        Raises:
            BackendUnavailableError: The model folder does not exist, or the
                server exited or was not healthy in time: the message's first line says
                why (the root cause found in the server's log) and where the log is.
        """
        if "api_key" in server_options:
            raise ValueError(
                "pass the API key as backend_kwargs={'api_key': ...}: it reaches the server "
                "through its environment, never its command line"
            )
        if problem := model_problem(model, hub=False):
            raise BackendUnavailableError(problem.message, backend=cls.name)
        port = free_port(host) if port is None else port
        kwargs = dict(backend_kwargs or {})
        backend = cls(api_root(host, port), served_model_name, **kwargs)
        key = _launch_key(
            kwargs.get("api_key"), kwargs.get("api_key_env") or cls.default_api_key_env
        )
        child_env = server_environment(env)
        if Path(os.path.expanduser(model)).is_dir():
            child_env.setdefault("HF_HUB_OFFLINE", "1")
        child_env.update(
            cpu_kv_cache_environment(
                model,
                env=child_env,
                server_args=server_args,
                options=server_options,
                python=python,
            )
        )
        if key is not None:
            child_env.setdefault("VLLM_API_KEY", key)
        command = server_command(
            python,
            cls.server_module,
            model=model,
            host=host,
            port=port,
            served_model_name=served_model_name,
            server_args=server_args,
            options=server_options,
        )
        server = ServerProcess.start(
            command,
            env=child_env,
            log_file=log_file,
            grace=cls.shutdown_grace,
            owner=backend,
            secrets=[key] if key else [],
            name=backend.name,
        )
        backend._server = server
        backend.log_path = server.log_path
        try:
            server.wait_until_healthy(backend.health, startup_timeout)
        except BaseException:
            backend.close()
            raise
        with contextlib.suppress(BackendError):
            backend.version()
        return backend

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Close the HTTP sessions and stop the server :meth:`launch` started."""
        super().close()
        if self._server is not None:
            self._server.stop()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await super().aclose()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)


__all__ = ["VLLMServerBackend", "reads_structured_outputs", "server_flags"]
