"""``thinking-judge batch``: score a file of inputs into a JSON Lines file, resumably.

The work is :func:`judge.batch.arun_batch`'s; this command checks the files before a
model is loaded, reports the summary on stderr and turns Ctrl-C into a hint to resume.
With ``--report FILE`` it then writes an HTML report of the whole output file
(:func:`judge.batch.report.render_report`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from judge.batch import arun_batch, input_format_of
from judge.batch.report import render_report
from judge.cli import common
from judge.cli.common import UsageError, judge_options, make_judge, say
from judge.failures import ExitStatus


def run(args: argparse.Namespace) -> int:
    """Score every record of ``args.input`` into ``args.output``.

    Returns:
        The summary's exit status (:attr:`judge.batch.BatchSummary.exit_status`);
        ``INTERRUPTED`` on Ctrl-C, ``FAILED`` when the output cannot be written.

    Raises:
        UsageError: No input file, or options that cannot be carried out.
        BatchError: The input's format is unknown or the files cannot be used.
        CacheError: The ``--cache`` file cannot be used.
        BackendUnavailableError: The backend cannot run.
    """
    options = judge_options(args)
    if not args.input.is_file():
        raise UsageError(f"no input file {os.fspath(args.input)!r}")
    if args.input_format is None:
        input_format_of(args.input)  # fail before a model is loaded
    report: Path | None = getattr(args, "report", None)
    if report is not None and not report.absolute().parent.is_dir():
        raise UsageError(f"no folder for the report {os.fspath(report)!r}")
    # through the module: tests replace it
    backend = common.make_backend(args, max_concurrency=args.max_concurrency)
    with backend:
        # Image paths in the data stay inside the image root; URLs to private hosts
        # are refused (judge.core.sources).
        root = (args.image_root or args.input.parent).absolute()
        images = {"image_root": root, "image_urls": args.image_urls}
        judge = make_judge(backend, {**options, **images})
        try:
            summary = asyncio.run(
                arun_batch(
                    judge,
                    args.input,
                    args.output,
                    input_format=args.input_format,
                    max_concurrency=args.max_concurrency,
                    retry_failed=args.retry_failed,
                    progress=args.progress,
                    image_root=root,
                )
            )
        except KeyboardInterrupt:
            say("interrupted; run the same command again to resume")
            return ExitStatus.INTERRUPTED
        except OSError as exc:
            say(f"writing {os.fspath(args.output)!r} failed: {exc}")
            return ExitStatus.FAILED
    print(f"thinking-judge batch: {summary.describe()}", file=sys.stderr)
    if report is not None:
        try:
            write_report(args.output, report)
        except OSError as exc:
            say(f"writing the report {os.fspath(report)!r} failed: {exc}")
            return ExitStatus.FAILED
        print(f"thinking-judge batch: report written to {os.fspath(report)}", file=sys.stderr)
    return summary.exit_status


def read_results(output: Path) -> list[dict[str, Any]]:
    """The result records of a batch's output file, the last line of each id kept."""
    latest: dict[str, dict[str, Any]] = {}
    with output.open("rb") as lines:
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line: the next run cuts it off
            if isinstance(record, dict):
                latest[orjson.dumps(record.get("id")).decode()] = record
    return list(latest.values())


def write_report(output: Path, report: Path) -> None:
    """Write the HTML report of the results in ``output`` to ``report``.

    Raises:
        OSError: ``output`` cannot be read or ``report`` written.
    """
    page = render_report(read_results(output), source=output.name)
    report.write_text(page, encoding="utf-8")


__all__ = ["read_results", "run", "write_report"]
