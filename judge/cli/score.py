"""``thinking-judge score``: score one question and response, print the score."""

from __future__ import annotations

import argparse

from judge.cli import common
from judge.cli.common import judge_options, make_judge, report
from judge.failures import ExitStatus
from judge.types import JudgeInput


def run(args: argparse.Namespace) -> ExitStatus:
    """Score ``args.question`` / ``args.response`` (and ``args.image``); see :func:`report`.

    Raises:
        UsageError: The options cannot be carried out as given.
        CacheError: The ``--cache`` file cannot be used.
        BackendUnavailableError: The backend cannot run.
    """
    options = judge_options(args)
    backend = common.make_backend(args)  # through the module: tests replace it
    item: JudgeInput = {"question": args.question, "response": args.response}
    if args.image:
        item["images"] = args.image
    with backend:
        result = make_judge(backend, options).invoke(item)
    return report(result, as_json=args.json)


__all__ = ["run"]
