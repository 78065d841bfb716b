"""The torch compatibility repair: what it does, and that it runs only where it is asked.

It hides media packages whose libraries cannot load and lets a CUDA torchvision import
beside a CPU torch; it runs in the processes the project starts (through
``child_environment()``) and in those that load vLLM through it, never in a plain
``import torch`` of an environment where the project is merely installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the shim only matters where torch is installed")

from backends import _torch_compat

DISTRIBUTION = "thinking-reward-judge"
HOOK_MODULE = "_thinking_judge_torch_compat"  # the name the start-up hook loads it under

# Prints, as JSON, the modules of this project (or its start-up hook) a process loaded.
PROJECT_MODULES = (
    "import json, sys; print(json.dumps(sorted(m for m in sys.modules "
    "if m.split('.')[0] in ('judge', 'backends') or 'torch_compat' in m)))"
)


def _without_hook(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with the start-up hook's folder taken off ``PYTHONPATH``."""
    site = str(_torch_compat.SITE_DIR)
    entries = [e for e in environment.get("PYTHONPATH", "").split(os.pathsep) if e and e != site]
    environment = dict(environment)
    if entries:
        environment["PYTHONPATH"] = os.pathsep.join(entries)
    else:
        environment.pop("PYTHONPATH", None)
    return environment


