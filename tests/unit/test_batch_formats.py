"""``judge.batch.formats``: input formats, ids, unusable records, image paths."""

from __future__ import annotations

import base64
import json
import sys

import pytest
from batch_fakes import (
    by_id,
    image_urls,
    judge_with,
    png,
    records,
    scripted,
    text_of,
    write_csv,
    write_jsonl,
)

from backends import FakeBackend
from judge.batch import (
    BatchError,
    count_records,
    run_batch,
)


def test_default_id_is_the_one_based_line_as_a_string_and_blank_lines_are_skipped(tmp_path):
    rows = [
        {"question": "q", "response": "a"},
        "",
        "   ",
        {"question": "q", "response": "a"},
        {"id": "x", "question": "q", "response": "a"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert set(by_id(tmp_path / "out.jsonl")) == {"line:1", "line:4", "x"}
    assert summary.records == 3


def test_an_integer_id_and_its_string_are_different_ids(tmp_path):
    rows = [
        {"id": 1, "question": "q", "response": "a"},
        {"id": "1", "question": "q", "response": "a"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert summary.duplicates == 0
    assert sorted(map(repr, by_id(tmp_path / "out.jsonl"))) == ["'1'", "1"]


def test_a_utf8_byte_order_mark_does_not_spoil_the_first_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(records(1)[0]).encode() + b"\n")
    run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert by_id(tmp_path / "out.jsonl")["r0"]["score"] == 0.5


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("line", "expected_id", "message"),
    [
        ("{not json", "line:1", "not valid JSON"),
        ('["a", "list"]', "line:1", "is not a JSON object (list)"),
        ("17", "line:1", "is not a JSON object (int)"),
        ('{"id": "m", "question": "q"}', "m", "'response' must be a string, got nothing"),
        (
            '{"id": "m", "question": 3, "response": "a"}',
            "m",
            "'question' must be a string, got int",
        ),
        (
            '{"id": 1.5, "question": "q", "response": "a"}',
            "line:1",
            "'id' must be a string or an integer",
        ),
        (
            '{"id": true, "question": "q", "response": "a"}',
            "line:1",
            "'id' must be a string or an integer",
        ),
        (
            '{"id": [1], "question": "q", "response": "a"}',
            "line:1",
            "'id' must be a string or an integer",
        ),
        (
            '{"id": "m", "question": "q", "response": "a", "image": "x.png", "images": []}',
            "m",
            "not both",
        ),
        ('{"id": "m", "question": "q", "response": "a", "images": "x.png"}', "m", "must be a list"),
    ],
)
def test_an_unusable_line_becomes_an_input_error_record(tmp_path, line, expected_id, message):
    source = write_jsonl(
        tmp_path / "in.jsonl", [line, {"id": "ok", "question": "q", "response": "a"}]
    )
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    bad = out[expected_id]
    assert bad["score"] is None
    assert bad["error_type"] == "InputError"
    assert bad["error_kind"] == "input"
    assert message in bad["error"]
    assert bad["metadata"] == {"input_line": 1}
    assert "line 1" in bad["error"]
    assert out["ok"]["score"] == 0.5
    assert len(backend.requests) == 1  # the bad line never reached the model
    assert (summary.scored, summary.failed) == (1, 1)
    assert summary.exit_status == 1


def test_invalid_utf8_in_a_line_is_an_error_record_not_a_crash(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"id": "bad", "question": "\xff", "response": "a"}\n'
        + b'{"id": "ok", "question": "q", "response": "a"}\n'
    )
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["line:1"]["error_type"] == "InputError"
    assert out["ok"]["score"] == 0.5
    assert summary.exit_status == 1


# ----------------------------------------------------------------------- images


def test_image_paths_are_relative_to_the_input_folder_and_urls_pass_through(tmp_path, monkeypatch):
    data = tmp_path / "data"
    png(data / "img" / "a.png")
    png(tmp_path / "elsewhere" / "b.png", "blue")
    green = png(tmp_path / "green.png", "green").read_bytes()
    data_url = "data:image/png;base64," + base64.b64encode(green).decode()
    rows = [
        {"id": "rel", "question": "q", "response": "a", "image": "img/a.png"},
        {
            "id": "abs",
            "question": "q",
            "response": "a",
            "images": [str(tmp_path / "elsewhere" / "b.png")],
        },
        {"id": "url", "question": "q", "response": "a", "image": "https://example.org/c.png"},
        {"id": "data", "question": "q", "response": "a", "image": data_url},
        {
            "id": "two",
            "question": "q",
            "response": "a",
            "images": ["img/a.png", "https://example.org/c.png"],
        },
        {"id": "missing", "question": "q", "response": "a", "image": "img/nope.png"},
        {
            "id": "hf",
            "question": "q",
            "response": "a",
            "image": {"bytes": None, "path": "img/a.png"},
        },
    ]
    source = write_jsonl(data / "in.jsonl", rows)
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative to the input, not to the cwd
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    sent = [image_urls(request) for request in backend.requests]
    out = by_id(tmp_path / "out.jsonl")
    assert out["missing"]["error_type"] == "ImageError"
    assert "nope.png" in out["missing"]["error"]
    assert (summary.scored, summary.failed) == (6, 1)
    all_urls = [url for urls in sent for url in urls]
    assert "https://example.org/c.png" in all_urls
    assert data_url in all_urls
    assert sum(url.startswith("data:image/png;base64,") for url in all_urls) == 5
    assert sorted(len(urls) for urls in sent) == [1, 1, 1, 1, 1, 2]


# --------------------------------------------------------------- other formats


def test_csv_input_is_read_with_string_ids_and_json_image_lists(tmp_path):
    png(tmp_path / "a.png")
    source = write_csv(
        tmp_path / "in.csv",
        ["id", "question", "response", "image", "images"],
        [
            ["x1", "q, with a comma", "line one\nline two", "", ""],
            ["7", "q", "a", "a.png", ""],
            ["", "q", "a", "", '["a.png", "a.png"]'],  # no id: "line:N", its line
            ["x4", "q", "a", "", "not json"],
            ["x5", "q", "", "", ""],  # an empty cell is a missing field
        ],
    )
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"x1", "7", "line:5", "x4", "x5"}  # x1 spans lines 2-3
    assert out["7"]["score"] == 0.5
    assert out["line:5"]["score"] == 0.5
    assert out["x4"]["error_type"] == "InputError"
    assert "JSON array" in out["x4"]["error"]
    assert out["x5"]["error_type"] == "InputError"
    assert (summary.scored, summary.failed) == (3, 2)
    assert "line one\nline two" in text_of(backend.requests[0])
    assert sorted(len(image_urls(r)) for r in backend.requests) == [0, 1, 2]


