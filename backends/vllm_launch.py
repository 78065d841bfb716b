"""Starting and stopping a vLLM server process: the supervisor behind ``launch``.

:meth:`backends.vllm_server.VLLMServerBackend.launch` builds the backend and hands the
process to :class:`ServerProcess`, which

* starts ``python -m vllm.entrypoints.openai.api_server ...`` in a new process group
  (``start_new_session``), stdout and stderr appended to a log file, the API key in the
  environment and never on the command line, and the repair for vLLM's CPU build in
  that environment too (:func:`server_environment`; see :mod:`backends._torch_compat`);
* waits until the server answers ``GET /health`` (through the backend's own
  :meth:`health`), failing fast when the process exits, or when it is not healthy in
  time: the error's first line is the root cause read from the log
  (:func:`backends.vllm_startup.root_cause`: ``Available memory ... less than desired``,
  not ``Engine core initialization failed. See root cause above.``), the end of the log
  follows;
* holds its lifeline: the write end of a pipe whose read end only the server has
  (:data:`LIFELINE_ENV` names it). When this process dies in a way that runs no clean-up
  (SIGKILL, the OOM killer), the pipe closes and the server's start-up hook
  (``backends/_torch_compat_site/sitecustomize.py``) stops the server's process group,
  so a killed client never leaves a multi-GB server behind;
* stops it: SIGTERM to the whole group, SIGKILL after a grace period, the leader
  reaped; descendants that left the group are signalled too (found with psutil, which
  vLLM installs); also when the backend that owns it is garbage-collected, and at the
  latest when this interpreter exits (``weakref.finalize`` runs at exit).

The design follows vLLM's ``tests/utils.py`` ``RemoteOpenAIServer``. This module knows
nothing of requests or of the backend class (which imports it, never the other way
round): it is given commands, environments and a health check.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from backends._torch_compat import child_environment
from backends.errors import BackendUnavailableError
from backends.vllm_startup import root_cause

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES = 8192
"""How much of the end of a server's log a startup failure reads."""
LOG_TAIL_LINES = 40
"""How many of the log's last lines a startup failure quotes."""
LOG_CAUSE_BYTES = 1 << 20
"""How much of the end of a server's log is searched for the root cause of a failed start."""
_POLL_SECONDS = 0.5
_HEALTH_TIMEOUT = 5.0