def _run(code: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(os.sep),  # not the checkout: the project must come from the install
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# ------------------------------------------------- where it runs, and where not


def test_a_plain_import_torch_loads_nothing_of_this_project():
    done = _run(f"import torch\n{PROJECT_MODULES}", _without_hook(dict(os.environ)))
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_this_distribution_registers_no_entry_point_but_its_command():
    points = importlib.metadata.distribution(DISTRIBUTION).entry_points
    assert {(p.group, p.name) for p in points} == {("console_scripts", "thinking-judge")}
    for group in ("torch.backends", "vllm.general_plugins", "vllm.platform_plugins"):
        assert not [
            p
            for p in importlib.metadata.entry_points(group=group)
            if p.value.split(".")[0] in ("backends", "judge")
        ], group


def test_the_child_environment_puts_the_hook_first_once_and_keeps_the_rest():
    base = {"PYTHONPATH": os.pathsep.join(["/a", "/b"]), "OTHER": "1"}
    environment = _torch_compat.child_environment(base)
    site = str(_torch_compat.SITE_DIR)
    assert environment == {"PYTHONPATH": os.pathsep.join([site, "/a", "/b"]), "OTHER": "1"}
    assert base == {"PYTHONPATH": os.pathsep.join(["/a", "/b"]), "OTHER": "1"}  # not changed
    assert _torch_compat.child_environment(environment) == environment
    assert _torch_compat.child_environment({})["PYTHONPATH"] == site
    assert sorted(p.name for p in _torch_compat.SITE_DIR.glob("*.py")) == ["sitecustomize.py"]


def test_a_child_runs_the_repair_after_its_first_import_of_torch():
    # Starting the interpreter imports no torch; asking whether torch is installed
    # (find_spec, as transformers does at import) does not use the hook up; importing
    # torch runs the repair, after which torchvision imports (a CUDA build beside a CPU
    # torch raises "operator torchvision::nms does not exist" without it).
    code = (
        "import importlib.util, json, sys\n"
        f"hook = sys.modules['{HOOK_MODULE}']\n"
        "before = 'torch' in sys.modules or hook._media_checked\n"
        "assert importlib.util.find_spec('torch') is not None\n"
        "import torch\n"
        "after = hook._media_checked\n"
        "vision = importlib.util.find_spec('torchvision') is not None\n"
        "if vision:\n"
        "    import torchvision\n"
        "print(json.dumps([before, after, vision, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('judge', 'backends'))]))\n"
    )
    environment = _torch_compat.child_environment(_without_hook(dict(os.environ)))
    before, after, _, project = json.loads(_run(code, environment).stdout.splitlines()[-1])
    assert (before, after) == (False, True)
    assert project == []  # the hook loads its one file, not the backends package


def test_the_hook_runs_the_sitecustomize_it_stands_in_front_of(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['THEIRS_RAN'] = '1'\n")
    base = {**_without_hook(dict(os.environ)), "PYTHONPATH": str(tmp_path)}
    code = (
        "import json, os, sys\n"
        f"print(json.dumps([os.environ.get('THEIRS_RAN'), '{HOOK_MODULE}' in sys.modules, "
        "'torch' in sys.modules, sys.modules['sitecustomize'].__file__]))\n"
    )
    done = _run(code, _torch_compat.child_environment(base))
    theirs, hooked, torch_loaded, module = json.loads(done.stdout.splitlines()[-1])
    assert (theirs, hooked, torch_loaded) == ("1", True, False)
    assert Path(module) == tmp_path / "sitecustomize.py"


def test_the_in_process_engine_passes_the_hook_to_its_children(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    _torch_compat.install_in_process_tree()
    site = str(_torch_compat.SITE_DIR)
    assert os.environ["PYTHONPATH"] == os.pathsep.join([site, "/elsewhere"])
    _torch_compat.install_in_process_tree()
    assert os.environ["PYTHONPATH"].count(site) == 1


def test_import_vllm_installs_the_repair_before_vllm(monkeypatch):
    from types import SimpleNamespace

    from backends import vllm_offline

    calls: list[str] = []
    monkeypatch.setattr(vllm_offline, "install_in_process_tree", lambda: calls.append("repair"))
    importer = SimpleNamespace(import_module=lambda name: calls.append(name) or object())
    monkeypatch.setattr(vllm_offline, "importlib", importer)
    vllm_offline.import_vllm()
    assert calls == ["repair", "vllm"]


# ----------------------------------------------------------------- what it does


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    package = tmp_path / "fake_media_pkg"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("raise OSError('would fail like a mismatched build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_media_pkg", raising=False)
    importlib.invalidate_caches()
    return package


def test_a_package_whose_library_cannot_load_looks_absent(fake_package, monkeypatch):
    (fake_package / "lib" / "_ext.so").write_bytes(b"not a shared library")
    monkeypatch.setattr(_torch_compat, "_MEDIA_LIBRARIES", (("fake_media_pkg", "lib/_ext.so"),))
    _torch_compat._hide_unloadable_media_packages()
    assert sys.modules["fake_media_pkg"] is None
    assert importlib.util.find_spec("fake_media_pkg") is None
    with pytest.raises(ImportError):
        import fake_media_pkg  # noqa: F401
    sys.modules.pop("fake_media_pkg")


def test_a_package_without_that_library_is_left_alone(fake_package, monkeypatch):
    monkeypatch.setattr(_torch_compat, "_MEDIA_LIBRARIES", (("fake_media_pkg", "lib/_ext.so"),))
    _torch_compat._hide_unloadable_media_packages()
    assert "fake_media_pkg" not in sys.modules


def test_torchvision_imports_after_install():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    _torch_compat.install()
    import torchvision

    assert torchvision.__version__


def test_hiding_clears_what_transformers_already_cached(fake_package, monkeypatch):
    import functools
    import types

    calls = []

    @functools.lru_cache
    def is_torchaudio_available():
        calls.append(1)
        return True

    utils = types.ModuleType("transformers.utils.import_utils")
    utils.is_torchaudio_available = is_torchaudio_available
    monkeypatch.setitem(sys.modules, "transformers.utils.import_utils", utils)
    assert is_torchaudio_available()  # cached "available", as `import transformers` does
    (fake_package / "lib" / "_ext.so").write_bytes(b"not a shared library")
    monkeypatch.setattr(_torch_compat, "_MEDIA_LIBRARIES", (("fake_media_pkg", "lib/_ext.so"),))
    _torch_compat._hide_unloadable_media_packages()
    is_torchaudio_available()
    assert len(calls) == 2  # asked again after the package was hidden


def test_tiny_model_builds_after_transformers_was_imported_first(tmp_path):
    import subprocess

    code = (
        "import sys, transformers\n"
        "from judge.testing import build_tiny_model\n"
        "build_tiny_model(__import__('pathlib').Path(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "tiny")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "tiny" / "config.json").exists()
