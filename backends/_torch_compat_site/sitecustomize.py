"""Start-up hook of the Python processes thinking-reward-judge starts (not an importable module).

Python's :mod:`site` imports this file because the project's launcher puts its folder at
the head of ``PYTHONPATH`` (``backends._torch_compat.child_environment``). It loads
``backends/_torch_compat.py`` by its path (the ``backends`` package is not imported),
arranges for the torch repair to run right after the first ``import torch``, then runs
the ``sitecustomize`` this interpreter would otherwise have run. See that module.
"""

import importlib.util
import os
import sys
import warnings


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


_start()
