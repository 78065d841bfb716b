"""Fuzz tests: arbitrary replies and input files must never raise out of the judge.

They run in the ordinary test run with a small budget, and in CI's fuzz stage with a
fixed larger one: ``python -m pytest tests/fuzz --hypothesis-profile=fuzz`` (see
``.ci/run``). Both budgets are numbers of examples, never a time.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": True,  # a fixed set of examples: CI is reproducible
}
settings.register_profile("default", max_examples=40, **_COMMON)
settings.register_profile("fuzz", max_examples=1500, **_COMMON)
settings.load_profile("default")
