"""docs/examples/: the chart the tests draw, and the documented commands, run for real.

The example's chart is drawn by ``docs/scripts/examples.py``; here it is drawn again and
both responses are scored with the same ``thinking-judge score`` command the page shows,
against the session's vLLM server on the tiny random-weight model (constrained: its
answers are then grid scores; their values mean nothing).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from PIL import Image

from backends.vllm_server import VLLMServerBackend
from judge import SCORE_GRID
from judge.cli import main as cli_main
from judge.failures import ExitStatus

DOCS = Path(__file__).resolve().parents[2] / "docs"
GRID = {float(value) for value in SCORE_GRID}


def load_examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_examples", DOCS / "scripts" / "examples.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_examples"] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_example_files_are_the_scripts(tmp_path: Path):
    examples = load_examples()
    drawn = examples.draw_bar_chart(tmp_path / "chart.png")
    with Image.open(drawn) as fresh, Image.open(DOCS / "examples" / "chart.png") as committed:
        assert fresh.size == committed.size
        assert committed.format == "PNG"
    for name, text in (
        ("question", examples.QUESTION),
        ("sound", examples.SOUND),
        ("flawed", examples.FLAWED),
    ):
        assert (DOCS / "examples" / f"{name}.txt").read_text(encoding="utf-8") == text + "\n"
    page = (DOCS / "examples" / "index.md").read_text(encoding="utf-8")
    for text in (examples.QUESTION, examples.SOUND, examples.FLAWED):
        assert text in page


def test_the_documented_commands_score_both_responses(
    vllm_server: VLLMServerBackend, tmp_path: Path, capsys
):
    examples = load_examples()
    chart = examples.draw_bar_chart(tmp_path / "chart.png")
    for response in (examples.SOUND, examples.FLAWED):
        status = cli_main(
            [
                "score",
                "--base-url",
                str(vllm_server.base_url),
                "--constrained",
                "--expected-score",
                "--json",
                "--question",
                examples.QUESTION,
                "--image",
                str(chart),
                "--response",
                response,
            ]
        )
        out = capsys.readouterr().out
        assert status == ExitStatus.OK, out
        result = json.loads(out)
        assert result["score"] in GRID
        assert result["usage"]["prompt_tokens"] > 100  # the image is in the prompt
