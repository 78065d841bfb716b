r"""Recipe: the reward server (OpenRLHF's ``POST /get_reward``) as replicas under Ray Serve.

What it shows:

* the app of ``thinking-judge reward-server`` (:func:`judge.cli.reward_server.app_from_args`:
  the same routes, options, batching, 503 on a failed judgment, ``/health``, ``/metrics``)
  deployed with ``@serve.deployment`` + ``@serve.ingress``; the app is built in each
  replica when it starts, so every replica has its own judge and its own HTTP sessions
  to the judge's vLLM server(s) (``--base-url``, repeated for several servers: each
  replica balances over all of them);
* ``--replicas N`` replicas behind Serve's HTTP proxy, ONE URL for the trainer. Serve
  spreads the requests over the replicas; the requests that reach one replica together
  are judged in one batch. ``--max-ongoing-requests`` is how many requests a replica
  takes at once (Serve's default, 5, would cap a replica's batches at 5: OpenRLHF sends
  one sample per request, many at once);
* every answer carries the header ``x-thinking-judge-replica`` (the Serve replica that
  judged it), and ``/metrics`` is the metrics of the replica that answers.

Run it on this machine (a loopback-only local Ray, Serve's proxy on 127.0.0.1:5000)
against a judge server (``thinking-judge serve``, or the tiny test model's)::

    python recipes/ray_serve_reward_server.py --base-url http://127.0.0.1:8000/v1 --replicas 2

    # then, in OpenRLHF:  --remote_rm_url http://127.0.0.1:5000/get_reward

It runs until Ctrl-C or SIGTERM, then stops Serve and the Ray it started. On a cluster,
``--address auto`` joins it (the package installed on every node), and ``--host 0.0.0.0``
exposes the proxy: the server has no authentication, keep it on a private network.
The local Ray and Serve's proxy listen on 127.0.0.1 only, except for one thing Ray Serve
does itself: each replica opens its inter-deployment gRPC server on every interface, on
a random port (``add_port_to_grpc_server(self._server, "[::]:0")`` in
``ray/serve/_private/replica.py``, Ray 2.60; no option changes it, ray-project/ray#64544),
so on a machine reachable from networks you do not trust, firewall it.
Needs the ``ray`` and ``server`` extras (``pip install -e ".[ray,server]"``). See
docs/rl-rewards.md (the OpenRLHF section) and docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from judge.cli.common import UsageError, base_urls
from judge.cli.reward_server import add_server_options, app_from_args

APP_NAME = "thinking-reward"
"""The Serve application's name."""

REPLICA_HEADER = "x-thinking-judge-replica"
"""The response header naming the replica that answered."""


def build_asgi_app(args: argparse.Namespace) -> Any:
    """The reward server's app on a judge of this replica's own, answers tagged.

    Called once in each replica as it starts (Serve's ingress builder), never in the
    driver: the backend's sessions belong to the replica's event loop, and are closed
    when the replica stops (the app's shutdown).
    """
    from ray import serve

    app = app_from_args(args)
    replica = serve.get_replica_context().replica_id.unique_id

    @app.middleware("http")
    async def tag_replica(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers[REPLICA_HEADER] = replica
        return response

    return app


def build_application(args: argparse.Namespace) -> Any:
    """The Serve application: ``args.replicas`` replicas of the reward server.

    Args:
        args: The options of :func:`parser`.

    Returns:
        A bound ``ray.serve`` application, for ``serve.run``.

    Raises:
        UsageError: No judge server URL is given (the replicas only send requests).
    """
    if not base_urls(args.base_urls) or args.backend == "offline":
        raise UsageError("give the judge's vLLM server: --base-url URL (repeat for several)")
    from ray import cloudpickle, serve

    if __name__ != "__main__":  # imported by file: replicas cannot import this module by name
        cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def build() -> Any:  # an ingress builder, run in each replica (Ray >= 2.47: ray#52892)
        return build_asgi_app(args)

    @serve.deployment(
        num_replicas=args.replicas,
        max_ongoing_requests=args.max_ongoing_requests,
        ray_actor_options={"num_cpus": args.replica_cpus},
    )
    @serve.ingress(build)
    class ThinkingRewardServer:
        """One replica of the reward server (its routes are the app's)."""

    return ThinkingRewardServer.bind()  # type: ignore[attr-defined]


def start(args: argparse.Namespace) -> None:
    """Start (or join) Ray, then Serve's proxy on ``args.host:args.port`` and the app.

    A local Ray listens on 127.0.0.1 only and has no dashboard.
    """
    if args.address is None:
        # Read by Ray at import: a local instance whose every listener is 127.0.0.1.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    if args.address is not None:
        ray.init(address=args.address)
    else:
        ray.init(
            num_cpus=args.local_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=256 * 2**20,
        )
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_application(args), name=APP_NAME, route_prefix="/")


def stop() -> None:
    """Stop Serve, then Ray (the local instance's processes with it); safe to call twice."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
    ray.shutdown()


def parser() -> argparse.ArgumentParser:
    """The recipe's options: ``thinking-judge reward-server``'s, and the replicas'."""
    command = argparse.ArgumentParser(
        prog="ray_serve_reward_server.py",
        description="OpenRLHF's remote reward protocol (POST /get_reward), several "
        "replicas under Ray Serve behind one URL.",
    )
    add_server_options(command)
    command.add_argument("--replicas", type=int, default=2, help="replicas of the app (2)")
    command.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=256,
        help="requests a replica takes at once, judged together (256)",
    )
    command.add_argument(
        "--replica-cpus", type=float, default=0.5, help="CPUs reserved per replica (0.5)"
    )
    command.add_argument(
        "--address", help="a Ray cluster to join (e.g. auto); default: a local loopback Ray"
    )
    command.add_argument("--local-cpus", type=int, help="CPUs of the local Ray (all)")
    return command


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # unwinds through the finally that stops Serve and Ray


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit status."""
    args = parser().parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    try:
        start(args)
        for signum in (signal.SIGTERM, signal.SIGINT):  # ray.init may have set its own
            signal.signal(signum, _exit_on_signal)
        print(
            f"reward server: {args.replicas} replica(s) at "
            f"http://{args.host}:{args.port}/get_reward",
            file=sys.stderr,
            flush=True,
        )
        while True:
            signal.pause()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
