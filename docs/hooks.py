"""MkDocs hook: pages that are rendered from the code itself, so they cannot drift.

* ``<!-- cli-help -->`` becomes the output of ``thinking-judge --help`` and of each
  subcommand's ``--help``, as argparse prints them in this very build;
* ``<!-- error-tree -->`` becomes the error tree drawn in :mod:`judge.errors`' docstring.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- cli-help -->"
ERROR_TREE = "<!-- error-tree -->"


def render_cli_help() -> str:
    """``thinking-judge --help`` and every subcommand's help, as Markdown."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix the width
    from judge.cli.main import build_parser

    parser = build_parser()
    parts = ["## thinking-judge", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [f"## thinking-judge {name}", "", "```text"]
                parts += [sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def render_error_tree() -> str:
    """The tree in ``judge.errors``' docstring, as a text block."""
    import judge.errors

    doc = judge.errors.__doc__ or ""
    tree = doc.split("::", 1)[1].split("\n\n", 2)[1]  # the indented block after "::"
    lines = [line[4:] if line.startswith("    ") else line for line in tree.splitlines()]
    return "\n".join(["```text", *lines, "```"])


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the rendered help and error tree where their markers are."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render_cli_help())
    if ERROR_TREE in markdown:
        markdown = markdown.replace(ERROR_TREE, render_error_tree())
    return markdown
