"""The ``thinking-judge`` command line (see :mod:`judge.cli.main`).

``judge.cli.main`` names the function (the console script is ``judge.cli:main``); the
parser module is reached as ``from judge.cli.main import build_parser``.
"""

from judge.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
