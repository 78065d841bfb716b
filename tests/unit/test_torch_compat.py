"""The torch compatibility shim hides media packages whose libraries cannot load."""

from __future__ import annotations

import importlib.util
import sys

import pytest

pytest.importorskip("torch", reason="the shim only matters where torch is installed")

from backends import _torch_compat


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
