"""What a vLLM start needs settled before it runs, and what it says when it fails.

Three things a newcomer trips over, each answered in one line instead of a minute of
retries or forty lines of traceback:

* **The model**: :func:`model_problem` tells at once that ``--model ./no-such-folder``
  (``../x``, ``/abs/path``, ``~/x``) is not a model folder, and that a hub id which is not
  in the local hub cache cannot be downloaded (``HF_HUB_OFFLINE`` set, the hub
  unreachable, no such repository): one request, never the hub client's five retries.
* **The KV cache on vLLM's CPU build**: unless told, vLLM's CPU build reserves 92% of
  the machine's memory (``--gpu-memory-utilization`` means CPU memory there) and refuses
  to start when less than that is free. :func:`cpu_kv_cache_environment` sizes the cache
  from the model and the free memory instead (see :func:`cpu_kv_cache_gib` for the rule)
  and passes it as ``VLLM_CPU_KVCACHE_SPACE``; the user's own ``VLLM_CPU_KVCACHE_SPACE``,
  ``--kv-cache-memory-bytes`` or ``--gpu-memory-utilization`` wins.
* **Why a start failed**: :func:`root_cause` picks the line of vLLM's log that says why
  (``Available memory ... is less than desired ...``, the first exception of the first
  traceback), not the last line (``Engine core initialization failed. See root cause
  above.``).

Knows nothing of requests or of the backend classes; imports only the standard library
(psutil and huggingface_hub, both installed with vLLM, are imported when present).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3

KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
"""vLLM's CPU build reads the KV cache size from this variable, in whole GiB."""

DEFAULT_KV_BYTES_PER_TOKEN = 2 * 36 * 2 * 128 * 2
"""KV bytes per token of the Thinking Reward Model (Qwen2.5-VL-3B: K and V, 36 layers,
2 KV heads of 128 dimensions, 2 bytes in bfloat16): 36 KiB. Used when the model's
``config.json`` cannot be read."""

DEFAULT_MAX_MODEL_LEN = 32768
"""The context length assumed when neither the options nor the model's config say."""

KV_CACHE_SEQUENCES = 4
"""How many full-length sequences the chosen KV cache holds when memory allows."""

KV_CACHE_MEMORY_SHARE = 0.25
"""The largest share of the currently available memory the chosen KV cache takes."""

_USER_KV_FLAGS = ("--kv-cache-memory-bytes", "--gpu-memory-utilization")

# ----------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelProblem:
    """Why a model cannot be loaded, found before anything is started.

    Attributes:
        message: One line: what is wrong and what to do.
        usage: True when the name itself is wrong (a path that is no model folder, a
            repository the hub does not have); False when the model cannot be reached
            from here (offline, the hub unreachable).
    """

    message: str
    usage: bool


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is written as a file system path rather than a hub id.

    A hub id is ``name`` or ``owner/name``; ``./x``, ``../x``, ``/x``, ``~/x``, ``x/y/z``,
    a trailing slash or a backslash are paths.
    """
    return (
        model.startswith(("/", ".", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.endswith("/")
    )


def _import(name: str) -> Any:
    """The module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _cached_hub_file(repo: str, filename: str) -> Path | None:
    """The path of ``filename`` of hub repository ``repo`` in the local hub cache, or None."""
    hub = _import("huggingface_hub")
    if hub is None:
        return None
    try:
        found = hub.try_to_load_from_cache(repo, filename)
    except Exception:  # an id the hub client refuses: not cached
        return None
    return Path(found) if isinstance(found, str) else None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def model_problem(
    model: str,
    *,
    env: Mapping[str, str] | None = None,
    hub: bool = True,
    hub_timeout: float = 10.0,
) -> ModelProblem | None:
    """Why ``model`` cannot be loaded, or None when it can (as far as is known here).

    * A path that exists must be a folder holding ``config.json``.
    * A name written as a path (:func:`looks_like_path`) that does not exist is refused
      at once: vLLM would take it for a hub id and retry the hub for a minute.
    * A hub id in the local hub cache is fine. One that is not is asked of the hub once
      (``HEAD`` of its ``config.json``, no retries, ``hub_timeout`` seconds) unless
      ``HF_HUB_OFFLINE`` is set, which is reported as is.

    Args:
        model: A model folder or hub id, as given on the command line.
        env: The environment the model will be loaded in (this process's when None).
        hub: Whether a hub id is looked up (the cache, then the hub); when False only
            paths are checked, without I/O beyond the file system.
        hub_timeout: Seconds for the one request to the hub.

    Returns:
        The problem, or None.
    """
    env = os.environ if env is None else env
    path = Path(os.path.expanduser(model))
    if path.exists():
        if not path.is_dir():
            return ModelProblem(f"--model {model}: a file, not a model folder", usage=True)
        if not (path / "config.json").is_file():
            return ModelProblem(
                f"--model {model}: the folder has no config.json, so it is not a model "
                "folder (pass the folder that holds config.json and the weights)",
                usage=True,
            )
        return None
    if looks_like_path(model):
        return ModelProblem(
            f"--model {model}: no such folder ({path.resolve()}); pass an existing model "
            "folder, or a hub id such as owner/name",
            usage=True,
        )
    if not hub or _cached_hub_file(model, "config.json") is not None:
        return None
    if _truthy(env.get("HF_HUB_OFFLINE")):
        return ModelProblem(
            f"--model {model}: not in the local hub cache, and HF_HUB_OFFLINE is set; "
            f"download it first (hf download {model}) or pass its folder",
            usage=False,
        )
    return _ask_hub(model, env, hub_timeout)


