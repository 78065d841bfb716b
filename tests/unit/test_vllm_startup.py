"""What a vLLM start settles before it runs and says when it fails (backends.vllm_startup).

The root-cause finder reads a real vLLM 0.32 CPU log (``data/vllm_cpu_start_failure.log``:
``thinking-judge serve`` on the tiny model with ``VLLM_CPU_KVCACHE_SPACE`` unset, on a
24 GiB machine; only the install paths were shortened).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.errors import BackendUnavailableError
from backends.vllm_launch import ServerProcess
from backends.vllm_startup import (
    DEFAULT_KV_BYTES_PER_TOKEN,
    GIB,
    KV_CACHE_ENV,
    cpu_kv_cache_environment,
    cpu_kv_cache_gib,
    kv_bytes_per_token,
    looks_like_path,
    model_problem,
    root_cause,
    vllm_cpu_build,
)
from judge.cli.main import main
from judge.failures import ExitStatus

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]

# The Thinking Reward Model's language part (Qwen2.5-VL-3B's config.json).
QWEN_3B = {
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_size": 2048,
    "max_position_embeddings": 128000,
    "torch_dtype": "bfloat16",
}


# ------------------------------------------------------------------ root cause


def test_root_cause_of_the_real_cpu_memory_failure_is_the_memory_line():
    log = (DATA / "vllm_cpu_start_failure.log").read_text()
    assert log.rstrip().splitlines()[-1].startswith("RuntimeError: Engine core initialization")
    cause = root_cause(log)
    assert cause is not None
    assert cause.startswith(
        "ValueError: Available memory on node 0 (13.45/23.54 GiB) on startup is less than "
        "desired CPU memory utilization (0.92, 21.66 GiB)."
    )
    assert "pid=" not in cause  # vLLM's prefixes are dropped
    assert "ERROR" not in cause


def test_root_cause_skips_wrappers_that_point_elsewhere():
    log = "\n".join(
        [
            "(APIServer pid=7) INFO 11-27 21:02:38 [api_utils.py:286] non-default args: {}",
            "(EngineCore pid=9) ERROR 11-27 21:06:04 [core.py:1510] EngineCore failed to start.",
            "(EngineCore pid=9) ERROR 11-27 21:06:04 [core.py:1510] Traceback (most recent call last):",
            '(EngineCore pid=9) ERROR 11-27 21:06:04 [core.py:1510]   File "x.py", line 1, in f',
            "(EngineCore pid=9) ERROR 11-27 21:06:04 [core.py:1510] Exception: WorkerProc "
            "initialization failed due to an exception in a background process. See stack "
            "trace for root cause.",
            "huggingface_hub.errors.HFValidationError: Repo id must be in the form "
            "'repo_name' or 'namespace/repo_name': './no-such'.",
            "RuntimeError: Engine core initialization failed. See root cause above. "
            "Failed core proc(s): {}",
        ]
    )
    assert root_cause(log) == (
        "huggingface_hub.errors.HFValidationError: Repo id must be in the form "
        "'repo_name' or 'namespace/repo_name': './no-such'."
    )


def test_root_cause_falls_back_to_an_error_line_then_the_last_line():
    error = "(APIServer pid=7) ERROR 11-27 21:06:04 [x.py:1] the port 8000 is in use\nbye"
    assert root_cause(error) == "the port 8000 is in use"
    assert root_cause("starting\n\x1b[32mkilled by the OOM killer\x1b[0m\n\n") == (
        "killed by the OOM killer"
    )
    assert root_cause("") is None


def test_root_cause_is_bounded():
    cause = root_cause("ValueError: " + "x" * 5000)
    assert cause is not None
    assert cause == "ValueError: " + "x" * 588 + "…"


def test_a_failed_start_names_the_root_cause_on_its_first_line(tmp_path):
    log = tmp_path / "server.log"
    command = [
        sys.executable,
        "-c",
        "import sys; print('INFO loading'); "
        "print('ValueError: Available memory on node 0 (1.00/2.00 GiB) on kv cache "
        "allocation is less than requested memory for kv (9.00 GiB). key sk-xyz'); "
        "print('RuntimeError: Engine core initialization failed. See root cause above.'); "
        "sys.exit(1)",
    ]

    class Owner:
        pass

    owner = Owner()
    server = ServerProcess.start(
        command, env=dict(os.environ), log_file=log, grace=5, owner=owner, secrets=["sk-xyz"]
    )
    with pytest.raises(BackendUnavailableError) as caught:
        server.wait_until_healthy(lambda timeout: False, 60)
    first = str(caught.value).splitlines()[0]
    assert first == (
        "the vLLM server exited with code 1: ValueError: Available memory on node 0 "
        "(1.00/2.00 GiB) on kv cache allocation is less than requested memory for kv "
        f"(9.00 GiB). key *** (log: {log})"
    )
    assert "Engine core initialization failed" in str(caught.value)  # the tail follows


# -------------------------------------------------------------------- KV cache


def test_kv_bytes_per_token_of_the_thinking_reward_model():
    assert kv_bytes_per_token(QWEN_3B) == DEFAULT_KV_BYTES_PER_TOKEN == 36 * 1024
    text = {key: value for key, value in QWEN_3B.items() if key != "torch_dtype"}
    nested = {"text_config": {**text, "head_dim": 64}, "dtype": "float32"}
    assert kv_bytes_per_token(nested) == 2 * 36 * 2 * 64 * 4
    assert kv_bytes_per_token({"hidden_size": 8}) is None


@pytest.mark.parametrize(
    ("free_gib", "expected"),
    [(22.0, 5), (20.0, 5), (13.45, 3), (11.9, 2), (2.0, 2)],
)
def test_cpu_kv_cache_rule_for_the_model_at_32768_tokens(free_gib, expected):
    # 1.125 GiB a sequence: four when a quarter of the free memory allows, never below one.
    gib = cpu_kv_cache_gib(36 * 1024, 32768, int(free_gib * GIB))
    assert gib == expected


def test_cpu_kv_cache_rule_for_a_tiny_model_is_one_gib():
    assert cpu_kv_cache_gib(512, 4096, 22 * GIB) == 1


def test_the_user_or_a_non_cpu_vllm_decides(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN_3B))
    options = {"max_model_len": 32768}
    cpu = vllm_cpu_build()
    chosen = cpu_kv_cache_environment(str(model), env={}, options=options, available=22 * GIB)
    assert chosen == ({KV_CACHE_ENV: "5"} if cpu else {})
    for env, args, extra in [
        ({KV_CACHE_ENV: "7"}, [], {}),
        ({}, ["--kv-cache-memory-bytes", "2000000000"], {}),
        ({}, ["--gpu-memory-utilization=0.5"], {}),
        ({}, [], {"gpu_memory_utilization": 0.5}),
    ]:
        assert (
            cpu_kv_cache_environment(
                str(model), env=env, server_args=args, options={**options, **extra}
            )
            == {}
        )
    from_args = cpu_kv_cache_environment(
        str(model), env={}, server_args=["--max-model-len", "8192"], available=22 * GIB
    )
    assert from_args == ({KV_CACHE_ENV: "2"} if cpu else {})  # 4 x 0.28 GiB, rounded up


def test_vllm_cpu_build_agrees_across_interpreters():
    # This interpreter (metadata) and the same one asked as another (a subprocess).
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; m.distribution('vllm-cpu')"],
        capture_output=True,
        check=False,
    )
    assert vllm_cpu_build() is (probe.returncode == 0)
    same = os.path.join(os.path.dirname(sys.executable), ".", os.path.basename(sys.executable))
    assert same != sys.executable  # asked in a subprocess
    assert vllm_cpu_build(same) is vllm_cpu_build()
    assert vllm_cpu_build(os.path.join(os.path.dirname(sys.executable), "no-python")) is False


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("model", ["./no-such-folder", "../x", "/abs/path", "~/x", "a/b/c"])
def test_a_missing_model_folder_is_one_line(model):
    problem = model_problem(model, env={})
    assert problem is not None
    assert problem.usage
    assert problem.message.startswith(f"--model {model}: no such folder (")
    assert "\n" not in problem.message


def test_a_folder_without_config_or_a_file_is_not_a_model(tmp_path):
    empty = model_problem(str(tmp_path), env={})
    assert empty is not None
    assert "has no config.json" in empty.message
    (tmp_path / "weights.bin").write_bytes(b"")
    file = model_problem(str(tmp_path / "weights.bin"), env={})
    assert file is not None
    assert "a file, not a model folder" in file.message
    (tmp_path / "config.json").write_text("{}")
    assert model_problem(str(tmp_path), env={}) is None


def test_hub_ids_look_like_hub_ids():
    assert not looks_like_path("bunny127/SophiaVL-R1-Thinking-Reward-Model-3B")
    assert not looks_like_path("gpt2")
    for path in ("./m", "m/", "~", "a\\b"):
        assert looks_like_path(path), path


def test_an_uncached_hub_id_offline_is_one_line():
    problem = model_problem("someone/not-cached-model", env={"HF_HUB_OFFLINE": "1"})
    assert problem is not None
    assert not problem.usage
    assert problem.message == (
        "--model someone/not-cached-model: not in the local hub cache, and HF_HUB_OFFLINE "
        "is set; download it first (hf download someone/not-cached-model) or pass its folder"
    )
    assert model_problem("someone/not-cached-model", env={}, hub=False) is None


@pytest.mark.parametrize(
    ("model", "status"), [("./no-such-folder", ExitStatus.USAGE), ("someone/x", 3)]
)
def test_serve_reports_the_model_at_once(model, status, capsys):
    assert main(["serve", "--model", model]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no hub retries
    assert err.startswith(f"thinking-judge serve: --model {model}: ")


def test_an_unreachable_hub_is_asked_once(tmp_path):
    # A hub id not cached, the hub online but down (a closed local port): one request.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    }
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "judge.cli", "serve", "--model", "someone/not-cached"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitStatus.UNAVAILABLE
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "thinking-judge serve: --model someone/not-cached: not in the local hub cache, and "
        "the hub cannot be reached (ConnectError"
    )
    assert "Retry" not in done.stderr
