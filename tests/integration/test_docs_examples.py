"""Every command and code block of README.md and docs/, run as written against the tiny model.

Each ```bash / ```console block and each ```python block of README.md and of every page
under docs/ is extracted and run:

* in a temporary folder laid out like the repository's root (``docs/``, ``recipes/`` and
  ``benchmarks/`` are there), with an empty ``HOME``, so ``docs/examples/chart.png``
  resolves as it does for a reader in a fresh clone;
* against the session's real vLLM server on the tiny random-weight Qwen2.5-VL, served
  as ``thinking-reward-model``: the one rewrite is the documented local address
  ``http://127.0.0.1:8000/v1`` (where ``thinking-judge serve`` listens), replaced by the
  test server's;
* shell blocks with ``bash``, every command of the block run; a console block's ``$``
  commands (and their ``\\`` continuation lines) likewise; the shown output is not
  compared (the tiny model's values mean nothing). Each command must exit 0, or 1
  without a Python traceback: status 1 is the commands' "a judgment failed, here is
  why" (:class:`judge.failures.ExitStatus`), which is what the tiny random model earns
  when asked, unconstrained, as the real model is (its answer is not a score);
* the python blocks of one page in one fresh interpreter, in page order, in one
  namespace, as a reader pasting them into one session would: each block is compiled
  as a module (so a top-level ``await`` is the ``SyntaxError`` a script would raise).

A block that needs the real model, a GPU, a trainer or a cluster is marked in the
Markdown by an HTML comment on the line before it, ``<!-- skip-test: the reason -->``;
README's two install commands carry ``<!-- main-command -->`` / ``<!-- test-command -->``
(CI runs them on a clean clone), as do the same commands elsewhere; a block that installs
packages (``pip install``...) is never run. Skipped blocks are printed with their reason, and the
test asserts how many blocks ran, so it cannot pass on an empty extraction.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from backends.vllm_server import VLLMServerBackend

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOCUMENTED_URL = "http://127.0.0.1:8000/v1"
LANGUAGES = {"bash": "shell", "console": "console", "python": "python"}
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->\s*$")
BUILT_IN_SKIPS = {
    "<!-- main-command -->": "README's install-and-demo command: CI runs it on a clean clone",
    "<!-- test-command -->": "README's install-and-test command: CI runs it on a clean clone",
}
INSTALLS = re.compile(r"\bpip3? install\b|\b(?:uv pip|conda|apt-get|apt) install\b")
MIN_RUN = 29
"""At least this many blocks run (29 of 64 when this was written; the rest say why not)."""
PAGE_TIMEOUT = 240


@dataclass(frozen=True)
class Block:
    """One fenced block of a page.

    Attributes:
        page: The page, relative to the repository's root.
        line: The 1-based line of its opening fence.
        kind: ``shell``, ``console`` or ``python``.
        code: Its text.
        skip: Why it is not run (None: it runs).
    """

    page: str
    line: int
    kind: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def extract(page: Path) -> list[Block]:
    """The bash, console and python blocks of ``page``, with their skip marks."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        kind = LANGUAGES.get(match.group(1))
        if kind is None:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marked = SKIP.match(before)
        skip = marked.group(1) if marked else BUILT_IN_SKIPS.get(before)
        if skip is None and INSTALLS.search(match.group(2)):
            skip = "installs packages (a test installs nothing; CI installs on a clean clone)"
        blocks.append(
            Block(
                page=page.relative_to(ROOT).as_posix(),
                line=text.count("\n", 0, match.start()) + 1,
                kind=kind,
                code=match.group(2),
                skip=skip,
            )
        )
    return blocks


def console_commands(code: str) -> str:
    """The ``$`` commands of a console block, continuation lines kept, output dropped."""
    lines: list[str] = []
    continued = False
    for line in code.splitlines():
        if line.startswith("$ "):
            lines.append(line[2:])
        elif continued:
            lines.append(line)
        else:
            continue
        continued = line.endswith("\\")
    return "\n".join(lines) + "\n"