def _ask_hub(model: str, env: Mapping[str, str], timeout: float) -> ModelProblem | None:
    """Whether the hub has ``model``: one ``HEAD`` of its ``config.json``, no retries."""
    hub = _import("huggingface_hub")
    if hub is None:
        return None  # vLLM brings the hub client; without it vLLM is missing anyway
    errors = hub.errors
    try:
        url = hub.hf_hub_url(model, "config.json", endpoint=env.get("HF_ENDPOINT") or None)
        hub.get_hf_file_metadata(url, timeout=timeout, retry_on_errors=False)
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError) as exc:
        gated = isinstance(exc, getattr(errors, "GatedRepoError", ()))
        what = "is gated: log in (hf auth login)" if gated else "has no such model"
        return ModelProblem(f"--model {model}: the hub {what}", usage=not gated)
    except errors.HFValidationError:
        return ModelProblem(
            f"--model {model}: neither an existing folder nor a valid hub id (owner/name)",
            usage=True,
        )
    except Exception as exc:  # the network: one line, the class says which failure
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        return ModelProblem(
            f"--model {model}: not in the local hub cache, and the hub cannot be reached "
            f"({type(exc).__name__}: {reason}); connect, or download it elsewhere and "
            "pass its folder",
            usage=False,
        )
    return None


# ----------------------------------------------------------------- the KV cache


