"""verl's reward loop, the parts that need no verl: the group gate, settings, a sample's fields."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from PIL import Image
from rl_calls import png

from judge.errors import InputError
from judge.rl.planner import judged_value
from judge.rl.trust import TrustGRPO
from judge.rl.verl_group import (
    EXTRA_KEYS,
    GroupGate,
    ManagerSettings,
    extra_info_of,
    verl_sample,
)
from judge.types import ThinkingScore

# -- the gate -----------------------------------------------------------------------------------


async def member(gate, key, size, outcome, thinking, timeout=5.0, before_report=0):
    joined = await gate.join(key, size, outcome, timeout)
    if joined is None:
        return None
    slot, outcomes = joined
    for _ in range(before_report):
        await asyncio.sleep(0)
    reported = await gate.report(key, slot, thinking, timeout)
    return slot, outcomes, reported


def test_gate_gives_every_member_the_whole_group():
    async def run():
        gate = GroupGate()
        outcomes = [1.0, 0.0, 1.0, 0.5]
        thinking = [0.9, None, 0.4, 0.7]
        results = await asyncio.gather(
            *(
                member(gate, "uid-a", 4, o, t, before_report=3 - i)
                for i, (o, t) in enumerate(zip(outcomes, thinking, strict=True))
            )
        )
        return gate, results

    gate, results = asyncio.run(run())
    assert sorted(slot for slot, _, _ in results) == [0, 1, 2, 3]
    for slot, outcomes, reported in results:
        assert outcomes == [1.0, 0.0, 1.0, 0.5]
        assert reported == [0.9, None, 0.4, 0.7]
        assert outcomes[slot] == [1.0, 0.0, 1.0, 0.5][slot]
    assert len(gate) == 0  # a finished group is forgotten


def test_gate_keeps_groups_apart():
    async def run():
        gate = GroupGate()
        return await asyncio.gather(
            member(gate, "a", 2, 1.0, 0.1),
            member(gate, "b", 2, 0.0, 0.2),
            member(gate, "a", 2, 0.0, 0.3),
            member(gate, "b", 2, 1.0, 0.4),
        )

    a1, b1, a2, b2 = asyncio.run(run())
    assert a1[1] == a2[1] == [1.0, 0.0]
    assert a1[2] == a2[2] == [0.1, 0.3]
    assert b1[1] == b2[1] == [0.0, 1.0]
    assert b1[2] == b2[2] == [0.2, 0.4]


def test_gate_times_out_and_a_late_member_does_not_wait_again():
    async def run():
        gate = GroupGate()
        early = await asyncio.gather(
            member(gate, "g", 3, 1.0, 0.5, timeout=0.05),
            member(gate, "g", 3, 0.0, 0.5, timeout=10.0),  # woken when the group gives up
        )
        late = await asyncio.wait_for(member(gate, "g", 3, 1.0, 0.5, timeout=10.0), 1.0)
        return gate, early, late

    gate, early, late = asyncio.run(run())
    assert early == [None, None]
    assert late is None
    assert len(gate) == 0


def test_gate_times_out_while_reporting():
    async def run():
        gate = GroupGate()
        first = asyncio.create_task(member(gate, "g", 2, 1.0, 0.5, timeout=0.05))
        await asyncio.sleep(0)  # the first joins first
        joined = await gate.join("g", 2, 0.0, 5.0)  # the second joins, then never reports
        return await first, joined

    first, joined = asyncio.run(run())
    assert joined == (1, [1.0, 0.0])
    assert first == (0, [1.0, 0.0], None)  # joined, then gave up waiting for the reports


def test_gate_refuses_a_member_too_many_or_another_size():
    async def run():
        gate = GroupGate()
        await asyncio.gather(gate.join("g", 1, 1.0, 1.0))
        with pytest.raises(ValueError, match="more than 1"):
            await gate.join("g", 1, 1.0, 1.0)
        task = asyncio.create_task(gate.join("h", 2, 1.0, 0.05))
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="size 2, not 3"):
            await gate.join("h", 3, 1.0, 1.0)
        assert await task is None

    asyncio.run(run())


# -- settings -----------------------------------------------------------------------------------


def test_settings_take_the_group_sizes_from_the_rollout_config():
    rollout = {"n": 8, "val_kwargs": {"n": 2}}
    settings = ManagerSettings.from_config({"judge_path": "pkg://m", "alpha": 0.5}, rollout)
    assert (settings.group_size, settings.val_group_size, settings.alpha) == (8, 2, 0.5)
    assert settings.size_for({"split": "train"}) == 8
    assert settings.size_for({"split": "test"}) == 2
    assert settings.size_for({}) == 8
    given = ManagerSettings.from_config({"judge_path": "x", "group_size": 4}, rollout)
    assert given.group_size == 4


def test_settings_need_a_judge_and_known_keys():
    with pytest.raises(ValueError, match="judge_path"):
        ManagerSettings.from_config(None, None)
    with pytest.raises(ValueError, match=r"unknown .* \['alpah'\]"):
        ManagerSettings.from_config({"judge_path": "x", "alpah": 1}, None)
    with pytest.raises(ValueError, match="group_timeout"):
        ManagerSettings(judge_path="x", group_timeout=0)


# -- a sample's fields, as verl's RLHFDataset leaves them ----------------------------------------


def test_sample_from_raw_prompt_with_the_geo3k_image_layout():
    # RLHFDataset pops the top-level "images" column into raw_prompt's parts
    # (verl/utils/dataset/rl_dataset.py, _build_messages): a datasets image dict gains "image".
    picture = Image.new("RGB", (8, 8), "blue")
    raw_prompt = np.array(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "bytes": png(), "path": None, "image": picture},
                    {"type": "text", "text": " Find x. Think first."},
                ],
            }
        ],
        dtype=object,
    )
    fields = {"raw_prompt": raw_prompt, "extra_info": {"split": "train", "index": 3}}
    sample = verl_sample(fields, "<think>x</think>4")
    assert sample.question == "Find x. Think first."
    assert sample.images == (picture,)
    geo3k = {**fields, "extra_info": {"question": "<image>Find x.", "split": "train"}}
    assert verl_sample(geo3k, "r").question == "Find x."  # extra_info's question first


def test_sample_images_from_other_layouts():
    column = {
        "extra_info": {"question": "q"},
        "images": np.array([{"bytes": b"png", "path": None}]),
    }
    assert verl_sample(column, "r").images == (b"png",)
    mm = {"extra_info": {"question": "q"}, "multi_modal_data": {"image": ["/a.png"]}}
    assert verl_sample(mm, "r").images == ("/a.png",)
    info = {"extra_info": {"question": "q", "images": ["/b.png"]}}
    assert verl_sample(info, "r").images == ("/b.png",)
    assert verl_sample({"raw_prompt": "plain text question"}, "r").question == "plain text question"


def test_sample_without_a_question():
    with pytest.raises(InputError, match="no question"):
        verl_sample({"extra_info": {"split": "train"}}, "r")


# -- results ------------------------------------------------------------------------------------


def test_extra_info_is_complete_and_finite():
    failed = extra_info_of(
        score=1.0,
        outcome=1.0,
        thinking=None,
        judged=True,
        gamma=1.0,
        group_size=4,
        timed_out=False,
        prompt_tokens=None,
    )
    assert tuple(failed) == EXTRA_KEYS
    assert failed["thinking"] == 0.0
    assert failed["thinking_failed"] == 1.0
    assert all(math.isfinite(v) for v in failed.values())
    skipped = extra_info_of(
        score=0.0,
        outcome=0.0,
        thinking=0.0,
        judged=False,
        gamma=1.0,
        group_size=4,
        timed_out=False,
        prompt_tokens=None,
    )
    assert skipped["thinking_failed"] == 0.0
    with pytest.raises(ValueError, match="gamma"):
        extra_info_of(
            score=0.0,
            outcome=0.0,
            thinking=0.0,
            judged=False,
            gamma=math.nan,
            group_size=1,
            timed_out=False,
            prompt_tokens=None,
        )


def test_judged_value():
    assert judged_value(ThinkingScore(score=0.5, expected_score=0.6), True) == 0.6
    assert judged_value(ThinkingScore(score=0.5, expected_score=0.6), False) == 0.5
    assert judged_value(ThinkingScore.failure(ValueError("x")), True) is None
    assert judged_value(RuntimeError("down"), True) is None


def test_trust_on_a_gathered_group_matches_the_whole_group():
    # what the manager does with the gate's lists: the same arithmetic as a whole batch
    trust = TrustGRPO()
    outcomes = [1.0, 1.0, 0.0, 0.3]
    asked = trust.to_judge(outcomes)
    assert asked == [True, True, False, True]
    thinking = [0.2, 0.4, None, 0.9]
    whole = trust.group(outcomes, thinking)
    assert whole.gamma == pytest.approx(math.exp(0.3 - (0.0 + 0.9) / 2))
