r"""Recipe: score a large Parquet or JSON Lines dataset with the thinking judge on Ray Data.

What it shows:

* ``ray.data.read_parquet`` / ``read_json`` -> ``map_batches`` on an **actor pool** ->
  ``write_parquet``: each actor builds ONE judge when it starts and scores batch after
  batch with it;
* two ways to reach the model (``--mode``):

  - ``servers`` (default): the actors call vLLM servers already running (``--base-url``,
    repeated for replicas: each actor balances over all of them, fewest requests in
    flight first). The actors do I/O only: give them a fraction of a CPU
    (``--num-cpus 0.5``) and many requests in flight (``--max-concurrency``);
  - ``offline``: every actor loads its own in-process vLLM engine (``--model`` a hub id
    or a folder reachable from every node), one GPU each by default (``--num-gpus 1``),
    and each batch is ONE ``LLM.chat`` call;

* every input row gets exactly one result row: the input's columns (images left out),
  then ``score``, ``expected_score``, ``raw``, ``error``, ``error_kind``, ``error_type``,
  ``model``, ``prompt_sha256``, ``latency_s`` and ``metadata`` (JSON). A row that cannot be judged
  (no question, an unreadable image, a server that stays down) is an **error record**:
  ``score`` null and ``error`` saying why, never a 0;
* an optional judgment cache (``--cache``): rows judged before are answered from it.

Input rows have ``question`` and ``response`` (strings), optionally ``image`` or
``images`` (bytes, ``{"bytes": ..., "path": ...}`` as Hugging Face datasets store them,
http(s) or data URLs, or paths readable on every node) and any other columns (an ``id``
is a good idea: Ray Data does not keep the row order), which are carried over.

Run it on this machine against a local server (Ray starts here, listening on 127.0.0.1)::

    python recipes/ray_batch_scoring.py data.parquet -o scores/ \
        --base-url http://127.0.0.1:8000/v1 --actors 2 --batch-size 16

On a multi-node cluster: start Ray on the nodes (``ray start --head`` on one,
``ray start --address=HEAD:6379`` on the others), install this package on every node
(or pass ``runtime_env={"pip": [...]}``), put the dataset and the output where every node
can reach them (S3, GCS, a shared file system), then run the driver with ``--address
auto`` on the head node, or submit it as a job::

    ray job submit --working-dir recipes -- python ray_batch_scoring.py \
        s3://bucket/data/ -o s3://bucket/scores/ --address auto --mode offline \
        --model bunny127/SophiaVL-R1-Thinking-Reward-Model-3B --actors 8 --num-gpus 1

    # or with the model served by vLLM replicas (or one server with
    # --data-parallel-size), the actors only sending requests:
    ray job submit --working-dir recipes -- python ray_batch_scoring.py \
        s3://bucket/data/ -o s3://bucket/scores/ --address auto \
        --base-url http://10.0.0.5:8000/v1 --base-url http://10.0.0.6:8000/v1 \
        --actors 4 --num-cpus 0.5 --max-concurrency 128

The server's API key, if any, is read from ``VLLM_API_KEY`` in each actor's environment.
A ``--cache`` file is SQLite: one per node on local disk, not on a network file system.
See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa

from judge import ThinkingRewardJudge, ThinkingScore

RESULT_FIELDS: list[pa.Field] = [
    pa.field("score", pa.float64()),
    pa.field("expected_score", pa.float64()),
    pa.field("raw", pa.string()),
    pa.field("error", pa.string()),
    pa.field("error_kind", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("model", pa.string()),
    pa.field("prompt_sha256", pa.string()),
    pa.field("latency_s", pa.float64()),
    pa.field("metadata", pa.string()),
]
"""The columns every result row gets, after the input's own (images left out)."""
IMAGE_COLUMNS = ("image", "images")


# ------------------------------------------------------------------------ the actors


