"""verl's REAL reward loop with the thinking reward manager, on a hand-made DataProto.

Run in the verl virtual environment (``.venv-verl``) by
``tests/integration/test_verl_reward_loop.py``::

    python verl_reward_loop.py SETTINGS_JSON OUTPUT_JSON

It starts a local Ray (CPU, no dashboard), builds verl 0.9.1's ``RewardLoopManager``
(``verl/experimental/reward_loop/reward_loop.py``: two ``RewardLoopWorker`` actors, each
loading ``judge.rl.verl_manager.ThinkingRewardManager`` through
``reward.reward_manager.source=importlib``) and scores 2 groups x 4 responses:

* ``batch``: ``RewardLoopManager.compute_rm_score`` (verl chunks the batch over the
  workers; the batch is ordered so that each group is split across both);
* ``streamed``: one ``RewardLoopWorker.compute_score`` call per sample, alternating
  between the workers, as verl's agent loop streams rewards
  (``verl/experimental/agent_loop/agent_loop.py``, ``_compute_score``);
Group ``a`` has an image in verl's stock layout (the dataset's ``images`` column as
``RLHFDataset`` puts it into ``raw_prompt``); group ``b`` has the same text without;
group ``c``'s question sends it to a judge whose server is gone (``verl_judge.py``).
The output is one record per sample: mode, uid, the reward and ``reward_extra_info``.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import ray
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoTokenizer
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopManager

QUESTION = "What is the length of side x in the triangle?"
DEAD_MARK = "(judged by a dead server)"  # verl_judge.DEAD_MARK
RESPONSES = [  # (response, ground truth 5): right, right, wrong (0.3), no answer (0.0)
    "<think>3-4-5 triangle, so x = 5.</think><answer>5</answer>",
    "<think>By Pythagoras x = sqrt(9 + 16) = 5.</think><answer>5</answer>",
    "<think>The sides add up, so x = 7.</think><answer>7</answer>",
    "<think>I am not sure.</think>",
]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (112, 112), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def config(settings: dict, judge_name: str) -> OmegaConf:
    return OmegaConf.create(
        {
            "actor_rollout_ref": {
                "model": {"path": settings["tokenizer"], "tokenizer_path": None},
                "rollout": {"n": 4, "val_kwargs": {"n": 1}},
            },
            "reward": {
                "num_workers": 2,
                "custom_reward_function": {
                    "path": settings["support"] + "/verl_judge.py",
                    "name": "outcome",
                },
                "reward_manager": {
                    "source": "importlib",
                    "name": "ThinkingRewardManager",
                    "module": {"path": "pkg://judge.rl.verl_manager", "name": None},
                },
                "reward_model": {"enable": False, "enable_resource_pool": False},
                "sandbox_fusion": {"url": None},
                "thinking_judge": {
                    "judge_path": "file://" + settings["support"] + "/verl_judge.py",
                    "judge_name": judge_name,
                    "group_timeout": 120,
                },
            },
        }
    )


def rows(tokenizer, image: bytes) -> DataProto:
    """3 groups x 4, ordered so that verl's two chunks split each group: a0 a1 b0 b1 c0 c1 | a2 ..."""
    order = [(g, m) for half in (0, 2) for g in "abc" for m in (half, half + 1)]
    uids = {g: str(uuid.uuid4()) for g in "abc"}
    n, p_len, r_len = len(order), 32, 48
    prompts = torch.full((n, p_len), tokenizer.pad_token_id or 0, dtype=torch.long)
    responses = torch.full((n, r_len), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((n, p_len + r_len), dtype=torch.long)
    raw_prompt = np.empty(n, dtype=object)
    for i, (group, member) in enumerate(order):
        q_ids = tokenizer(QUESTION, add_special_tokens=False)["input_ids"][:p_len]
        r_ids = tokenizer(RESPONSES[member], add_special_tokens=False)["input_ids"][:r_len]
        prompts[i, p_len - len(q_ids) :] = torch.tensor(q_ids)  # left-padded, as verl's
        responses[i, : len(r_ids)] = torch.tensor(r_ids)
        mask[i, p_len - len(q_ids) : p_len] = 1
        mask[i, p_len : p_len + len(r_ids)] = 1
        question = QUESTION + (" " + DEAD_MARK if group == "c" else "")
        parts = [{"type": "text", "text": question}]
        if group == "a":  # RLHFDataset._build_messages: a datasets image dict, "image" added
            picture = Image.open(io.BytesIO(image)).convert("RGB")
            parts.insert(0, {"type": "image", "bytes": image, "path": None, "image": picture})
        raw_prompt[i] = [{"role": "user", "content": parts}]
    non_tensors = {
        "uid": np.array([uids[g] for g, _ in order], dtype=object),
        "data_source": np.array(["hand-made"] * n, dtype=object),
        "reward_model": np.array([{"ground_truth": "5", "style": "rule"}] * n, dtype=object),
        "extra_info": np.array([{"split": "train", "index": 0} for _ in order], dtype=object),
        "raw_prompt": raw_prompt,
    }
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "attention_mask": mask,
        "input_ids": torch.cat([prompts, responses], dim=1),
    }
    data = DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)
    data.meta_info["groups"] = order
    return data


def records(mode: str, data: DataProto, scores: list[float], infos: list[dict]) -> list[dict]:
    return [
        {
            "mode": mode,
            "group": group,
            "member": member,
            "uid": str(data.non_tensor_batch["uid"][i]),
            "worker": i * 2 // len(data) if mode == "batch" else i % 2,
            "reward": float(scores[i]),
            "extra": {k: float(v) for k, v in infos[i].items()},
        }
        for i, (group, member) in enumerate(data.meta_info["groups"])
    ]


def batch_mode(manager: RewardLoopManager, data: DataProto, mode: str) -> list[dict]:
    out = manager.compute_rm_score(data)
    scores = out.batch["rm_scores"].sum(-1).tolist()
    keys = out.meta_info["reward_extra_keys"]
    infos = [{k: out.non_tensor_batch[k][i] for k in keys} for i in range(len(data))]
    return records(mode, data, scores, infos)


def streamed_mode(manager: RewardLoopManager, data: DataProto) -> list[dict]:
    workers = manager.reward_loop_workers
    refs = [workers[i % 2].compute_score.remote(data[i : i + 1]) for i in range(len(data))]
    results = ray.get(refs)
    scores = [r["reward_score"] for r in results]
    infos = [r["reward_extra_info"] for r in results]
    return records("streamed", data, scores, infos)


def main() -> None:
    settings = json.loads(Path(sys.argv[1]).read_text())
    env = {
        "THINKING_JUDGE_BASE_URL": settings["base_url"],
        "THINKING_JUDGE_DEAD_URL": settings["dead_url"],
        "THINKING_JUDGE_MODEL": settings["model"],
    }
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        namespace="thinking-judge-verl-test",
        runtime_env={"env_vars": env},
        log_to_driver=True,
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings["tokenizer"])
        image = png()
        manager = RewardLoopManager(config(settings, "routed_judge"))
        out = batch_mode(manager, rows(tokenizer, image), "batch")
        out += streamed_mode(manager, rows(tokenizer, image))
        with open(sys.argv[2], "w") as handle:
            json.dump(out, handle, indent=1)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
