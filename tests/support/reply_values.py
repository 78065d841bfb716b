"""What the reply property tests share: arbitrary JSON, its bytes, and a well-typed completion."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from backends.base import Completion

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
"""Any JSON value, NaN and infinities included (as a careless host may send them)."""


def encode(value: Any) -> bytes:
    """``value`` as a reply body (NaN written as Python's ``json`` writes it)."""
    return json.dumps(value, allow_nan=True).encode()


def well_typed(completion: Completion) -> None:
    """Assert that every field of ``completion`` has the type the pipeline relies on."""
    assert isinstance(completion.text, str)
    assert completion.finish_reason is None or isinstance(completion.finish_reason, str)
    assert isinstance(completion.model, str)
    assert completion.model
    for count in (completion.prompt_tokens, completion.completion_tokens):
        assert count is None or (type(count) is int and 0 <= count < 2**53)
    usage = completion.usage()
    assert usage is None or all(type(v) is int for v in usage.values())
    json.dumps(usage)  # what a score's metadata will hold
    for entry in completion.logprobs or ():
        assert isinstance(entry.token, str)
        assert type(entry.logprob) is float
        for token, logprob in entry.top:
            assert isinstance(token, str)
            assert type(logprob) is float
