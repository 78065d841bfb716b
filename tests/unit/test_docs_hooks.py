"""The docs' generated pages: the CLI reference and the error tree come from the code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_hooks"] = module
    spec.loader.exec_module(module)
    return module


def test_cli_reference_has_every_command(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = load_hooks().render_cli_help()
    for command in ("score", "batch", "demo", "serve", "check"):
        assert f"## thinking-judge {command}\n" in text
        assert f"usage: thinking-judge {command}" in text
    assert "--served-model-name" in text


def test_the_cli_page_and_the_errors_page_carry_the_markers():
    hooks = load_hooks()
    page = hooks.on_page_markdown((DOCS / "cli.md").read_text(), None, None, None)
    assert hooks.MARKER not in page
    assert "usage: thinking-judge check" in page
    page = hooks.on_page_markdown((DOCS / "errors.md").read_text(), None, None, None)
    assert "├── BackendError" in page
    assert "ScoreParseError" in page


def test_every_page_is_in_the_nav():
    config = (DOCS.parent / "mkdocs.yml").read_text()
    pages = {
        str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "scripts" not in path.parts
    }
    missing = sorted(page for page in pages if f" {page}" not in config)
    assert missing == []
