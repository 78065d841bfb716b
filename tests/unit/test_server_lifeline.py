"""A server the launcher started stops when the launching process dies without clean-up.

The launcher (:class:`backends.vllm_launch.ServerProcess`) keeps the write end of a pipe
whose read end only the server holds; the start-up hook of the processes the project
starts watches it. These tests start a real child through the launcher (a sleeping Python
process stands in for vLLM: what is under test is the process plumbing, not vLLM), then
SIGKILL the launcher, so no ``finally``, finalizer or atexit of it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from backends.vllm_launch import LIFELINE_ENV, ServerProcess, server_environment

ROOT = Path(__file__).resolve().parents[2]

LAUNCHER = textwrap.dedent(
    """
    import sys, time
    from backends.vllm_launch import ServerProcess, server_environment

    class Owner:
        pass

    owner = Owner()
    child = [sys.executable, "-c",
             "import os, time; print(os.environ.get('THINKING_JUDGE_LIFELINE_FD'), flush=True);"
             " time.sleep(600)"]
    server = ServerProcess.start(child, env=server_environment(), log_file=sys.argv[1],
                                 grace=5, owner=owner)
    print(server.process.pid, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _wait_gone(pid: int, bound: float = 60.0) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_a_killed_launcher_takes_its_server_with_it(tmp_path: Path) -> None:
    """SIGKILL the launching process: its server's group is stopped by the lifeline."""
    log = tmp_path / "server.log"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    server_pid = None
    try:
        assert launcher.stdout is not None
        server_pid = int(launcher.stdout.readline())
        deadline = time.monotonic() + 60
        while "\n" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.1)
        # The server saw no variable: its hook took it out of its environment (its own
        # children do not watch), after reading it.
        assert log.read_text().splitlines()[0] == "None"
        assert _alive(server_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(30)
        assert _wait_gone(server_pid), "the server outlived its killed launcher"
    finally:
        launcher.kill()
        if server_pid is not None and _alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def test_a_running_launcher_keeps_its_server(tmp_path: Path) -> None:
    """While the launcher lives, the lifeline holds: the server runs until stopped."""

    class Owner:
        pass

    owner = Owner()
    child = [sys.executable, "-c", "import time; time.sleep(600)"]
    server = ServerProcess.start(
        child, env=server_environment(), log_file=tmp_path / "s.log", grace=5, owner=owner
    )
    try:
        # The hook has started (it runs before -c's code), yet the server is alive.
        time.sleep(1.0)
        assert server.process.poll() is None
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_the_variable_names_the_lifeline() -> None:
    """The hook and the launcher agree on the variable's name."""
    hook = (ROOT / "backends" / "_torch_compat_site" / "sitecustomize.py").read_text()
    assert f'"{LIFELINE_ENV}"' in hook
