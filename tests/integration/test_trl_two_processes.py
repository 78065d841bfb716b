"""TRL on two real processes: a group split over them is weighted whole (issue 14).

``torchrun --standalone --nproc_per_node 2`` runs ``tests/support/trl_two_processes.py``:
real ``GRPOTrainer`` steps of TRL on the CPU (gloo), per-device batch 4 and
``num_generations=8``, so every group of 8 completions is split 4 + 4 over the two
processes; the thinking reward is ``judge.as_reward_func(accuracy, num_generations=8,
...)``, the documented call. Each process records the completions and the rewards TRL
got from it; this test then computes the rewards of the same completions in ONE process
(world size 1) with the same reward, and asserts they are equal.

The judge is the scripted :class:`~judge.testing.FakeBackend`, not the vLLM server, on
purpose: "equal to one process" is checkable only if the judge answers the same for
the same completion in both runs, and the tiny random-weight model's scores are noise
whose batching on the CPU is not guaranteed to be bit-identical; the script also makes
the group's wrong completions out-think its right ones, so that the trust weight is
below 1 and a reward computed on half groups (what each process did before) differs.
The judge on the real vLLM server inside TRL is covered by
``tests/integration/test_rewards_vllm.py`` (the GRPO recipe's real steps).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rl_calls import call_as_trl
from trl_two_processes import NAME, half_groups, make_reward

from backends._torch_compat import child_environment

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "support" / "trl_two_processes.py"
EXIT_WARNINGS = ("Task was destroyed", "Unclosed", "was never awaited")
TRL_COLUMNS = {"step", "prompt", "completion", "advantage", "accuracy", NAME}
"""The completions table's columns that TRL writes itself (its reward columns by name)."""
SAFETY_TIMEOUT = 900
"""Only so that a hung run fails instead of blocking CI; nothing is timed."""


@pytest.fixture(scope="module")
def two_process_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("trl")
    out = tmp_path_factory.mktemp("trl-two-processes")
    command = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(SCRIPT),
        "--tokenizer-dir",
        str(tiny_model),
        "--out",
        str(out),
        "--steps",
        "2",
    ]
    env = child_environment()  # the torch repair, for transformers' torchvision import
    env.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=SAFETY_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish:\n{output[-4000:]}")
    seconds = time.perf_counter() - start
    print(f"\ntorchrun, 2 processes, 2 GRPO steps: {seconds:.1f} s")
    assert process.returncode == 0, output[-6000:]
    records = {
        rank: [json.loads(line) for line in (out / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }
    return {"out": out, "output": output, "records": records}


def global_batches(records: dict) -> list[dict]:
    """Each call's global batch: rank 0's part, then rank 1's (TRL's order)."""
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]]
    batches = []
    for first, second in zip(records[0], records[1], strict=True):
        assert len(first["completions"]) == len(second["completions"]) == 4  # half a group each
        batch = {key: first[key] + second[key] for key in ("prompts", "completions", "letter")}
        batch["rewards"] = first["rewards"] + second["rewards"]
        batch["step"] = first["step"]
        batches.append(batch)
    return batches


def test_two_processes_give_the_rewards_of_one(two_process_run):
    batches = global_batches(two_process_run["records"])
    assert [b["step"] for b in batches] == [0, 1]
    for batch in batches:
        assert len(set(map(json.dumps, batch["prompts"]))) == 1  # one group, over two processes
        single = call_as_trl(
            make_reward(),
            batch["prompts"],
            batch["completions"],
            step=batch["step"],
            letter=batch["letter"],
        )
        assert batch["rewards"] == pytest.approx(single)


def test_the_trust_weight_is_the_whole_groups(two_process_run):
    # Some step has a group with right and wrong completions: gamma < 1 there, and what
    # each process computes on its half alone (num_generations=None, as before) differs.
    records = two_process_run["records"]
    batches = global_batches(records)
    differing = []
    for index, batch in enumerate(batches):
        halves = half_groups([records[0][index], records[1][index]], make_reward)
        if halves[0] + halves[1] != pytest.approx(batch["rewards"]):
            differing.append(batch["step"])
    assert differing, "no step where whole groups and half groups differ: the test shows nothing"


def test_trls_columns_are_logged_unchanged(two_process_run):
    import pandas as pd

    tables = sorted((two_process_run["out"] / "grpo" / "completions").glob("*.parquet"))
    batches = global_batches(two_process_run["records"])
    assert len(tables) == len(batches)
    gammas = []
    for table, batch in zip(tables, batches, strict=True):
        frame = pd.read_parquet(table)
        assert set(frame.columns) == TRL_COLUMNS | {f"{NAME}/thinking", f"{NAME}/gamma"}
        logged = [None if math.isnan(v) else v for v in frame[NAME]]
        assert logged == pytest.approx(batch["rewards"])  # TRL's own reward column
        gammas.extend(frame[f"{NAME}/gamma"])
    assert min(gammas) < 1.0


def test_no_warning_at_exit(two_process_run):
    output = two_process_run["output"]
    for warning in EXIT_WARNINGS:
        assert warning not in output
