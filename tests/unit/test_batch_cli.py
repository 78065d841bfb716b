"""``thinking-judge batch`` on the command line (in process, with a fake backend)."""

from __future__ import annotations

import importlib

import pytest
from batch_fakes import (
    records,
    results,
    scripted,
    write_jsonl,
)

from backends import FakeBackend

cli = importlib.import_module("judge.cli.main")
cli_common = importlib.import_module("judge.cli.common")


# -------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_cli_backend(monkeypatch):
    """The CLI with a fake backend in place of the server or engine it would make."""
    made: list[FakeBackend] = []

    def backend(args, **kwargs):
        made.append(FakeBackend(scripted))
        return made[-1]

    monkeypatch.setattr(cli_common, "make_backend", backend)
    return made


def test_cli_batch_exit_status_and_summary(tmp_path, fake_cli_backend, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", records(3))
    assert cli.main(["batch", str(good), "-o", str(tmp_path / "g.out"), "--progress", "off"]) == 0
    err = capsys.readouterr().err
    assert "thinking-judge batch: 3 records read: 3 scored, 0 failed, 0 skipped as done" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [*records(3), "{oops"])
    assert cli.main(["batch", str(bad), "-o", str(tmp_path / "b.out"), "--progress", "off"]) == 1
    assert "3 scored, 1 failed" in capsys.readouterr().err
    again = [
        "batch",
        str(bad),
        "-o",
        str(tmp_path / "b.out"),
        "--progress",
        "off",
        "--retry-failed",
    ]
    assert cli.main(again) == 1
    assert "0 scored, 1 failed, 3 skipped as done" in capsys.readouterr().err
    assert len(results(tmp_path / "b.out")) == 4


def test_cli_batch_usage_errors_exit_2_before_any_backend_is_made(
    tmp_path, fake_cli_backend, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    assert cli.main(["batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "no input file" in capsys.readouterr().err
    weird = write_jsonl(tmp_path / "in.weird", records(1))
    assert cli.main(["batch", str(weird), "-o", str(tmp_path / "o")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert fake_cli_backend == []
    assert cli.main(["batch", str(source), "-o", str(source)]) == 2
    assert "is the input file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(source), "-o", "o", "--max-concurrency", "0"])
    assert exit_info.value.code == 2


def test_cli_constrained_on_a_backend_without_structured_outputs_is_a_usage_error(
    tmp_path, monkeypatch, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    unconstrained = FakeBackend(scripted)
    unconstrained.supports_structured_outputs = False
    monkeypatch.setattr(cli_common, "make_backend", lambda args, **kwargs: unconstrained)
    assert cli.main(["batch", str(source), "-o", str(tmp_path / "o"), "--constrained"]) == 2
    assert "structured outputs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_foreign_output_file_with_exit_2(tmp_path, fake_cli_backend, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    (tmp_path / "o.jsonl").write_text("hello\n")
    assert cli.main(["batch", str(source), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "not a batch result" in capsys.readouterr().err


def test_cli_shared_options_parse_the_same_for_score_and_batch(monkeypatch):
    monkeypatch.delenv(cli_common.BASE_URL_ENV, raising=False)
    common = [
        "--base-url",
        "http://127.0.0.1:8000/v1",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--constrained",
        "--expected-score",
        "--output-format",
        "answer_tag",
        "--timeout",
        "5",
        "--model",
        "m",
    ]
    score = cli.build_parser().parse_args(["score", "--question", "q", "--response", "r", *common])
    batch = cli.build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl", *common])
    for args in (score, batch):
        assert cli_common.base_urls(args.base_urls) == [
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8001/v1",
        ]
        assert cli_common.judge_options(args) == {
            "constrained": True,
            "expected_score": True,
            "output_format": "answer_tag",
        }
    assert batch.max_concurrency == 64
    backend = cli_common.make_backend(batch, max_concurrency=7)
    with backend:
        assert [str(u) for u in backend.base_urls] == cli_common.base_urls(batch.base_urls)
        assert backend.max_concurrency == 7
        assert backend.timeout == 5
        assert backend.model == "m"


def test_cli_options_not_given_are_not_passed_to_the_judge():
    args = cli.build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    assert cli_common.judge_options(args) == {}


def test_cli_base_urls_come_from_the_environment_comma_separated(monkeypatch):
    monkeypatch.setenv(cli_common.BASE_URL_ENV, "http://127.0.0.1:1/v1, http://127.0.0.1:2/v1")
    args = cli.build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    assert cli_common.base_urls(args.base_urls) == [
        "http://127.0.0.1:1/v1",
        "http://127.0.0.1:2/v1",
    ]


def test_cli_image_root_is_where_relative_paths_are_read_and_what_they_may_not_leave(
    tmp_path, fake_cli_backend, capsys
):
    import io
    import json

    from PIL import Image

    data, pictures = tmp_path / "data", tmp_path / "pictures"
    data.mkdir()
    pictures.mkdir()
    png = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(png, format="PNG")
    (pictures / "chart.png").write_bytes(png.getvalue())
    (tmp_path / "secret.png").write_bytes(png.getvalue())
    rows = [
        {"id": "inside", "question": "q", "response": "r", "image": "chart.png"},
        {"id": "escapes", "question": "q", "response": "r", "image": "../secret.png"},
        {"id": "absolute", "question": "q", "response": "r", "image": str(tmp_path / "secret.png")},
    ]
    source = data / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    command = ["batch", str(source), "-o", str(out), "--progress", "off"]
    assert cli.main([*command, "--image-root", str(pictures)]) == 1
    by_id = {line["id"]: line for line in results(out)}
    assert by_id["inside"]["error"] is None  # read from the image root, not the data folder
    for rid in ("escapes", "absolute"):
        assert by_id[rid]["error_kind"] == "input"
        assert by_id[rid]["error_type"] == "ImageError", by_id[rid]
    sent = [
        part for request in fake_cli_backend[0].requests for part in request.messages[1]["content"]
    ]
    assert sum(part["type"] == "image_url" for part in sent) == 1  # only the one inside
    capsys.readouterr()


def test_cli_batch_report_is_written_from_the_whole_output_file(tmp_path, fake_cli_backend, capsys):
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [*records(3), {"id": "bad", "question": "fail-parse", "response": "a"}],
    )
    out, report = tmp_path / "out.jsonl", tmp_path / "report.html"
    argv = ["batch", str(source), "-o", str(out), "--progress", "off", "--report", str(report)]
    assert cli.main(argv) == 1
    assert f"report written to {report}" in capsys.readouterr().err
    page = report.read_text(encoding="utf-8")
    assert "<title>thinking-judge batch report: out.jsonl</title>" in page
    assert '<rect class="bar"' in page
    assert "<title>0.5: 3</title>" in page
    assert '<h3 class="kind">parse: 1 ' in page
    # run again: nothing left to judge, the report still covers every id of the file
    assert cli.main(argv) == 1
    assert "<title>0.5: 3</title>" in report.read_text(encoding="utf-8")


def test_cli_batch_report_in_a_missing_folder_is_a_usage_error_before_any_backend(
    tmp_path, fake_cli_backend, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", records(1))
    argv = [
        "batch",
        str(source),
        "-o",
        str(tmp_path / "o"),
        "--report",
        str(tmp_path / "no" / "r.html"),
    ]
    assert cli.main(argv) == 2
    assert "no folder for the report" in capsys.readouterr().err
    assert fake_cli_backend == []
