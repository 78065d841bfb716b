"""``thinking-judge check`` against the real vLLM server, and ``serve`` as a user runs it.

``serve`` is started as a subprocess on the tiny model, on the CPU: the test waits for
the URL line (a blocking read: no sleeps, no polling), checks the server with
``check``, sends SIGINT as Ctrl-C does, and asserts that the command exits 0 and that
no process of the server's process group is left. It runs with ``VLLM_CPU_KVCACHE_SPACE``
removed from the environment, as a newcomer's shell has it: ``serve`` sizes the KV cache
of vLLM's CPU build itself. A start made to fail (a KV cache larger than the machine)
prints vLLM's root cause in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backends.vllm_server import VLLMServerBackend
from judge.cli.main import main
from judge.failures import ExitStatus

LIMIT_MM = {"image": 2, "video": 0}  # as the session server (conftest.py)


def _serve_args(tiny_model: Path, log: Path) -> list[str]:
    """``thinking-judge serve``'s arguments for the tiny model on a free port, small."""
    return [
        "serve",
        "--model",
        str(tiny_model),
        "--port",
        "0",
        "--max-model-len",
        "4096",
        "--max-num-seqs",
        "4",
        "--startup-timeout",
        "900",
        "--log-file",
        str(log),
        "--",
        "--dtype",
        "bfloat16",
        "--enforce-eager",
        "--skip-mm-profiling",
        "--limit-mm-per-prompt",
        json.dumps(LIMIT_MM),
    ]


def test_check_passes_on_the_real_server(vllm_server: VLLMServerBackend, capsys):
    # The tiny model has random weights: only a constrained answer is a score.
    status = main(["check", "--base-url", str(vllm_server.base_url), "--constrained"])
    out = capsys.readouterr().out
    assert status == ExitStatus.OK, out
    assert "ok    reachable" in out
    assert "(vLLM 0.32" in out
    assert "ok    model: serves 'thinking-reward-model'" in out
    assert "ok    judgment: score" in out


def test_check_on_the_real_server_reports_each_fault(vllm_server: VLLMServerBackend, capsys):
    url = str(vllm_server.base_url)
    root = url.removesuffix("/v1")

    assert main(["check", "--base-url", url, "--model", "nope", "--constrained"]) == 3
    out = capsys.readouterr().out
    assert "FAIL  model: the server serves 'thinking-reward-model', not 'nope'" in out

    assert main(["check", "--base-url", root, "--constrained"]) == ExitStatus.USAGE
    out = capsys.readouterr().out
    assert f"fix: the base URL ends in /v1: --base-url {url}" in out
    assert "ok    judgment" in out

    assert main(["check", "--base-url", f"{url}/chat/completions", "--constrained"]) == 2
    assert "names the /chat/completions endpoint" in capsys.readouterr().out

    # Unconstrained, the random-weight model answers junk: a failed judgment, never a score.
    status = main(["check", "--base-url", url])
    out = capsys.readouterr().out
    if status != ExitStatus.OK:  # the junk may, rarely, be a grid string
        assert status == ExitStatus.FAILED
        assert "FAIL  judgment" in out


def _group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp
            members.append(int(entry.name))
    return members


def _server_pgid(port: int) -> int:
    """The process group of the vLLM server listening on ``port`` (its leader's pid)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and str(port).encode() in argv:
            return os.getpgid(int(entry.name))
    raise AssertionError(f"no vLLM server process for port {port}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_serve_prints_the_url_and_stops_cleanly_on_ctrl_c(tiny_model: Path, tmp_path: Path):
    stderr = tmp_path / "serve.err"
    log = tmp_path / "vllm.log"
    command = [sys.executable, "-m", "judge.cli", *_serve_args(tiny_model, log)]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    del env["VLLM_CPU_KVCACHE_SPACE"]  # serve sizes it (the suite sets it for its own servers)
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
    pgid: int | None = None
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()  # blocks until ready (or exit)
        assert url.startswith("http://127.0.0.1:"), (url, stderr.read_text(), log.read_text())
        assert url.endswith("/v1")
        port = int(url.rsplit(":", 1)[1].removesuffix("/v1"))
        pgid = _server_pgid(port)
        assert pgid != os.getpgid(process.pid)  # the server has a process group of its own

        assert main(["check", "--base-url", url, "--constrained"]) == ExitStatus.OK

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=300) == ExitStatus.OK, stderr.read_text()
    finally:  # whatever the outcome, no server is left: serve stops it, else its group dies
        if process.poll() is None:
            process.terminate()  # serve stops its server on SIGTERM
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        left = [] if pgid is None else _group_members(pgid)  # asserted below: serve's job
        if left:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    err_text = stderr.read_text()
    assert "thinking-judge serve: stopped" in err_text
    assert process.stdout.read() == b""  # the URL was the only line on stdout
    process.stdout.close()
    assert left == []


def test_a_failed_serve_prints_the_root_cause_in_one_line(
    tiny_model: Path, tmp_path: Path, monkeypatch, capsys
):
    # The user's own override, far beyond the machine: vLLM refuses at its KV allocation.
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "100000")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    log = tmp_path / "vllm.log"
    status = main(_serve_args(tiny_model, log))
    err = capsys.readouterr().err
    assert status == ExitStatus.UNAVAILABLE, err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err  # "starting ...", then why it failed
    assert lines[1].startswith("thinking-judge serve: the vLLM server exited with code ")
    assert "ValueError: Available memory on node " in lines[1]
    assert "is less than requested memory for kv (100000.0 GiB)" in lines[1]
    assert lines[1].endswith(f"(log: {log})")
    assert "Engine core initialization failed" in log.read_text()  # vLLM's last line
