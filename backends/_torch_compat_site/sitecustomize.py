"""Start-up hook of the Python processes thinking-reward-judge starts (not an importable module).

Python's :mod:`site` imports this file because the project's launcher puts its folder at
the head of ``PYTHONPATH`` (``backends._torch_compat.child_environment``). It loads
``backends/_torch_compat.py`` by its path (the ``backends`` package is not imported),
arranges for the torch repair to run right after the first ``import torch``, then runs
the ``sitecustomize`` this interpreter would otherwise have run. See that module.

A server the launcher started (``backends/vllm_launch.py``) also finds its lifeline here:
``THINKING_JUDGE_LIFELINE_FD`` names the read end of a pipe whose write end only the
launching process holds. A daemon thread waits on it; at end of file (the launcher is gone,
even by SIGKILL) it stops this process's group: SIGTERM, then SIGKILL after a grace.
"""

import importlib.util
import os
import signal
import sys
import threading
import time
import warnings

_LIFELINE_GRACE = 10.0
"""Seconds the process group is given to stop after SIGTERM before SIGKILL."""


def _hold_lifeline() -> None:
    name = "THINKING_JUDGE_LIFELINE_FD"
    value = os.environ.pop(name, None)  # this process watches; its children do not
    if value is None:
        return
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        group = os.getpgid(0)
        try:
            os.killpg(group, signal.SIGTERM)
            time.sleep(_LIFELINE_GRACE)
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass

    threading.Thread(target=watch, name="thinking-judge-lifeline", daemon=True).start()


def _start() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        path = os.path.join(os.path.dirname(here), "_torch_compat.py")
        spec = importlib.util.spec_from_file_location("_thinking_judge_torch_compat", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        module.install_on_import()
    except Exception as error:  # never stop the interpreter from starting
        warnings.warn(
            f"torch compatibility hook not installed: {error!r}", RuntimeWarning, stacklevel=1
        )
        return
    module.run_next_sitecustomize(here)


_hold_lifeline()
_start()