def server_flags(options: Mapping[str, Any]) -> list[str]:
    """Command-line flags for vLLM server options given by keyword.

    Args:
        options: ``{"max_model_len": 4096, "enforce_eager": True, ...}``.

    Returns:
        ``["--max-model-len", "4096", "--enforce-eager", ...]``: True adds the bare flag,
        False its ``--no-`` form, mappings and lists are passed as JSON and None is left
        out.
    """
    flags: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + flag[2:])
        elif isinstance(value, (Mapping, list, tuple)):
            flags += [flag, json.dumps(value)]
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def server_command(
    python: str,
    module: str,
    *,
    model: str,
    host: str,
    port: int,
    served_model_name: str,
    server_args: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The command line that starts a vLLM server.

    Args:
        python: The interpreter.
        module: The server module run with ``-m``.
        model: A model directory or hub id.
        host: The interface to serve on.
        port: The port.
        served_model_name: The name requests use.
        server_args: Further arguments, passed as given.
        options: Further flags by name (see :func:`server_flags`).

    Returns:
        ``[python, "-m", module, "--host", H, "--port", P, "--model", M,
        "--served-model-name", N, *server_args, *server_flags(options)]``.
    """
    return [
        python,
        "-m",
        module,
        "--host",
        host,
        "--port",
        str(port),
        "--model",
        model,
        "--served-model-name",
        served_model_name,
        *server_args,
        *server_flags(options or {}),
    ]


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def api_root(host: str, port: int) -> str:
    """The base URL a client uses for a server listening on ``host:port``.

    A server on every interface (``0.0.0.0``, ``::``, ``""``) is reached on loopback.
    """
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    netloc = f"[{connect}]" if ":" in connect else connect
    return f"http://{netloc}:{port}/v1"


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _read_end(path: Path, size: int) -> str:
    """The last ``size`` bytes of a file, decoded (OSError when it cannot be read)."""
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - size))
        return log.read().decode("utf-8", "replace")


def log_tail(path: Path, secrets: Sequence[str] = ()) -> str:
    """The last lines of a log file, with ``secrets`` redacted."""
    try:
        data = _read_end(path, LOG_TAIL_BYTES)
    except OSError as exc:
        return f"(the log {path} cannot be read: {exc.strerror})"
    text = "\n".join(data.splitlines()[-LOG_TAIL_LINES:])
    return _redact(text, secrets) or "(the log is empty)"


def log_root_cause(path: Path, secrets: Sequence[str] = ()) -> str | None:
    """The root-cause line of a failed start's log (see :func:`root_cause`), redacted."""
    try:
        data = _read_end(path, LOG_CAUSE_BYTES)
    except OSError:
        return None
    cause = root_cause(data)
    return None if cause is None else _redact(cause, secrets)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process's group (POSIX) or to the process (elsewhere)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, sig)
        elif sig == getattr(signal, "SIGKILL", None):  # pragma: no cover - Windows
            process.kill()
        else:  # pragma: no cover - Windows
            process.terminate()


def _descendants(pid: int) -> list[Any]:
    """The processes below ``pid`` (psutil's, when psutil is installed: vLLM brings it)."""
    try:
        psutil: Any = importlib.import_module("psutil")
    except ImportError:  # pragma: no cover - installed with vLLM
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _signal_each(processes: Sequence[Any], sig: int) -> None:
    """Send ``sig`` to each psutil process still running (psutil checks it is the same one)."""
    for child in processes:
        with contextlib.suppress(Exception):  # gone, or not ours to signal
            child.send_signal(sig)


LIFELINE_ENV = "THINKING_JUDGE_LIFELINE_FD"
"""The variable that tells a started server which inherited file descriptor is its lifeline.

Read (and removed from its environment, so its own children do not watch) by the
start-up hook of the processes the project starts: at end of file, the process stops
its group (SIGTERM, then SIGKILL).
"""


def _cut_and_stop(process: subprocess.Popen[bytes], grace: float, lifeline: int | None) -> None:
    """Stop the process (see :func:`stop_process`), then close its lifeline if it has one."""
    try:
        stop_process(process, grace)
    finally:
        if lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(lifeline)


def stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process's group, SIGKILL it after ``grace`` seconds; reap the leader.

    The SIGKILL goes to the group even when the leader stopped in time, for any child
    it left behind. Descendants that left the group (a new session of their own) are
    found before the leader stops (with psutil) and signalled with the group.
    """
    descendants = _descendants(process.pid) if process.poll() is None else []
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        _signal_each(descendants, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("the vLLM server did not stop within %g s; killing it", grace)
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    _signal_group(process, kill)  # stragglers
    _signal_each(descendants, kill)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)


def server_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a server this project starts.

    This process's environment updated with ``env``, given the repair for vLLM's CPU
    build (:func:`backends._torch_compat.child_environment`: its start-up hook at the
    head of ``PYTHONPATH``, inherited by the server's own children).
    """
    return child_environment({**os.environ, **(env or {})})


class ServerProcess:
    """A server process in a process group of its own, stopped with its owner.

    Build one with :meth:`start`.

    Args:
        process: The started process (the leader of its own process group).
        log_path: Where its output goes.
        grace: Seconds it is given to stop after SIGTERM before SIGKILL.
        owner: The object whose collection stops the process too (the backend).
        secrets: Strings redacted from the log tail quoted in errors.
        name: The backend name errors carry.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        log_path: Path,
        *,
        grace: float,
        owner: object,
        secrets: Sequence[str] = (),
        name: str = "vllm-server",
        lifeline: int | None = None,
    ) -> None:
        self.process = process
        self.log_path = log_path
        self.name = name
        self._secrets = tuple(secret for secret in secrets if secret)
        # Holds the process, not the owner: the owner's collection stops the server.
        self._stop = weakref.finalize(owner, _cut_and_stop, process, grace, lifeline)

    @classmethod
    def start(
        cls,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        log_file: str | os.PathLike[str] | None,
        grace: float,
        owner: object,
        secrets: Sequence[str] = (),
        name: str = "vllm-server",
    ) -> ServerProcess:
        """Start ``command`` in a new process group, its output appended to ``log_file``.

        Args:
            command: The command line (see :func:`server_command`).
            env: The whole environment of the process (see :func:`server_environment`).
            log_file: The log; a new temporary file when None (kept afterwards).
            grace: As for the constructor.
            owner: As for the constructor.
            secrets: As for the constructor.
            name: As for the constructor.

        Returns:
            The running process (not yet known to be healthy).

        Raises:
            BackendUnavailableError: The command cannot be started.
        """
        if log_file is None:
            handle, temporary = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
            os.close(handle)
            log_file = temporary
        log_path = Path(log_file)
        logger.info("starting a vLLM server; log: %s", log_path)
        # Both ends are close-on-exec: only the server gets the read end (pass_fds), and
        # no other process this one starts keeps the write end open.
        watched, lifeline = os.pipe()
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    list(command),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, LIFELINE_ENV: str(watched)},
                    start_new_session=True,
                    pass_fds=(watched,),
                )
        except OSError as exc:
            os.close(lifeline)
            raise BackendUnavailableError(
                f"the vLLM server cannot be started: {exc}", backend=name
            ) from None
        finally:
            os.close(watched)
        return cls(
            process,
            log_path,
            grace=grace,
            owner=owner,
            secrets=secrets,
            name=name,
            lifeline=lifeline,
        )

    def wait_until_healthy(self, healthy: Callable[[float], bool], startup_timeout: float) -> None:
        """Return once ``healthy`` says so while the process runs.

        Args:
            healthy: Asks the server (``GET /health``) within the seconds it is given;
                never raises.
            startup_timeout: Seconds to wait in all.

        Raises:
            BackendUnavailableError: The process exited, or was not healthy in time; the
                message's first line gives the root cause found in the log and the log's
                path, the end of the log follows.
        """
        process = self.process
        deadline = time.monotonic() + startup_timeout
        while True:
            code = process.poll()
            if code is None and healthy(_HEALTH_TIMEOUT):
                if process.poll() is None:
                    return
                code = process.returncode
            if code is not None:
                raise self.failure(f"the vLLM server exited with code {code}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.failure(f"the vLLM server was not healthy within {startup_timeout:g} s")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(min(_POLL_SECONDS, remaining))  # returns at once if it exits

    def failure(self, what: str) -> BackendUnavailableError:
        """``what`` happened: one line with the log's root cause, then the log's end.

        The first line reads ``<what>: <root cause> (log: <path>)``; a command prints
        that line alone. Secrets are redacted from both.
        """
        cause = log_root_cause(self.log_path, self._secrets)
        tail = log_tail(self.log_path, self._secrets)
        head = f"{what}: {cause}" if cause else what
        return BackendUnavailableError(
            f"{head} (log: {self.log_path})\nthe end of its log:\n{tail}", backend=self.name
        )

    def stop(self) -> None:
        """Stop the process group (once; later calls do nothing)."""
        self._stop()


__all__ = [
    "LIFELINE_ENV",
    "ServerProcess",
    "api_root",
    "free_port",
    "log_root_cause",
    "log_tail",
    "server_command",
    "server_environment",
    "server_flags",
    "stop_process",
]
