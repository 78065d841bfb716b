"""``judge.batch``: one record whose connection is dropped vs a backend that is down."""

from __future__ import annotations

import importlib
import socket

import pytest
from aiohttp import web
from batch_fakes import SlowHTTP, by_id, judge_with, records, results, text_of, write_jsonl
from threaded_host import ThreadedHost

from backends import OpenAICompatibleBackend
from backends.errors import BackendConnectionError
from judge import ThinkingRewardJudge
from judge.batch import run_batch
from judge.failures import FailureKind

POISON = "poison-record"


class DroppingHost(ThreadedHost):
    """A chat host that resets the connection of any request whose body names POISON."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.bodies.append(body)
        if POISON in body:
            request.transport.abort()  # type: ignore[union-attr]
            return web.Response(text="never sent")
        reply = {
            "model": "m",
            "choices": [{"message": {"content": "0.5"}, "finish_reason": "stop"}],
        }
        return web.json_response(reply)


@pytest.fixture
def dropping():
    host = DroppingHost()
    host.start()
    yield host
    host.stop()


def http_judge(url: str) -> ThinkingRewardJudge:
    backend = OpenAICompatibleBackend(
        url, "m", timeout=5.0, max_retries=1, backoff_base=0.01, backoff_max=0.02, deadline=5.0
    )
    return ThinkingRewardJudge(backend=backend)


def test_a_record_whose_connection_is_always_dropped_fails_alone(tmp_path, dropping):
    rows = records(6)
    rows[2]["response"] = POISON
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    summary = run_batch(http_judge(dropping.url), source, output, max_concurrency=2)
    out = by_id(output)
    assert summary.aborted is None
    assert out["r2"]["score"] is None
    assert out["r2"]["error_kind"] == "connection"
    assert all(out[f"r{i}"]["score"] == 0.5 for i in (0, 1, 3, 4, 5))
    assert (summary.scored, summary.failed, summary.exit_status) == (5, 1, 1)
    assert sum(POISON in body for body in dropping.bodies) == 2  # its retry, then it failed
    # Re-judged alone (--retry-failed): a probe tells the record from the backend.
    again = run_batch(http_judge(dropping.url), source, output, retry_failed=True)
    assert (again.failed, again.skipped, again.exit_status) == (1, 5, 1)
    assert any("connectivity probe" in body for body in dropping.bodies)
    assert len(results(output)) == 6


def test_a_dead_port_stops_the_run_with_exit_3_and_writes_nothing(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    output = tmp_path / "out.jsonl"
    summary = run_batch(http_judge(f"http://127.0.0.1:{port}/v1"), source, output)
    assert summary.exit_status == 3
    assert summary.aborted_kind == FailureKind.CONNECTION
    assert "unreachable" in summary.aborted
    assert "a probe request failed too" in summary.aborted
    assert output.read_bytes() == b""
    assert (summary.records, summary.not_judged) == (3, 3)
    assert "3 not judged (the run stopped)" in summary.describe()


def test_many_bad_records_in_a_row_are_probed_and_fail_alone(tmp_path):
    def script(request):
        if POISON in text_of(request):
            return BackendConnectionError("connection reset by peer", backend="fake")
        return "0.5"

    rows = records(12)
    for row in rows[:8]:  # more than the failures in a row that trigger a probe
        row["response"] = POISON
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    backend = SlowHTTP(script=script)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl", max_concurrency=1)
    assert summary.aborted is None
    assert (summary.scored, summary.failed, summary.exit_status) == (4, 8, 1)
    assert any("connectivity probe" in text for text in backend.completed)
    assert len(by_id(tmp_path / "out.jsonl")) == 12


def test_a_backend_that_dies_mid_run_stops_it_without_writing_the_held_records(tmp_path):
    answered = 0

    def dies(request):
        nonlocal answered
        answered += 1
        if answered > 4:
            return BackendConnectionError("connection refused", backend="fake")
        return "0.5"

    source = write_jsonl(tmp_path / "in.jsonl", records(30))
    summary = run_batch(
        judge_with(SlowHTTP(script=dies)), source, tmp_path / "out.jsonl", max_concurrency=1
    )
    assert summary.exit_status == 3
    out = by_id(tmp_path / "out.jsonl")
    assert len(out) == 4
    assert all(line["score"] == 0.5 for line in out.values())  # no connection failure written


def test_cli_exit_statuses_one_bad_record_1_dead_port_3(tmp_path, dropping, monkeypatch, capsys):
    cli = importlib.import_module("judge.cli.main")
    cli_common = importlib.import_module("judge.cli.common")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    urls = iter([dropping.url, dead])
    monkeypatch.setattr(
        cli_common, "make_backend", lambda args, **kw: http_judge(next(urls)).backend
    )
    rows = records(4)
    rows[1]["response"] = POISON
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    argv = ["batch", str(source), "--progress", "off", "-o"]
    assert cli.main([*argv, str(tmp_path / "one.jsonl")]) == 1
    assert "4 records read: 3 scored, 1 failed" in capsys.readouterr().err
    assert cli.main([*argv, str(tmp_path / "dead.jsonl")]) == 3
    assert "STOPPED: the backend is unreachable" in capsys.readouterr().err
    assert (tmp_path / "dead.jsonl").read_bytes() == b""