class JudgeActor:
    """One judge per Ray actor: made once, then called on batch after batch.

    Args:
        mode: ``"servers"`` (call ``base_urls``) or ``"offline"`` (load ``model`` here).
        base_urls: The vLLM servers' API roots (``servers`` mode).
        model: The served model name (``servers``) or the model to load (``offline``).
        judge_options: ``ThinkingRewardJudge`` fields (``constrained``,
            ``expected_score``, ``output_format``...).
        max_concurrency: Requests in flight per actor (``servers`` mode).
        engine_kwargs: ``vllm.LLM`` arguments (``offline`` mode).
        cache: A judgment cache file on this node's disk, or None.
    """

    def __init__(
        self,
        mode: str,
        base_urls: Sequence[str] = (),
        model: str | None = None,
        judge_options: Mapping[str, Any] | None = None,
        max_concurrency: int = 64,
        engine_kwargs: Mapping[str, Any] | None = None,
        cache: str | None = None,
    ) -> None:
        # Backends hold connections and engines and refuse to be pickled: each actor
        # makes its own from plain settings.
        if mode == "servers":
            from backends import VLLMServerBackend

            backend: Any = VLLMServerBackend(
                base_url=list(base_urls),
                model=model or "thinking-reward-model",
                max_concurrency=max_concurrency,
            )
        elif mode == "offline":
            from backends import VLLMOfflineBackend

            backend = VLLMOfflineBackend(model, **(engine_kwargs or {})).load()
        else:
            raise ValueError(f"mode is 'servers' or 'offline', not {mode!r}")
        options = dict(judge_options or {})
        if cache is not None:
            options["cache"] = cache
        self.judge = ThinkingRewardJudge(backend=backend, **options)
        self.max_concurrency = max_concurrency
        # The batch function runs in a worker thread without an event loop: the actor
        # owns one, so the HTTP backend's connection pool lives across batches.
        self.loop = asyncio.new_event_loop() if mode == "servers" else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Judge one batch; returns its rows with the result columns added."""
        items = [judge_input(row) for row in batch.to_pylist()]
        config = {"max_concurrency": self.max_concurrency}
        if self.loop is not None:
            scores = self.loop.run_until_complete(self.judge.abatch(items, config=config))
        else:
            scores = self.judge.batch(items, config=config)
        return with_results(batch, scores)

    def __del__(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.run_until_complete(self.judge.backend.aclose())
                loop.close()


def judge_input(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset row as a judge input (the judge checks it: a bad row is an error record)."""
    item: dict[str, Any] = {"question": row.get("question"), "response": row.get("response")}
    image, images = _image(row.get("image")), row.get("images")
    if images is not None:
        item["images"] = [_image(value) for value in images]
    elif image is not None:
        item["image"] = image
    return item


def _image(value: Any) -> Any:
    """Hugging Face datasets' ``{"bytes", "path"}`` image as bytes or a path; else as is."""
    if isinstance(value, Mapping):
        return value.get("bytes") or value.get("path")
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def with_results(batch: pa.Table, scores: Sequence[ThinkingScore]) -> pa.Table:
    """The batch's columns (images and clashing names dropped), then the results."""
    keep = [name for name in batch.column_names if name not in IMAGE_COLUMNS]
    keep = [name for name in keep if name not in {f.name for f in RESULT_FIELDS}]
    table = batch.select(keep)
    columns: dict[str, list[Any]] = {
        "score": [s.score for s in scores],
        "expected_score": [s.expected_score for s in scores],
        "raw": [s.raw for s in scores],
        "error": [s.error for s in scores],
        "error_kind": [s.error_kind and s.error_kind.value for s in scores],
        "error_type": [s.error_type for s in scores],
        "model": [s.model for s in scores],
        "prompt_sha256": [s.prompt_sha256 for s in scores],
        "latency_s": [s.latency_s for s in scores],
        "metadata": [orjson.dumps(s.metadata, default=str).decode() for s in scores],
    }
    for field in RESULT_FIELDS:  # typed columns: every block writes the same schema
        table = table.append_column(field, pa.array(columns[field.name], type=field.type))
    return table