def same_commands(blocks: list[Block]) -> list[Block]:
    """Blocks elsewhere that repeat README's install commands are skipped as those are."""
    reasons = {b.code: b.skip for b in blocks if b.skip in BUILT_IN_SKIPS.values()}
    return [
        b if b.skip is not None or b.code not in reasons else replace(b, skip=reasons[b.code])
        for b in blocks
    ]


ALL_BLOCKS = same_commands([block for page in PAGES for block in extract(page)])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder laid out like the repository's root, and an empty HOME beside it (per page:
    what one page's commands write does not change what the next page's do)."""
    base = tmp_path
    work = base / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "docs", work / "docs")
    for name in ("recipes", "benchmarks"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    (base / "home").mkdir()
    return work


def environment(work: Path) -> dict[str, str]:
    """A newcomer's environment: the venv's commands on PATH, an empty HOME."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("THINKING_JUDGE_BASE_URL", "VLLM_API_KEY", "PYTHONPATH"))
    }
    env["HOME"] = str(work.parent / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    return env


STATUS = "__docs_example_status"
TRAP = f"trap 'echo \"{STATUS} $? $LINENO\" >&2' ERR\n"


def command_at(code: str, line_number: int) -> str:
    """The command of ``code`` that covers its 1-based line ``line_number``."""
    lines = code.splitlines()
    first = min(max(line_number, 1), len(lines)) - 1
    while first > 0 and lines[first - 1].endswith("\\"):
        first -= 1
    return lines[first].strip() if lines else ""


def failed_commands(code: str, done: subprocess.CompletedProcess[str]) -> list[str]:
    """What went wrong in a shell block run by :func:`run_shell`.

    A command that exited other than 0 is a failure, except a ``thinking-judge`` command
    that exited 1 (a judgment failed, and it said why); a Python traceback anywhere is.
    """
    problems = []
    for line in done.stderr.splitlines():
        if line.startswith(STATUS):
            status, number = line.split()[1:]
            line_number = int(number) - 1  # the trap is the script's line 1
            command = command_at(code, line_number)
            if status != "1" or not command.startswith("thinking-judge "):
                problems.append(f"{command[:60]!r} (line {line_number}) exited {status}")
    if "Traceback (most recent call last)" in done.stderr:
        problems.append("a Python traceback")
    return problems


def run_bounded(
    command: list[str], work: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session; on time-out, kill its whole process group."""
    with subprocess.Popen(
        command,
        cwd=work,
        env=environment(work),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(stdin, timeout=PAGE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            err += f"\n(killed after {PAGE_TIMEOUT} s)"
            return subprocess.CompletedProcess(command, -9, out, err)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def shell_code(block: Block) -> str:
    """The commands a shell or console block runs."""
    return block.code if block.kind == "shell" else console_commands(block.code)


def run_shell(block: Block, work: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    """Run every command of a shell or console block (each status reported by a trap)."""
    script = TRAP + shell_code(block).replace(DOCUMENTED_URL, base_url)
    return run_bounded(["bash", "-o", "pipefail", "-c", script], work)


DRIVER = textwrap.dedent(
    """
    import json, sys, traceback
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    results = []
    for where, code in blocks:
        print(f"--- {where}", flush=True)
        try:
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            results.append([where, traceback.format_exc(limit=-6)])
        else:
            results.append([where, None])
    print("RESULTS " + json.dumps(results), flush=True)
    """
)


def run_python(blocks: list[Block], work: Path, base_url: str) -> dict[str, str | None]:
    """Run one page's python blocks in one interpreter; each block's traceback or None."""
    sources = [[b.where, b.code.replace(DOCUMENTED_URL, base_url)] for b in blocks]
    done = run_bounded([sys.executable, "-c", DRIVER], work, stdin=json.dumps(sources))
    marker = "RESULTS "
    last = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    assert last, f"the interpreter died (status {done.returncode}):\n{done.stderr[-3000:]}"
    return {where: error for where, error in json.loads(last[-1][len(marker) :])}


def pages_with_blocks() -> Iterator[str]:
    seen: dict[str, None] = {}
    for block in ALL_BLOCKS:
        seen.setdefault(block.page, None)
    yield from seen


def test_the_extraction_finds_and_marks_the_blocks():
    run = [b for b in ALL_BLOCKS if b.skip is None]
    skipped = [b for b in ALL_BLOCKS if b.skip is not None]
    for block in skipped:
        print(f"skipped {block.where} ({block.kind}): {block.skip}")
    print(f"{len(run)} blocks run, {len(skipped)} skipped, of {len(ALL_BLOCKS)}")
    assert len(run) >= MIN_RUN
    assert {b.kind for b in run} == {"shell", "console", "python"}


def test_console_blocks_keep_commands_and_drop_output():
    code = "$ thinking-judge score \\\n      --json\n1\n$ echo done\ndone\n"
    assert console_commands(code) == "thinking-judge score \\\n      --json\necho done\n"


@pytest.mark.parametrize("page", list(pages_with_blocks()))
def test_every_block_of_the_page_runs_as_written(
    page: str, vllm_server: VLLMServerBackend, workdir: Path
):
    blocks = [b for b in ALL_BLOCKS if b.page == page]
    base_url = str(vllm_server.base_url).rstrip("/")
    failures = []
    for block in blocks:
        if block.skip is not None:
            print(f"skipped {block.where}: {block.skip}")
    for block in blocks:
        if block.skip is None and block.kind != "python":
            done = run_shell(block, workdir, base_url)
            problems = failed_commands(shell_code(block), done)
            statuses = [line for line in done.stderr.splitlines() if line.startswith(STATUS)]
            print(f"ran {block.where}: {statuses or 'every command exited 0'}")
            if problems:
                failures.append(
                    f"{block.where}: {'; '.join(problems)}:\n{done.stdout[-1500:]}"
                    f"\n{done.stderr[-3000:]}"
                )
    python = [b for b in blocks if b.skip is None and b.kind == "python"]
    if python:
        for where, error in run_python(python, workdir, base_url).items():
            print(f"ran {where}: {'failed' if error else 'ok'}")
            if error:
                failures.append(f"{where}:\n{error}")
    assert not failures, "\n\n".join(failures)


def test_a_shell_block_reports_each_failing_command(tmp_path: Path):
    code = "false\n(exit 3)\nthinking-judge --no-such-option \\\n  || (exit 1)\necho still here\n"
    block = Block("x.md", 1, "shell", code, None)
    done = run_shell(block, tmp_path, "http://unused")
    assert "still here" in done.stdout
    assert failed_commands(code, done) == [
        "'false' (line 1) exited 1",
        "'(exit 3)' (line 2) exited 3",
    ]


def load_examples() -> ModuleType:
    """``docs/scripts/examples.py``, which draws the example's chart and holds its texts."""
    path = ROOT / "docs" / "scripts" / "examples.py"
    spec = importlib.util.spec_from_file_location("docs_examples", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_examples"] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_example_files_are_the_scripts(tmp_path: Path):
    examples = load_examples()
    folder = ROOT / "docs" / "examples"
    drawn = examples.draw_bar_chart(tmp_path / "chart.png")
    with Image.open(drawn) as fresh, Image.open(folder / "chart.png") as committed:
        assert fresh.size == committed.size
        assert committed.format == "PNG"
    texts = {"question": examples.QUESTION, "sound": examples.SOUND, "flawed": examples.FLAWED}
    for name, text in texts.items():
        assert (folder / f"{name}.txt").read_text(encoding="utf-8") == text + "\n"
    page = (folder / "index.md").read_text(encoding="utf-8")
    for text in texts.values():
        assert text in page
    lines = (folder / "inputs.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": name, "question": examples.QUESTION, "image": "chart.png", "response": texts[name]}
        for name in ("sound", "flawed")
    ]
