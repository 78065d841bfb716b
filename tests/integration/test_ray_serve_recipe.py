"""recipes/ray_serve_reward_server.py: 2 replicas under Ray Serve in front of the real vLLM server.

The recipe runs as its docstring says (``python recipes/ray_serve_reward_server.py
--base-url ... --replicas 2``), in a process of its own with a loopback-only local Ray of
2 CPUs; the test talks to Serve's HTTP proxy as OpenRLHF's client does (aiohttp, one
``{"query", "prompts", "labels"}`` body per request, many at once: OpenRLHF/OpenRLHF
``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor._fetch_rewards_via_http``),
then stops the recipe with SIGTERM and checks that no process it started is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from recipe_files import recipe_path

from backends.vllm_server import VLLMServerBackend
from judge import ThinkingRewardJudge

pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")
aiohttp = pytest.importorskip("aiohttp")

LOOPBACK = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]")
SERVE_REPLICA = "ray::ServeRepli"  # a Serve replica's process name (15 characters)
REPLICA_HEADER = "x-thinking-judge-replica"
FAILURE_REWARD = -1.0
STARTUP_GUARD_S = 600.0  # hang guards, not timing checks
EXIT_GUARD_S = 180.0


def chat_prompt(question: str) -> str:
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )


def sample(i: int) -> tuple[str, str, str, str]:
    """Question, response, prompt and query of sample ``i``, as OpenRLHF builds them."""
    question = f"What is {i} + {i}?"
    response = f"<think>{i} + {i} = {2 * i}</think><answer>{2 * i}</answer>"
    prompt = chat_prompt(question)
    # query: prompt + response decoded WITH special tokens (end of turn, padding)
    return question, response, prompt, prompt + response + "<|im_end|><|endoftext|>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (all the recipe started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if mark.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def listeners(pids: list[int]) -> list[tuple[str, str]]:
    """(address, process name) of each listening TCP socket of ``pids``."""
    lines = subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found = []
    for line in lines:
        for pid in pids:
            if f"pid={pid}," in line:
                name = line.split('(("', 1)[1].split('"', 1)[0]
                found.append((line.split()[3], f"{name}:{pid}"))
    return found


def wait_until_ready(recipe: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_GUARD_S
    while "reward server: 2 replica(s)" not in log.read_text():
        assert recipe.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(1)


async def post_all(url: str, bodies: list[dict[str, Any]]) -> list[tuple[int, Any, str]]:
    """POST every body at once, as OpenRLHF's rollout does: (status, json, replica)."""
    timeout = aiohttp.ClientTimeout(total=180)  # OpenRLHF's own

    async def post(session: Any, body: dict[str, Any]) -> tuple[int, Any, str]:
        async with session.post(url, json=body) as response:
            return response.status, await response.json(), response.headers[REPLICA_HEADER]

    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(post(session, body) for body in bodies)))


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text(), response.headers[REPLICA_HEADER]


