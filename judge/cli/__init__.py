"""The ``thinking-judge`` command line (see :mod:`judge.cli.main`)."""

from judge.cli.main import main

__all__ = ["main"]