def vllm_cpu_build(python: str | None = None) -> bool:
    """Whether the vLLM that ``python`` imports is vLLM's CPU build (``vllm-cpu``).

    Args:
        python: The interpreter the server runs with; this one when None or the same.
            Another interpreter is asked in a subprocess.
    """
    if python is None or python == sys.executable:
        return _this_vllm_is_cpu()
    probe = (
        "import importlib.metadata as m, sys\n"
        "try:\n    m.distribution('vllm-cpu'); print(1); sys.exit()\n"
        "except m.PackageNotFoundError: pass\n"
        "try:\n    print(int('+cpu' in m.version('vllm')))\n"
        "except m.PackageNotFoundError:\n    print(0)\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == "1"


def _this_vllm_is_cpu() -> bool:
    """Whether this interpreter's vLLM is the CPU build (by its distribution)."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("vllm-cpu")
        return True
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return "+cpu" in importlib.metadata.version("vllm")
    return False


def available_memory() -> int:
    """Bytes of memory available to a new process now (psutil's ``available``)."""
    psutil = _import("psutil")
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages) * int(os.sysconf("SC_PAGE_SIZE")) if pages else 0


def model_config(model: str) -> dict[str, Any] | None:
    """The ``config.json`` of a model folder, or of a hub id in the local hub cache."""
    path = Path(os.path.expanduser(model)) / "config.json"
    if not path.is_file():
        path = _cached_hub_file(model, "config.json") or path
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def kv_bytes_per_token(config: Mapping[str, Any]) -> int | None:
    """KV cache bytes one token takes: ``2 (K, V) x layers x KV heads x head dim x dtype``.

    Reads the language model's part of a (multimodal) config: ``text_config`` when there
    is one, else the top level. None when a field is missing.
    """
    text = config.get("text_config")
    part: Mapping[str, Any] = text if isinstance(text, Mapping) else config
    try:
        layers = int(part["num_hidden_layers"])
        heads = int(part["num_attention_heads"])
        kv_heads = int(part.get("num_key_value_heads") or heads)
        head_dim = int(part.get("head_dim") or int(part["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    dtype = str(part.get("torch_dtype") or config.get("torch_dtype") or config.get("dtype"))
    width = 4 if dtype == "float32" else 2
    return 2 * layers * kv_heads * head_dim * width


def cpu_kv_cache_gib(bytes_per_token: int, max_model_len: int, available: int) -> int:
    """The KV cache size, in whole GiB, chosen for vLLM's CPU build.

    The rule: room for :data:`KV_CACHE_SEQUENCES` (4) sequences of ``max_model_len``
    tokens, but no more than :data:`KV_CACHE_MEMORY_SHARE` (a quarter) of the memory
    available now (the weights and the rest of vLLM need the remainder), and never less
    than one full-length sequence (vLLM refuses a cache that cannot hold one) nor 1 GiB.
    Whole GiB are rounded up for the sequences and down for the memory share.

    The Thinking Reward Model (36 KiB a token) at the card's 32768 tokens is 1.125 GiB
    a sequence: 5 GiB for four when 20 GiB or more are free, 3 GiB with 13.5 GiB free,
    2 GiB (one sequence) below 12 GiB.

    Args:
        bytes_per_token: KV bytes a token takes (:func:`kv_bytes_per_token`).
        max_model_len: The server's context length.
        available: Bytes of memory available now (:func:`available_memory`).
    """
    sequence = bytes_per_token * max_model_len
    wanted = math.ceil(KV_CACHE_SEQUENCES * sequence / GIB)
    share = math.floor(KV_CACHE_MEMORY_SHARE * available / GIB)
    return max(1, math.ceil(sequence / GIB), min(wanted, share))


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``args`` (``--flag V`` or ``--flag=V``), or None."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def cpu_kv_cache_environment(
    model: str,
    *,
    env: Mapping[str, str],
    server_args: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    python: str | None = None,
    available: int | None = None,
) -> dict[str, str]:
    """``{"VLLM_CPU_KVCACHE_SPACE": "<GiB>"}`` for a server on vLLM's CPU build, or ``{}``.

    Nothing is chosen when the server is not vLLM's CPU build, or when the user chose:
    ``VLLM_CPU_KVCACHE_SPACE`` set (non-empty) in ``env``, or ``--kv-cache-memory-bytes`` /
    ``--gpu-memory-utilization`` among the server's arguments or options. Otherwise the
    size is :func:`cpu_kv_cache_gib` of the model's KV bytes per token (its config; the
    Thinking Reward Model's when unreadable), the context length (``max_model_len`` in
    the options or arguments, else the config's ``max_position_embeddings``, else 32768)
    and the memory available now.

    Args:
        model: The model folder or hub id.
        env: The server's whole environment.
        server_args: The server's further arguments.
        options: The server's flags by name (``{"max_model_len": 4096}``).
        python: The server's interpreter (this one when None).
        available: Bytes of memory available (measured when None).
    """
    options = options or {}
    if env.get(KV_CACHE_ENV, "").strip():
        return {}
    chosen = {flag.removeprefix("--").replace("-", "_") for flag in _USER_KV_FLAGS}
    if chosen & {name for name, value in options.items() if value is not None}:
        return {}
    if any(
        arg == flag or arg.startswith(flag + "=") for arg in server_args for flag in _USER_KV_FLAGS
    ):
        return {}
    if not vllm_cpu_build(python):
        return {}
    config = model_config(model) or {}
    text = config.get("text_config")
    length = options.get("max_model_len") or _flag_value(server_args, "--max-model-len")
    if length is None:
        part = text if isinstance(text, Mapping) else config
        length = part.get("max_position_embeddings") or DEFAULT_MAX_MODEL_LEN
    per_token = kv_bytes_per_token(config) or DEFAULT_KV_BYTES_PER_TOKEN
    memory = available_memory() if available is None else available
    return {KV_CACHE_ENV: str(cpu_kv_cache_gib(per_token, int(length), memory))}


# ---------------------------------------------------------------- the root cause

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX = re.compile(
    r"^(?:\([^()]*pid=\d+\)\s*)?"  # (EngineCore pid=12)
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+"
    r"\[[^\]]*\]\s?)?"  # ERROR 11-27 21:06:04 [core.py:1510]
)
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*(?:[A-Z]\w*(?:Error|Exception|Exit|Interrupt)|Exception)(?::\s.*)?$"
)
_MEMORY = re.compile(r"Available memory .* less than (?:desired|requested)", re.IGNORECASE)
_ERROR_LEVEL = re.compile(r"^(?:\([^()]*pid=\d+\)\s*)?(?:ERROR|CRITICAL)\s")
_GENERIC = (
    "see root cause above",
    "see stack trace for root cause",
    "enginecore failed to start",
    "workerproc failed to start",
    "engine core initialization failed",
    "worker failed with error",
    "traceback (most recent call last)",
)
MAX_CAUSE_CHARS = 600
"""The longest root-cause line quoted (vLLM's memory message is about 450 characters)."""


def _message(line: str) -> str:
    """A log line without colour codes and without vLLM's ``(Proc pid=N) LEVEL date [file]``."""
    return _PREFIX.sub("", _ANSI.sub("", line)).strip()


def _generic(text: str) -> bool:
    lowered = text.lower()
    return any(phrase in lowered for phrase in _GENERIC)


def root_cause(log_text: str) -> str | None:
    """The line of a failed vLLM start's log that says why it failed, or None.

    In order of preference: vLLM's memory refusal (``Available memory ... is less than
    desired / requested ...``); the first exception line (``ValueError: ...``,
    ``huggingface_hub.errors.HFValidationError: ...``) that is not a wrapper pointing
    elsewhere (``Engine core initialization failed. See root cause above.``, ``WorkerProc
    initialization failed ... See stack trace for root cause.``); the first ERROR line
    that is not such a wrapper; the last non-empty line. vLLM's process and log-level
    prefixes are dropped; the line is cut at :data:`MAX_CAUSE_CHARS`.

    Args:
        log_text: The log (or its end) of the server.
    """
    lines = [_ANSI.sub("", line) for line in log_text.splitlines()]
    messages = [_message(line) for line in lines]
    found = next((text for text in messages if _MEMORY.search(text)), None)
    if found is None:
        found = next(
            (text for text in messages if _EXCEPTION.match(text) and not _generic(text)), None
        )
    if found is None:
        found = next(
            (
                text
                for line, text in zip(lines, messages, strict=True)
                if _ERROR_LEVEL.match(line)
                and text
                and not _generic(text)
                and not text.startswith(("File ", "^"))
            ),
            None,
        )
    if found is None:
        found = next((text for text in reversed(messages) if text), None)
    if found is None:
        return None
    return found if len(found) <= MAX_CAUSE_CHARS else found[:MAX_CAUSE_CHARS] + "…"


__all__ = [
    "DEFAULT_KV_BYTES_PER_TOKEN",
    "GIB",
    "KV_CACHE_ENV",
    "KV_CACHE_MEMORY_SHARE",
    "KV_CACHE_SEQUENCES",
    "MAX_CAUSE_CHARS",
    "ModelProblem",
    "available_memory",
    "cpu_kv_cache_environment",
    "cpu_kv_cache_gib",
    "kv_bytes_per_token",
    "looks_like_path",
    "model_config",
    "model_problem",
    "root_cause",
    "vllm_cpu_build",
]