def test_two_serve_replicas_answer_openrlhfs_requests_and_leave_nothing(
    vllm_server: VLLMServerBackend, tmp_path: Path
):
    mark = f"THINKING_JUDGE_SERVE_TEST={uuid.uuid4().hex}"
    home = tmp_path / "home"  # Ray writes its auth token under ~/.ray
    home.mkdir()
    env = {
        **os.environ,
        mark.split("=", 1)[0]: mark.split("=", 1)[1],
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's memory monitor kills workers (here: the replicas, mid-request) when the
        # MACHINE's memory passes 95%, whoever uses it: on a machine shared with the vLLM
        # server and other test runs, that is not the recipe's doing. Off for the test.
        "RAY_memory_monitor_refresh_ms": "0",
    }
    port = free_port()
    log = tmp_path / "recipe.log"
    command = [
        sys.executable,
        str(recipe_path("ray_serve_reward_server")),
        "--base-url",
        str(vllm_server.base_url),
        "--model",
        vllm_server.model,
        "--replicas",
        "2",
        "--port",
        str(port),
        "--local-cpus",
        "2",
        "--constrained",
        "--failure-reward",
        str(FAILURE_REWARD),
    ]
    with log.open("w") as out:
        recipe = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        wait_until_ready(recipe, log)
        base = f"http://127.0.0.1:{port}"
        sockets = listeners(marked(mark))
        assert sockets, "no listening socket of the recipe was found: the check would be vacuous"
        exposed = sorted(owner for address, owner in sockets if not address.startswith(LOOPBACK))
        # Everything listens on the loopback but Ray Serve's inter-deployment gRPC server,
        # one per replica, which Ray binds to every interface with no option to change it
        # (ray-project/ray python/ray/serve/_private/replica.py, _on_initialized:
        # add_port_to_grpc_server(self._server, "[::]:0"); ray-project/ray#64544). The
        # recipe's docstring says so.
        assert len(exposed) == 2, f"listening beyond the loopback: {exposed}"
        assert all(owner.startswith(SERVE_REPLICA) for owner in exposed), exposed
        assert len(set(exposed)) == 2, f"one each, from two replicas: {exposed}"

        status, text, _ = asyncio.run(get(f"{base}/health"))
        assert (status, text) == (200, '{"status":"ok"}')

        # 24 requests of one sample each (OpenRLHF's single-turn rollout), sent at once.
        samples = [sample(i) for i in range(24)]
        bodies = [
            {"query": [q], "prompts": [p], "labels": [str(2 * i)]}
            for i, (_, _, p, q) in enumerate(samples)
        ]
        # One request of 5 samples (a shard of several queries), two of them unusable
        # (no response), at known places: the answer keeps OpenRLHF's order.
        shard = [samples[1][3], "junk", samples[2][3], samples[3][2], samples[4][3]]
        bodies.append(
            {
                "query": shard,
                "prompts": [samples[1][2], "junk", samples[2][2], samples[3][2], samples[4][2]],
                "labels": ["2", "?", "4", "6", "8"],
            }
        )
        answers = asyncio.run(post_all(f"{base}/get_reward", bodies))

        reference = ThinkingRewardJudge(backend=vllm_server, constrained=True).batch(
            [{"question": q, "response": r} for q, r, _, _ in samples]
        )
        expected = [result.score for result in reference]
        assert None not in expected
        for i, (status, body, _) in enumerate(answers[:24]):
            assert status == 200, body
            assert body == {
                "rewards": [expected[i]],
                "scores": [expected[i]],
                "extra_logs": {"judge_failed": [0.0]},
            }
        status, body, _ = answers[24]
        assert status == 200, body
        assert body["rewards"] == [
            expected[1],
            FAILURE_REWARD,
            expected[2],
            FAILURE_REWARD,
            expected[4],
        ]
        assert body["scores"] == body["rewards"]
        assert body["extra_logs"] == {"judge_failed": [0.0, 1.0, 0.0, 1.0, 0.0]}

        replicas = {replica for _, _, replica in answers}
        assert len(replicas) == 2, f"the requests reached {len(replicas)} replica(s)"

        status, text, replica = asyncio.run(get(f"{base}/metrics"))
        assert status == 200
        assert replica in replicas
        assert "thinking_judge_judgments_total" in text

        recipe.send_signal(signal.SIGTERM)
        assert recipe.wait(timeout=EXIT_GUARD_S) == 0, log.read_text()[-4000:]
        deadline = time.monotonic() + EXIT_GUARD_S  # Ray's processes exit after the driver
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(1)
        assert marked(mark) == [], "processes of the recipe outlived it"
    except BaseException:
        print(f"the recipe's output (last part):\n{log.read_text()[-8000:]}")
        raise
    finally:  # whatever the outcome, nothing of the recipe's is left running
        if recipe.poll() is None:
            recipe.kill()
            recipe.wait()
        for pid in marked(mark):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
