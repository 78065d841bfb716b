"""recipes/ray_batch_scoring.py on a local Ray instance: 2 actors calling the real vLLM server.

The driver runs in a subprocess (Ray reads its settings at import, and its processes must
not outlive the test): it starts a loopback-only Ray with 2 CPUs, records what Ray listens
on, scores a Parquet dataset with an actor pool of 2 against the session's vLLM server
(the tiny model on the CPU) and stops Ray in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recipe_files import recipe_path

from judge import SCORE_GRID

pytest.importorskip("ray.data")

GRID = {float(value) for value in SCORE_GRID}
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]")

DRIVER = textwrap.dedent(
    """
    import importlib.util, json, subprocess, sys

    import psutil

    recipe_path, data, out, base_url, model, report = sys.argv[1:7]
    spec = importlib.util.spec_from_file_location("ray_batch_scoring", recipe_path)
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["ray_batch_scoring"] = recipe
    spec.loader.exec_module(recipe)

    recipe.init_ray(None, num_cpus=2)
    try:
        me = psutil.Process()
        pids = {me.pid, *(child.pid for child in me.children(recursive=True))}
        lines = subprocess.run(
            ["ss", "-ltnpH"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        listeners = [
            line.split()[3]
            for line in lines
            if any(f"pid={pid}," in line for pid in pids)
        ]
        with open(report, "w") as file:
            json.dump({"listeners": listeners}, file)
        recipe.score_dataset(
            data,
            out,
            actor_kwargs={
                "mode": "servers",
                "base_urls": [base_url],
                "model": model,
                "judge_options": {"constrained": True},
                "max_concurrency": 8,
            },
            actors=2,
            batch_size=4,
            num_cpus=0.5,
        )
    finally:
        recipe.shutdown_ray()
    """
)


def dataset(path: Path, make_png) -> list[int]:
    """24 rows with ids: some with an image (as Hugging Face stores it), two unusable."""
    image = make_png((32, 32), "green")
    rows = []
    for i in range(24):
        row = {
            "id": i,
            "question": f"What is {i} + {i}?",
            "response": f"<think>{i} + {i} = {2 * i}</think><answer>{2 * i}</answer>",
            "image": {"bytes": image, "path": None} if i % 5 == 0 else None,
        }
        rows.append(row)
    rows[7]["response"] = ""  # an input error
    rows[11]["question"] = None  # an input error
    pq.write_table(pa.Table.from_pylist(rows), path)
    return [row["id"] for row in rows]


def test_ray_recipe_scores_every_row_once_with_two_actors(vllm_server, make_png, tmp_path):
    ids = dataset(tmp_path / "data.parquet", make_png)
    out, report = tmp_path / "scores", tmp_path / "report.json"
    home = tmp_path / "home"  # Ray writes its auth token under ~/.ray
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # read at `import ray`: loopback only
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    (tmp_path / "driver.py").write_text(DRIVER)
    command = [
        sys.executable,
        str(tmp_path / "driver.py"),
        str(recipe_path("ray_batch_scoring")),
        str(tmp_path / "data.parquet"),
        str(out),
        str(vllm_server.base_url),
        vllm_server.model,
        str(report),
    ]
    driver = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = driver.communicate(timeout=900)  # a hang guard, not a timing check
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 0, output[-4000:]

    listeners = json.loads(report.read_text())["listeners"]
    assert listeners, "no listening socket of Ray was found: the check would be vacuous"
    exposed = [a for a in listeners if not a.startswith(LOOPBACK_HOSTS)]
    assert exposed == [], f"Ray listens beyond the loopback: {exposed}"

    table = pq.read_table(out)
    rows = table.to_pylist()
    assert sorted(row["id"] for row in rows) == ids  # every row, exactly once
    assert "image" not in table.column_names
    assert table.schema.field("score").type == pa.float64()
    by_id = {row["id"]: row for row in rows}
    for i in (7, 11):  # unusable rows are error records, not zeros
        assert by_id[i]["score"] is None
        assert by_id[i]["error_type"] == "InputError"
        assert by_id[i]["error_kind"] == "input"
        assert by_id[i]["error"]
    scored = [row for i, row in by_id.items() if i not in (7, 11)]
    assert all(row["error"] is None for row in scored), [r["error"] for r in scored]
    assert all(row["score"] in GRID for row in scored)
    assert all(row["prompt_sha256"] and row["model"] for row in scored)
    metadata = json.loads(by_id[0]["metadata"])
    assert metadata["backend"] == "vllm-server"
