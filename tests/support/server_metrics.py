"""Reading the real vLLM server's Prometheus ``/metrics`` in the integration tests."""

from __future__ import annotations

import time
import urllib.request

from backends.vllm_server import VLLMServerBackend


def metric_total(server: VLLMServerBackend, name: str) -> float:
    """The sum of every sample of the metric ``name`` (e.g. ``vllm:request_success_total``)."""
    root = str(server.base_url).removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=30) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines() if line.startswith(name)]
    assert lines, f"the server exposes no {name}"
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def served_requests(server: VLLMServerBackend) -> float:
    """Requests the server has finished."""
    return metric_total(server, "vllm:request_success_total")


def wait_for_requests(server: VLLMServerBackend, at_least: float, within: float = 30) -> float:
    """The finished-request count once it reaches ``at_least`` (metrics may lag a little)."""
    deadline = time.monotonic() + within
    while (count := served_requests(server)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return count
