"""``judge.batch``: every input record is accounted for, whatever the file holds."""

from __future__ import annotations

import csv

import pytest
from batch_fakes import by_id, judge_with, records, write_jsonl

from judge.batch import formats, run_batch


def accounted(summary) -> bool:
    """Every record read is scored, failed, skipped or a duplicate, and the line says so."""
    total = summary.scored + summary.failed + summary.skipped + summary.duplicates
    return total == summary.records and f"{summary.records} records read:" in summary.describe()


def test_a_quote_never_closed_is_an_error_record_not_a_silently_short_file(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(
        "id,question,response\n"
        "r0,q0,resp0\n"
        'r1,q1,"resp1 with a stray quote\n'
        "r2,q2,resp2\n"
        "r3,q3,resp3\n"
        "r4,q4,resp4\n"
    )
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["r0"]["score"] == 0.5
    assert "r1" not in out  # its cell swallowed the rest: no record is judged with it
    bad = out["line:3"]
    assert bad["score"] is None
    assert bad["error_kind"] == "input"
    assert "lines 3-6" in bad["error"]
    assert "never closed" in bad["error"]
    assert "cannot be read to its end" in bad["error"]
    assert (summary.scored, summary.failed, summary.records) == (1, 1, 2)
    assert summary.exit_status == 1
    assert accounted(summary)


def test_text_after_a_closing_quote_is_refused_and_reading_goes_on(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(
        'id,question,response\nr0,q0,"resp0 "and more\nr1,q1,"two\nlines"\nr2,q2,"a"x\nr3,q3,a\n'
    )
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert set(out) == {"line:2", "r1", "line:5", "r3"}
    assert "line 2 not valid CSV" in out["line:2"]["error"]
    assert out["r1"]["score"] == 0.5
    assert out["r3"]["score"] == 0.5
    assert (summary.scored, summary.failed) == (2, 2)
    assert accounted(summary)


def test_more_cells_than_the_header_and_nul_bytes_are_refused(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,question,response\nr0,q,a,extra\nr1,q\x00,a\nr2,q,a\n")
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert "4 cells, more than the header's 3" in out["line:2"]["error"]
    assert "NUL byte" in out["line:3"]["error"]
    assert out["r2"]["score"] == 0.5
    assert accounted(summary)


def test_a_nul_byte_in_the_header_reads_nothing_and_says_so(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("id,question,response\n".encode("utf-16-le") + b"r0,q,a\n")
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    (bad,) = by_id(tmp_path / "out.jsonl").values()
    assert "CSV header" in bad["error"]
    assert "nothing of the file is read" in bad["error"]
    assert summary.exit_status == 1


def test_a_header_that_names_a_column_twice_reads_nothing_and_says_so(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,question,response,response\nr0,q,a,b\n")
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    (bad,) = by_id(tmp_path / "out.jsonl").values()
    assert "a column twice" in bad["error"]
    assert summary.exit_status == 1


def test_a_cell_above_the_field_limit_is_an_error_record(tmp_path, monkeypatch):
    before = csv.field_size_limit()
    monkeypatch.setattr(formats, "_CSV_FIELD_LIMIT", 100)
    csv.field_size_limit(100)
    try:
        source = tmp_path / "in.csv"
        source.write_text(f"id,question,response\nr0,q,{'a' * 500}\nr1,q,a\n")
        summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    finally:
        csv.field_size_limit(before)
    out = by_id(tmp_path / "out.jsonl")
    assert "field larger than field limit" in out["line:2"]["error"]
    assert out["r1"]["score"] == 0.5
    assert accounted(summary)


def test_a_csv_record_that_is_not_utf8_is_an_error_record(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,question,response\n\x80,q,a\nr1,q\xff,a\nr2,q,a\n")
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert "not valid UTF-8" in out["line:2"]["error"]
    assert "not valid UTF-8" in out["line:3"]["error"]
    assert out["r2"]["score"] == 0.5
    assert accounted(summary)


def test_a_jsonl_file_cut_mid_character_ends_with_an_error_record(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", records(2))
    source.write_bytes(source.read_bytes() + '{"id": "r2", "question": "é'.encode()[:-1])
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert "line 3 is not valid JSON" in out["line:3"]["error"]
    assert (summary.scored, summary.failed, summary.exit_status) == (2, 1, 1)


def test_a_read_error_mid_file_is_an_error_record_never_a_short_success(tmp_path, monkeypatch):
    source = write_jsonl(tmp_path / "in.jsonl", records(3))
    real = formats._open

    def failing(path, mode):
        file = real(path, mode)
        lines = file.readlines()

        class Broken:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                file.close()

            def close(self):
                file.close()

            def __iter__(self):
                yield lines[0]
                raise OSError(5, "Input/output error")

        return Broken()

    monkeypatch.setattr(formats, "_open", failing)
    summary = run_batch(judge_with(), source, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    assert out["r0"]["score"] == 0.5
    assert "cannot be read to its end: reading stopped at line 2" in out["line:2"]["error"]
    assert summary.exit_status == 1


def test_a_corrupt_parquet_file_ends_with_an_error_record(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow, not installed here")
    import pyarrow.parquet as pq

    n = 2000
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "question": ["q"] * n,
            "response": [f"answer number {i}" for i in range(n)],
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=500, compression="snappy", use_dictionary=False)
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start : start + 64] = b"\xff" * 64  # a page in the middle, footer intact
    path.write_bytes(bytes(data))
    summary = run_batch(judge_with(), path, tmp_path / "out.jsonl")
    out = by_id(tmp_path / "out.jsonl")
    stopped = [line for line in out.values() if "cannot be read to its end" in str(line["error"])]
    assert len(stopped) == 1
    assert summary.exit_status == 1
    assert summary.scored < n
    assert accounted(summary)


def _odd_tables(pa):
    import datetime
    import decimal

    q = {"question": ["q"], "response": ["a"]}
    return {
        "int question": pa.table({"question": [1, 2], "response": ["a", "b"]}),
        "int images": pa.table({**q, "images": [[1, 2]]}),
        "float id": pa.table({**q, "id": [1.5]}),
        "date id": pa.table({**q, "id": [datetime.date(2020, 1, 1)]}),
        "map image": pa.table(
            {**q, "image": pa.array([[("k", 1)]], type=pa.map_(pa.string(), pa.int64()))}
        ),
        "decimal image": pa.table({**q, "image": [decimal.Decimal("1.5")]}),
        "bytes not an image": pa.table({**q, "image": [b"not an image"]}),
        "no columns of ours": pa.table({"x": [1, 2, 3]}),
        "no rows": pa.table({"question": pa.array([], pa.string())}),
    }


def test_odd_parquet_schemas_never_raise_and_every_row_is_accounted_for(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow, not installed here")
    import pyarrow.parquet as pq

    for n, (name, table) in enumerate(_odd_tables(pa).items()):
        path = tmp_path / f"{n}.parquet"
        pq.write_table(table, path)
        summary = run_batch(judge_with(), path, tmp_path / f"{n}.out.jsonl")
        assert summary.records == table.num_rows, name
        assert accounted(summary), name
        assert summary.scored == 0, name  # none of them is a judgeable record
