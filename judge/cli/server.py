"""Moved: ``serve`` is :mod:`judge.cli.serve`, ``check`` is :mod:`judge.cli.check`.

Kept only until :mod:`judge.cli.main` imports them from there.
"""

from __future__ import annotations

from judge.cli.check import CheckReport, Step, acheck, check
from judge.cli.common import DEFAULT_PORT, MODEL_CARD_SETTINGS, SERVED_MODEL_NAME
from judge.cli.serve import serve, vllm_installed

__all__ = [
    "DEFAULT_PORT",
    "MODEL_CARD_SETTINGS",
    "SERVED_MODEL_NAME",
    "CheckReport",
    "Step",
    "acheck",
    "check",
    "serve",
    "vllm_installed",
]
