"""Arbitrary bytes as a batch input file: never an exception, every record accounted for.

The budget is the profile's (tests/fuzz/conftest.py): small in the ordinary run, larger
in CI's fuzz stage.
"""

from __future__ import annotations

import json

from batch_fakes import judge_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from judge.batch import read_records, run_batch


def accounted(summary) -> bool:
    """Every record read is scored, failed, skipped or a duplicate, and the line says so."""
    total = summary.scored + summary.failed + summary.skipped + summary.duplicates
    return total == summary.records and f"{summary.records} records read:" in summary.describe()


# The number of examples comes from the profile (tests/fuzz/conftest.py).
_FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_PIECES = st.sampled_from(
    [b"\n", b",", b'"', b"\x00", b"\xff", b"{", b"}", b'"question"', b'"response"', b":", b"id"]
)
_BYTES = st.lists(st.one_of(st.binary(max_size=8), _PIECES), max_size=40).map(b"".join)


@_FUZZ
@given(data=_BYTES)
def test_fuzz_arbitrary_bytes_as_jsonl_every_line_is_a_record(tmp_path, data):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"question": "q", "response": "a"}\n' + data)
    output = tmp_path / "out.jsonl"
    output.unlink(missing_ok=True)
    summary = run_batch(judge_with(), source, output)
    lines = source.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n")
    assert summary.records == sum(1 for line in lines if line.strip())
    assert accounted(summary)
    assert summary.scored >= 1


@_FUZZ
@given(data=_BYTES)
def test_fuzz_arbitrary_bytes_as_csv_every_record_is_accounted_for(tmp_path, data):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,question,response\nfirst,q,a\n" + data)
    output = tmp_path / "out.jsonl"
    output.unlink(missing_ok=True)
    summary = run_batch(judge_with(), source, output)
    assert accounted(summary)
    assert summary.scored >= 1
    written = [json.loads(line) for line in output.read_bytes().splitlines()]
    assert len(written) == summary.scored + summary.failed
    # The records cover the file: their lines increase, and nothing after the last is lost.
    lines = [record.line for record in read_records(source)]
    assert lines == sorted(set(lines))