def test_csv_with_a_byte_order_mark_and_without_an_id_column(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbfquestion,response\nq,a\nq,b\n")
    run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert set(by_id(tmp_path / "out.jsonl")) == {"line:2", "line:3"}


def test_parquet_input(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow, not installed here")
    import pyarrow.parquet as pq

    png(tmp_path / "a.png")
    table = pa.table(
        {
            "id": ["p0", "p1", None, "p3"],
            "question": ["q", "q", "q", None],
            "response": ["a", "a", "a", "a"],
            "images": [None, ["a.png", "a.png"], None, None],  # paths relative to the file
            "image": [None, None, (tmp_path / "a.png").read_bytes(), None],  # raw bytes
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=2)
    assert count_records(tmp_path / "in.parquet") == 4
    backend = FakeBackend(scripted)
    summary = run_batch(judge_with(backend), tmp_path / "in.parquet", tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"p0", "p1", "row:3", "p3"}  # rows count from 1
    assert out["p3"]["error_type"] == "InputError"
    assert (summary.scored, summary.failed) == (3, 1)
    assert sorted(len(image_urls(r)) for r in backend.requests) == [0, 1, 2]


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "in.parquet").write_bytes(b"PAR1")
    with pytest.raises(BatchError, match="pip install pyarrow"):
        run_batch(judge_with(), tmp_path / "in.parquet", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unknown_extension_is_refused_unless_the_format_is_named(tmp_path):
    source = write_jsonl(tmp_path / "in.txt", records(2))
    with pytest.raises(BatchError, match="cannot tell the format"):
        run_batch(judge_with(), source, tmp_path / "out.jsonl")
    assert run_batch(judge_with(), source, tmp_path / "out.jsonl", input_format="jsonl").scored == 2


def test_a_missing_input_is_a_batch_error(tmp_path):
    with pytest.raises(BatchError, match="cannot read"):
        run_batch(judge_with(), tmp_path / "nope.jsonl", tmp_path / "out.jsonl")


def test_count_records_estimates_without_parsing(tmp_path):
    assert count_records(write_jsonl(tmp_path / "a.jsonl", records(5))) == 5
    (tmp_path / "b.jsonl").write_text('{"x": 1}\n{"x": 2}')  # no final newline
    assert count_records(tmp_path / "b.jsonl") == 2
    assert count_records(write_csv(tmp_path / "c.csv", ["question"], [["q"]] * 3)) == 3