# ---------------------------------------------------------------------- the pipeline


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join a cluster (``address``, e.g. ``"auto"``), or start a loopback-only local one.

    A local instance listens on 127.0.0.1 only and has no dashboard (Ray's token
    authentication stays as Ray sets it: on, its token in ``~/.ray``).
    """
    if address is None:
        # Read by Ray at import: a local instance whose every listener is 127.0.0.1.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if address is not None:
        ray.init(address=address)
        return
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=256 * 2**20,
    )


def shutdown_ray() -> None:
    """Stop Ray (the local instance's processes with it); safe to call twice."""
    import ray

    ray.shutdown()


def read_dataset(path: str, input_format: str | None = None, *, blocks: int | None = None) -> Any:
    """A Ray dataset from Parquet or JSON Lines (format from the extension by default).

    Args:
        path: A file, a folder or a URI (``s3://...``) Ray Data can read.
        input_format: ``"parquet"`` or ``"jsonl"``; None: from the extension.
        blocks: Repartition into this many blocks (one small file is one block, which
            one actor alone would score).
    """
    import ray

    fmt = input_format or ("jsonl" if path.rstrip("/").endswith((".jsonl", ".json")) else "parquet")
    if fmt == "jsonl":
        dataset = ray.data.read_json(path, lines=True)
    elif fmt == "parquet":
        dataset = ray.data.read_parquet(path)
    else:
        raise ValueError(f"input_format is 'parquet' or 'jsonl', not {fmt!r}")
    return dataset.repartition(blocks) if blocks else dataset


def score_dataset(
    input_path: str,
    output_path: str,
    *,
    actor_kwargs: Mapping[str, Any],
    actors: int = 2,
    batch_size: int = 16,
    num_cpus: float = 0.5,
    num_gpus: float = 0.0,
    input_format: str | None = None,
) -> None:
    """Judge every row of ``input_path`` into Parquet files under ``output_path``.

    Args:
        input_path: Parquet or JSON Lines (file, folder or URI).
        output_path: The folder (or URI) the Parquet result files go to.
        actor_kwargs: :class:`JudgeActor`'s arguments.
        actors: Actors in the pool (one judge, and in offline mode one engine, each).
        batch_size: Rows per call of an actor.
        num_cpus: CPUs reserved per actor: a fraction for actors that only send
            requests (whole CPUs for all of them can leave none to read the data).
        num_gpus: GPUs per actor (offline mode: 1, or the engine's tensor-parallel
            size).
        input_format: ``"parquet"`` or ``"jsonl"``; None: from the extension.
    """
    import ray
    from ray import cloudpickle

    if __name__ != "__main__":  # imported: other nodes cannot import this file by name
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    dataset = read_dataset(input_path, input_format, blocks=max(actors * 4, 1))
    scored = dataset.map_batches(
        JudgeActor,
        fn_constructor_kwargs=dict(actor_kwargs),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )
    scored.write_parquet(output_path)


# ------------------------------------------------------------------------ the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="Parquet or JSON Lines: a file, a folder or a URI")
    parser.add_argument("-o", "--output", required=True, help="folder for the Parquet results")
    parser.add_argument("--input-format", choices=["parquet", "jsonl"])
    parser.add_argument("--mode", choices=["servers", "offline"], default="servers")
    parser.add_argument(
        "--base-url",
        action="append",
        dest="base_urls",
        default=[],
        help="a vLLM server's /v1 root; repeat for replicas (default: $THINKING_JUDGE_BASE_URL)",
    )
    parser.add_argument("--model", help="served model name (servers) or model to load (offline)")
    parser.add_argument("--address", help="Ray cluster address ('auto'); default: start locally")
    parser.add_argument("--local-cpus", type=int, help="CPUs of a local Ray instance")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-cpus", type=float, default=0.5, help="CPUs per actor (0.5)")
    parser.add_argument(
        "--num-gpus",
        type=float,
        help="GPUs per actor (default: servers 0, offline the tensor-parallel size)",
    )
    parser.add_argument("--max-concurrency", type=int, default=64, help="requests per actor")
    parser.add_argument("--max-model-len", type=int, default=8192, help="offline engine")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="offline engine")
    parser.add_argument("--constrained", action="store_true")
    parser.add_argument("--expected-score", action="store_true")
    parser.add_argument("--output-format", choices=["bare", "answer_tag"], default="bare")
    parser.add_argument("--cache", help="a judgment cache file on each node's local disk")
    return parser


def actor_kwargs_from(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`JudgeActor` arguments from the command line."""
    base_urls = args.base_urls or os.environ.get("THINKING_JUDGE_BASE_URL", "").split(",")
    base_urls = [url.strip() for url in base_urls if url.strip()]
    if args.mode == "servers" and not base_urls:
        raise SystemExit("--mode servers needs --base-url (or $THINKING_JUDGE_BASE_URL)")
    if args.mode == "offline" and not args.model:
        raise SystemExit("--mode offline needs --model (a hub id or a folder on every node)")
    return {
        "mode": args.mode,
        "base_urls": base_urls,
        "model": args.model,
        "judge_options": {
            "constrained": args.constrained,
            "expected_score": args.expected_score,
            "output_format": args.output_format,
        },
        "max_concurrency": args.max_concurrency,
        "engine_kwargs": {
            "max_model_len": args.max_model_len,
            "tensor_parallel_size": args.tensor_parallel_size,
        },
        "cache": args.cache,
    }


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Ray for the block; shut down on the way out, on SIGTERM too."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        init_ray(address, num_cpus=num_cpus)
        yield
    finally:
        shutdown_ray()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops Ray


def main(argv: Sequence[str] | None = None) -> int:
    """Run the recipe; returns the exit status."""
    args = _parser().parse_args(argv)
    kwargs = actor_kwargs_from(args)
    num_gpus = args.num_gpus
    if num_gpus is None:
        num_gpus = args.tensor_parallel_size if args.mode == "offline" else 0.0
    with ray_session(args.address, args.local_cpus):
        score_dataset(
            args.input,
            args.output,
            actor_kwargs=kwargs,
            actors=args.actors,
            batch_size=args.batch_size,
            num_cpus=args.num_cpus,
            num_gpus=num_gpus,
            input_format=args.input_format,
        )
    print(f"results written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
